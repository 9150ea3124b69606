//! Lingering request bodies: a request the server answers before reading all of its body
//! (413 over the body limit, 404 for an unknown topic, 401…) has the rest of its body read
//! and discarded in the background, within bounds, before the connection closes. Closing
//! a socket with unread bytes resets it, and a client that sends its whole body before
//! reading — the simple kind: curl, `requests`, a shell script — would see a broken pipe
//! instead of the JSON error.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, Bytes, HttpBody};
use axum::extract::Request;
use axum::middleware::Next;
use axum::response::Response;
use futures::StreamExt;

/// Most bytes read and discarded after an early answer.
pub const LINGER_BYTES: usize = 64 << 20;
/// Longest time spent reading them.
pub const LINGER_TIME: Duration = Duration::from_secs(10);

/// Wraps every request body so that whatever the handler leaves unread is drained.
pub async fn linger(req: Request, next: Next) -> Response {
    let (parts, body) = req.into_parts();
    let finished = body.is_end_stream();
    let body = Body::new(Lingering {
        inner: Some(body),
        finished,
    });
    next.run(Request::from_parts(parts, body)).await
}

struct Lingering {
    inner: Option<Body>,
    finished: bool,
}

impl HttpBody for Lingering {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, axum::Error>>> {
        let Some(inner) = self.inner.as_mut() else {
            return Poll::Ready(None);
        };
        let r = Pin::new(inner).poll_frame(cx);
        if matches!(r, Poll::Ready(None) | Poll::Ready(Some(Err(_)))) {
            self.finished = true;
        }
        r
    }

    fn is_end_stream(&self) -> bool {
        self.inner.as_ref().is_none_or(|b| b.is_end_stream())
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner
            .as_ref()
            .map_or_else(|| http_body::SizeHint::with_exact(0), |b| b.size_hint())
    }
}

impl Drop for Lingering {
    fn drop(&mut self) {
        if self.finished {
            return;
        }
        let Some(body) = self.inner.take() else {
            return;
        };
        if body.is_end_stream() {
            return;
        }
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move {
                let _ = tokio::time::timeout(LINGER_TIME, async move {
                    let mut left = LINGER_BYTES;
                    let mut data = body.into_data_stream();
                    while let Some(Ok(chunk)) = data.next().await {
                        left = left.saturating_sub(chunk.len());
                        if left == 0 {
                            break;
                        }
                    }
                })
                .await;
            });
        }
    }
}
