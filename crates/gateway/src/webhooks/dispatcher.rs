//! The callback dispatcher: deliveries are written to the outbox in the same
//! transaction as the task's final state (`store::finish_task`); this sends them
//! with its own bounded concurrency and per-host limits, through the guarded
//! client (the address is checked again at connect time; no redirects), retries
//! on a schedule, and records every attempt.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use tokio::sync::{Notify, Semaphore};
use tokio_util::sync::CancellationToken;

use super::signing::{current_secret, signature_header};
use crate::ids::LeaseOwner;
use crate::state::AppState;
use crate::store::{DeliveryAttemptRow, DeliveryRow, DeliveryStatus, WebhookSecrets};
use crate::util;

/// Most of a receiver's answer that is read (the rest is dropped unread).
const MAX_RESPONSE_BYTES: usize = 4096;

/// Shared by the dispatcher and its delivery tasks.
pub struct Dispatcher {
    pub wake: Notify,
    hosts: Mutex<HashMap<String, Arc<Semaphore>>>,
}

impl Default for Dispatcher {
    fn default() -> Self {
        Self { wake: Notify::new(), hosts: Mutex::new(HashMap::new()) }
    }
}

impl Dispatcher {
    fn host_permits(&self, host: &str, per_host: usize) -> Arc<Semaphore> {
        let mut hosts = match self.hosts.lock() {
            Ok(h) => h,
            Err(poisoned) => poisoned.into_inner(),
        };
        if hosts.len() > 10_000 {
            hosts.retain(|_, s| Arc::strong_count(s) > 1);
        }
        hosts.entry(host.to_owned()).or_insert_with(|| Arc::new(Semaphore::new(per_host))).clone()
    }
}

/// Runs the dispatcher until `shutdown`: claims due deliveries while it has room,
/// each sent on its own task so a slow receiver holds up only its own slot.
pub async fn run_dispatcher(state: AppState, shutdown: CancellationToken) {
    let limit = state.config.webhook_concurrency;
    if limit == 0 {
        return;
    }
    let slots = Arc::new(Semaphore::new(limit));
    let owner = LeaseOwner::named("dispatcher");
    loop {
        let permit = tokio::select! {
            () = shutdown.cancelled() => return,
            p = slots.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => return },
        };
        let now = util::now_ms();
        // The lease covers waiting for a host slot plus the request itself.
        let lease = now + (state.config.webhook_timeout_secs.as_millis() as i64) * 6;
        match state.store.claim_delivery(&owner, now, lease).await {
            Ok(Some(delivery)) => {
                let state = state.clone();
                let owner = owner.clone();
                tokio::spawn(async move {
                    deliver(&state, &owner, delivery).await;
                    drop(permit);
                });
            }
            Ok(None) => {
                drop(permit);
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    () = state.webhooks.wake.notified() => {}
                    () = tokio::time::sleep(state.config.poll_interval_ms) => {}
                }
            }
            Err(e) => {
                drop(permit);
                tracing::warn!(error = %e, "claiming a callback failed");
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    () = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
            }
        }
    }
}

/// Sends one delivery once and records the attempt and what comes next.
async fn deliver(state: &AppState, owner: &LeaseOwner, d: DeliveryRow) {
    let started = Instant::now();
    let attempted_at = util::now_ms();
    let result = send(state, &d).await;
    let latency_ms = started.elapsed().as_millis() as i64;
    let (status_code, error, ok, permanent) = match &result {
        Ok(code) => (Some(i64::from(*code)), None, (200..300).contains(code), false),
        Err(SendError::Refused(msg)) => (None, Some(msg.clone()), false, true),
        Err(SendError::Failed(msg)) => (None, Some(msg.clone()), false, false),
    };
    let retries = &state.config.webhook_retry_schedule_secs;
    // A retry waits its delay after the failed attempt ended, however long the
    // attempt itself took.
    let ended_at = util::now_ms();
    let retry_wait = usize::try_from(d.attempts).ok().and_then(|n| retries.get(n)).filter(|_| !permanent);
    let (status, next) = match (ok, retry_wait) {
        (true, _) => (DeliveryStatus::Delivered, attempted_at),
        (false, Some(wait)) => (DeliveryStatus::Pending, ended_at + wait.as_millis() as i64),
        (false, None) => (DeliveryStatus::Failed, attempted_at),
    };
    let outcome = match status {
        DeliveryStatus::Delivered => "delivered",
        DeliveryStatus::Failed => "failed",
        DeliveryStatus::Pending => "retrying",
    };
    state.metrics.callback(outcome, started.elapsed().as_secs_f64());
    tracing::info!(
        task_id = %d.task_id, delivery_id = %d.id, attempt = d.attempts + 1,
        status_code, error = error.as_deref().unwrap_or(""), latency_ms, outcome, "callback attempt"
    );
    let attempt = DeliveryAttemptRow { attempted_at, status_code, error, latency_ms };
    match state.store.record_attempt(&d.id, owner, &attempt, status, next).await {
        Ok(true) => {}
        Ok(false) => tracing::warn!(delivery_id = %d.id, "callback lease lost before recording"),
        Err(e) => tracing::error!(delivery_id = %d.id, error = %e, "cannot record a callback attempt"),
    }
}

enum SendError {
    /// The address is not allowed: retrying cannot help.
    Refused(String),
    Failed(String),
}

async fn send(state: &AppState, d: &DeliveryRow) -> Result<u16, SendError> {
    let url = state.guard.check_url(&d.url).map_err(|e| SendError::Refused(e.to_string()))?;
    // Limits are per receiving service: host and port.
    let host = format!("{}:{}", url.host_str().unwrap_or_default(), url.port_or_known_default().unwrap_or(0));
    let secrets = state.store.webhook_secrets(&d.account_id).await.map_err(|e| SendError::Failed(e.to_string()))?;
    let secrets = match secrets.current {
        Some(_) => secrets,
        None => {
            let current = current_secret(state, &d.account_id).await.map_err(|e| SendError::Failed(e.to_string()))?;
            WebhookSecrets { current: Some(current), ..secrets }
        }
    };
    let timestamp = util::now_ms() / 1000;
    let signature = signature_header(&secrets, util::now_ms(), d.id.as_str(), timestamp, &d.body)
        .ok_or_else(|| SendError::Failed("the signing secret is unreadable".to_owned()))?;
    let permits = state.webhooks.host_permits(&host, state.config.webhook_per_host);
    let _slot = permits.acquire_owned().await.map_err(|_| SendError::Failed("shutting down".to_owned()))?;
    let resp = state
        .guard
        .inner()
        .post(url)
        .timeout(state.config.webhook_timeout_secs)
        .header("content-type", "application/json")
        .header("webhook-id", d.id.as_str())
        .header("webhook-timestamp", timestamp.to_string())
        .header("webhook-signature", signature)
        .body(d.body.clone())
        .send()
        .await
        .map_err(|e| match crate::net::map_send_error(e) {
            crate::net::FetchError::Forbidden => SendError::Refused("the address is not allowed".to_owned()),
            other => SendError::Failed(other.to_string()),
        })?;
    let code = resp.status().as_u16();
    // Read a little of the answer (so the connection can be reused), never all of it.
    let mut stream = resp.bytes_stream();
    let mut read = 0;
    while let Some(Ok(chunk)) = stream.next().await {
        read += chunk.len();
        if read >= MAX_RESPONSE_BYTES {
            break;
        }
    }
    Ok(code)
}
