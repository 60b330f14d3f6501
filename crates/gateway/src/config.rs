//! One typed configuration: built-in defaults, then an optional TOML file, then
//! `VIDGATE_*` environment variables, then command-line flags (applied by the CLI).
//! Everything has a default, so `vidgate serve` runs with no configuration at all.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

/// The whole configuration of one vidgate process.
#[derive(Debug, Clone)]
pub struct Config {
    /// Address the HTTP server binds (port 0 picks a free port).
    pub listen: SocketAddr,
    /// Folder for the SQLite database and stored files.
    pub data_dir: PathBuf,
    /// `sqlite://...` or `postgres://...`; `None` means SQLite in `data_dir`.
    pub database_url: Option<String>,
    /// Base URL clients use to reach this server (links in results and uploads).
    /// `None` means `http://<listen address>`.
    pub public_url: Option<String>,
    /// Let user-given URLs reach loopback/private addresses and use `http://`.
    /// For development and tests only.
    pub allow_private_urls: bool,
    /// Admin key; `None` means one is generated on first start and printed once.
    pub admin_key: Option<String>,
    /// Free credits (in units of 1/10000 credit) for a new account.
    pub signup_credits: i64,
    /// Number of task workers in this process (0 pauses task execution).
    pub workers: usize,
    /// How long a claimed task is leased before another worker may take it over.
    pub lease: Duration,
    /// How often idle workers look for claimable tasks (new tasks wake them at once).
    pub poll_interval: Duration,
    /// Largest accepted request body in bytes (JSON with data: URIs, uploads).
    pub max_body_bytes: usize,
    /// Lifetime of result and upload links, and of the files behind them.
    pub link_ttl: Duration,
    /// How often the janitor deletes expired files and idempotency keys.
    pub janitor_interval: Duration,
    /// Deadline for a whole task; past it the task fails with `generation_timeout`.
    pub task_deadline: Duration,
    /// Timeout for fetching a user-given image URL.
    pub fetch_timeout: Duration,
    /// Callbacks sent at once by this process (0 stops sending; they wait in the outbox).
    pub webhook_concurrency: usize,
    /// Callbacks sent at once to one host.
    pub webhook_per_host: usize,
    /// Wait before each retry of a failed callback; its length is the number of retries.
    pub webhook_retry_schedule: Vec<Duration>,
    /// Timeout of one callback request.
    pub webhook_timeout: Duration,
    /// After a secret rotation, how long the previous secret also signs.
    pub webhook_secret_overlap: Duration,
    /// Upstream providers by name (credentials are named env variables, never values).
    pub providers: BTreeMap<String, ProviderConfig>,
    /// Routes per model; none configured means the built-in `local` provider serves all.
    pub routes: Vec<RouteConfig>,
    /// Most routes one task may try before it fails.
    pub max_routes_per_task: usize,
    /// First wait between polls of an upstream task; it grows 1.5x per poll...
    pub upstream_poll_min: Duration,
    /// ...up to this.
    pub upstream_poll_max: Duration,
}

/// One upstream API as configured.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderConfig {
    /// `kling`, `fal`, `replicate`, `evolink` or `local`.
    pub kind: String,
    pub base_url: Option<String>,
    /// Env variable holding the API key (fal, replicate, evolink, or kling's static key).
    pub api_key_env: Option<String>,
    /// Or a file holding the API key (a mounted secret); read at start.
    pub api_key_file: Option<PathBuf>,
    /// Env variables holding Kling's AccessKey and SecretKey (JWT auth).
    pub access_key_env: Option<String>,
    pub secret_key_env: Option<String>,
    /// Or files holding them (mounted secrets); read at start.
    pub access_key_file: Option<PathBuf>,
    pub secret_key_file: Option<PathBuf>,
    /// Polls in flight at once for this provider.
    pub max_concurrent_polls: Option<usize>,
    pub timeout_secs: Option<u64>,
}

/// What a route costs us, in USD per second, for each quality and sound.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct CostTable {
    #[serde(rename = "720p")]
    pub p720: f64,
    #[serde(rename = "720p_sound")]
    pub p720_sound: f64,
    #[serde(rename = "1080p")]
    pub p1080: f64,
    #[serde(rename = "1080p_sound")]
    pub p1080_sound: f64,
}

/// One way to serve a model.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    pub model: String,
    pub provider: String,
    /// The model id at the upstream (for `local`, anything).
    #[serde(default)]
    pub upstream_model: String,
    #[serde(default)]
    pub cost_usd_per_second: CostTable,
    /// Among `end_frame`, `multi_shot`, `sound`, `elements`, `1080p`.
    #[serde(default)]
    pub supports: Vec<String>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            data_dir: PathBuf::from("./vidgate-data"),
            database_url: None,
            public_url: None,
            allow_private_urls: false,
            admin_key: None,
            signup_credits: 100 * 10_000,
            workers: 2,
            lease: Duration::from_secs(30),
            poll_interval: Duration::from_millis(500),
            max_body_bytes: 32 * 1024 * 1024,
            link_ttl: Duration::from_secs(24 * 3600),
            janitor_interval: Duration::from_secs(600),
            task_deadline: Duration::from_secs(3600),
            fetch_timeout: Duration::from_secs(30),
            webhook_concurrency: 16,
            webhook_per_host: 4,
            webhook_retry_schedule: vec![Duration::from_secs(1), Duration::from_secs(2), Duration::from_secs(4)],
            webhook_timeout: Duration::from_secs(10),
            webhook_secret_overlap: Duration::from_secs(24 * 3600),
            providers: BTreeMap::new(),
            routes: Vec::new(),
            max_routes_per_task: 3,
            upstream_poll_min: Duration::from_secs(2),
            upstream_poll_max: Duration::from_secs(30),
        }
    }
}

/// The subset of settings a TOML file may carry; every field is optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    listen: Option<SocketAddr>,
    data_dir: Option<PathBuf>,
    database_url: Option<String>,
    public_url: Option<String>,
    allow_private_urls: Option<bool>,
    admin_key: Option<String>,
    signup_credits: Option<f64>,
    workers: Option<usize>,
    lease_secs: Option<u64>,
    poll_interval_ms: Option<u64>,
    max_body_bytes: Option<usize>,
    link_ttl_secs: Option<u64>,
    janitor_interval_secs: Option<u64>,
    task_deadline_secs: Option<u64>,
    fetch_timeout_secs: Option<u64>,
    webhook_concurrency: Option<usize>,
    webhook_per_host: Option<usize>,
    webhook_retry_schedule_secs: Option<Vec<f64>>,
    webhook_timeout_secs: Option<u64>,
    webhook_secret_overlap_secs: Option<u64>,
    providers: Option<BTreeMap<String, ProviderConfig>>,
    routes: Option<Vec<RouteConfig>>,
    max_routes_per_task: Option<usize>,
    upstream_poll_min_ms: Option<u64>,
    upstream_poll_max_ms: Option<u64>,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("invalid config file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("invalid value for {name}: {message}")]
    Env { name: String, message: String },
}

impl Config {
    /// Defaults, then `file` if given, then `VIDGATE_*` variables from `env`.
    pub fn load(file: Option<&Path>, env: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let mut config = Self::default();
        if let Some(path) = file {
            let text =
                std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.to_owned(), source })?;
            let parsed: FileConfig = toml::from_str(&text)
                .map_err(|e| ConfigError::Parse { path: path.to_owned(), message: e.message().to_owned() })?;
            config.apply_file(parsed);
        }
        config.apply_env(env)?;
        Ok(config)
    }

    fn apply_file(&mut self, f: FileConfig) {
        let secs = Duration::from_secs;
        if let Some(v) = f.listen {
            self.listen = v;
        }
        if let Some(v) = f.data_dir {
            self.data_dir = v;
        }
        if f.database_url.is_some() {
            self.database_url = f.database_url;
        }
        if f.public_url.is_some() {
            self.public_url = f.public_url;
        }
        if let Some(v) = f.allow_private_urls {
            self.allow_private_urls = v;
        }
        if f.admin_key.is_some() {
            self.admin_key = f.admin_key;
        }
        if let Some(v) = f.signup_credits {
            self.signup_credits = credits_to_units(v);
        }
        if let Some(v) = f.workers {
            self.workers = v;
        }
        if let Some(v) = f.lease_secs {
            self.lease = secs(v.max(1));
        }
        if let Some(v) = f.poll_interval_ms {
            self.poll_interval = Duration::from_millis(v.max(10));
        }
        if let Some(v) = f.max_body_bytes {
            self.max_body_bytes = v;
        }
        if let Some(v) = f.link_ttl_secs {
            self.link_ttl = secs(v.max(1));
        }
        if let Some(v) = f.janitor_interval_secs {
            self.janitor_interval = secs(v.max(1));
        }
        if let Some(v) = f.task_deadline_secs {
            self.task_deadline = secs(v.max(1));
        }
        if let Some(v) = f.fetch_timeout_secs {
            self.fetch_timeout = secs(v.max(1));
        }
        if let Some(v) = f.webhook_concurrency {
            self.webhook_concurrency = v;
        }
        if let Some(v) = f.webhook_per_host {
            self.webhook_per_host = v.max(1);
        }
        if let Some(v) = f.webhook_retry_schedule_secs {
            self.webhook_retry_schedule =
                v.into_iter().map(|s| Duration::from_secs_f64(s.clamp(0.0, 86_400.0 * 7.0))).collect();
        }
        if let Some(v) = f.webhook_timeout_secs {
            self.webhook_timeout = secs(v.max(1));
        }
        if let Some(v) = f.webhook_secret_overlap_secs {
            self.webhook_secret_overlap = secs(v);
        }
        if let Some(v) = f.providers {
            self.providers = v;
        }
        if let Some(v) = f.routes {
            self.routes = v;
        }
        if let Some(v) = f.max_routes_per_task {
            self.max_routes_per_task = v.max(1);
        }
        if let Some(v) = f.upstream_poll_min_ms {
            self.upstream_poll_min = Duration::from_millis(v.max(10));
        }
        if let Some(v) = f.upstream_poll_max_ms {
            self.upstream_poll_max = Duration::from_millis(v.max(10));
        }
    }

    fn apply_env(&mut self, env: impl Fn(&str) -> Option<String>) -> Result<(), ConfigError> {
        fn parse<T: std::str::FromStr>(name: &str, v: &str) -> Result<T, ConfigError>
        where
            T::Err: std::fmt::Display,
        {
            v.trim().parse::<T>().map_err(|e| ConfigError::Env { name: name.to_owned(), message: e.to_string() })
        }
        let get = |name: &str| env(name).filter(|v| !v.is_empty());
        if let Some(v) = get("VIDGATE_LISTEN") {
            self.listen = parse("VIDGATE_LISTEN", &v)?;
        }
        if let Some(v) = get("VIDGATE_DATA_DIR") {
            self.data_dir = PathBuf::from(v);
        }
        if let Some(v) = get("VIDGATE_DATABASE_URL") {
            self.database_url = Some(v);
        }
        if let Some(v) = get("VIDGATE_PUBLIC_URL") {
            self.public_url = Some(v);
        }
        if let Some(v) = get("VIDGATE_ALLOW_PRIVATE_URLS") {
            self.allow_private_urls = parse_bool("VIDGATE_ALLOW_PRIVATE_URLS", &v)?;
        }
        if let Some(v) = get("VIDGATE_ADMIN_KEY") {
            self.admin_key = Some(v);
        }
        if let Some(v) = get("VIDGATE_SIGNUP_CREDITS") {
            self.signup_credits = credits_to_units(parse::<f64>("VIDGATE_SIGNUP_CREDITS", &v)?);
        }
        if let Some(v) = get("VIDGATE_WORKERS") {
            self.workers = parse("VIDGATE_WORKERS", &v)?;
        }
        if let Some(v) = get("VIDGATE_LEASE_SECS") {
            self.lease = Duration::from_secs(parse::<u64>("VIDGATE_LEASE_SECS", &v)?.max(1));
        }
        if let Some(v) = get("VIDGATE_POLL_INTERVAL_MS") {
            self.poll_interval = Duration::from_millis(parse::<u64>("VIDGATE_POLL_INTERVAL_MS", &v)?.max(10));
        }
        if let Some(v) = get("VIDGATE_MAX_BODY_BYTES") {
            self.max_body_bytes = parse("VIDGATE_MAX_BODY_BYTES", &v)?;
        }
        if let Some(v) = get("VIDGATE_LINK_TTL_SECS") {
            self.link_ttl = Duration::from_secs(parse::<u64>("VIDGATE_LINK_TTL_SECS", &v)?.max(1));
        }
        if let Some(v) = get("VIDGATE_JANITOR_INTERVAL_SECS") {
            self.janitor_interval = Duration::from_secs(parse::<u64>("VIDGATE_JANITOR_INTERVAL_SECS", &v)?.max(1));
        }
        if let Some(v) = get("VIDGATE_TASK_DEADLINE_SECS") {
            self.task_deadline = Duration::from_secs(parse::<u64>("VIDGATE_TASK_DEADLINE_SECS", &v)?.max(1));
        }
        if let Some(v) = get("VIDGATE_WEBHOOK_CONCURRENCY") {
            self.webhook_concurrency = parse("VIDGATE_WEBHOOK_CONCURRENCY", &v)?;
        }
        if let Some(v) = get("VIDGATE_WEBHOOK_RETRY_SCHEDULE") {
            // Seconds, comma-separated: "1,2,4" or "5,300,1800,7200".
            let mut schedule = Vec::new();
            for part in v.split(',').map(str::trim).filter(|p| !p.is_empty()) {
                let secs: f64 = parse("VIDGATE_WEBHOOK_RETRY_SCHEDULE", part)?;
                if !(0.0..=604_800.0).contains(&secs) {
                    return Err(ConfigError::Env {
                        name: "VIDGATE_WEBHOOK_RETRY_SCHEDULE".to_owned(),
                        message: format!("{secs} is not between 0 and 604800 seconds"),
                    });
                }
                schedule.push(Duration::from_secs_f64(secs));
            }
            self.webhook_retry_schedule = schedule;
        }
        if let Some(v) = get("VIDGATE_WEBHOOK_TIMEOUT_SECS") {
            self.webhook_timeout = Duration::from_secs(parse::<u64>("VIDGATE_WEBHOOK_TIMEOUT_SECS", &v)?.max(1));
        }
        Ok(())
    }

    /// The database URL actually used: the configured one, or SQLite in the data folder.
    pub fn effective_database_url(&self) -> String {
        match &self.database_url {
            Some(url) => url.clone(),
            None => format!("sqlite://{}", self.data_dir.join("vidgate.db").display()),
        }
    }
}

/// Whole or fractional credits (as a person writes them) to integer units.
pub fn credits_to_units(credits: f64) -> i64 {
    // Rounded once at the edge; ledgers only ever see the integer.
    (credits * 10_000.0).round().clamp(0.0, i64::MAX as f64) as i64
}

fn parse_bool(name: &str, v: &str) -> Result<bool, ConfigError> {
    match v.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" => Ok(false),
        other => {
            Err(ConfigError::Env { name: name.to_owned(), message: format!("expected true or false, got {other:?}") })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_overrides_file_and_defaults() {
        let env = |k: &str| match k {
            "VIDGATE_LISTEN" => Some("127.0.0.1:9999".to_owned()),
            "VIDGATE_ALLOW_PRIVATE_URLS" => Some("true".to_owned()),
            _ => None,
        };
        let c = Config::load(None, env);
        assert!(matches!(&c, Ok(c) if c.listen.port() == 9999 && c.allow_private_urls));
    }

    #[test]
    fn a_bad_env_value_is_an_error_that_names_the_variable() {
        let env = |k: &str| (k == "VIDGATE_WORKERS").then(|| "many".to_owned());
        let err = Config::load(None, env).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(err.contains("VIDGATE_WORKERS"), "{err}");
    }
}
