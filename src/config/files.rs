//! Reading the files a config names (the config itself, keys, certificates) without trusting
//! them: regular files only, bounded in size, never blocking on a FIFO or a device.

use super::*;
use rustls_pki_types::pem::PemObject;

/// The most any file the config names (the config itself, keys, certificates) may hold: they are
/// a few KB, and a path to `/dev/zero` or a huge file must not fill the memory.
pub const MAX_FILE_BYTES: u64 = 1024 * 1024;

/// Reads a file the config names: only a regular file, at most [`MAX_FILE_BYTES`]. Opened
/// non-blocking, so a FIFO nobody writes (or a device) is refused at once instead of blocking
/// the thread; the type is checked again on the opened file, so a swap after the first check
/// cannot slip a FIFO or a device in. The error is `cannot read PATH: why`.
pub fn read_file(path: &Path) -> Result<Vec<u8>, String> {
    read_regular(path).map_err(|why| format!("cannot read {}: {why}", path.display()))
}

/// [`read_file`], the error without the path.
pub(super) fn read_regular(path: &Path) -> Result<Vec<u8>, String> {
    use std::io::Read;
    let meta = std::fs::metadata(path).map_err(|e| e.to_string())?;
    not_regular(&meta)?;
    let mut options = std::fs::OpenOptions::new();
    options.read(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.custom_flags(libc::O_NONBLOCK);
    }
    let file = options.open(path).map_err(|e| e.to_string())?;
    let meta = file.metadata().map_err(|e| e.to_string())?;
    not_regular(&meta)?;
    let too_large = "it is larger than 1 MiB; a key or certificate file is a few KB";
    if meta.len() > MAX_FILE_BYTES {
        return Err(too_large.into());
    }
    let mut bytes = Vec::with_capacity(usize::try_from(meta.len()).unwrap_or(0));
    // One byte over the limit tells a file that grew since the check.
    file.take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| e.to_string())?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(too_large.into());
    }
    Ok(bytes)
}

/// Refuses anything but a regular file, saying what it is instead.
pub(super) fn not_regular(meta: &std::fs::Metadata) -> Result<(), String> {
    let file_type = meta.file_type();
    if file_type.is_file() {
        return Ok(());
    }
    let mut kind = if file_type.is_dir() {
        "a directory"
    } else {
        "not a file"
    };
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if file_type.is_fifo() {
            kind = "a FIFO";
        } else if file_type.is_char_device() || file_type.is_block_device() {
            kind = "a device";
        } else if file_type.is_socket() {
            kind = "a socket";
        }
    }
    Err(format!("it is {kind}, not a regular file"))
}

/// Reads the extra trust anchors of `proxy.ca_file`.
pub fn read_ca_file(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let pem = read_file(path)?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{} is not PEM: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!("{} holds no CERTIFICATE", path.display()));
    }
    Ok(certs)
}
