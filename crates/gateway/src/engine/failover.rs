//! The failover policy, as pure functions of what happened so far: which route a
//! task goes to next (and when), and what a submit or a poll answer means for it.
//! No IO here; `remote` applies the decisions (database writes, calls upstream),
//! so the policy is tested on its own, answer by answer.
//!
//! The policy. A task's attempts form *visits*: a route tried until it accepts
//! the task or is spent. A submit refused for a reason worth another try (the
//! provider's rate limit, a 5xx, a refused connection) is tried again on the same
//! route after an exponential backoff from 1 s (3 times for Kling's throttles,
//! 2 for the rest), the task waiting in the queue meanwhile, unless the
//! provider's breaker has opened; any other refusal, or the last retry, spends
//! the route. An accepted task that fails server-side, whose result is unusable,
//! or whose provider stops answering for longer than the grace, ends its visit
//! too. The next visit goes to the cheapest healthy route the task has visited
//! least (so a task goes back to a provider it already tried once the others
//! were tried as often), until `max_attempts` visits are spent.

use std::collections::HashMap;
use std::time::Duration;

use vidgate_api::task::TaskErrorCode;

use crate::providers::{Failure, Handle, Pace, Poll, ProviderError};
use crate::routing::Route;
use crate::store::{AttemptStatus, UpstreamAttempt};

/// Same-route retries of a submit Kling throttled (1302, 1303, a bare 429).
pub const THROTTLED_RETRIES: u32 = 3;
/// Same-route retries of any other brief refusal (429, 5xx, a refused connection).
pub const BRIEF_RETRIES: u32 = 2;
/// The first backoff; each retry waits twice the one before.
pub const FIRST_BACKOFF: Duration = Duration::from_secs(1);

impl Pace {
    pub fn as_str(self) -> &'static str {
        match self {
            Pace::Throttled => "throttled",
            Pace::Brief => "brief",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [Pace::Throttled, Pace::Brief].into_iter().find(|p| p.as_str() == s)
    }

    fn retries(self) -> u32 {
        match self {
            Pace::Throttled => THROTTLED_RETRIES,
            Pace::Brief => BRIEF_RETRIES,
        }
    }
}

/// The wait before retry number `n` (from 1) on the same route: 1 s, 2 s, 4 s.
pub fn backoff(n: u32) -> Duration {
    FIRST_BACKOFF * 2u32.saturating_pow(n.saturating_sub(1).min(16))
}

/// A visit still open: its route refused the submit `refusals` times in a row,
/// each worth a retry; the last at `last_at` (ms).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct OpenVisit {
    route_index: i64,
    refusals: u32,
    last_at: i64,
}

/// The visits a task's attempts add up to.
#[derive(Debug, Default, PartialEq, Eq)]
struct Visits {
    /// Visits ended, by route index.
    per_route: HashMap<i64, usize>,
    total: usize,
    open: Option<OpenVisit>,
}

impl Visits {
    fn close(&mut self, route_index: i64) {
        self.total += 1;
        *self.per_route.entry(route_index).or_default() += 1;
    }

    fn of(attempts: &[UpstreamAttempt]) -> Self {
        let mut v = Visits::default();
        for a in attempts {
            if let Some(open) = v.open.filter(|o| o.route_index != a.route_index) {
                // The task moved on without retrying there (the route left the
                // candidates, or its breaker opened): that visit is spent.
                v.close(open.route_index);
                v.open = None;
            }
            let pace = a.retry.as_deref().and_then(Pace::parse).filter(|_| a.status == AttemptStatus::Error);
            match pace {
                Some(pace) => {
                    let refusals = v.open.map_or(0, |o| o.refusals) + 1;
                    if refusals > pace.retries() {
                        v.close(a.route_index);
                        v.open = None;
                    } else {
                        let last_at = a.finished_at.unwrap_or(a.created_at);
                        v.open = Some(OpenVisit { route_index: a.route_index, refusals, last_at });
                    }
                }
                // Accepted (whatever became of it since), or refused for good.
                None => {
                    v.close(a.route_index);
                    v.open = None;
                }
            }
        }
        v
    }
}

/// Where a task goes next when no attempt of it is running.
#[derive(Debug)]
pub enum Next<'r> {
    /// Submit it to this route now.
    Submit(&'r Route),
    /// A retry on the same route is due at `not_before` (ms): back to the queue
    /// until then.
    Wait { not_before: i64 },
    /// The next route is the built-in renderer.
    RenderLocally,
    /// Nothing is left to try: fail with this.
    GiveUp(Failure),
}

/// The next step for a task that has made `attempts`. `candidates` come in the
/// order routing gave (healthy first, then cheapest); `is_open` says whether a
/// provider's breaker is open now.
pub fn next_route<'r>(
    attempts: &[UpstreamAttempt],
    candidates: &[&'r Route],
    is_open: &dyn Fn(&str) -> bool,
    max_attempts: usize,
    now: i64,
) -> Next<'r> {
    let mut visits = Visits::of(attempts);
    if let Some(open) = visits.open.take() {
        let same = candidates.iter().find(|r| r.index as i64 == open.route_index);
        match same {
            Some(route) if !is_open(&route.provider) => {
                let not_before = open.last_at + backoff(open.refusals).as_millis() as i64;
                return if now >= not_before { Next::Submit(route) } else { Next::Wait { not_before } };
            }
            // Gone from the candidates, or taken out by its breaker: spent.
            _ => visits.close(open.route_index),
        }
    }
    if visits.total < max_attempts {
        let times = |r: &Route| visits.per_route.get(&(r.index as i64)).copied().unwrap_or(0);
        // A route already visited is revisited only while its provider is healthy.
        let pick = candidates
            .iter()
            .enumerate()
            .filter(|(_, r)| times(r) == 0 || !is_open(&r.provider))
            .min_by_key(|(position, r)| (is_open(&r.provider), times(r), *position))
            .map(|(_, r)| *r);
        if let Some(route) = pick {
            return if route.is_local() { Next::RenderLocally } else { Next::Submit(route) };
        }
    }
    Next::GiveUp(give_up(attempts))
}

/// The failure of a task with nothing left to try: the last upstream's code and
/// every attempt's story.
fn give_up(attempts: &[UpstreamAttempt]) -> Failure {
    let last_code = attempts
        .iter()
        .rev()
        .find_map(|a| a.error_code.as_deref().and_then(TaskErrorCode::parse))
        .unwrap_or(TaskErrorCode::ServiceUnavailable);
    if attempts.is_empty() {
        return Failure::new(last_code, "No provider can serve this request right now.");
    }
    Failure::new(last_code, format!("Every provider failed: {}", attempts_summary(attempts)))
}

/// Each attempt's provider and error, for a task's final message; a run of the
/// same answer from the same provider is told once, with its count.
pub fn attempts_summary(attempts: &[UpstreamAttempt]) -> String {
    let mut parts: Vec<(String, usize)> = Vec::new();
    for a in attempts {
        let line = format!("{}: {}", a.provider, a.error_message.as_deref().unwrap_or(a.status.as_str()));
        match parts.last_mut() {
            Some((last, n)) if *last == line => *n += 1,
            _ => parts.push((line, 1)),
        }
    }
    parts
        .into_iter()
        .map(|(line, n)| if n > 1 { format!("{line} (x{n})") } else { line })
        .collect::<Vec<_>>()
        .join("; ")
}

/// What a submit's answer means.
#[derive(Debug, PartialEq, Eq)]
pub enum AfterSubmit {
    /// Accepted upstream: poll it.
    Accepted(Handle),
    /// Not the request's fault: recorded as a refused attempt, with the pace of
    /// a same-route retry when one is worth it (`next_route` decides when).
    Refused { retry: Option<Pace>, code: TaskErrorCode, message: String },
    /// The request itself was refused: the task fails with this.
    Finish(Failure),
}

impl AfterSubmit {
    /// What the provider's breaker learns from this answer: an answer about the
    /// request is health, a refusal of ours is not; a throttle says the provider
    /// is busy, not ill, and teaches it nothing.
    pub fn breaker_outcome(&self) -> Option<bool> {
        match self {
            AfterSubmit::Accepted(_) | AfterSubmit::Finish(_) => Some(true),
            AfterSubmit::Refused { retry: Some(Pace::Throttled), .. } => None,
            AfterSubmit::Refused { .. } => Some(false),
        }
    }
}

pub fn after_submit(answer: Result<Handle, ProviderError>) -> AfterSubmit {
    match answer {
        Ok(handle) => AfterSubmit::Accepted(handle),
        Err(ProviderError::Retry { pace, code, message }) => AfterSubmit::Refused { retry: Some(pace), code, message },
        Err(ProviderError::NextRoute { code, message }) => AfterSubmit::Refused { retry: None, code, message },
        Err(ProviderError::Rejected(failure)) => AfterSubmit::Finish(failure),
    }
}

/// What a poll's answer means.
#[derive(Debug, PartialEq, Eq)]
pub enum AfterPoll {
    /// Still running, or no answer this time (`answered` false) within the grace:
    /// poll again later.
    PollAgain { progress: Option<u8>, answered: bool },
    /// Done upstream: copy the video and complete the task.
    Complete { video_url: String },
    /// A custom element was made upstream.
    Element { element_id: String },
    /// A failure that is the request's own (content policy, invalid input): final.
    Finish(Failure),
    /// A server-side failure: the task moves to the next route.
    NextRoute(Failure),
    /// The provider gave no answer for longer than the grace: the upstream task
    /// is given up on (cancelled there where its API allows) and the task moves
    /// to the next route.
    Abandon(Failure),
}

/// What `answer` means for an attempt whose provider last answered at
/// `last_answer` (ms; the attempt's start at first), at `now`.
pub fn after_poll(answer: Result<Poll, ProviderError>, last_answer: i64, now: i64, grace: Duration) -> AfterPoll {
    match answer {
        Ok(Poll::Running { progress }) => AfterPoll::PollAgain { progress, answered: true },
        Ok(Poll::Succeeded { video_url }) => AfterPoll::Complete { video_url },
        Ok(Poll::Element { element_id }) => AfterPoll::Element { element_id },
        Ok(Poll::Failed(failure)) | Err(ProviderError::Rejected(failure)) => {
            if failure.code.is_client_side() {
                AfterPoll::Finish(failure)
            } else {
                AfterPoll::NextRoute(failure)
            }
        }
        Err(ProviderError::Retry { message, .. } | ProviderError::NextRoute { message, .. }) => {
            let silent = Duration::from_millis(now.saturating_sub(last_answer).max(0) as u64);
            if silent > grace {
                AfterPoll::Abandon(Failure::new(
                    TaskErrorCode::ServiceUnavailable,
                    format!("no answer for {} s (last: {message}); resubmitted", silent.as_secs()),
                ))
            } else {
                AfterPoll::PollAgain { progress: None, answered: false }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::{AttemptId, TaskId};
    use crate::routing::{Backend, Supports};

    fn route(index: usize, provider: &str, local: bool) -> Route {
        let backend = if local {
            Backend::Local
        } else {
            let config = crate::config::ProviderConfig::Evolink(crate::config::KeyedProviderConfig {
                base_url: Some("http://127.0.0.1:1".to_owned()),
                api_key_env: Some("K".to_owned()),
                ..Default::default()
            });
            match crate::providers::build(provider, &config, &|_| Some("k".to_owned())) {
                Ok(Some(u)) => Backend::Remote(std::sync::Arc::new(u)),
                other => unreachable!("an evolink provider builds: {other:?}"),
            }
        };
        let spec = vidgate_api::catalog::Catalog::builtin().unwrap().get("kling-v3-text-to-video").unwrap().clone();
        Route {
            index,
            model: spec.id.clone(),
            spec: std::sync::Arc::new(spec),
            provider: provider.to_owned(),
            upstream_model: "m".to_owned(),
            upstream_models: Default::default(),
            cost_micro_usd: [0; 5],
            supports: Supports::ALL,
            backend,
        }
    }

    fn attempt(route: &Route, status: AttemptStatus, at: i64) -> UpstreamAttempt {
        UpstreamAttempt {
            id: AttemptId::new(),
            task_id: TaskId::from_raw("t"),
            seq: 1,
            route_index: route.index as i64,
            provider: route.provider.clone(),
            upstream_model: "m".to_owned(),
            upstream_id: None,
            handle: None,
            status,
            error_code: None,
            error_message: None,
            polls: 0,
            cost_micro_usd: 0,
            created_at: at,
            finished_at: Some(at),
            retry: None,
        }
    }

    fn failed(route: &Route, code: &str, message: &str) -> UpstreamAttempt {
        UpstreamAttempt {
            error_code: Some(code.to_owned()),
            error_message: Some(message.to_owned()),
            ..attempt(route, AttemptStatus::Failed, 0)
        }
    }

    /// A submit refused with a retry of `pace` at `at` ms.
    fn refused(route: &Route, pace: Option<Pace>, at: i64) -> UpstreamAttempt {
        UpstreamAttempt {
            error_code: Some("service_unavailable".to_owned()),
            error_message: Some("503".to_owned()),
            retry: pace.map(|p| p.as_str().to_owned()),
            ..attempt(route, AttemptStatus::Error, at)
        }
    }

    const HEALTHY: &dyn Fn(&str) -> bool = &|_| false;

    fn chosen(next: Next<'_>) -> String {
        match next {
            Next::Submit(r) => r.provider.clone(),
            Next::Wait { not_before } => format!("wait until {not_before}"),
            Next::RenderLocally => "local".to_owned(),
            Next::GiveUp(f) => format!("give up: {}", f.code.as_str()),
        }
    }

    #[test]
    fn the_first_untried_candidate_is_next() {
        let (a, b) = (route(0, "a", false), route(1, "b", false));
        let candidates = [&b, &a];
        assert_eq!(chosen(next_route(&[], &candidates, HEALTHY, 8, 0)), "b");
        let tried = [failed(&b, "service_error", "down")];
        assert_eq!(chosen(next_route(&tried, &candidates, HEALTHY, 8, 0)), "a");
    }

    #[test]
    fn a_local_route_is_rendered_here() {
        let (a, l) = (route(0, "a", false), route(1, "local", true));
        let tried = [failed(&a, "service_error", "down")];
        assert!(matches!(next_route(&tried, &[&a, &l], HEALTHY, 8, 0), Next::RenderLocally));
    }

    #[test]
    fn a_brief_refusal_is_retried_on_the_same_route_after_1_then_2_seconds_then_the_route_is_spent() {
        let (a, b) = (route(0, "a", false), route(1, "b", false));
        let c = [&a, &b];
        let mut tried = vec![refused(&a, Some(Pace::Brief), 10_000)];
        assert_eq!(chosen(next_route(&tried, &c, HEALTHY, 8, 10_500)), "wait until 11000");
        assert_eq!(chosen(next_route(&tried, &c, HEALTHY, 8, 11_000)), "a");
        tried.push(refused(&a, Some(Pace::Brief), 11_000));
        assert_eq!(chosen(next_route(&tried, &c, HEALTHY, 8, 11_000)), "wait until 13000");
        assert_eq!(chosen(next_route(&tried, &c, HEALTHY, 8, 13_000)), "a");
        tried.push(refused(&a, Some(Pace::Brief), 13_000));
        assert_eq!(chosen(next_route(&tried, &c, HEALTHY, 8, 13_000)), "b", "two retries, then the route is spent");
    }

    #[test]
    fn a_kling_throttle_is_retried_three_times_with_exponential_backoff() {
        let (a, b) = (route(0, "a", false), route(1, "b", false));
        let c = [&a, &b];
        let mut tried = Vec::new();
        let mut at = 0;
        for wait in [1000, 2000, 4000] {
            tried.push(refused(&a, Some(Pace::Throttled), at));
            assert_eq!(chosen(next_route(&tried, &c, HEALTHY, 8, at)), format!("wait until {}", at + wait));
            at += wait;
            assert_eq!(chosen(next_route(&tried, &c, HEALTHY, 8, at)), "a");
        }
        tried.push(refused(&a, Some(Pace::Throttled), at));
        assert_eq!(chosen(next_route(&tried, &c, HEALTHY, 8, at)), "b");
        assert_eq!(backoff(1), Duration::from_secs(1));
        assert_eq!(backoff(3), Duration::from_secs(4));
    }

    #[test]
    fn a_refusal_that_is_ours_moves_on_at_once() {
        let (a, b) = (route(0, "a", false), route(1, "b", false));
        let tried = [refused(&a, None, 0)];
        assert_eq!(chosen(next_route(&tried, &[&a, &b], HEALTHY, 8, 0)), "b");
    }

    #[test]
    fn no_retry_waits_on_a_provider_whose_breaker_opened() {
        let (a, b) = (route(0, "a", false), route(1, "b", false));
        let tried = [refused(&a, Some(Pace::Brief), 0)];
        let a_open: &dyn Fn(&str) -> bool = &|p| p == "a";
        assert_eq!(chosen(next_route(&tried, &[&b, &a], a_open, 8, 0)), "b");
        // With nothing else to try, a route already spent on an open provider is not hammered.
        assert_eq!(chosen(next_route(&tried, &[&a], a_open, 8, 0)), "give up: service_unavailable");
    }

    #[test]
    fn a_task_goes_back_to_providers_it_tried_least_cheapest_healthy_first() {
        let (a, b, c) = (route(0, "a", false), route(1, "b", false), route(2, "c", false));
        let cands = [&a, &b, &c];
        let mut tried = vec![failed(&a, "service_error", "x")];
        assert_eq!(chosen(next_route(&tried, &cands, HEALTHY, 8, 0)), "b");
        tried.push(failed(&b, "service_error", "x"));
        tried.push(failed(&c, "service_error", "x"));
        assert_eq!(chosen(next_route(&tried, &cands, HEALTHY, 8, 0)), "a", "all tried once: the cheapest again");
        tried.push(failed(&a, "service_error", "x"));
        assert_eq!(chosen(next_route(&tried, &cands, HEALTHY, 8, 0)), "b");
        // An unhealthy provider tried before is skipped; one never tried still goes last.
        let b_open: &dyn Fn(&str) -> bool = &|p| p == "b";
        assert_eq!(chosen(next_route(&tried, &cands, b_open, 8, 0)), "c");
    }

    #[test]
    fn the_attempts_budget_counts_visits_not_retries() {
        let a = route(0, "a", false);
        let mut tried = Vec::new();
        for _ in 0..3 {
            // Two brief retries and an acceptance: one visit.
            tried.push(refused(&a, Some(Pace::Brief), 0));
            tried.push(refused(&a, Some(Pace::Brief), 0));
            tried.push(failed(&a, "service_error", "x"));
        }
        assert_eq!(Visits::of(&tried).total, 3);
        assert_eq!(chosen(next_route(&tried, &[&a], HEALTHY, 4, 10_000)), "a");
        assert_eq!(chosen(next_route(&tried, &[&a], HEALTHY, 3, 10_000)), "give up: service_error");
    }

    #[test]
    fn when_nothing_is_left_the_task_fails_with_the_last_code_and_every_story() {
        let (a, b) = (route(0, "a", false), route(1, "b", false));
        let tried = [
            refused(&a, Some(Pace::Brief), 0),
            refused(&a, Some(Pace::Brief), 0),
            refused(&a, Some(Pace::Brief), 0),
            failed(&b, "generation_timeout", "b timed out"),
        ];
        match next_route(&tried, &[&a, &b], HEALTHY, 2, 10_000) {
            Next::GiveUp(f) => {
                assert_eq!(f.code, TaskErrorCode::GenerationTimeout);
                assert_eq!(f.message, "Every provider failed: a: 503 (x3); b: b timed out");
            }
            other => unreachable!("expected give up, got {other:?}"),
        }
        assert!(
            matches!(next_route(&[], &[], HEALTHY, 8, 0), Next::GiveUp(f) if f.code == TaskErrorCode::ServiceUnavailable)
        );
    }

    #[test]
    fn a_submit_refused_for_the_request_is_final_and_a_throttle_spares_the_breaker() {
        let refusal = Failure::new(TaskErrorCode::InvalidParameters, "bad");
        assert_eq!(after_submit(Err(ProviderError::Rejected(refusal.clone()))), AfterSubmit::Finish(refusal));
        let busy = after_submit(Err(ProviderError::Retry {
            pace: Pace::Throttled,
            code: TaskErrorCode::ResourceExhausted,
            message: "1303".to_owned(),
        }));
        assert_eq!(busy.breaker_outcome(), None);
        let down = after_submit(Err(ProviderError::next_route("401")));
        assert_eq!(
            down,
            AfterSubmit::Refused { retry: None, code: TaskErrorCode::ServiceError, message: "401".to_owned() }
        );
        assert_eq!(down.breaker_outcome(), Some(false));
        assert!(matches!(after_submit(Ok(Handle::default())), AfterSubmit::Accepted(_)));
    }

    #[test]
    fn a_client_side_failure_is_final_and_a_server_side_one_moves_on() {
        let grace = Duration::from_secs(120);
        let policy = Failure::new(TaskErrorCode::ContentPolicyViolation, "refused");
        assert_eq!(after_poll(Ok(Poll::Failed(policy.clone())), 0, 0, grace), AfterPoll::Finish(policy));
        let broke = Failure::new(TaskErrorCode::ServiceError, "broke");
        assert_eq!(after_poll(Ok(Poll::Failed(broke.clone())), 0, 0, grace), AfterPoll::NextRoute(broke));
        assert_eq!(
            after_poll(Ok(Poll::Running { progress: Some(40) }), 0, 0, grace),
            AfterPoll::PollAgain { progress: Some(40), answered: true }
        );
    }

    #[test]
    fn a_provider_silent_past_the_grace_is_given_up_on() {
        let grace = Duration::from_secs(120);
        let silence = || Err(ProviderError::next_route("connection refused"));
        assert_eq!(after_poll(silence(), 0, 120_000, grace), AfterPoll::PollAgain { progress: None, answered: false });
        match after_poll(silence(), 0, 120_001, grace) {
            AfterPoll::Abandon(f) => {
                assert_eq!(f.code, TaskErrorCode::ServiceUnavailable);
                assert!(f.message.contains("connection refused"), "{}", f.message);
            }
            other => unreachable!("expected abandon, got {other:?}"),
        }
        // An answer, even a slow one, is not silence.
        let running = Ok(Poll::Running { progress: None });
        assert_eq!(after_poll(running, 0, 999_999, grace), AfterPoll::PollAgain { progress: None, answered: true });
    }
}
