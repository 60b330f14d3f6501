//! Prometheus metrics without a metrics framework: a few labelled counters and a
//! latency histogram behind mutexes, rendered in the text exposition format.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;

/// Upper bounds (seconds) of the request latency histogram.
const BUCKETS: [f64; 10] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0];

#[derive(Default)]
struct Histogram {
    counts: [u64; BUCKETS.len()],
    sum: f64,
    count: u64,
}

#[derive(Default)]
pub struct Metrics {
    requests: Mutex<BTreeMap<(String, String, u16), u64>>,
    latency: Mutex<BTreeMap<String, Histogram>>,
    tasks_created: Mutex<BTreeMap<String, u64>>,
    tasks_finished: Mutex<BTreeMap<(String, String, String), u64>>,
    credits_charged: Mutex<BTreeMap<String, i64>>,
    callbacks: Mutex<BTreeMap<String, u64>>,
    callback_latency: Mutex<Histogram>,
}

impl Metrics {
    pub fn record_request(&self, method: &str, route: &str, status: u16, secs: f64) {
        if let Ok(mut m) = self.requests.lock() {
            *m.entry((method.to_owned(), route.to_owned(), status)).or_default() += 1;
        }
        if let Ok(mut m) = self.latency.lock() {
            let h = m.entry(route.to_owned()).or_default();
            for (i, b) in BUCKETS.iter().enumerate() {
                if secs <= *b {
                    h.counts[i] += 1;
                }
            }
            h.sum += secs;
            h.count += 1;
        }
    }

    pub fn task_created(&self, model: &str) {
        if let Ok(mut m) = self.tasks_created.lock() {
            *m.entry(model.to_owned()).or_default() += 1;
        }
    }

    /// A task reached a final state; `charged` is in units of 1/10000 credit.
    pub fn task_finished(&self, model: &str, status: &str, error_code: &str, charged: i64) {
        if let Ok(mut m) = self.tasks_finished.lock() {
            *m.entry((model.to_owned(), status.to_owned(), error_code.to_owned())).or_default() += 1;
        }
        if charged > 0
            && let Ok(mut m) = self.credits_charged.lock()
        {
            *m.entry(model.to_owned()).or_default() += charged;
        }
    }

    /// One callback attempt: `delivered`, `retrying` or `failed`, and its latency.
    pub fn callback(&self, outcome: &str, secs: f64) {
        if let Ok(mut m) = self.callbacks.lock() {
            *m.entry(outcome.to_owned()).or_default() += 1;
        }
        if let Ok(mut h) = self.callback_latency.lock() {
            for (i, b) in BUCKETS.iter().enumerate() {
                if secs <= *b {
                    h.counts[i] += 1;
                }
            }
            h.sum += secs;
            h.count += 1;
        }
    }

    /// The exposition text; `gauges` are point-in-time values read by the caller.
    pub fn render(&self, gauges: &[(&str, &str, f64)]) -> String {
        let mut out = String::new();
        out.push_str("# HELP vidgate_http_requests_total HTTP requests by route and status.\n");
        out.push_str("# TYPE vidgate_http_requests_total counter\n");
        if let Ok(m) = self.requests.lock() {
            for ((method, route, status), n) in m.iter() {
                let _ = writeln!(
                    out,
                    "vidgate_http_requests_total{{method=\"{method}\",route=\"{}\",status=\"{status}\"}} {n}",
                    escape(route)
                );
            }
        }
        out.push_str("# HELP vidgate_http_request_duration_seconds HTTP request latency by route.\n");
        out.push_str("# TYPE vidgate_http_request_duration_seconds histogram\n");
        if let Ok(m) = self.latency.lock() {
            for (route, h) in m.iter() {
                let route = escape(route);
                for (i, b) in BUCKETS.iter().enumerate() {
                    let _ = writeln!(
                        out,
                        "vidgate_http_request_duration_seconds_bucket{{route=\"{route}\",le=\"{b}\"}} {}",
                        h.counts[i]
                    );
                }
                let _ = writeln!(
                    out,
                    "vidgate_http_request_duration_seconds_bucket{{route=\"{route}\",le=\"+Inf\"}} {}",
                    h.count
                );
                let _ = writeln!(out, "vidgate_http_request_duration_seconds_sum{{route=\"{route}\"}} {}", h.sum);
                let _ = writeln!(out, "vidgate_http_request_duration_seconds_count{{route=\"{route}\"}} {}", h.count);
            }
        }
        out.push_str("# HELP vidgate_tasks_created_total Tasks accepted, by model.\n");
        out.push_str("# TYPE vidgate_tasks_created_total counter\n");
        if let Ok(m) = self.tasks_created.lock() {
            for (model, n) in m.iter() {
                let _ = writeln!(out, "vidgate_tasks_created_total{{model=\"{}\"}} {n}", escape(model));
            }
        }
        out.push_str(
            "# HELP vidgate_tasks_finished_total Tasks that reached a final status, by model, status and error code.\n",
        );
        out.push_str("# TYPE vidgate_tasks_finished_total counter\n");
        if let Ok(m) = self.tasks_finished.lock() {
            for ((model, status, code), n) in m.iter() {
                let _ = writeln!(
                    out,
                    "vidgate_tasks_finished_total{{model=\"{}\",status=\"{status}\",error_code=\"{code}\"}} {n}",
                    escape(model)
                );
            }
        }
        out.push_str("# HELP vidgate_credits_charged_total Credits charged for completed tasks, by model.\n");
        out.push_str("# TYPE vidgate_credits_charged_total counter\n");
        if let Ok(m) = self.credits_charged.lock() {
            for (model, units) in m.iter() {
                let _ = writeln!(
                    out,
                    "vidgate_credits_charged_total{{model=\"{}\"}} {}",
                    escape(model),
                    *units as f64 / 10_000.0
                );
            }
        }
        out.push_str("# HELP vidgate_callback_attempts_total Callback attempts by outcome.\n");
        out.push_str("# TYPE vidgate_callback_attempts_total counter\n");
        if let Ok(m) = self.callbacks.lock() {
            for (outcome, n) in m.iter() {
                let _ = writeln!(out, "vidgate_callback_attempts_total{{outcome=\"{outcome}\"}} {n}");
            }
        }
        out.push_str("# HELP vidgate_callback_duration_seconds Callback attempt latency.\n");
        out.push_str("# TYPE vidgate_callback_duration_seconds histogram\n");
        if let Ok(h) = self.callback_latency.lock() {
            for (i, b) in BUCKETS.iter().enumerate() {
                let _ = writeln!(out, "vidgate_callback_duration_seconds_bucket{{le=\"{b}\"}} {}", h.counts[i]);
            }
            let _ = writeln!(out, "vidgate_callback_duration_seconds_bucket{{le=\"+Inf\"}} {}", h.count);
            let _ = writeln!(out, "vidgate_callback_duration_seconds_sum {}", h.sum);
            let _ = writeln!(out, "vidgate_callback_duration_seconds_count {}", h.count);
        }
        for (name, help, value) in gauges {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}");
        }
        out
    }
}

fn escape(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}
