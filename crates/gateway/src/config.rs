//! One typed configuration, each setting declared exactly once (in `settings!`
//! below) with its type, default and parser; its TOML key is its name, its
//! environment variable `VIDGATE_<NAME>` and its flag `--<name-with-dashes>`.
//! Layers apply in order: defaults, then the TOML file, then the environment,
//! then flags; every layer goes through the same parser, so a value means the
//! same wherever it is written and a bad one is refused naming where it was.
//! Upstream providers and routes are tables and live in the file only.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use vidgate_api::credits::Credits;

use crate::secret::Secret;

/// Declares the settings: for each, its doc, field, type, default and parser.
macro_rules! settings {
    ($( $(#[doc = $doc:literal])+ $field:ident : $ty:ty = $default:expr, $parse:expr; )+) => {
        /// The whole configuration of one vidgate process.
        #[derive(Debug, Clone)]
        pub struct Config {
            $( $(#[doc = $doc])+ pub $field: $ty, )+
            /// Upstream providers by name (credentials are named env variables or
            /// files, never values).
            pub providers: BTreeMap<String, ProviderConfig>,
            /// Routes per model; none configured means the built-in `local`
            /// provider serves every model.
            pub routes: Vec<RouteConfig>,
            /// The `[catalog]` table: overrides merged into the built-in model
            /// catalog by model id (prices, limits, new models of an existing shape).
            pub catalog: Option<toml::Value>,
        }

        impl Default for Config {
            fn default() -> Self {
                Self { $( $field: $default, )+ providers: BTreeMap::new(), routes: Vec::new(), catalog: None }
            }
        }

        /// Every setting's name and help, in declaration order.
        pub const SETTINGS: &[Setting] = &[ $( Setting { name: stringify!($field), help: concat!($($doc),+) }, )+ ];

        impl Config {
            /// Sets one setting from its text form; the error says what is wrong
            /// with the value (the caller adds where it came from).
            fn set(&mut self, name: &str, raw: &str) -> Result<(), String> {
                match name {
                    $( stringify!($field) => { self.$field = ($parse)(raw.trim())?; Ok(()) } )+
                    _ => Err(format!("unknown setting {name:?}")),
                }
            }
        }
    };
}

settings! {
    /// Address the HTTP server binds (port 0 picks a free port).
    listen: SocketAddr = SocketAddr::from(([127, 0, 0, 1], 8080)), from_str;
    /// Folder for the SQLite database and stored files.
    data_dir: PathBuf = PathBuf::from("./vidgate-data"), |s: &str| non_empty(s).map(PathBuf::from);
    /// `sqlite://...` or `postgres://...`; unset means SQLite in the data folder.
    database_url: Option<String> = None, |s: &str| non_empty(s).map(|s| Some(s.to_owned()));
    /// Base URL clients use to reach this server (links in results and uploads);
    /// unset means `http://<listen address>`.
    public_url: Option<String> = None, |s: &str| non_empty(s).map(|s| Some(s.trim_end_matches('/').to_owned()));
    /// Where stored files (uploads, request images, results) live:
    /// `s3://bucket/prefix` for an S3-compatible store shared by replicas (with
    /// the standard `AWS_*` variables: `AWS_ENDPOINT_URL`, `AWS_ACCESS_KEY_ID`,
    /// `AWS_SECRET_ACCESS_KEY`, `AWS_REGION`, `AWS_ALLOW_HTTP`); unset means the
    /// `files` folder of the data folder.
    blob_url: Option<crate::blobs::S3Location> = None, |s: &str| crate::blobs::S3Location::parse(s).map(Some);
    /// Let user-given URLs reach loopback/private addresses and use `http://`
    /// (development and tests only).
    allow_private_urls: bool = false, boolean;
    /// The admin key; unset means one is generated on first start and printed once.
    admin_key: Option<Secret> = None, |s: &str| non_empty(s).map(|s| Some(Secret::new(s)));
    /// Free credits for a new account (decimal, up to 4 places).
    signup_credits: Credits = Credits::from_units(100 * Credits::UNITS_PER_CREDIT), credits;
    /// Task workers in this process (0 pauses task execution and upstream polling).
    workers: usize = 2, from_str;
    /// How long a claimed task is leased before another worker may take it over.
    lease_secs: Duration = Duration::from_secs(30), |s| secs(s, 1);
    /// How often idle workers look for claimable tasks (new tasks wake them at once).
    poll_interval_ms: Duration = Duration::from_millis(500), |s| millis(s, 10);
    /// Largest accepted request body in bytes (JSON with data: URIs, uploads).
    max_body_bytes: usize = 32 * 1024 * 1024, from_str;
    /// Lifetime of result and upload links, and of the files behind them.
    link_ttl_secs: Duration = Duration::from_secs(24 * 3600), |s| secs(s, 1);
    /// How often the janitor deletes expired files and idempotency keys.
    janitor_interval_secs: Duration = Duration::from_secs(600), |s| secs(s, 1);
    /// Deadline for a whole task; past it the task fails with `generation_timeout`.
    task_deadline_secs: Duration = Duration::from_secs(3600), |s| secs(s, 1);
    /// Timeout for fetching a user-given image URL or an upstream result.
    fetch_timeout_secs: Duration = Duration::from_secs(30), |s| secs(s, 1);
    /// Callbacks sent at once by this process (0 holds them in the outbox).
    webhook_concurrency: usize = 16, from_str;
    /// Callbacks sent at once to one host.
    webhook_per_host: usize = 4, |s| at_least(s, 1);
    /// Waits before each retry of a failed callback, in seconds, comma-separated
    /// (TOML: an array); its length is the number of retries.
    webhook_retry_schedule_secs: Vec<Duration> = vec![Duration::from_secs(1), Duration::from_secs(2), Duration::from_secs(4)], secs_list;
    /// Timeout of one callback request.
    webhook_timeout_secs: Duration = Duration::from_secs(10), |s| secs(s, 1);
    /// After a secret rotation, how long the previous secret also signs.
    webhook_secret_overlap_secs: Duration = Duration::from_secs(24 * 3600), |s| secs(s, 0);
    /// Most upstream attempts one task may make before it fails: each new
    /// upstream task, and each route spent on refused submits, is one; a task
    /// may go back to a provider it already tried.
    max_attempts_per_task: usize = 8, |s| at_least(s, 1);
    /// How long an upstream task may go without an answer from its provider
    /// (connection refused, 5xx or garbage on every poll) before it is
    /// cancelled there and resubmitted to the next route.
    upstream_dead_grace_secs: Duration = Duration::from_secs(120), |s| secs(s, 1);
    /// Shortest wait between polls of an upstream task (the wait is an eighth of
    /// the task's age upstream, between this and the maximum).
    upstream_poll_min_ms: Duration = Duration::from_secs(2), |s| millis(s, 10);
    /// Longest wait between polls of an upstream task.
    upstream_poll_max_ms: Duration = Duration::from_secs(30), |s| millis(s, 10);
    /// Live API keys one account may hold (made by the operator or by its keys).
    max_keys_per_account: usize = 20, |s| at_least(s, 1);
    /// Who may open an account: `closed` (the operator only) or `code` (anyone
    /// with a valid top-up code, through `POST /v1/signup`).
    signup: SignupMode = SignupMode::Closed, SignupMode::parse;
    /// Sign-up attempts per client address per hour, counted in the database
    /// (so across replicas).
    signup_per_hour: usize = 10, |s| at_least(s, 1);
    /// Proxies whose `X-Forwarded-For` is believed (CIDRs or addresses,
    /// comma-separated; TOML: an array). A request from one of them is from the
    /// right-most forwarded address that is not one of them.
    trusted_proxies: Vec<ipnet::IpNet> = Vec::new(), cidr_list;
    /// Open client connections at most; when full, the connection idle longest
    /// (no request in flight) is closed to make room for a new one.
    max_connections: usize = 4096, |s| at_least(s, 16);
    /// How long a client may take to send a request's headers, from their first
    /// byte; a connection still short of them then is closed.
    http_header_timeout_ms: Duration = Duration::from_secs(15), |s| millis(s, 100);
    /// How long a connection with no request in flight may stay open without
    /// sending one (keep-alive, or a connection that never speaks).
    http_idle_timeout_ms: Duration = Duration::from_secs(60), |s| millis(s, 100);
    /// Longest wait for the next piece of a request body (not for the whole
    /// body: a slow upload that keeps moving is never cut off).
    http_body_timeout_secs: Duration = Duration::from_secs(30), |s| secs(s, 1);
    /// Log lines as `text` (for people; colours only on a terminal) or `json`
    /// (one object a line, for log collectors).
    log_format: LogFormat = LogFormat::Text, LogFormat::parse;
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

impl LogFormat {
    fn parse(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "text" => Ok(Self::Text),
            "json" => Ok(Self::Json),
            other => Err(format!("expected text or json, got {other:?}")),
        }
    }
}

/// Whether people may open accounts themselves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SignupMode {
    /// Only the operator opens accounts.
    #[default]
    Closed,
    /// `POST /v1/signup` with a valid top-up code opens an account.
    Code,
}

impl SignupMode {
    fn parse(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "closed" => Ok(Self::Closed),
            "code" => Ok(Self::Code),
            other => Err(format!("expected closed or code, got {other:?}")),
        }
    }
}

/// CIDRs or bare addresses, comma-separated ("10.0.0.0/8, ::1"); empty for none.
fn cidr_list(s: &str) -> Result<Vec<ipnet::IpNet>, String> {
    s.split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(|p| {
            p.parse::<ipnet::IpNet>()
                .or_else(|_| p.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
                .map_err(|_| format!("{p:?} is not an address or a CIDR such as 10.0.0.0/8"))
        })
        .collect()
}

/// A setting's name and help text (for `--help` and the docs).
#[derive(Debug, Clone, Copy)]
pub struct Setting {
    pub name: &'static str,
    pub help: &'static str,
}

impl Setting {
    /// `VIDGATE_LEASE_SECS` for `lease_secs`.
    pub fn env_var(&self) -> String {
        format!("VIDGATE_{}", self.name.to_ascii_uppercase())
    }

    /// `lease-secs` for `lease_secs` (the flag is `--lease-secs`).
    pub fn flag(&self) -> String {
        self.name.replace('_', "-")
    }

    pub fn is_switch(&self) -> bool {
        self.name == "allow_private_urls"
    }
}

fn from_str<T: std::str::FromStr>(s: &str) -> Result<T, String>
where
    T::Err: std::fmt::Display,
{
    s.parse::<T>().map_err(|e| e.to_string())
}

fn non_empty(s: &str) -> Result<&str, String> {
    if s.is_empty() { Err("must not be empty".to_owned()) } else { Ok(s) }
}

fn boolean(s: &str) -> Result<bool, String> {
    match s.to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" => Ok(false),
        other => Err(format!("expected true or false, got {other:?}")),
    }
}

fn credits(s: &str) -> Result<Credits, String> {
    match Credits::parse_decimal(s) {
        Some(c) if c.units() >= 0 => Ok(c),
        _ => Err(format!("expected a non-negative number of credits with at most 4 decimals, got {s:?}")),
    }
}

fn at_least(s: &str, min: usize) -> Result<usize, String> {
    let n: usize = from_str(s)?;
    if n < min { Err(format!("must be at least {min}")) } else { Ok(n) }
}

fn secs(s: &str, min: u64) -> Result<Duration, String> {
    let n: u64 = from_str(s)?;
    if n < min { Err(format!("must be at least {min} second(s)")) } else { Ok(Duration::from_secs(n)) }
}

fn millis(s: &str, min: u64) -> Result<Duration, String> {
    let n: u64 = from_str(s)?;
    if n < min { Err(format!("must be at least {min} ms")) } else { Ok(Duration::from_millis(n)) }
}

/// Seconds, comma-separated: "1,2,4" or "5,300,1800,7200"; each up to a week.
fn secs_list(s: &str) -> Result<Vec<Duration>, String> {
    let mut out = Vec::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let secs: f64 = from_str(part)?;
        if !(0.0..=604_800.0).contains(&secs) {
            return Err(format!("{part} is not between 0 and 604800 seconds"));
        }
        out.push(Duration::from_secs_f64(secs));
    }
    Ok(out)
}

/// The common fields of a provider that authenticates with one API key.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyedProviderConfig {
    /// The API's base URL; each kind has a public default.
    pub base_url: Option<String>,
    /// Env variable holding the API key.
    pub api_key_env: Option<String>,
    /// Or a file holding it (a mounted secret); read at start.
    pub api_key_file: Option<PathBuf>,
    /// Polls in flight at once for this provider (default 64).
    pub max_concurrent_polls: Option<usize>,
    /// Timeout of one request to the API, seconds (default 30).
    pub timeout_secs: Option<u64>,
}

/// Official Kling: a static API key, or an AccessKey/SecretKey pair for JWTs.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KlingProviderConfig {
    pub base_url: Option<String>,
    /// Env variable (or file) holding a static API key.
    pub api_key_env: Option<String>,
    pub api_key_file: Option<PathBuf>,
    /// Env variables (or files) holding the AccessKey and SecretKey (JWT auth).
    pub access_key_env: Option<String>,
    pub access_key_file: Option<PathBuf>,
    pub secret_key_env: Option<String>,
    pub secret_key_file: Option<PathBuf>,
    pub max_concurrent_polls: Option<usize>,
    pub timeout_secs: Option<u64>,
}

/// fal: one API key; the queue, storage and platform APIs live on three hosts.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FalProviderConfig {
    /// The queue API (`https://queue.fal.run`).
    pub base_url: Option<String>,
    /// The storage API images are uploaded to (`https://rest.fal.ai`); unset
    /// with a `base_url` set means that base URL.
    pub storage_url: Option<String>,
    /// The platform API the credential check calls (`https://api.fal.ai`); unset
    /// with a `base_url` set means that base URL.
    pub platform_url: Option<String>,
    pub api_key_env: Option<String>,
    pub api_key_file: Option<PathBuf>,
    pub max_concurrent_polls: Option<usize>,
    pub timeout_secs: Option<u64>,
}

/// One upstream API as configured, by `kind`; a field of another kind is refused.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ProviderConfig {
    /// The built-in renderer (needs no settings).
    Local {},
    Kling(KlingProviderConfig),
    Fal(FalProviderConfig),
    Replicate(KeyedProviderConfig),
    Evolink(KeyedProviderConfig),
}

impl ProviderConfig {
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Local {} => "local",
            Self::Kling(_) => "kling",
            Self::Fal(_) => "fal",
            Self::Replicate(_) => "replicate",
            Self::Evolink(_) => "evolink",
        }
    }
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
    /// 4K (sound included when the model makes it); unset for routes without 4K.
    #[serde(rename = "4k", default)]
    pub p4k: f64,
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
    /// Per-quality model ids at the upstream (`{ "720p" = "...", "1080p" = "..." }`),
    /// for providers whose tiers are different endpoints (fal's standard and pro):
    /// the route then serves only the qualities named here.
    #[serde(default)]
    pub upstream_models: BTreeMap<String, String>,
    #[serde(default)]
    pub cost_usd_per_second: CostTable,
    /// Among `end_frame`, `multi_shot`, `sound`, `elements`, `1080p`, `4k`.
    #[serde(default)]
    pub supports: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("invalid config file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("invalid value for {name}: {message}")]
    Value { name: String, message: String },
}

/// The tables a config file may hold beside the settings.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Tables {
    #[serde(default)]
    providers: BTreeMap<String, ProviderConfig>,
    #[serde(default)]
    routes: Vec<RouteConfig>,
    catalog: Option<toml::Value>,
}

/// A TOML value as the text a setting's parser reads (arrays comma-joined).
fn toml_text(v: &toml::Value) -> Option<String> {
    match v {
        toml::Value::String(s) => Some(s.clone()),
        toml::Value::Integer(i) => Some(i.to_string()),
        toml::Value::Float(f) => Some(f.to_string()),
        toml::Value::Boolean(b) => Some(b.to_string()),
        toml::Value::Array(items) => items.iter().map(toml_text).collect::<Option<Vec<_>>>().map(|v| v.join(",")),
        toml::Value::Datetime(_) | toml::Value::Table(_) => None,
    }
}

impl Config {
    /// Defaults, then `file` if given, then `VIDGATE_*` variables from `env`.
    pub fn load(file: Option<&Path>, env: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let mut config = Self::default();
        if let Some(path) = file {
            let text =
                std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.to_owned(), source })?;
            config.apply_file(path, &text)?;
        }
        config.apply_env(env)?;
        Ok(config)
    }

    fn apply_file(&mut self, path: &Path, text: &str) -> Result<(), ConfigError> {
        let parse_err = |message: String| ConfigError::Parse { path: path.to_owned(), message };
        let mut table: toml::Table = toml::from_str(text).map_err(|e| parse_err(e.message().to_owned()))?;
        let mut tables = toml::Table::new();
        for key in ["providers", "routes", "catalog"] {
            if let Some(v) = table.remove(key) {
                tables.insert(key.to_owned(), v);
            }
        }
        let tables: Tables =
            toml::Value::Table(tables).try_into().map_err(|e: toml::de::Error| parse_err(e.message().to_owned()))?;
        self.providers = tables.providers;
        self.routes = tables.routes;
        self.catalog = tables.catalog;
        for (key, value) in &table {
            let raw = toml_text(value).ok_or_else(|| parse_err(format!("{key}: expected a value, not a table")))?;
            self.set(key, &raw).map_err(|m| parse_err(format!("{key}: {m}")))?;
        }
        Ok(())
    }

    fn apply_env(&mut self, env: impl Fn(&str) -> Option<String>) -> Result<(), ConfigError> {
        for s in SETTINGS {
            let var = s.env_var();
            if let Some(v) = env(&var).filter(|v| !v.trim().is_empty()) {
                self.set(s.name, &v).map_err(|message| ConfigError::Value { name: var, message })?;
            }
        }
        Ok(())
    }

    /// Applies flags given on the command line (`(setting, value)` pairs).
    pub fn apply_flags(&mut self, flags: &[(&'static str, String)]) -> Result<(), ConfigError> {
        for (name, value) in flags {
            self.set(name, value)
                .map_err(|message| ConfigError::Value { name: format!("--{}", name.replace('_', "-")), message })?;
        }
        Ok(())
    }

    /// The model catalog: the built-in one with the file's `[catalog]` overrides.
    pub fn load_catalog(&self) -> Result<vidgate_api::catalog::Catalog, vidgate_api::catalog::CatalogError> {
        match &self.catalog {
            Some(overrides) => vidgate_api::catalog::Catalog::with_overrides(overrides),
            None => vidgate_api::catalog::Catalog::builtin(),
        }
    }

    /// The database URL actually used: the configured one, or SQLite in the data folder.
    pub fn effective_database_url(&self) -> String {
        match &self.database_url {
            Some(url) => url.clone(),
            None => format!("sqlite://{}", self.data_dir.join("vidgate.db").display()),
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

    #[test]
    fn every_setting_reads_the_same_from_the_file_the_env_and_a_flag() {
        let mut from_file = Config::default();
        from_file
            .apply_file(
                Path::new("x.toml"),
                "lease_secs = 7\nwebhook_retry_schedule_secs = [5, 300]\nsignup_credits = 2.5",
            )
            .unwrap();
        let env = |k: &str| match k {
            "VIDGATE_LEASE_SECS" => Some("7".to_owned()),
            "VIDGATE_WEBHOOK_RETRY_SCHEDULE_SECS" => Some("5, 300".to_owned()),
            "VIDGATE_SIGNUP_CREDITS" => Some("2.5".to_owned()),
            _ => None,
        };
        let from_env = Config::load(None, env).unwrap();
        let mut from_flags = Config::default();
        from_flags
            .apply_flags(&[
                ("lease_secs", "7".to_owned()),
                ("webhook_retry_schedule_secs", "5,300".to_owned()),
                ("signup_credits", "2.5".to_owned()),
            ])
            .unwrap();
        for c in [&from_file, &from_env, &from_flags] {
            assert_eq!(c.lease_secs, Duration::from_secs(7));
            assert_eq!(c.webhook_retry_schedule_secs, vec![Duration::from_secs(5), Duration::from_secs(300)]);
            assert_eq!(c.signup_credits, Credits::from_units(25_000));
        }
    }

    #[test]
    fn a_bad_value_is_refused_the_same_way_everywhere() {
        let file = Config::default().apply_file(Path::new("x.toml"), "webhook_retry_schedule_secs = [1, 999999]");
        assert!(file.err().is_some_and(|e| e.to_string().contains("webhook_retry_schedule_secs")));
        let env = Config::load(None, |k: &str| (k == "VIDGATE_WEBHOOK_RETRY_SCHEDULE_SECS").then(|| "1,999999".into()));
        assert!(env.err().is_some_and(|e| e.to_string().contains("VIDGATE_WEBHOOK_RETRY_SCHEDULE_SECS")));
        let flag = Config::default().apply_flags(&[("lease_secs", "0".to_owned())]);
        assert!(flag.err().is_some_and(|e| e.to_string().contains("--lease-secs")));
        let money = Config::load(None, |k: &str| (k == "VIDGATE_SIGNUP_CREDITS").then(|| "1e9".into()));
        assert!(money.is_err(), "money is never read through a float");
    }

    #[test]
    fn unknown_keys_and_fields_of_another_provider_kind_are_refused() {
        let unknown = Config::default().apply_file(Path::new("x.toml"), "lease = 3");
        assert!(unknown.err().is_some_and(|e| e.to_string().contains("lease")));
        let wrong_kind = Config::default().apply_file(
            Path::new("x.toml"),
            "[providers.f]\nkind = \"fal\"\napi_key_env = \"K\"\naccess_key_env = \"A\"\n",
        );
        assert!(wrong_kind.err().is_some_and(|e| e.to_string().contains("access_key_env")), "fal has no access key");
        let mut ok = Config::default();
        ok.apply_file(
            Path::new("x.toml"),
            "[providers.k]\nkind = \"kling\"\naccess_key_env = \"A\"\nsecret_key_env = \"S\"\n",
        )
        .unwrap();
        assert_eq!(ok.providers.get("k").map(ProviderConfig::kind), Some("kling"));
    }

    #[test]
    fn every_setting_has_help_and_a_distinct_env_variable() {
        let mut vars: Vec<String> = SETTINGS.iter().map(Setting::env_var).collect();
        assert!(SETTINGS.iter().all(|s| !s.help.is_empty()));
        vars.sort();
        vars.dedup();
        assert_eq!(vars.len(), SETTINGS.len());
        assert!(vars.contains(&"VIDGATE_WEBHOOK_RETRY_SCHEDULE_SECS".to_owned()));
    }
}
