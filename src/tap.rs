//! A connection whose incoming bytes are followed as they are read, and passed on unchanged:
//! how sfproxy learns what the libraries that parse them keep to themselves (the caller's
//! HTTP/1 framing, which hyper does not expose; the instance's HTTP/2 settings, which h2 does
//! not). Writes go straight through.

use std::{
    io,
    pin::Pin,
    task::{Context, Poll, ready},
};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// What follows the bytes read: called with each read's bytes, in order.
pub(crate) trait Follow {
    fn follow(&mut self, bytes: &[u8]);
}

/// `io`, its reads shown to `follower`.
pub(crate) struct Tapped<T, F> {
    io: T,
    follower: F,
}

impl<T, F> Tapped<T, F> {
    pub(crate) fn new(io: T, follower: F) -> Self {
        Self { io, follower }
    }
}

impl<T: AsyncRead + Unpin, F: Follow + Unpin> AsyncRead for Tapped<T, F> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        ready!(Pin::new(&mut this.io).poll_read(cx, buf))?;
        this.follower.follow(&buf.filled()[before..]);
        Poll::Ready(Ok(()))
    }
}

impl<T: AsyncWrite + Unpin, F: Unpin> AsyncWrite for Tapped<T, F> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[derive(Default)]
    struct Seen(Vec<u8>);

    impl Follow for Seen {
        fn follow(&mut self, bytes: &[u8]) {
            self.0.extend_from_slice(bytes);
        }
    }

    #[tokio::test]
    async fn reads_are_followed_and_passed_on_writes_go_through() {
        let (near, mut far) = tokio::io::duplex(64);
        let mut tapped = Tapped::new(near, Seen::default());
        far.write_all(b"hello").await.unwrap();
        let mut got = [0u8; 5];
        tapped.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"hello");
        assert_eq!(tapped.follower.0, b"hello");
        tapped.write_all(b"back").await.unwrap();
        let mut back = [0u8; 4];
        far.read_exact(&mut back).await.unwrap();
        assert_eq!(&back, b"back");
    }
}
