//! The shared state of one process, the composition root: it only aggregates the
//! services that handlers and workers share. Cheap to clone.

use tokio::sync::Notify;

use vidgate_api::catalog::Catalog;

use crate::blobs::Blobs;
use crate::config::Config;
use crate::engine::poller::Poller;
use crate::http::auth::KeyCache;
use crate::metrics::Metrics;
use crate::net::GuardedClient;
use crate::routing::Routing;
use crate::store::Store;
use crate::tasks::cache::TaskCache;
use crate::webhooks::Dispatcher;

/// Every handler and worker holds one.
#[derive(Clone)]
pub struct AppState(std::sync::Arc<Services>);

pub struct Services {
    pub config: Config,
    /// The models served: the built-in catalog with the operator's overrides.
    pub catalog: Catalog,
    /// `/openapi.json`, built once at start from the routes and the catalog.
    pub openapi: bytes::Bytes,
    /// Video fetches in flight per account (each account gets a few at once).
    pub fetches: crate::media::FetchSlots,
    pub store: Store,
    pub blobs: Blobs,
    /// The guarded HTTP client: the only way out to a user-given address.
    pub guard: GuardedClient,
    pub metrics: Metrics,
    /// API keys by hash, for a few seconds.
    pub keys: KeyCache,
    /// Signalled when a task is created, so an idle worker starts at once.
    pub wake: Notify,
    /// SHA-256 of the admin key.
    pub admin_key_hash: String,
    /// Base URL of links handed to clients, without a trailing slash.
    pub public_url: String,
    /// The callback dispatcher's wake-up signal and per-host limits.
    pub webhooks: Dispatcher,
    /// Routes, provider health and poll limits.
    pub routing: Routing,
    /// Serialized task objects for the polling path.
    pub task_cache: TaskCache,
    /// Holds and polls the tasks running on remote providers.
    pub poller: Poller,
    /// The HTTP server's connection counts.
    pub connections: std::sync::Arc<crate::server::Stats>,
}

impl std::ops::Deref for AppState {
    type Target = Services;
    fn deref(&self) -> &Services {
        &self.0
    }
}

impl AppState {
    pub fn new(services: Services) -> Self {
        Self(std::sync::Arc::new(services))
    }
}
