//! The layer around every route: the request's id (`request_id`), the
//! `request` span its log lines carry, its count and latency by route
//! pattern, and the body limit. Written as a tower layer with a named future
//! rather than `middleware::from_fn`, which clones the route's service and
//! boxes twice per request: this runs on every request, and the polling
//! benchmark counts each microsecond of it. The body limit sits inside it for
//! the same reason: as a layer of its own on the router, axum would wrap every
//! route once more, and each wrap clones and boxes per request.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Instant;

use axum::extract::{DefaultBodyLimit, MatchedPath, Request};
use axum::http::{HeaderValue, Method};
use axum::response::Response;
use pin_project_lite::pin_project;
use tokio::task::futures::TaskLocalFuture;
use tower::Layer;

use super::request_id;
use crate::state::AppState;

#[derive(Clone)]
pub struct Observe {
    state: AppState,
    body_limit: DefaultBodyLimit,
}

impl Observe {
    /// Requests' bodies are limited to `max_body_bytes` (SPEC: 413 beyond).
    pub fn new(state: AppState, max_body_bytes: usize) -> Self {
        Self { state, body_limit: DefaultBodyLimit::max(max_body_bytes) }
    }
}

type Limited<S> = <DefaultBodyLimit as Layer<S>>::Service;

impl<S> Layer<S> for Observe {
    type Service = Observed<Limited<S>>;

    fn layer(&self, inner: S) -> Self::Service {
        Observed { inner: self.body_limit.layer(inner), state: self.state.clone() }
    }
}

#[derive(Clone)]
pub struct Observed<S> {
    inner: S,
    state: AppState,
}

impl<S> tower::Service<Request> for Observed<S>
where
    S: tower::Service<Request, Response = Response, Error = Infallible>,
{
    type Response = Response;
    type Error = Infallible;
    type Future = ObservedFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request) -> Self::Future {
        let started = Instant::now();
        let id = request_id::take_or_make(&req);
        let span = tracing::info_span!("request", request_id = %request_id::text(&id), method = %req.method());
        let method = req.method().clone();
        // Counted by route pattern, never by raw path (ids would explode the
        // label set); the not-found fallback matches no pattern and is not counted.
        let route = req.extensions().get::<MatchedPath>().cloned();
        let handled = span.in_scope(|| self.inner.call(req));
        ObservedFuture {
            handled: request_id::scope(id, handled),
            span,
            started,
            method,
            route,
            state: self.state.clone(),
        }
    }
}

pin_project! {
    /// The route's response, handled with the request's id current and its
    /// span entered; once ready it is counted, logged and given the id header.
    pub struct ObservedFuture<F> {
        #[pin]
        handled: TaskLocalFuture<HeaderValue, F>,
        span: tracing::Span,
        started: Instant,
        method: Method,
        route: Option<MatchedPath>,
        state: AppState,
    }
}

impl<F> Future for ObservedFuture<F>
where
    F: Future<Output = Result<Response, Infallible>>,
{
    type Output = Result<Response, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        let _inside = this.span.enter();
        let Ok(mut resp) = ready!(this.handled.as_mut().poll(cx));
        let elapsed = this.started.elapsed();
        if let Some(route) = this.route.as_ref() {
            this.state.metrics.record_request(
                this.method,
                route.as_str(),
                resp.status().as_u16(),
                elapsed.as_secs_f64(),
            );
        }
        tracing::debug!(status = resp.status().as_u16(), latency_ms = elapsed.as_millis() as u64, "request finished");
        if let Some(id) = this.handled.take_value() {
            resp.headers_mut().insert(request_id::HEADER.clone(), id);
        }
        Poll::Ready(Ok(resp))
    }
}
