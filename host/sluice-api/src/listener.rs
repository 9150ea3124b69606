//! The HTTP listeners: TLS handshakes off the accept loop, and the connection limit, whose
//! refusal is a JSON 503 written on the raw connection (there is no HTTP server for it yet).

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

/// How long a client may take for the TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Accepts TCP connections and completes their handshakes in their own tasks, so a slow
/// or silent client never holds up the next one.
pub struct TlsListener {
    rx: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    local: SocketAddr,
}

impl TlsListener {
    pub fn new(listener: TcpListener, acceptor: TlsAcceptor) -> std::io::Result<TlsListener> {
        let local = listener.local_addr()?;
        let (tx, rx) = mpsc::channel(64);
        tokio::spawn(async move {
            loop {
                let (tcp, peer) = match listener.accept().await {
                    Ok(c) => c,
                    Err(e) => {
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let _ = tcp.set_nodelay(true);
                if tx.is_closed() {
                    return;
                }
                let (acceptor, tx) = (acceptor.clone(), tx.clone());
                tokio::spawn(async move {
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                        Ok(Ok(tls)) => {
                            let _ = tx.send((tls, peer)).await;
                        }
                        Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                        Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                    }
                });
            }
        });
        Ok(TlsListener { rx, local })
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.rx.recv().await {
            Some(c) => c,
            // The accept task only ends when this listener is dropped.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.local)
    }
}

/// A listener that keeps at most `max` connections open: one more is answered with a JSON
/// 503 and closed, so a client sees why instead of hanging in the accept queue.
pub struct Limited<L> {
    inner: L,
    permits: Arc<tokio::sync::Semaphore>,
    max: usize,
}

impl<L> Limited<L> {
    pub fn new(inner: L, max: usize) -> Limited<L> {
        Limited {
            inner,
            permits: Arc::new(tokio::sync::Semaphore::new(max)),
            max,
        }
    }
}

/// A connection holding its place under the limit until it is dropped.
pub struct Counted<IO> {
    io: IO,
    _permit: tokio::sync::OwnedSemaphorePermit,
}

impl<IO: AsyncRead + Unpin> AsyncRead for Counted<IO> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for Counted<IO> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
}

/// The JSON 503 a connection over the limit gets before it is closed.
fn over_limit_response(max: usize) -> String {
    let body = serde_json::to_string(&crate::error::ErrorBody {
        error: crate::error::ErrorDetail {
            code: "too_many_connections",
            message: format!("the server has {max} connections open, its limit; retry later"),
            details: None,
        },
    })
    .unwrap_or_default();
    format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\ncontent-length: {}\r\nretry-after: 1\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )
}

impl<L> axum::serve::Listener for Limited<L>
where
    L: axum::serve::Listener,
    L::Io: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Io = Counted<L::Io>;
    type Addr = L::Addr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            let (mut io, addr) = self.inner.accept().await;
            match self.permits.clone().try_acquire_owned() {
                Ok(permit) => {
                    return (
                        Counted {
                            io,
                            _permit: permit,
                        },
                        addr,
                    );
                }
                Err(_) => {
                    let resp = over_limit_response(self.max);
                    tokio::spawn(async move {
                        let _ = tokio::time::timeout(crate::linger::LINGER_TIME, async {
                            // Answer the request, not the connection: read its head first
                            // (a client may take a response that comes before its request
                            // for a protocol error), then reply, then read what else it
                            // sent (closing with unread data resets the connection, and
                            // the client may lose the answer).
                            let mut head = Vec::new();
                            let mut chunk = [0u8; 4096];
                            let read_head = async {
                                while head.len() < 16 << 10
                                    && !head.windows(4).any(|w| w == b"\r\n\r\n")
                                {
                                    match io.read(&mut chunk).await {
                                        Ok(0) | Err(_) => break,
                                        Ok(n) => head.extend_from_slice(&chunk[..n]),
                                    }
                                }
                            };
                            let _ =
                                tokio::time::timeout(Duration::from_millis(500), read_head).await;
                            let _ = io.write_all(resp.as_bytes()).await;
                            let _ = io.shutdown().await;
                            // Read what else it sent (bounded), as after any early answer.
                            let mut left = crate::linger::LINGER_BYTES;
                            while left > 0 {
                                match io.read(&mut chunk).await {
                                    Ok(0) | Err(_) => break,
                                    Ok(n) => left = left.saturating_sub(n),
                                }
                            }
                        })
                        .await;
                    });
                }
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.inner.local_addr()
    }
}
