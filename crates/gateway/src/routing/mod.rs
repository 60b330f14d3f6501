//! Routing: for each request, the routes that can serve it, healthy providers
//! first and cheapest first for this request's quality and sound; a circuit
//! breaker per provider (error ratio over a window, cool-down, one half-open
//! probe) fed by the outcomes of real calls; and per-provider poll limits.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::sync::Semaphore;
use utoipa::ToSchema;
use vidgate_api::catalog::{ModelId, Quality, Sound};

use crate::config::{Config, RouteConfig};
use crate::providers::evolink::Evolink;
use crate::providers::fal::Fal;
use crate::providers::kling::{Kling, KlingAuth};
use crate::providers::replicate::Replicate;
use crate::providers::{Provider, upstream_client};
use crate::tasks::StoredRequest;

/// What a route can do beyond the basics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Supports {
    pub end_frame: bool,
    pub multi_shot: bool,
    pub sound: bool,
    pub elements: bool,
    pub p1080: bool,
}

impl Supports {
    pub const ALL: Supports = Supports { end_frame: true, multi_shot: true, sound: true, elements: true, p1080: true };

    fn parse(list: &[String]) -> anyhow::Result<Self> {
        let mut s = Supports::default();
        for f in list {
            match f.as_str() {
                "end_frame" => s.end_frame = true,
                "multi_shot" => s.multi_shot = true,
                "sound" => s.sound = true,
                "elements" => s.elements = true,
                "1080p" => s.p1080 = true,
                other => {
                    anyhow::bail!("unknown route feature {other:?} (end_frame, multi_shot, sound, elements, 1080p)")
                }
            }
        }
        Ok(s)
    }

    fn serves(&self, r: &StoredRequest) -> bool {
        (r.image_end.is_none() || self.end_frame)
            && (r.multi_shot.is_none() || self.multi_shot)
            && (r.sound == Sound::Off || self.sound)
            && (r.element_ids.is_empty() || self.elements)
            && (r.quality == Quality::P720 || self.p1080)
    }
}

/// One way to serve a model.
#[derive(Debug, Clone)]
pub struct Route {
    pub index: usize,
    pub model: ModelId,
    pub provider: String,
    pub upstream_model: String,
    /// Micro-USD per second for 720p, 720p+sound, 1080p, 1080p+sound.
    pub cost_micro_usd: [i64; 4],
    pub supports: Supports,
    /// `None` for the built-in local renderer.
    pub client: Option<Arc<dyn Provider>>,
}

impl Route {
    pub fn is_local(&self) -> bool {
        self.client.is_none()
    }

    /// What this request costs us on this route, in micro-USD.
    pub fn cost_for(&self, r: &StoredRequest) -> i64 {
        let i = match (r.quality, r.sound) {
            (Quality::P720, Sound::Off) => 0,
            (Quality::P720, Sound::On) => 1,
            (Quality::P1080, Sound::Off) => 2,
            (Quality::P1080, Sound::On) => 3,
        };
        self.cost_micro_usd[i] * i64::from(r.duration.max(3))
    }
}

/// A provider's circuit breaker.
#[derive(Debug)]
struct Breaker {
    outcomes: VecDeque<bool>,
    open_until: Option<Instant>,
    opened: u64,
}

const WINDOW: usize = 20;
const MIN_SAMPLES: usize = 5;
const OPEN_RATIO: f64 = 0.5;

impl Breaker {
    fn new() -> Self {
        Self { outcomes: VecDeque::with_capacity(WINDOW), open_until: None, opened: 0 }
    }

    fn state(&self, now: Instant) -> &'static str {
        match self.open_until {
            Some(t) if now < t => "open",
            Some(_) => "half_open",
            None => "closed",
        }
    }
}

/// The provider health an admin sees.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ProviderHealth {
    pub provider: String,
    /// `closed` (healthy), `open` (taken out) or `half_open` (one probe allowed).
    pub state: String,
    pub recent_calls: usize,
    pub recent_errors: usize,
    pub times_opened: u64,
}

#[derive(Debug)]
pub struct Routing {
    routes: Vec<Route>,
    breakers: Mutex<BTreeMap<String, Breaker>>,
    polls: HashMap<String, Arc<Semaphore>>,
    pub max_routes: usize,
    cool_down: Duration,
}

fn micro(usd: f64) -> i64 {
    (usd * 1_000_000.0).round().max(0.0) as i64
}

impl Routing {
    /// Builds the routes; credentials are read from the env variables the config
    /// names. With no routes configured, `local` serves every model.
    pub fn from_config(config: &Config, env: impl Fn(&str) -> Option<String>) -> anyhow::Result<Self> {
        let mut clients: BTreeMap<String, Option<Arc<dyn Provider>>> = BTreeMap::new();
        let mut polls = HashMap::new();
        clients.insert("local".to_owned(), None);
        for (name, p) in &config.providers {
            // A credential from its file when one is named, else from its env variable.
            let secret =
                |var: &Option<String>, file: &Option<std::path::PathBuf>, what: &str| -> anyhow::Result<String> {
                    if let Some(path) = file {
                        return std::fs::read_to_string(path)
                            .map(|s| s.trim().to_owned())
                            .map_err(|e| anyhow::anyhow!("provider {name}: cannot read {what}_file: {e}"));
                    }
                    let var =
                        var.as_deref().ok_or_else(|| anyhow::anyhow!("provider {name}: {what}_env is not set"))?;
                    env(var)
                        .filter(|v| !v.is_empty())
                        .ok_or_else(|| anyhow::anyhow!("provider {name}: env variable {var} is empty"))
                };
            let api_key = || secret(&p.api_key_env, &p.api_key_file, "api_key");
            let timeout = Duration::from_secs(p.timeout_secs.unwrap_or(30).max(1));
            let client = upstream_client(timeout)?;
            let base = |default: &str| p.base_url.clone().unwrap_or_else(|| default.to_owned());
            let provider: Option<Arc<dyn Provider>> = match p.kind.as_str() {
                "local" => None,
                "kling" => {
                    let auth = if p.access_key_env.is_some() || p.access_key_file.is_some() {
                        KlingAuth::Jwt {
                            access_key: secret(&p.access_key_env, &p.access_key_file, "access_key")?,
                            secret_key: secret(&p.secret_key_env, &p.secret_key_file, "secret_key")?,
                        }
                    } else {
                        KlingAuth::ApiKey(api_key()?)
                    };
                    Some(Arc::new(Kling { base_url: base("https://api-singapore.klingai.com"), auth, client }))
                }
                "fal" => Some(Arc::new(Fal { base_url: base("https://queue.fal.run"), key: api_key()?, client })),
                "replicate" => {
                    Some(Arc::new(Replicate { base_url: base("https://api.replicate.com"), token: api_key()?, client }))
                }
                "evolink" => Some(Arc::new(Evolink {
                    base_url: p
                        .base_url
                        .clone()
                        .ok_or_else(|| anyhow::anyhow!("provider {name}: base_url is required"))?,
                    key: api_key()?,
                    client,
                })),
                other => anyhow::bail!("provider {name}: unknown kind {other:?}"),
            };
            polls.insert(name.clone(), Arc::new(Semaphore::new(p.max_concurrent_polls.unwrap_or(64).max(1))));
            clients.insert(name.clone(), provider);
        }
        let mut routes = Vec::new();
        let configured: &[RouteConfig] = &config.routes;
        if configured.is_empty() {
            for model in ModelId::ALL {
                routes.push(Route {
                    index: routes.len(),
                    model,
                    provider: "local".to_owned(),
                    upstream_model: "local".to_owned(),
                    cost_micro_usd: [0; 4],
                    supports: Supports::ALL,
                    client: None,
                });
            }
        }
        for r in configured {
            let model =
                ModelId::parse(&r.model).ok_or_else(|| anyhow::anyhow!("route: unknown model {:?}", r.model))?;
            let client = clients
                .get(&r.provider)
                .ok_or_else(|| anyhow::anyhow!("route for {}: unknown provider {:?}", r.model, r.provider))?
                .clone();
            if client.is_some() && r.upstream_model.is_empty() {
                anyhow::bail!("route {} via {}: upstream_model is required", r.model, r.provider);
            }
            let kind = config.providers.get(&r.provider).map_or("local", |p| p.kind.as_str());
            if model == ModelId::KlingCustomElement && !matches!(kind, "local" | "kling") {
                anyhow::bail!(
                    "route kling-custom-element via {}: only the local and kling providers can create elements",
                    r.provider
                );
            }
            let c = r.cost_usd_per_second;
            routes.push(Route {
                index: routes.len(),
                model,
                provider: r.provider.clone(),
                upstream_model: r.upstream_model.clone(),
                cost_micro_usd: [micro(c.p720), micro(c.p720_sound), micro(c.p1080), micro(c.p1080_sound)],
                supports: if client.is_none() { Supports::ALL } else { Supports::parse(&r.supports)? },
                client,
            });
        }
        let breakers = routes.iter().map(|r| (r.provider.clone(), Breaker::new())).collect();
        Ok(Self {
            routes,
            breakers: Mutex::new(breakers),
            polls,
            max_routes: config.max_routes_per_task.max(1),
            cool_down: Duration::from_secs(30),
        })
    }

    pub fn route(&self, index: usize) -> Option<&Route> {
        self.routes.get(index)
    }

    /// The routes that can serve `r`, in the order to try them: healthy providers
    /// first, then cheapest for this request. `pinned` keeps only one provider (an
    /// element made there).
    pub fn candidates(&self, r: &StoredRequest, pinned: Option<&str>) -> Vec<&Route> {
        let now = Instant::now();
        let breakers = self.breakers.lock().ok();
        let healthy = |p: &str| match breakers.as_ref().and_then(|b| b.get(p)) {
            Some(b) => b.state(now) != "open",
            None => true,
        };
        let mut list: Vec<&Route> = self
            .routes
            .iter()
            .filter(|route| route.model == r.model && route.supports.serves(r))
            .filter(|route| pinned.is_none_or(|p| route.provider == p))
            .collect();
        list.sort_by_key(|route| (!healthy(&route.provider), route.cost_for(r), route.index));
        list
    }

    /// Takes the outcome of a real call into the provider's breaker.
    pub fn record(&self, provider: &str, ok: bool) {
        let Ok(mut breakers) = self.breakers.lock() else { return };
        let Some(b) = breakers.get_mut(provider) else { return };
        let now = Instant::now();
        if b.open_until.is_some_and(|t| now >= t) {
            // Half-open: this call was the probe.
            if ok {
                b.open_until = None;
                b.outcomes.clear();
            } else {
                b.open_until = Some(now + self.cool_down);
                b.opened += 1;
            }
            return;
        }
        if b.outcomes.len() == WINDOW {
            b.outcomes.pop_front();
        }
        b.outcomes.push_back(ok);
        let errors = b.outcomes.iter().filter(|o| !**o).count();
        if b.open_until.is_none()
            && b.outcomes.len() >= MIN_SAMPLES
            && errors as f64 / b.outcomes.len() as f64 >= OPEN_RATIO
        {
            b.open_until = Some(now + self.cool_down);
            b.opened += 1;
            b.outcomes.clear();
            tracing::warn!(provider, "provider taken out for a cool-down after repeated failures");
        }
    }

    pub fn health(&self) -> Vec<ProviderHealth> {
        let now = Instant::now();
        let Ok(breakers) = self.breakers.lock() else { return Vec::new() };
        breakers
            .iter()
            .map(|(name, b)| ProviderHealth {
                provider: name.clone(),
                state: b.state(now).to_owned(),
                recent_calls: b.outcomes.len(),
                recent_errors: b.outcomes.iter().filter(|o| !**o).count(),
                times_opened: b.opened,
            })
            .collect()
    }

    /// The poll slots of a provider.
    pub fn poll_slots(&self, provider: &str) -> Option<Arc<Semaphore>> {
        self.polls.get(provider).cloned()
    }

    #[cfg(test)]
    fn set_cool_down(&mut self, d: Duration) {
        self.cool_down = d;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{CostTable, ProviderConfig};

    fn request(quality: Quality, sound: Sound) -> StoredRequest {
        StoredRequest {
            model: ModelId::KlingV3TextToVideo,
            prompt: Some("p".to_owned()),
            negative_prompt: None,
            image_start: None,
            image_end: None,
            duration: 5,
            quality,
            sound,
            aspect_ratio: Default::default(),
            multi_shot: None,
            element_ids: Vec::new(),
            watermark: false,
            element: None,
        }
    }

    fn routing() -> Routing {
        let mut c = Config::default();
        for name in ["a", "b"] {
            c.providers.insert(
                name.to_owned(),
                ProviderConfig {
                    kind: "fal".to_owned(),
                    base_url: Some("http://127.0.0.1:1".to_owned()),
                    api_key_env: Some("K".to_owned()),
                    ..Default::default()
                },
            );
        }
        let route = |provider: &str, cost: CostTable, supports: &[&str]| RouteConfig {
            model: "kling-v3-text-to-video".to_owned(),
            provider: provider.to_owned(),
            upstream_model: "m".to_owned(),
            cost_usd_per_second: cost,
            supports: supports.iter().map(|s| (*s).to_owned()).collect(),
        };
        c.routes = vec![
            route("a", CostTable { p720: 0.08, p720_sound: 0.1, p1080: 0.09, p1080_sound: 0.2 }, &["sound", "1080p"]),
            route("b", CostTable { p720: 0.07, p720_sound: 0.12, p1080: 0.1, p1080_sound: 0.1 }, &["1080p"]),
        ];
        let mut r = Routing::from_config(&c, |_| Some("key".to_owned())).unwrap();
        r.set_cool_down(Duration::from_millis(50));
        r
    }

    #[test]
    fn routes_are_ordered_cheapest_first_for_the_request() {
        let r = routing();
        let order = |q, s| r.candidates(&request(q, s), None).iter().map(|x| x.provider.clone()).collect::<Vec<_>>();
        assert_eq!(order(Quality::P720, Sound::Off), ["b", "a"]);
        assert_eq!(order(Quality::P1080, Sound::Off), ["a", "b"]);
        // Only a supports sound.
        assert_eq!(order(Quality::P720, Sound::On), ["a"]);
        assert_eq!(r.candidates(&request(Quality::P720, Sound::Off), Some("a")).len(), 1);
    }

    #[test]
    fn a_failing_provider_is_taken_out_then_probed_back_in() {
        let r = routing();
        for _ in 0..5 {
            r.record("b", false);
        }
        let order = |r: &Routing| {
            r.candidates(&request(Quality::P720, Sound::Off), None)
                .iter()
                .map(|x| x.provider.clone())
                .collect::<Vec<_>>()
        };
        assert_eq!(order(&r), ["a", "b"], "an open provider goes last");
        assert_eq!(r.health().iter().find(|h| h.provider == "b").map(|h| h.state.clone()).as_deref(), Some("open"));
        std::thread::sleep(Duration::from_millis(60));
        assert_eq!(
            r.health().iter().find(|h| h.provider == "b").map(|h| h.state.clone()).as_deref(),
            Some("half_open")
        );
        r.record("b", true);
        assert_eq!(order(&r), ["b", "a"]);
    }

    #[test]
    fn without_routes_local_serves_every_model() {
        let r = Routing::from_config(&Config::default(), |_| None).unwrap();
        let c = r.candidates(&request(Quality::P1080, Sound::On), None);
        assert_eq!(c.len(), 1);
        assert!(c[0].is_local());
    }

    #[test]
    fn a_missing_credential_is_a_clear_error() {
        let mut c = Config::default();
        c.providers.insert(
            "f".to_owned(),
            ProviderConfig {
                kind: "fal".to_owned(),
                base_url: None,
                api_key_env: Some("FAL_KEY".to_owned()),
                ..Default::default()
            },
        );
        let e = Routing::from_config(&c, |_| None).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(e.contains("FAL_KEY"), "{e}");
    }
}

#[cfg(test)]
mod example_config {
    use super::*;

    #[test]
    fn the_example_config_with_every_provider_loads() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/vidgate.toml");
        let config = Config::load(Some(&path), |_| None).unwrap();
        assert_eq!(config.providers.len(), 5);
        let routing = Routing::from_config(&config, |_| Some("secret".to_owned())).unwrap();
        assert_eq!(routing.routes.len(), 6);
        // The secrets never show in what an admin or a log sees.
        assert!(!format!("{routing:?}").contains("secret"));
    }
}
