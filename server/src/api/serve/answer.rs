//! The router as one connection's hyper service: each request's body is
//! capped in size and must arrive by a deadline, and the connection's
//! clock counts the request as under way until its answer's body is sent
//! (or dropped).
//!
//! The body deadline runs from the end of the head, whatever route reads
//! the body; a route that never reads it is not held up by it. A late or
//! oversized body reaches the handler as a body error (`axum`'s extractors
//! answer it), never as a cut-off value.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::http::{Request, Response};
use http_body::{Frame, SizeHint};
use http_body_util::Limited;
use hyper::body::Incoming;
use tokio::time::{Instant, Sleep};
use tower::ServiceExt as _;

use super::conn::{Answering, Clock};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A request body not received by its deadline.
#[derive(Debug, thiserror::Error)]
#[error("request body not received within {0:?} of its head")]
pub(super) struct BodyTimeout(Duration);

/// Serves one connection's requests with the router.
#[derive(Clone)]
pub(super) struct Answer {
    router: Router,
    clock: Arc<Clock>,
    body_timeout: Duration,
    max_body_bytes: usize,
}

impl Answer {
    pub(super) fn new(
        router: Router,
        clock: Arc<Clock>,
        body_timeout: Duration,
        max_body_bytes: usize,
    ) -> Self {
        Answer { router, clock, body_timeout, max_body_bytes }
    }
}

impl hyper::service::Service<Request<Incoming>> for Answer {
    type Response = Response<AnswerBody>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn call(&self, req: Request<Incoming>) -> Self::Future {
        let now = Instant::now();
        let answering = self.clock.request(now);
        let (timeout, limit) = (self.body_timeout, self.max_body_bytes);
        let req = req.map(|incoming| {
            Body::new(DeadlineBody {
                inner: Limited::new(incoming, limit),
                deadline: now + timeout,
                timeout,
                sleep: None,
            })
        });
        let router = self.router.clone();
        Box::pin(async move {
            let response = match router.oneshot(req).await {
                Ok(r) => r,
                Err(never) => match never {},
            };
            Ok(response.map(|inner| AnswerBody { inner, _answering: answering }))
        })
    }
}

/// A request body that fails once its deadline has passed.
struct DeadlineBody<B> {
    inner: B,
    deadline: Instant,
    timeout: Duration,
    /// Made at the first wait only: most requests have no body to wait for.
    sleep: Option<Pin<Box<Sleep>>>,
}

impl<B> http_body::Body for DeadlineBody<B>
where
    B: http_body::Body<Data = Bytes, Error = BoxError> + Unpin,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        if let Poll::Ready(frame) = Pin::new(&mut this.inner).poll_frame(cx) {
            return Poll::Ready(frame);
        }
        let deadline = this.deadline;
        let sleep = this.sleep.get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
        match sleep.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Some(Err(Box::new(BodyTimeout(this.timeout))))),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// An answer's body; the request counts as under way until it is dropped,
/// which hyper does once the body is sent or the connection is gone.
pub(super) struct AnswerBody {
    inner: Body,
    _answering: Answering,
}

impl http_body::Body for AnswerBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.get_mut().inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt as _;

    /// A body that sends `first` and then never ends.
    fn stalled(first: &'static [u8]) -> http_body_util::combinators::UnsyncBoxBody<Bytes, BoxError> {
        use tokio_stream::StreamExt as _;
        let frames =
            tokio_stream::iter([Ok(Frame::data(Bytes::from_static(first)))]).chain(tokio_stream::pending());
        http_body_util::StreamBody::new(frames).boxed_unsync()
    }

    #[tokio::test]
    async fn a_late_body_fails_at_its_deadline() {
        let timeout = Duration::from_millis(200);
        let start = Instant::now();
        let body =
            DeadlineBody { inner: stalled(b"{\"a\":"), deadline: start + timeout, timeout, sleep: None };
        let e = body.collect().await.expect_err("the body never ends");
        assert!(e.downcast_ref::<BodyTimeout>().is_some(), "{e}");
        assert!(start.elapsed() >= timeout, "not before its deadline");
    }

    #[tokio::test]
    async fn a_complete_body_passes_and_an_oversized_one_is_cut() {
        let timeout = Duration::from_secs(5);
        let whole = |bytes: &'static [u8], limit| DeadlineBody {
            inner: Limited::new(
                http_body_util::Full::new(Bytes::from_static(bytes))
                    .map_err(|never| -> BoxError { match never {} }),
                limit,
            ),
            deadline: Instant::now() + timeout,
            timeout,
            sleep: None,
        };
        let ok = whole(b"0123456789", 10).collect().await.expect("within the limit");
        assert_eq!(ok.to_bytes(), Bytes::from_static(b"0123456789"));
        let e = whole(b"0123456789", 9).collect().await.expect_err("over the limit");
        assert!(e.downcast_ref::<http_body_util::LengthLimitError>().is_some(), "{e}");
    }
}
