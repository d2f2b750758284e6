//! Looking at a connection's first bytes before it is served: [`Peek`] on a socket, and
//! [`Rewind`], which reads them and hands them out again, where there is nothing to peek on (the
//! inside of a tunnel, or its TLS).

use std::{
    future::Future,
    io,
    pin::Pin,
    task::{Context, Poll},
    time::Duration,
};

use bytes::{Buf, BytesMut};
use tokio::{
    io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf},
    net::TcpStream,
};

/// A connection whose first bytes can be looked at before it is served.
pub(crate) trait Peek {
    /// Copies the connection's first bytes into `buf` without consuming them, once there are at
    /// least `want` (or `buf` is full); fewer only if the caller closed first.
    fn peek(
        &mut self,
        buf: &mut [u8],
        want: usize,
    ) -> impl Future<Output = io::Result<usize>> + Send;
}

impl Peek for TcpStream {
    async fn peek(&mut self, buf: &mut [u8], want: usize) -> io::Result<usize> {
        let want = want.min(buf.len());
        loop {
            let n = TcpStream::peek(self, buf).await?;
            if n == 0 || n >= want {
                return Ok(n);
            }
            // Fewer bytes than wanted so far: peek returns at once while nothing new arrives.
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

/// A stream whose first bytes were read to look at them, and are read again first: the inside
/// of a tunnel (no `peek` there), or its TLS.
pub(crate) struct Rewind<I> {
    prefix: BytesMut,
    io: I,
}

impl<I> Rewind<I> {
    pub(crate) fn new(io: I) -> Rewind<I> {
        Rewind {
            prefix: BytesMut::new(),
            io,
        }
    }
}

impl<I: AsyncRead + Unpin + Send> Peek for Rewind<I> {
    async fn peek(&mut self, buf: &mut [u8], want: usize) -> io::Result<usize> {
        let want = want.min(buf.len());
        while self.prefix.len() < want {
            self.prefix.reserve(want.max(1024));
            if self.io.read_buf(&mut self.prefix).await? == 0 {
                break;
            }
        }
        let n = self.prefix.len().min(buf.len());
        buf[..n].copy_from_slice(&self.prefix[..n]);
        Ok(n)
    }
}

impl<I: AsyncRead + Unpin> AsyncRead for Rewind<I> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.prefix.is_empty() {
            return Pin::new(&mut this.io).poll_read(cx, buf);
        }
        let n = this.prefix.len().min(buf.remaining());
        buf.put_slice(&this.prefix[..n]);
        this.prefix.advance(n);
        Poll::Ready(Ok(()))
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for Rewind<I> {
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
