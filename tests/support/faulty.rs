//! Upstreams that misbehave on purpose, for the fault suite: an instance that accepts TLS and
//! then stalls, closes before answering, closes mid-answer, or presents a certificate nobody
//! trusts; or, over HTTP/2, refuses every other stream unprocessed, or takes only small header
//! lists and drops the whole connection for a large one. Each has its own throwaway CA (add
//! `ca_pem` to the proxy's `ca_file` to trust it).

use std::{
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
};

use rustls_pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};
use sfproxy::pki;

use super::Org;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpListener,
    task::JoinHandle,
};

#[derive(Clone, Copy, Debug)]
pub enum Fault {
    /// Reads the request, never answers.
    Stall,
    /// Reads the request, closes without a byte.
    CloseBeforeAnswer,
    /// Sends the head and part of the body, then closes.
    CloseMidAnswer,
    /// Speaks HTTP/2; refuses its 1st, 3rd, 5th… stream (REFUSED_STREAM) without reading it, and
    /// answers the others 200 with `{"method": …, "bytes": <body length>}`.
    RefuseEveryOtherStream,
    /// Speaks HTTP/2 and advertises `SETTINGS_MAX_HEADER_LIST_SIZE` [`SMALL_HEADER_LIST`]; a
    /// header block over four times that makes it answer GOAWAY (h2's "header list way too
    /// large", ENHANCE_YOUR_CALM) and close the connection, cutting every stream on it, as a
    /// Salesforce instance did with 56 KB of headers. `/download` answers [`DOWNLOAD_BYTES`] in
    /// 16 KiB pieces 10 ms apart; any other path `{"method": …, "bytes": <body length>}`.
    SmallHeaderList,
}

pub const SMALL_HEADER_LIST: u32 = 8 * 1024;
pub const DOWNLOAD_BYTES: usize = 1024 * 1024;

pub struct Faulty {
    pub addr: SocketAddr,
    /// The CA of its certificate.
    pub ca_pem: String,
    /// Requests it has read.
    pub requests: Arc<AtomicUsize>,
    /// Bytes it has received on all its connections (TLS records included).
    pub received_bytes: Arc<AtomicUsize>,
    task: JoinHandle<()>,
}

impl Faulty {
    pub fn url(&self) -> String {
        format!("https://localhost:{}", self.addr.port())
    }

    /// `org.config(proxy_extra, "")` with a `ca_file` that trusts these instances as well as
    /// the stand-in.
    pub fn config_trusting(org: &Org, proxy_extra: &str, trusted: &[&Faulty]) -> String {
        let ca_file = org.dir.path().join("all-cas.crt");
        let mut cas = std::fs::read_to_string(&org.ca_file).unwrap();
        for faulty in trusted {
            cas.push_str(&faulty.ca_pem);
        }
        std::fs::write(&ca_file, cas).unwrap();
        org.config(proxy_extra, "").replace(
            &org.ca_file.display().to_string(),
            &ca_file.display().to_string(),
        )
    }

    pub async fn start(fault: Fault) -> Faulty {
        let (ca, tls) = pki::tls_ca_and_server(&["localhost", "127.0.0.1"]).unwrap();
        let certs = vec![CertificateDer::from_pem_slice(tls.cert_pem.as_bytes()).unwrap()];
        let key = PrivateKeyDer::from_pem_slice(tls.key_pem.as_bytes()).unwrap();
        let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .unwrap();
        config.alpn_protocols = match fault {
            Fault::RefuseEveryOtherStream | Fault::SmallHeaderList => vec![b"h2".to_vec()],
            _ => vec![b"http/1.1".to_vec()],
        };
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let requests = Arc::new(AtomicUsize::new(0));
        let received_bytes = Arc::new(AtomicUsize::new(0));
        let (seen, counted) = (requests.clone(), received_bytes.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    continue;
                };
                let acceptor = acceptor.clone();
                let seen = seen.clone();
                let tcp = Counted {
                    io: tcp,
                    count: counted.clone(),
                };
                tokio::spawn(async move {
                    let Ok(mut tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    match fault {
                        Fault::RefuseEveryOtherStream => {
                            return refuse_every_other_stream(tls, seen).await;
                        }
                        Fault::SmallHeaderList => return small_header_list(tls, seen).await,
                        _ => {}
                    }
                    let mut head = Vec::new();
                    let mut buf = [0u8; 4096];
                    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                        match tls.read(&mut buf).await {
                            Ok(n) if n > 0 => head.extend_from_slice(&buf[..n]),
                            _ => return,
                        }
                    }
                    seen.fetch_add(1, Ordering::SeqCst);
                    match fault {
                        Fault::Stall => {
                            tokio::time::sleep(std::time::Duration::from_secs(3600)).await;
                        }
                        Fault::CloseBeforeAnswer
                        | Fault::RefuseEveryOtherStream
                        | Fault::SmallHeaderList => {}
                        Fault::CloseMidAnswer => {
                            let _ = tls
                                .write_all(
                                    b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n\
                                      content-length: 100000\r\n\r\n{\"records\":[",
                                )
                                .await;
                            let _ = tls.write_all(&[b' '; 20_000]).await;
                            let _ = tls.flush().await;
                        }
                    }
                    // Dropped without close_notify: the peer sees the connection cut.
                });
            }
        });
        Faulty {
            addr,
            ca_pem: ca.cert_pem,
            requests,
            received_bytes,
            task,
        }
    }
}

impl Drop for Faulty {
    fn drop(&mut self) {
        self.task.abort();
    }
}

type Tls = tokio_rustls::server::TlsStream<Counted>;

/// A connection that counts the bytes it receives.
struct Counted {
    io: tokio::net::TcpStream,
    count: Arc<AtomicUsize>,
}

impl tokio::io::AsyncRead for Counted {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = std::pin::Pin::new(&mut self.io).poll_read(cx, buf);
        self.count
            .fetch_add(buf.filled().len() - before, Ordering::SeqCst);
        polled
    }
}

impl tokio::io::AsyncWrite for Counted {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

async fn small_header_list(tls: Tls, seen: Arc<AtomicUsize>) {
    let Ok(mut connection) = h2::server::Builder::new()
        .max_header_list_size(SMALL_HEADER_LIST)
        .handshake::<_, bytes::Bytes>(tls)
        .await
    else {
        return;
    };
    while let Some(Ok((request, mut respond))) = connection.accept().await {
        seen.fetch_add(1, Ordering::SeqCst);
        tokio::spawn(async move {
            let download = request.uri().path().ends_with("/download");
            let (head, mut body) = request.into_parts();
            let mut bytes = 0;
            while let Some(Ok(piece)) = body.data().await {
                bytes += piece.len();
                let _ = body.flow_control().release_capacity(piece.len());
            }
            let answer = http::Response::builder()
                .status(200)
                .header("content-type", "application/octet-stream")
                .body(())
                .unwrap();
            let Ok(mut send) = respond.send_response(answer, false) else {
                return;
            };
            if !download {
                let answer = serde_json::json!({ "method": head.method.as_str(), "bytes": bytes });
                let _ = send.send_data(answer.to_string().into(), true);
                return;
            }
            const PIECE: usize = 16 * 1024;
            for i in 0..DOWNLOAD_BYTES / PIECE {
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                let last = i + 1 == DOWNLOAD_BYTES / PIECE;
                if send.send_data(vec![b'd'; PIECE].into(), last).is_err() {
                    return;
                }
            }
        });
    }
}

async fn refuse_every_other_stream(tls: Tls, seen: Arc<AtomicUsize>) {
    let Ok(mut connection) = h2::server::handshake(tls).await else {
        return;
    };
    while let Some(Ok((request, mut respond))) = connection.accept().await {
        if seen.fetch_add(1, Ordering::SeqCst) % 2 == 0 {
            respond.send_reset(h2::Reason::REFUSED_STREAM);
            continue;
        }
        tokio::spawn(async move {
            let (head, mut body) = request.into_parts();
            let mut bytes = 0;
            while let Some(Ok(piece)) = body.data().await {
                bytes += piece.len();
                let _ = body.flow_control().release_capacity(piece.len());
            }
            let answer = serde_json::json!({ "method": head.method.as_str(), "bytes": bytes });
            let head = http::Response::builder()
                .status(200)
                .header("content-type", "application/json")
                .body(())
                .unwrap();
            if let Ok(mut send) = respond.send_response(head, false) {
                let _ = send.send_data(answer.to_string().into(), true);
            }
        });
    }
}
