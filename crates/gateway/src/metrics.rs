//! Prometheus metrics through the `metrics` crate and its Prometheus exporter,
//! rendered by our own `/metrics` route (no listener of the exporter's).
//!
//! Each `Application` owns its recorder and calls it directly through the
//! `metrics::Recorder` methods, instead of installing a process-wide one: tests
//! run many applications in one process, and each must count only its own
//! traffic (`metrics::with_local_recorder` only covers synchronous closures,
//! which our async handlers and workers are not). The names and labels live
//! here, in one place; callers use the typed methods below.

use std::sync::RwLock;
use std::time::Duration;

use axum::http::Method;
use metrics::{Counter, Histogram, Key, KeyName, Label, Metadata, Recorder, SharedString};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle, PrometheusRecorder};

use crate::util::FastMap;

const HTTP_REQUESTS: &str = "vidgate_http_requests_total";
const HTTP_DURATION: &str = "vidgate_http_request_duration_seconds";
const TASKS_CREATED: &str = "vidgate_tasks_created_total";
const TASKS_FINISHED: &str = "vidgate_tasks_finished_total";
const TASK_DURATION: &str = "vidgate_task_duration_seconds";
const CREDIT_UNITS_CHARGED: &str = "vidgate_charged_credit_units_total";
const CALLBACKS: &str = "vidgate_callback_attempts_total";
const CALLBACK_DURATION: &str = "vidgate_callback_duration_seconds";
const UPSTREAM_SUBMITS: &str = "vidgate_upstream_submits_total";
const UPSTREAM_SUBMIT_DURATION: &str = "vidgate_upstream_submit_duration_seconds";
const UPSTREAM_POLLS: &str = "vidgate_upstream_polls_total";
const UPSTREAM_POLL_DURATION: &str = "vidgate_upstream_poll_duration_seconds";
const TASKS_OPEN: &str = "vidgate_tasks_open";
const QUEUE_DEPTH: &str = "vidgate_queue_depth";
const UPSTREAM_HELD: &str = "vidgate_upstream_tasks_held";
const PROVIDER_UP: &str = "vidgate_provider_up";
const CONNECTIONS_OPEN: &str = "vidgate_http_connections_open";
const IN_FLIGHT: &str = "vidgate_http_requests_in_flight";
const CONNECTIONS_ACCEPTED: &str = "vidgate_http_connections_accepted_total";
const CONNECTIONS_EVICTED: &str = "vidgate_http_connections_evicted_total";
const CONNECTIONS_TIMED_OUT: &str = "vidgate_http_connections_timed_out_total";

/// Bucket bounds (seconds) for in-process latencies and for remote calls.
const FAST: &[f64] = &[0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0];
const REMOTE: &[f64] = &[0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0];
/// A task's whole life: seconds (a local preview) to an hour (its deadline).
const TASK: &[f64] = &[1.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1200.0, 1800.0, 3600.0];

/// How often histogram samples are folded into their buckets.
pub const UPKEEP_EVERY: Duration = Duration::from_secs(5);

pub struct Metrics {
    recorder: PrometheusRecorder,
    handle: PrometheusHandle,
    /// The request metrics' handles by route pattern, then by method and status:
    /// a request counts without building a label set (it is on every request's path).
    requests: RwLock<FastMap<String, RouteHandles>>,
}

struct RouteHandles {
    duration: Histogram,
    counts: FastMap<(Method, u16), Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

fn labels(pairs: &[(&'static str, &str)]) -> Vec<Label> {
    pairs.iter().map(|(k, v)| Label::new(*k, (*v).to_owned())).collect()
}

fn metadata() -> Metadata<'static> {
    Metadata::new(module_path!(), metrics::Level::INFO, Some(module_path!()))
}

impl Metrics {
    pub fn new() -> Self {
        let mut builder = PrometheusBuilder::new();
        for (name, buckets) in [
            (HTTP_DURATION, FAST),
            (CALLBACK_DURATION, REMOTE),
            (UPSTREAM_SUBMIT_DURATION, REMOTE),
            (UPSTREAM_POLL_DURATION, REMOTE),
            (TASK_DURATION, TASK),
        ] {
            // Only an empty list is refused, and none of these is empty.
            builder = match builder.set_buckets_for_metric(Matcher::Full(name.to_owned()), buckets) {
                Ok(b) => b,
                Err(_) => PrometheusBuilder::new(),
            };
        }
        let recorder = builder.build_recorder();
        let handle = recorder.handle();
        let m = Self { recorder, handle, requests: RwLock::default() };
        m.describe_all();
        m
    }

    fn describe_all(&self) {
        let r = &self.recorder;
        let text = |s: &'static str| SharedString::const_str(s);
        r.describe_counter(
            KeyName::from_const_str(HTTP_REQUESTS),
            None,
            text("HTTP requests by method, route and status."),
        );
        r.describe_histogram(
            KeyName::from_const_str(HTTP_DURATION),
            None,
            text("HTTP request latency by route pattern."),
        );
        r.describe_counter(KeyName::from_const_str(TASKS_CREATED), None, text("Tasks accepted, by model."));
        r.describe_counter(
            KeyName::from_const_str(TASKS_FINISHED),
            None,
            text("Tasks that reached a final status, by model, provider, status and error code."),
        );
        r.describe_histogram(
            KeyName::from_const_str(TASK_DURATION),
            None,
            text("Time from a task's creation to its final status, by model and provider."),
        );
        r.describe_counter(
            KeyName::from_const_str(CREDIT_UNITS_CHARGED),
            None,
            text("Credits charged for completed tasks, in ten-thousandths of a credit, by model."),
        );
        r.describe_counter(KeyName::from_const_str(CALLBACKS), None, text("Callback attempts by outcome."));
        r.describe_histogram(KeyName::from_const_str(CALLBACK_DURATION), None, text("Callback attempt latency."));
        r.describe_counter(
            KeyName::from_const_str(UPSTREAM_SUBMITS),
            None,
            text("Submits to upstream providers, by provider and outcome."),
        );
        r.describe_histogram(
            KeyName::from_const_str(UPSTREAM_SUBMIT_DURATION),
            None,
            text("Upstream submit latency by provider."),
        );
        r.describe_counter(
            KeyName::from_const_str(UPSTREAM_POLLS),
            None,
            text("Polls of upstream tasks, by provider and whether the provider answered."),
        );
        r.describe_histogram(
            KeyName::from_const_str(UPSTREAM_POLL_DURATION),
            None,
            text("Upstream poll latency by provider."),
        );
        r.describe_gauge(KeyName::from_const_str(TASKS_OPEN), None, text("Tasks pending or processing."));
        r.describe_gauge(
            KeyName::from_const_str(QUEUE_DEPTH),
            None,
            text("Tasks pending: waiting for a worker (or for a retry to come due)."),
        );
        r.describe_gauge(
            KeyName::from_const_str(UPSTREAM_HELD),
            None,
            text("Upstream tasks this process holds and polls."),
        );
        r.describe_gauge(KeyName::from_const_str(CONNECTIONS_OPEN), None, text("Client connections open."));
        r.describe_gauge(KeyName::from_const_str(IN_FLIGHT), None, text("HTTP requests being handled or answered."));
        r.describe_counter(KeyName::from_const_str(CONNECTIONS_ACCEPTED), None, text("Client connections accepted."));
        r.describe_counter(
            KeyName::from_const_str(CONNECTIONS_EVICTED),
            None,
            text("Idle connections closed to make room at the connection cap."),
        );
        r.describe_counter(
            KeyName::from_const_str(CONNECTIONS_TIMED_OUT),
            None,
            text("Connections closed by the header or idle timeout."),
        );
        r.describe_gauge(
            KeyName::from_const_str(PROVIDER_UP),
            None,
            text("1 when the provider's circuit is closed or half-open, 0 when open."),
        );
    }

    fn count(&self, name: &'static str, pairs: &[(&'static str, &str)], n: u64) {
        self.recorder.register_counter(&Key::from_parts(name, labels(pairs)), &metadata()).increment(n);
    }

    fn observe(&self, name: &'static str, pairs: &[(&'static str, &str)], secs: f64) {
        self.recorder.register_histogram(&Key::from_parts(name, labels(pairs)), &metadata()).record(secs);
    }

    fn set(&self, name: &'static str, pairs: &[(&'static str, &str)], value: f64) {
        self.recorder.register_gauge(&Key::from_parts(name, labels(pairs)), &metadata()).set(value);
    }

    /// One HTTP request, by its route pattern (never the raw path).
    pub fn record_request(&self, method: &Method, route: &str, status: u16, secs: f64) {
        if let Ok(routes) = self.requests.read()
            && let Some(handles) = routes.get(route)
            && let Some(count) = handles.counts.get(&(method.clone(), status))
        {
            count.increment(1);
            handles.duration.record(secs);
            return;
        }
        let Ok(mut routes) = self.requests.write() else { return };
        let handles = routes.entry(route.to_owned()).or_insert_with(|| RouteHandles {
            duration: self
                .recorder
                .register_histogram(&Key::from_parts(HTTP_DURATION, labels(&[("route", route)])), &metadata()),
            counts: FastMap::default(),
        });
        let count = handles.counts.entry((method.clone(), status)).or_insert_with(|| {
            let status = status.to_string();
            let pairs = [("method", method.as_str()), ("route", route), ("status", status.as_str())];
            self.recorder.register_counter(&Key::from_parts(HTTP_REQUESTS, labels(&pairs)), &metadata())
        });
        count.increment(1);
        handles.duration.record(secs);
    }

    pub fn task_created(&self, model: &str) {
        self.count(TASKS_CREATED, &[("model", model)], 1);
    }

    /// A task reached a final state: `provider` is the one that served it
    /// (none for a task that never reached one), `charged` in ten-thousandths
    /// of a credit, `secs` its time since creation.
    pub fn task_finished(
        &self,
        model: &str,
        provider: Option<&str>,
        status: &str,
        error_code: &str,
        charged: i64,
        secs: f64,
    ) {
        let provider = provider.unwrap_or("none");
        self.count(
            TASKS_FINISHED,
            &[("model", model), ("provider", provider), ("status", status), ("error_code", error_code)],
            1,
        );
        self.observe(TASK_DURATION, &[("model", model), ("provider", provider)], secs.max(0.0));
        if let Ok(units) = u64::try_from(charged)
            && units > 0
        {
            self.count(CREDIT_UNITS_CHARGED, &[("model", model)], units);
        }
    }

    /// One callback attempt: `delivered`, `retrying` or `failed`, and its latency.
    pub fn callback(&self, outcome: &str, secs: f64) {
        self.count(CALLBACKS, &[("outcome", outcome)], 1);
        self.observe(CALLBACK_DURATION, &[], secs);
    }

    /// One submit to `provider`: `accepted`, `refused` or `failed`.
    pub fn upstream_submit(&self, provider: &str, outcome: &str, secs: f64) {
        self.count(UPSTREAM_SUBMITS, &[("provider", provider), ("outcome", outcome)], 1);
        self.observe(UPSTREAM_SUBMIT_DURATION, &[("provider", provider)], secs);
    }

    /// One poll of an upstream task; `answered`: the provider gave a usable answer.
    pub fn upstream_poll(&self, provider: &str, answered: bool, secs: f64) {
        let outcome = if answered { "answered" } else { "no_answer" };
        self.count(UPSTREAM_POLLS, &[("provider", provider), ("outcome", outcome)], 1);
        self.observe(UPSTREAM_POLL_DURATION, &[("provider", provider)], secs);
    }

    /// The point-in-time values, read by `/metrics` just before rendering.
    pub fn set_gauges(&self, open: f64, queued: f64, held: f64, providers: &[(String, bool)]) {
        self.set(TASKS_OPEN, &[], open);
        self.set(QUEUE_DEPTH, &[], queued);
        self.set(UPSTREAM_HELD, &[], held);
        for (provider, up) in providers {
            self.set(PROVIDER_UP, &[("provider", provider)], if *up { 1.0 } else { 0.0 });
        }
    }

    /// The HTTP server's connection counts (totals since start).
    pub fn set_connections(&self, open: usize, in_flight: usize, accepted: u64, evicted: u64, timed_out: u64) {
        self.set(CONNECTIONS_OPEN, &[], open as f64);
        self.set(IN_FLIGHT, &[], in_flight as f64);
        let key = |name: &'static str| Key::from_static_name(name);
        self.recorder.register_counter(&key(CONNECTIONS_ACCEPTED), &metadata()).absolute(accepted);
        self.recorder.register_counter(&key(CONNECTIONS_EVICTED), &metadata()).absolute(evicted);
        self.recorder.register_counter(&key(CONNECTIONS_TIMED_OUT), &metadata()).absolute(timed_out);
    }

    /// Folds recent histogram samples into their buckets (call every
    /// `UPKEEP_EVERY`, so a server nobody scrapes does not keep them all).
    pub fn upkeep(&self) {
        self.handle.run_upkeep();
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        self.handle.render()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_applications_count_apart_and_render_prometheus_text() {
        let (a, b) = (Metrics::new(), Metrics::new());
        a.record_request(&Method::GET, "/v1/tasks/{task_id}", 404, 0.002);
        a.task_finished("m", Some("fal"), "completed", "", 25_000, 42.0);
        let text = a.render();
        assert!(
            text.contains(r#"vidgate_http_requests_total{method="GET",route="/v1/tasks/{task_id}",status="404"} 1"#)
        );
        assert!(text.contains("# TYPE vidgate_http_request_duration_seconds histogram"), "{text}");
        assert!(
            text.contains(r#"vidgate_http_request_duration_seconds_bucket{route="/v1/tasks/{task_id}",le="0.0025"} 1"#)
        );
        assert!(text.contains(r#"vidgate_task_duration_seconds_bucket{model="m",provider="fal",le="60"} 1"#), "{text}");
        assert!(text.contains(r#"vidgate_charged_credit_units_total{model="m"} 25000"#), "{text}");
        assert!(!b.render().contains("vidgate_http_requests_total{"), "another application's recorder is apart");
    }
}
