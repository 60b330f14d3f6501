//! One circuit breaker per provider, fed by the outcomes of real calls: after at
//! least `MIN_SAMPLES` of its last `WINDOW` calls, an error ratio of `OPEN_RATIO`
//! or more takes the provider out (`open`) for a cool-down; then it is
//! `half_open` and the next recorded call decides: success closes it, failure
//! opens it again. Time is passed in, so the state machine is tested without
//! waiting.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::Serialize;
use utoipa::ToSchema;

const WINDOW: usize = 20;
const MIN_SAMPLES: usize = 5;
const OPEN_RATIO_PERCENT: usize = 50;

/// A breaker's state as admins and metrics see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum BreakerState {
    /// Healthy: the provider is tried in price order.
    Closed,
    /// Taken out: tried only when nothing healthy is left.
    Open,
    /// The cool-down is over: the next call decides.
    HalfOpen,
}

#[derive(Debug)]
struct Breaker {
    outcomes: VecDeque<bool>,
    open_until: Option<Instant>,
    opened: u64,
}

impl Breaker {
    fn state(&self, now: Instant) -> BreakerState {
        match self.open_until {
            Some(t) if now < t => BreakerState::Open,
            Some(_) => BreakerState::HalfOpen,
            None => BreakerState::Closed,
        }
    }

    fn errors(&self) -> usize {
        self.outcomes.iter().filter(|ok| !**ok).count()
    }
}

/// The provider health an admin sees.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ProviderHealth {
    pub provider: String,
    pub state: BreakerState,
    pub recent_calls: usize,
    pub recent_errors: usize,
    pub times_opened: u64,
}

#[derive(Debug)]
pub struct Breakers {
    by_provider: Mutex<BTreeMap<String, Breaker>>,
    cool_down: Duration,
}

impl Breakers {
    pub fn new(providers: impl IntoIterator<Item = String>, cool_down: Duration) -> Self {
        let by_provider = providers
            .into_iter()
            .map(|p| (p, Breaker { outcomes: VecDeque::with_capacity(WINDOW), open_until: None, opened: 0 }))
            .collect();
        Self { by_provider: Mutex::new(by_provider), cool_down }
    }

    /// The state of `provider` at `now` (`Closed` for a provider without a breaker).
    pub fn state(&self, provider: &str, now: Instant) -> BreakerState {
        let Ok(map) = self.by_provider.lock() else { return BreakerState::Closed };
        map.get(provider).map_or(BreakerState::Closed, |b| b.state(now))
    }

    /// Takes the outcome of a real call into the provider's breaker.
    pub fn record(&self, provider: &str, ok: bool, now: Instant) {
        let Ok(mut map) = self.by_provider.lock() else { return };
        let Some(b) = map.get_mut(provider) else { return };
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
        if b.open_until.is_none()
            && b.outcomes.len() >= MIN_SAMPLES
            && b.errors() * 100 >= b.outcomes.len() * OPEN_RATIO_PERCENT
        {
            b.open_until = Some(now + self.cool_down);
            b.opened += 1;
            b.outcomes.clear();
            tracing::warn!(provider, "provider taken out for a cool-down after repeated failures");
        }
    }

    pub fn health(&self, now: Instant) -> Vec<ProviderHealth> {
        let Ok(map) = self.by_provider.lock() else { return Vec::new() };
        map.iter()
            .map(|(name, b)| ProviderHealth {
                provider: name.clone(),
                state: b.state(now),
                recent_calls: b.outcomes.len(),
                recent_errors: b.errors(),
                times_opened: b.opened,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeated_failures_open_the_breaker_until_a_probe_succeeds() {
        let start = Instant::now();
        let b = Breakers::new(["p".to_owned()], Duration::from_secs(30));
        for _ in 0..4 {
            b.record("p", false, start);
        }
        assert_eq!(b.state("p", start), BreakerState::Closed, "too few samples to judge");
        b.record("p", false, start);
        assert_eq!(b.state("p", start), BreakerState::Open);
        let later = start + Duration::from_secs(31);
        assert_eq!(b.state("p", later), BreakerState::HalfOpen);
        b.record("p", false, later);
        assert_eq!(b.state("p", later), BreakerState::Open, "a failed probe opens it again");
        let much_later = later + Duration::from_secs(31);
        b.record("p", true, much_later);
        assert_eq!(b.state("p", much_later), BreakerState::Closed);
        assert_eq!(b.health(much_later)[0].times_opened, 2);
    }

    #[test]
    fn errors_below_half_keep_it_closed() {
        let now = Instant::now();
        let b = Breakers::new(["p".to_owned()], Duration::from_secs(30));
        for i in 0..20 {
            b.record("p", i % 3 != 0, now);
        }
        assert_eq!(b.state("p", now), BreakerState::Closed);
    }
}
