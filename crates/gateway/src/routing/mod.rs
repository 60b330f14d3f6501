//! Routing: for each request, the routes that can serve it, healthy providers
//! first and cheapest first for this request's quality and sound; a circuit
//! breaker per provider (`breaker`); per-provider poll limits; and stopping a
//! task's upstream work when the task ends without it. A route may name one
//! upstream model per quality (fal's standard and pro tiers are different
//! endpoints): it then serves exactly those qualities, each billed at its own
//! tier. Providers are built by `providers::build` and handed in by name:
//! routing knows no adapter.

mod breaker;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::Semaphore;
use vidgate_api::catalog::{Catalog, ModelId, ModelSpec, Quality, Shape, Sound};
use vidgate_api::task::TaskErrorCode;

use breaker::Breakers;
pub use breaker::{BreakerState, ProviderHealth};

use crate::config::{Config, RouteConfig};
use crate::ids::TaskId;
use crate::job::StoredRequest;
use crate::providers::{self, Handle, Upstream};
use crate::store::{AttemptEnd, AttemptStatus, Store};

/// What a route can do beyond the basics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Supports {
    pub end_frame: bool,
    pub multi_shot: bool,
    pub sound: bool,
    pub elements: bool,
    pub p1080: bool,
    pub p4k: bool,
}

impl Supports {
    pub const ALL: Supports =
        Supports { end_frame: true, multi_shot: true, sound: true, elements: true, p1080: true, p4k: true };

    fn parse(list: &[String]) -> anyhow::Result<Self> {
        let mut s = Supports::default();
        for f in list {
            match f.as_str() {
                "end_frame" => s.end_frame = true,
                "multi_shot" => s.multi_shot = true,
                "sound" => s.sound = true,
                "elements" => s.elements = true,
                "1080p" => s.p1080 = true,
                "4k" => s.p4k = true,
                other => {
                    anyhow::bail!("unknown route feature {other:?} (end_frame, multi_shot, sound, elements, 1080p, 4k)")
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
            && match r.quality {
                Quality::P720 => true,
                Quality::P1080 => self.p1080,
                Quality::P4k => self.p4k,
            }
    }
}

/// Who does the work of a route.
#[derive(Debug, Clone)]
pub enum Backend {
    /// The built-in renderer, on this machine.
    Local,
    Remote(Arc<Upstream>),
}

/// One way to serve a model.
#[derive(Debug, Clone)]
pub struct Route {
    pub index: usize,
    pub model: ModelId,
    /// The catalog's description of the model (its shape, its request fields).
    pub spec: Arc<ModelSpec>,
    pub provider: String,
    pub upstream_model: String,
    /// Per-quality model ids at the upstream; when not empty, the route serves
    /// only these qualities.
    pub upstream_models: HashMap<Quality, String>,
    /// Micro-USD per second for 720p, 720p+sound, 1080p, 1080p+sound, 4k.
    pub cost_micro_usd: [i64; 5],
    pub supports: Supports,
    pub backend: Backend,
}

impl Route {
    pub fn is_local(&self) -> bool {
        matches!(self.backend, Backend::Local)
    }

    pub fn upstream(&self) -> Option<&Arc<Upstream>> {
        match &self.backend {
            Backend::Local => None,
            Backend::Remote(u) => Some(u),
        }
    }

    /// The upstream model that makes `quality` on this route, if it makes it.
    pub fn upstream_model_for(&self, quality: Quality) -> Option<&str> {
        if self.upstream_models.is_empty() {
            Some(&self.upstream_model)
        } else {
            self.upstream_models.get(&quality).map(String::as_str)
        }
    }

    /// What `seconds` of this request cost us on this route, in micro-USD.
    pub fn cost_for(&self, r: &StoredRequest, seconds: u32) -> i64 {
        let i = match (r.quality, r.sound) {
            (Quality::P720, Sound::Off) => 0,
            (Quality::P720, Sound::On) => 1,
            (Quality::P1080, Sound::Off) => 2,
            (Quality::P1080, Sound::On) => 3,
            (Quality::P4k, _) => 4,
        };
        self.cost_micro_usd[i] * i64::from(seconds.max(1))
    }
}

/// One configured provider's credential check.
#[derive(Debug, Clone)]
pub struct ProviderCheck {
    pub provider: String,
    pub kind: &'static str,
    pub check: providers::Check,
}

#[derive(Debug)]
pub struct Routing {
    routes: Vec<Route>,
    /// Every configured provider by name (`None`: the built-in renderer).
    upstreams: BTreeMap<String, Option<Arc<Upstream>>>,
    breakers: Breakers,
    polls: HashMap<String, Arc<Semaphore>>,
    /// Most upstream visits one task may make (`max_attempts_per_task`).
    pub max_attempts: usize,
}

fn micro(usd: f64) -> i64 {
    (usd * 1_000_000.0).round().max(0.0) as i64
}

/// The upstream of each configured provider (`None` for `local`), built with
/// credentials read from the files or env variables the configuration names.
pub fn build_providers(
    config: &Config,
    env: &dyn Fn(&str) -> Option<String>,
) -> anyhow::Result<BTreeMap<String, Option<Arc<Upstream>>>> {
    let mut out = BTreeMap::new();
    for (name, p) in &config.providers {
        out.insert(name.clone(), providers::build(name, p, env)?.map(Arc::new));
    }
    Ok(out)
}

impl Routing {
    /// Builds the routes over `upstreams` (by provider name) for the models of
    /// `catalog`. With no routes configured, `local` serves every model.
    pub fn new(
        config: &Config,
        catalog: &Catalog,
        upstreams: BTreeMap<String, Option<Arc<Upstream>>>,
    ) -> anyhow::Result<Self> {
        let mut routes = Vec::new();
        if config.routes.is_empty() {
            for spec in catalog.models() {
                routes.push(Route {
                    index: routes.len(),
                    model: spec.id.clone(),
                    spec: Arc::new(spec.clone()),
                    provider: "local".to_owned(),
                    upstream_model: "local".to_owned(),
                    upstream_models: HashMap::new(),
                    cost_micro_usd: [0; 5],
                    supports: Supports::ALL,
                    backend: Backend::Local,
                });
            }
        }
        for r in &config.routes {
            let configured: &RouteConfig = r;
            let spec = catalog
                .get(&configured.model)
                .ok_or_else(|| anyhow::anyhow!("route: unknown model {:?}", configured.model))?;
            let model = spec.id.clone();
            let upstream = match upstreams.get(&r.provider) {
                Some(u) => u.clone(),
                None if r.provider == "local" => None,
                None => anyhow::bail!("route for {}: unknown provider {:?}", r.model, r.provider),
            };
            let kind = upstream.as_ref().map_or("local", |u| u.kind());
            if let Some(u) = &upstream {
                let models = std::iter::once(&r.upstream_model).chain(r.upstream_models.values());
                for m in models.filter(|m| !m.is_empty()) {
                    u.check_route(m, spec).map_err(|e| anyhow::anyhow!("route {} via {}: {e}", r.model, r.provider))?;
                }
            }
            if spec.shape == Shape::CustomElement && !matches!(kind, "local" | "kling") {
                anyhow::bail!(
                    "route kling-custom-element via {}: only the local and kling providers can create elements",
                    r.provider
                );
            }
            let mut upstream_models = HashMap::new();
            for (quality, id) in &r.upstream_models {
                let q = Quality::parse(quality).ok_or_else(|| {
                    anyhow::anyhow!(
                        "route {} via {}: upstream_models has an unknown quality {quality:?}",
                        r.model,
                        r.provider
                    )
                })?;
                if id.is_empty() {
                    anyhow::bail!("route {} via {}: upstream_models.{quality} is empty", r.model, r.provider);
                }
                upstream_models.insert(q, id.clone());
            }
            if upstream.is_some() && r.upstream_model.is_empty() && upstream_models.is_empty() {
                anyhow::bail!("route {} via {}: upstream_model (or upstream_models) is required", r.model, r.provider);
            }
            let mut supports = if upstream.is_none() { Supports::ALL } else { Supports::parse(&r.supports)? };
            if !upstream_models.is_empty() {
                // The tiers named are the qualities served.
                supports.p1080 = upstream_models.contains_key(&Quality::P1080);
                supports.p4k = upstream_models.contains_key(&Quality::P4k);
            }
            let c = r.cost_usd_per_second;
            routes.push(Route {
                index: routes.len(),
                model,
                spec: Arc::new(spec.clone()),
                provider: r.provider.clone(),
                upstream_model: r.upstream_model.clone(),
                upstream_models,
                cost_micro_usd: [
                    micro(c.p720),
                    micro(c.p720_sound),
                    micro(c.p1080),
                    micro(c.p1080_sound),
                    micro(c.p4k),
                ],
                supports,
                backend: upstream.map_or(Backend::Local, Backend::Remote),
            });
        }
        let polls = config
            .providers
            .iter()
            .map(|(name, p)| (name.clone(), Arc::new(Semaphore::new(providers::max_concurrent_polls(p)))))
            .collect();
        let names: Vec<String> = routes.iter().map(|r| r.provider.clone()).collect();
        Ok(Self {
            routes,
            upstreams,
            breakers: Breakers::new(names, Duration::from_secs(30)),
            polls,
            max_attempts: config.max_attempts_per_task.max(1),
        })
    }

    pub fn route(&self, index: usize) -> Option<&Route> {
        self.routes.get(index)
    }

    /// The routes that can serve `r`, in the order to try them: healthy providers
    /// first, then cheapest for this request. `pinned` keeps only one provider (an
    /// element made there).
    pub fn candidates(&self, r: &StoredRequest, pinned: Option<&str>) -> Vec<&Route> {
        self.candidates_at(r, pinned, Instant::now())
    }

    fn candidates_at(&self, r: &StoredRequest, pinned: Option<&str>, now: Instant) -> Vec<&Route> {
        let mut list: Vec<&Route> = self
            .routes
            .iter()
            .filter(|route| route.model == r.model && route.supports.serves(r))
            .filter(|route| route.upstream_model_for(r.quality).is_some())
            .filter(|route| pinned.is_none_or(|p| route.provider == p))
            .collect();
        let seconds = r.duration.unwrap_or(5);
        list.sort_by_key(|route| {
            let open = self.breakers.state(&route.provider, now) == BreakerState::Open;
            (open, route.cost_for(r, seconds), route.index)
        });
        list
    }

    /// Whether the provider's breaker has taken it out right now.
    pub fn is_open(&self, provider: &str) -> bool {
        self.breakers.state(provider, Instant::now()) == BreakerState::Open
    }

    /// Takes the outcome of a real call into the provider's breaker.
    pub fn record(&self, provider: &str, ok: bool) {
        self.breakers.record(provider, ok, Instant::now());
    }

    pub fn health(&self) -> Vec<ProviderHealth> {
        self.breakers.health(Instant::now())
    }

    /// The poll slots of a provider.
    pub fn poll_slots(&self, provider: &str) -> Option<Arc<Semaphore>> {
        self.polls.get(provider).cloned()
    }

    /// Checks every configured provider's credentials at once, with the cheapest
    /// authenticated call each documents that creates nothing billable.
    pub async fn check_providers(&self) -> Vec<ProviderCheck> {
        let checks = self.upstreams.iter().map(|(name, upstream)| async move {
            let (kind, check) = match upstream {
                Some(u) => (u.kind(), u.check().await),
                None => ("local", providers::Check::new(providers::CheckStatus::Ok, "built in: no credentials")),
            };
            ProviderCheck { provider: name.clone(), kind, check }
        });
        futures_util::future::join_all(checks).await
    }

    /// Ends a task's running upstream attempts with `code` and asks their
    /// providers to stop. Failures only cost upstream money, never the client's.
    pub async fn cancel_running(&self, store: &Store, task_id: &TaskId, code: TaskErrorCode, why: &str) {
        let Ok(attempts) = store.upstream_attempts(task_id).await else { return };
        for a in attempts.iter().filter(|a| a.status == AttemptStatus::Running) {
            let end = AttemptEnd::Failed { code, message: why.to_owned() };
            let _ = store.end_upstream_attempt(&a.id, &end).await;
            let handle: Option<Handle> = a.handle.as_deref().and_then(|h| serde_json::from_str(h).ok());
            let upstream = usize::try_from(a.route_index).ok().and_then(|i| self.route(i)).and_then(Route::upstream);
            if let (Some(handle), Some(upstream)) = (handle, upstream)
                && let Err(e) = upstream.cancel(&handle).await
            {
                tracing::warn!(%task_id, provider = %a.provider, error = %e, "upstream cancel failed");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{CostTable, FalProviderConfig, ProviderConfig};

    fn request(quality: Quality, sound: Sound) -> StoredRequest {
        let body = serde_json::json!({"model": "kling-v3-text-to-video", "prompt": "p", "duration": 5,
            "quality": quality.as_str(), "sound": sound.as_str()});
        let task = catalog().parse_create(&body, &Default::default()).unwrap();
        task.try_map_media(|_, _, _| Err::<crate::job::ImageRef, ()>(())).unwrap()
    }

    fn catalog() -> Catalog {
        Catalog::builtin().unwrap()
    }

    fn fal(key_env: &str) -> ProviderConfig {
        ProviderConfig::Fal(FalProviderConfig {
            base_url: Some("http://127.0.0.1:1".to_owned()),
            api_key_env: Some(key_env.to_owned()),
            ..Default::default()
        })
    }

    fn routing() -> Routing {
        let mut c = Config::default();
        for name in ["a", "b"] {
            c.providers.insert(name.to_owned(), fal("K"));
        }
        let route = |provider: &str, cost: CostTable, supports: &[&str]| RouteConfig {
            model: "kling-v3-text-to-video".to_owned(),
            provider: provider.to_owned(),
            upstream_model: "m".to_owned(),
            upstream_models: BTreeMap::new(),
            cost_usd_per_second: cost,
            supports: supports.iter().map(|s| (*s).to_owned()).collect(),
        };
        c.routes = vec![
            route(
                "a",
                CostTable { p720: 0.08, p720_sound: 0.1, p1080: 0.09, p1080_sound: 0.2, p4k: 0.0 },
                &["sound", "1080p"],
            ),
            route("b", CostTable { p720: 0.07, p720_sound: 0.12, p1080: 0.1, p1080_sound: 0.1, p4k: 0.0 }, &["1080p"]),
        ];
        Routing::new(&c, &catalog(), build_providers(&c, &|_| Some("key".to_owned())).unwrap()).unwrap()
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
    fn a_tiered_route_sends_each_quality_to_its_own_endpoint_at_its_own_price() {
        let mut c = Config::default();
        for name in ["fal", "flat", "pro_only"] {
            c.providers.insert(name.to_owned(), fal("K"));
        }
        let tiers = |pairs: &[(&str, &str)]| pairs.iter().map(|(q, m)| ((*q).to_owned(), (*m).to_owned())).collect();
        let route = |provider: &str, models: BTreeMap<String, String>, cost: CostTable| RouteConfig {
            model: "kling-v3-text-to-video".to_owned(),
            provider: provider.to_owned(),
            upstream_model: if models.is_empty() { "m".to_owned() } else { String::new() },
            upstream_models: models,
            cost_usd_per_second: cost,
            supports: vec!["sound".to_owned(), "1080p".to_owned()],
        };
        // fal's published prices: v3 standard $0.084/$0.126, v3 pro $0.112/$0.168.
        let fal_cost = CostTable { p720: 0.084, p720_sound: 0.126, p1080: 0.112, p1080_sound: 0.168, p4k: 0.0 };
        c.routes = vec![
            route(
                "fal",
                tiers(&[
                    ("720p", "fal-ai/kling-video/v3/standard/text-to-video"),
                    ("1080p", "fal-ai/kling-video/v3/pro/text-to-video"),
                ]),
                fal_cost,
            ),
            route(
                "flat",
                BTreeMap::new(),
                CostTable { p720: 0.09, p720_sound: 0.13, p1080: 0.1, p1080_sound: 0.15, p4k: 0.0 },
            ),
            route(
                "pro_only",
                tiers(&[("1080p", "fal-ai/kling-video/v3/pro/text-to-video")]),
                CostTable { p1080: 0.01, ..fal_cost },
            ),
        ];
        let r = Routing::new(&c, &catalog(), build_providers(&c, &|_| Some("key".to_owned())).unwrap()).unwrap();
        let order = |q| {
            r.candidates(&request(q, Sound::Off), None)
                .iter()
                .map(|x| (x.provider.clone(), x.upstream_model_for(q).unwrap_or("-").to_owned()))
                .collect::<Vec<_>>()
        };
        let p720 = order(Quality::P720);
        assert_eq!(p720.len(), 2, "a pro-only route never serves 720p: {p720:?}");
        assert_eq!(p720[0], ("fal".to_owned(), "fal-ai/kling-video/v3/standard/text-to-video".to_owned()));
        let p1080 = order(Quality::P1080);
        assert_eq!(p1080.iter().map(|(p, _)| p.as_str()).collect::<Vec<_>>(), ["pro_only", "flat", "fal"]);
        assert_eq!(p1080[2].1, "fal-ai/kling-video/v3/pro/text-to-video");
        // Billed at the tier it ran on.
        let fal_route = r.candidates(&request(Quality::P720, Sound::Off), None)[0];
        assert_eq!(fal_route.cost_for(&request(Quality::P720, Sound::Off), 5), 5 * 84_000);
        let bad = RouteConfig { upstream_models: tiers(&[("2k", "x")]), ..c.routes[0].clone() };
        c.routes = vec![bad];
        let e = Routing::new(&c, &catalog(), build_providers(&c, &|_| Some("key".to_owned())).unwrap()).err();
        assert!(e.is_some_and(|e| e.to_string().contains("2k")));
    }

    #[test]
    fn an_open_provider_goes_last_until_its_probe_succeeds() {
        let r = routing();
        let now = Instant::now();
        for _ in 0..5 {
            r.breakers.record("b", false, now);
        }
        let order = |at: Instant| {
            r.candidates_at(&request(Quality::P720, Sound::Off), None, at)
                .iter()
                .map(|x| x.provider.clone())
                .collect::<Vec<_>>()
        };
        assert_eq!(order(now), ["a", "b"], "an open provider goes last");
        let later = now + Duration::from_secs(31);
        assert_eq!(order(later), ["b", "a"], "half-open: back in price order for its probe");
        r.breakers.record("b", true, later);
        assert_eq!(r.breakers.state("b", later), BreakerState::Closed);
    }

    #[test]
    fn without_routes_local_serves_every_model() {
        let r = Routing::new(&Config::default(), &catalog(), BTreeMap::new()).unwrap();
        let c = r.candidates(&request(Quality::P1080, Sound::On), None);
        assert_eq!(c.len(), 1);
        assert!(c[0].is_local());
    }

    #[test]
    fn a_missing_credential_is_a_clear_error() {
        let mut c = Config::default();
        c.providers.insert("f".to_owned(), fal("FAL_KEY"));
        let e = build_providers(&c, &|_| None).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(e.contains("FAL_KEY"), "{e}");
    }

    #[test]
    fn the_example_config_with_every_provider_loads() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/vidgate.toml");
        let config = Config::load(Some(&path), |_| None).unwrap();
        assert_eq!(config.providers.len(), 5);
        let upstreams = build_providers(&config, &|_| Some("s3cr3t-value".to_owned())).unwrap();
        let routing = Routing::new(&config, &catalog(), upstreams).unwrap();
        assert_eq!(routing.routes.len(), 24);
        // Edits and motion control on fal go to the endpoint of their tier; Replicate's O1 edit to kling-o1.
        let at = |provider: &str, model: &str, q: Quality| {
            routing
                .routes
                .iter()
                .find(|r| r.provider == provider && r.model == model)
                .and_then(|r| r.upstream_model_for(q))
        };
        assert_eq!(
            at("fal", "kling-o3-video-edit", Quality::P720),
            Some("fal-ai/kling-video/o3/standard/video-to-video/edit")
        );
        assert_eq!(at("fal", "kling-v3-motion-control", Quality::P720), None);
        assert_eq!(at("replicate", "kling-o1-video-edit", Quality::P1080), Some("kwaivgi/kling-o1"));
        // 720p image-to-video never goes to fal's pro tier.
        let fal = routing.routes.iter().find(|r| r.provider == "fal" && r.model == "kling-v3-image-to-video");
        let tiers = fal.map(|r| (r.upstream_model_for(Quality::P720), r.upstream_model_for(Quality::P1080)));
        assert_eq!(
            tiers,
            Some((
                Some("fal-ai/kling-video/v3/standard/image-to-video"),
                Some("fal-ai/kling-video/v3/pro/image-to-video")
            ))
        );
        // The secrets never show in what an admin or a log sees.
        assert!(!format!("{routing:?}").contains("s3cr3t-value"));
    }
}
