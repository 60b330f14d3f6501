//! Building and running the application the same way in `vidgate serve` and in
//! tests: `Application::build(config)` binds (port 0 allowed), migrates, runs the
//! bootstrap (first account, admin key) on a fresh database, and
//! `run_until_stopped` serves until the shutdown token fires, then drains
//! requests and stops workers cleanly.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::blobs::Blobs;
pub use crate::bootstrap::Bootstrap;
use crate::config::Config;
use crate::http::auth::KeyCache;
use crate::metrics::Metrics;
use crate::net::GuardedClient;
use crate::routing::Routing;
use crate::state::{AppState, Services};
use crate::store::Store;
use crate::{bootstrap, engine, http};

pub struct Application {
    listener: TcpListener,
    addr: SocketAddr,
    state: AppState,
    bootstrap: Bootstrap,
}

/// Opens the store for `config` and applies migrations.
pub async fn open_store(config: &Config) -> anyhow::Result<Store> {
    std::fs::create_dir_all(&config.data_dir)?;
    let store = Store::connect(&config.effective_database_url()).await?;
    store.migrate().await?;
    Ok(store)
}

impl Application {
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        Self::build_with_env(config, &crate::blobs::aws_env()).await
    }

    /// `build`, with the `AWS_*` variables of an S3 blob store given rather
    /// than read from the environment (tests run several in one process).
    pub async fn build_with_env(config: Config, aws_env: &[(String, String)]) -> anyhow::Result<Self> {
        let listener = TcpListener::bind(config.listen).await?;
        let addr = listener.local_addr()?;
        let catalog = config.load_catalog()?;
        // The blob store is checked before the database is touched: a start that
        // fails on bad storage settings has made no account or key yet.
        let blob_store =
            crate::blobs::open_store(config.blob_url.as_ref(), aws_env, config.data_dir.join("files")).await?;
        let store = open_store(&config).await?;
        let (shared, bootstrap) = bootstrap::run(&store, &config).await?;
        let public_url = config.public_url.clone().unwrap_or_else(|| format!("http://{addr}"));
        let blobs =
            Blobs::with_store(blob_store, config.data_dir.join("files"), shared.link_secret, public_url.clone());
        let guard = GuardedClient::new(config.allow_private_urls, config.fetch_timeout_secs)?;
        let sole_writer = store.backend() == crate::store::Backend::Sqlite;
        let upstreams = crate::routing::build_providers(&config, &|k| std::env::var(k).ok())?;
        let routing = Routing::new(&config, &catalog, upstreams)?;
        let openapi = http::openapi::document(&catalog)?;
        let state = AppState::new(Services {
            config,
            catalog,
            openapi,
            fetches: crate::media::FetchSlots::default(),
            store,
            blobs,
            guard,
            metrics: Metrics::default(),
            keys: KeyCache::new(Duration::from_secs(5)),
            wake: tokio::sync::Notify::new(),
            admin_key_hash: shared.admin_key_hash,
            public_url,
            webhooks: crate::webhooks::Dispatcher::default(),
            routing,
            task_cache: crate::tasks::cache::TaskCache::new(sole_writer),
            poller: crate::engine::poller::Poller::new(),
            connections: std::sync::Arc::default(),
        });
        Ok(Self { listener, addr, state, bootstrap })
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    pub fn address(&self) -> SocketAddr {
        self.addr
    }

    pub fn state(&self) -> &AppState {
        &self.state
    }

    pub fn bootstrap(&self) -> &Bootstrap {
        &self.bootstrap
    }

    /// Serves until `shutdown` fires; then stops taking connections, lets requests
    /// in flight finish, and waits for workers to put down their tasks (a task cut
    /// short is taken over by a worker after its lease).
    pub async fn run_until_stopped(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let state = self.state;
        let workers = engine::spawn_workers(&state, state.config.workers, shutdown.clone());
        // Paused workers (workers = 0) pause upstream polling too.
        let poller =
            (state.config.workers > 0).then(|| tokio::spawn(engine::run_poller(state.clone(), shutdown.clone())));
        let janitor = tokio::spawn(engine::run_janitor(state.clone(), shutdown.clone()));
        let dispatcher = tokio::spawn(crate::webhooks::run_dispatcher(state.clone(), shutdown.clone()));
        let upkeep = {
            let state = state.clone();
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(crate::metrics::UPKEEP_EVERY).await;
                    state.metrics.upkeep();
                }
            })
        };
        let app = http::router(state.clone());
        let fd_limit = crate::server::raise_fd_limit();
        let max_connections = crate::server::effective_max_connections(state.config.max_connections, fd_limit);
        if max_connections < state.config.max_connections {
            tracing::warn!(
                configured = state.config.max_connections,
                max_connections,
                open_files = fd_limit,
                "the open-file limit is too low for max_connections; serving fewer (raise `ulimit -n`)"
            );
        }
        let limits = crate::server::Limits {
            max_connections,
            header_timeout: state.config.http_header_timeout_ms,
            idle_timeout: state.config.http_idle_timeout_ms,
            body_timeout: state.config.http_body_timeout_secs,
        };
        crate::server::serve(self.listener, app, limits, state.connections.clone(), shutdown.clone()).await;
        // Workers stop between steps; one mid-render is abandoned after a grace
        // period and its task resumes elsewhere once the lease runs out.
        for w in workers {
            if tokio::time::timeout(Duration::from_secs(10), w).await.is_err() {
                tracing::warn!("a worker did not stop in time; its task will be taken over");
            }
        }
        if let Some(p) = poller
            && tokio::time::timeout(Duration::from_secs(10), p).await.is_err()
        {
            tracing::warn!("the upstream poller did not stop in time; its tasks will be taken over");
        }
        janitor.abort();
        upkeep.abort();
        // Callbacks in flight finish within their timeout or are sent again later.
        let _ = tokio::time::timeout(state.config.webhook_timeout_secs, dispatcher).await;
        state.store.close().await;
        Ok(())
    }
}
