//! The clock of text lines: what tracing-subscriber's `SystemTime` timer writes, without
//! `core::fmt` for every line (2.5k instructions a line there; here the date and time up to the
//! second are formatted once a second per thread).

use std::{
    cell::RefCell,
    fmt::Write as _,
    time::{SystemTime, UNIX_EPOCH},
};

/// `2026-11-26T06:26:44.780010Z` (RFC 3339, microseconds, UTC) as the default's `SystemTime`
/// timer writes it; up to the second formatted once a second per thread.
pub(super) fn write_timestamp(out: &mut String, now: SystemTime) {
    thread_local! {
        static SECOND: RefCell<(u64, String)> = const { RefCell::new((u64::MAX, String::new())) };
    }
    let since = now.duration_since(UNIX_EPOCH).unwrap_or_default();
    let seconds = since.as_secs();
    SECOND.with_borrow_mut(|(second, text)| {
        if *second != seconds {
            *second = seconds;
            text.clear();
            let (year, month, day) = civil_date(seconds / 86_400);
            let time = seconds % 86_400;
            let (hour, minute, second) = (time / 3600, time % 3600 / 60, time % 60);
            let _ = write!(
                text,
                "{year:04}-{month:02}-{day:02}T{hour:02}:{minute:02}:{second:02}"
            );
        }
        let mut micros = itoa::Buffer::new();
        let micros = micros.format(since.subsec_micros());
        out.extend([text.as_str(), ".", &"000000"[micros.len()..], micros, "Z"]);
    });
}

/// Year, month and day of a day count since 1970-01-01 (Howard Hinnant's `civil_from_days`).
pub(super) fn civil_date(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month, day)
}
