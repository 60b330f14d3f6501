//! Building and running the application the same way in `vidgate serve` and in
//! tests: `Application::build(config)` binds (port 0 allowed), migrates, makes the
//! first account on a fresh database, and `run_until_stopped` serves until the
//! shutdown token fires, then drains requests and stops workers cleanly.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::blobs::Blobs;
use crate::config::Config;
use crate::metrics::Metrics;
use crate::net::GuardedClient;
use crate::state::{AppState, Inner, KeyCache};
use crate::store::Store;
use crate::{accounts, engine, http, util};

/// What a first start made and must be shown once.
#[derive(Debug, Default, Clone)]
pub struct Bootstrap {
    /// The first account's API key (only on the very first start).
    pub api_key: Option<String>,
    /// The generated admin key (only when it was generated now).
    pub admin_key: Option<String>,
}

pub struct Application {
    listener: TcpListener,
    addr: SocketAddr,
    state: AppState,
    bootstrap: Bootstrap,
}

/// Opens the store for `config` and applies migrations (also used by CLI commands).
pub async fn open_store(config: &Config) -> anyhow::Result<Store> {
    std::fs::create_dir_all(&config.data_dir)?;
    let store = Store::connect(&config.effective_database_url()).await?;
    store.migrate().await?;
    Ok(store)
}

impl Application {
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        let listener = TcpListener::bind(config.listen).await?;
        let addr = listener.local_addr()?;
        let store = open_store(&config).await?;
        let mut bootstrap = Bootstrap::default();

        let link_secret = store.meta_get_or_insert("link_secret", &util::random_alnum(48)).await?;
        let admin_key_hash = match &config.admin_key {
            Some(key) => util::sha256_hex(key.as_bytes()),
            None => match store.meta_get("admin_key_hash").await? {
                Some(h) => h,
                None => {
                    let key = format!("sk-admin-{}", util::random_alnum(32));
                    let hash = util::sha256_hex(key.as_bytes());
                    store.meta_set("admin_key_hash", &hash).await?;
                    bootstrap.admin_key = Some(key);
                    hash
                }
            },
        };
        // The first account is made once per database, even if several replicas
        // start together: the meta row decides who makes it.
        if store.meta_get("bootstrapped").await?.is_none() {
            let marker = util::random_alnum(16);
            if store.meta_get_or_insert("bootstrapped", &marker).await? == marker {
                let (_, key) = accounts::create_account(&store, "default", config.signup_credits).await?;
                bootstrap.api_key = Some(key.secret);
            }
        }

        let public_url =
            config.public_url.clone().unwrap_or_else(|| format!("http://{addr}")).trim_end_matches('/').to_owned();
        let blobs = Blobs::new(config.data_dir.join("files"), link_secret.into_bytes(), public_url.clone())?;
        let guard = GuardedClient::new(config.allow_private_urls, config.fetch_timeout)?;
        let sole_writer = store.backend() == crate::store::Backend::Sqlite;
        let routing = crate::routing::Routing::from_config(&config, |k| std::env::var(k).ok())?;
        let state = AppState::new(Inner {
            config,
            store,
            blobs,
            guard,
            metrics: Metrics::default(),
            keys: KeyCache::new(Duration::from_secs(5)),
            wake: tokio::sync::Notify::new(),
            admin_key_hash,
            public_url,
            webhooks: crate::webhooks::Dispatcher::default(),
            routing,
            task_cache: crate::tasks::cache::TaskCache::new(sole_writer),
            poller: crate::engine::poller::Poller::new(),
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
        let app = http::router(state.clone());
        let token = shutdown.clone();
        axum::serve(self.listener, app).with_graceful_shutdown(async move { token.cancelled().await }).await?;
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
        // Callbacks in flight finish within their timeout or are sent again later.
        let _ = tokio::time::timeout(state.config.webhook_timeout, dispatcher).await;
        state.store.close().await;
        Ok(())
    }
}
