//! The shared state of one process: configuration, store, blobs, the guarded
//! client, metrics, the key cache and the wake-up signal for workers.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

use crate::blobs::Blobs;
use crate::config::Config;
use crate::metrics::Metrics;
use crate::net::GuardedClient;
use crate::store::{AuthKey, Store};

/// Cheap to clone; every handler and worker holds one.
#[derive(Clone)]
pub struct AppState(Arc<Inner>);

pub struct Inner {
    pub config: Config,
    pub store: Store,
    pub blobs: Blobs,
    pub guard: GuardedClient,
    pub metrics: Metrics,
    pub keys: KeyCache,
    /// Signalled when a task is created, so an idle worker starts at once.
    pub wake: Notify,
    /// SHA-256 of the admin key.
    pub admin_key_hash: String,
    pub public_url: String,
    /// The callback dispatcher's wake-up signal and per-host limits.
    pub webhooks: crate::webhooks::Dispatcher,
    /// Routes, provider health and poll limits.
    pub routing: crate::routing::Routing,
    /// Serialized task objects for the polling path.
    pub task_cache: crate::tasks::cache::TaskCache,
    /// Holds and polls the tasks running on remote providers.
    pub poller: crate::engine::poller::Poller,
}

impl std::ops::Deref for AppState {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

impl AppState {
    pub fn new(inner: Inner) -> Self {
        Self(Arc::new(inner))
    }
}

/// Authentication is on every request's path: keys are looked up by hash and kept
/// for a few seconds. A revocation through this process takes effect at once;
/// through another replica, within the TTL.
pub struct KeyCache {
    ttl: Duration,
    entries: Mutex<HashMap<String, (Option<AuthKey>, Instant)>>,
}

impl KeyCache {
    pub fn new(ttl: Duration) -> Self {
        Self { ttl, entries: Mutex::new(HashMap::new()) }
    }

    /// `Some(entry)` when cached and fresh (the entry itself may be "no such key").
    pub fn get(&self, hash: &str) -> Option<Option<AuthKey>> {
        let entries = self.entries.lock().ok()?;
        let (key, at) = entries.get(hash)?;
        (at.elapsed() < self.ttl).then(|| key.clone())
    }

    pub fn put(&self, hash: String, key: Option<AuthKey>) {
        if let Ok(mut entries) = self.entries.lock() {
            if entries.len() > 100_000 {
                entries.clear();
            }
            entries.insert(hash, (key, Instant::now()));
        }
    }

    pub fn clear(&self) {
        if let Ok(mut entries) = self.entries.lock() {
            entries.clear();
        }
    }
}
