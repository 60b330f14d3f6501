//! The layer around every route: the request's id (`request_id`), the
//! `request` span its log lines carry, and its count and latency by route
//! pattern. Written as a tower layer rather than `middleware::from_fn`, which
//! clones the route's service and boxes twice per request: this runs on every
//! request, and the polling benchmark counts each microsecond of it.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::response::Response;
use tracing::Instrument;

use super::request_id;
use crate::state::AppState;

#[derive(Clone)]
pub struct Observe(AppState);

impl Observe {
    pub fn new(state: AppState) -> Self {
        Self(state)
    }
}

impl<S> tower::Layer<S> for Observe {
    type Service = Observed<S>;

    fn layer(&self, inner: S) -> Observed<S> {
        Observed { inner, state: self.0.clone() }
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
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request) -> Self::Future {
        let started = Instant::now();
        let (id, header) = request_id::take_or_make(&req);
        let span = tracing::info_span!("request", request_id = %id, method = %req.method());
        let method = req.method().clone();
        // Counted by route pattern, never by raw path (ids would explode the
        // label set); the not-found fallback matches no pattern and is not counted.
        let route = req.extensions().get::<MatchedPath>().cloned();
        let handled = {
            let _inside = span.enter();
            request_id::sync_scope(id.clone(), || self.inner.call(req))
        };
        let state = self.state.clone();
        Box::pin(async move {
            let Ok(mut resp) = request_id::scope(id, handled).instrument(span.clone()).await;
            let elapsed = started.elapsed();
            if let Some(route) = &route {
                state.metrics.record_request(&method, route.as_str(), resp.status().as_u16(), elapsed.as_secs_f64());
            }
            let _inside = span.enter();
            tracing::debug!(
                status = resp.status().as_u16(),
                latency_ms = elapsed.as_millis() as u64,
                "request finished"
            );
            resp.headers_mut().insert(request_id::HEADER, header);
            Ok(resp)
        })
    }
}
