//! Callbacks the Standard Webhooks way: a delivery is written to the outbox in the
//! same transaction as the task's final state, then sent by a dispatcher with its
//! own bounded concurrency and per-host limits, signed with the account's `whsec_`
//! secret (`webhook-id` stable across retries), through the guarded client (the
//! address is checked again at connect time; no redirects), retried on a schedule,
//! and every attempt recorded.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use futures_util::StreamExt;
use tokio::sync::{Notify, Semaphore};
use tokio_util::sync::CancellationToken;

use crate::state::AppState;
use crate::store::{AttemptRow, DeliveryRow, NewDelivery, StoreError, TaskRow, WebhookSecrets};
use crate::util;

/// Most of a receiver's answer that is read (the rest is dropped unread).
const MAX_RESPONSE_BYTES: usize = 4096;

/// The outbox entry for a task that has just ended, if it asked for a callback.
/// The body is exactly the task object `GET /v1/tasks/{id}` answers.
pub fn outbox_entry(row: &TaskRow) -> Option<NewDelivery> {
    let url = row.callback_url.clone()?;
    let body = match crate::tasks::task_object(row).map(|t| serde_json::to_string(&t)) {
        Ok(Ok(body)) => body,
        _ => {
            tracing::error!(task_id = %row.id, "cannot render the callback body");
            return None;
        }
    };
    Some(NewDelivery { id: format!("msg_{}", util::random_alnum(24)), url, body })
}

/// A new `whsec_` secret: 32 random bytes, base64.
pub fn new_secret() -> String {
    let bytes: [u8; 32] = rand::random();
    format!("whsec_{}", STANDARD.encode(bytes))
}

/// `v1,<base64 HMAC-SHA256 of "id.timestamp.body">` with the secret's key bytes.
pub fn sign(secret: &str, msg_id: &str, timestamp: i64, body: &str) -> Option<String> {
    let key = STANDARD.decode(secret.strip_prefix("whsec_").unwrap_or(secret)).ok()?;
    let mac = util::hmac_sha256(&key, format!("{msg_id}.{timestamp}.{body}").as_bytes());
    Some(format!("v1,{}", STANDARD.encode(mac)))
}

/// The `webhook-signature` value: the current secret's signature, followed during
/// the overlap after a rotation by the previous secret's (space-separated).
pub fn signature_header(
    secrets: &WebhookSecrets,
    now_ms: i64,
    msg_id: &str,
    timestamp: i64,
    body: &str,
) -> Option<String> {
    let mut sigs = vec![sign(secrets.current.as_deref()?, msg_id, timestamp, body)?];
    if let (Some(prev), Some(until)) = (&secrets.previous, secrets.previous_until)
        && until > now_ms
    {
        sigs.extend(sign(prev, msg_id, timestamp, body));
    }
    Some(sigs.join(" "))
}

/// The account's current secret, made on first use.
pub async fn current_secret(state: &AppState, account_id: &str) -> Result<String, StoreError> {
    if let Some(s) = state.store.webhook_secrets(account_id).await?.current {
        return Ok(s);
    }
    state
        .store
        .init_webhook_secret(account_id, &new_secret())
        .await?
        .ok_or_else(|| StoreError::Corrupt("account without webhook secret".to_owned()))
}

/// Replaces the account's secret; the old one keeps signing for the overlap.
pub async fn rotate_secret(state: &AppState, account_id: &str) -> Result<String, StoreError> {
    current_secret(state, account_id).await?;
    let secret = new_secret();
    let until = util::now_ms() + state.config.webhook_secret_overlap.as_millis() as i64;
    state.store.rotate_webhook_secret(account_id, &secret, until).await?;
    Ok(secret)
}

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
    let owner = format!("d-{}", util::random_lower_alnum(12));
    loop {
        let permit = tokio::select! {
            () = shutdown.cancelled() => return,
            p = slots.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => return },
        };
        let now = util::now_ms();
        // The lease covers waiting for a host slot plus the request itself.
        let lease = now + (state.config.webhook_timeout.as_millis() as i64) * 6;
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
                    () = tokio::time::sleep(state.config.poll_interval) => {}
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
async fn deliver(state: &AppState, owner: &str, d: DeliveryRow) {
    let started = Instant::now();
    let attempted_at = util::now_ms();
    let result = send(state, &d).await;
    let latency_ms = started.elapsed().as_millis() as i64;
    let (status_code, error, ok, permanent) = match &result {
        Ok(code) => (Some(i64::from(*code)), None, (200..300).contains(code), false),
        Err(SendError::Refused(msg)) => (None, Some(msg.clone()), false, true),
        Err(SendError::Failed(msg)) => (None, Some(msg.clone()), false, false),
    };
    let retries = &state.config.webhook_retry_schedule;
    // A retry waits its delay after the failed attempt ended, however long the
    // attempt itself took.
    let ended_at = util::now_ms();
    let (status, next) = if ok {
        ("delivered", attempted_at)
    } else if !permanent && (d.attempts as usize) < retries.len() {
        ("pending", ended_at + retries[d.attempts as usize].as_millis() as i64)
    } else {
        ("failed", attempted_at)
    };
    let outcome = if ok {
        "delivered"
    } else if status == "failed" {
        "failed"
    } else {
        "retrying"
    };
    state.metrics.callback(outcome, started.elapsed().as_secs_f64());
    tracing::info!(
        task_id = %d.task_id, delivery_id = %d.id, attempt = d.attempts + 1,
        status_code, error = error.as_deref().unwrap_or(""), latency_ms, outcome, "callback attempt"
    );
    let attempt = AttemptRow { attempted_at, status_code, error, latency_ms };
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
    let signature = signature_header(&secrets, util::now_ms(), &d.id, timestamp, &d.body)
        .ok_or_else(|| SendError::Failed("the signing secret is unreadable".to_owned()))?;
    let permits = state.webhooks.host_permits(&host, state.config.webhook_per_host);
    let _slot = permits.acquire_owned().await.map_err(|_| SendError::Failed("shutting down".to_owned()))?;
    let resp = state
        .guard
        .inner()
        .post(url)
        .timeout(state.config.webhook_timeout)
        .header("content-type", "application/json")
        .header("webhook-id", &d.id)
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
