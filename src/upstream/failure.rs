//! Connection failures in words a caller may read.

/// What went wrong with a connection, in words a caller may read: the failure's class without
/// the socket layer's addresses, ports and OS error texts (the log keeps those). `peer` names the
/// other side: "instance", "token endpoint".
pub(crate) fn failure_class(error: &(dyn std::error::Error + 'static), peer: &str) -> String {
    use std::io::ErrorKind;
    let mut next = Some(error);
    while let Some(error) = next {
        // An `io::Error` hides the error it wraps from `source()`, and h2's the `io::Error` it
        // holds: look inside them too.
        let h2 = error.downcast_ref::<::h2::Error>();
        let io = error
            .downcast_ref::<std::io::Error>()
            .or_else(|| h2.and_then(::h2::Error::get_io));
        let tls = error
            .downcast_ref::<rustls::Error>()
            .or_else(|| io.and_then(|e| e.get_ref()?.downcast_ref::<rustls::Error>()));
        if let Some(tls) = tls {
            return match tls {
                rustls::Error::InvalidCertificate(_) => {
                    format!("the {peer}'s TLS certificate is not trusted")
                }
                _ => format!("the TLS handshake with the {peer} failed"),
            };
        }
        if let Some(io) = io {
            match io.kind() {
                ErrorKind::ConnectionRefused => return format!("connection refused by the {peer}"),
                ErrorKind::TimedOut => return "timed out".to_owned(),
                ErrorKind::ConnectionReset
                | ErrorKind::ConnectionAborted
                | ErrorKind::BrokenPipe
                | ErrorKind::UnexpectedEof => return format!("the {peer} closed the connection"),
                ErrorKind::HostUnreachable | ErrorKind::NetworkUnreachable => {
                    return format!("the {peer} is unreachable");
                }
                _ => {}
            }
        }
        if let Some(h2) = h2 {
            // The reason only: a GOAWAY's debug data is the peer's own text, of any length.
            if h2.is_go_away() || h2.is_reset() {
                let reason = h2
                    .reason()
                    .map_or_else(|| "no reason".to_owned(), |r| r.to_string());
                return format!("the {peer} ended the stream or connection ({reason})");
            }
        }
        if let Some(hyper) = error.downcast_ref::<hyper::Error>() {
            if hyper.is_incomplete_message() || hyper.is_closed() || hyper.is_canceled() {
                return format!("the {peer} closed the connection");
            }
        }
        // hyper-util's connector names its resolver's failures so.
        if error.to_string().starts_with("dns error") {
            return "DNS lookup failed".to_owned();
        }
        next = error.source();
    }
    format!("the connection to the {peer} failed")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_are_told_by_class_without_the_socket_details() {
        use std::io::{Error, ErrorKind};
        let refused = Error::new(
            ErrorKind::ConnectionRefused,
            "Connection refused (os error 111)",
        );
        assert_eq!(
            failure_class(&refused, "instance"),
            "connection refused by the instance"
        );
        let untrusted = Error::new(
            ErrorKind::InvalidData,
            rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer),
        );
        assert_eq!(
            failure_class(&untrusted, "token endpoint"),
            "the token endpoint's TLS certificate is not trusted"
        );
        let timed_out = Error::new(ErrorKind::TimedOut, "10.0.0.1:443");
        assert_eq!(failure_class(&timed_out, "instance"), "timed out");
        let other = Error::other("something at 10.0.0.1:443");
        assert_eq!(
            failure_class(&other, "instance"),
            "the connection to the instance failed"
        );
    }
}
