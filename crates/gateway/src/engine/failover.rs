//! The failover policy, as pure functions of what happened so far: which route a
//! task goes to next, and what a submit or a poll answer means for it. No IO
//! here; `remote` applies the decisions (database writes, calls upstream), so
//! the policy is tested on its own, route by route and answer by answer.

use vidgate_api::task::TaskErrorCode;

use crate::providers::{Failure, Handle, Poll, ProviderError};
use crate::routing::Route;
use crate::store::UpstreamAttempt;

/// Where a task goes next when no attempt of it is running.
#[derive(Debug)]
pub enum Next<'r> {
    /// Submit it to this route.
    Submit(&'r Route),
    /// The next route is the built-in renderer.
    RenderLocally,
    /// No route is left: fail with this.
    GiveUp(Failure),
}

/// The next route for a task that has made `attempts`: the first candidate (in
/// the order routing gave) not tried yet, while fewer than `max_routes` were
/// tried; else the task fails with the last upstream's code and every route's
/// story.
pub fn next_route<'r>(attempts: &[UpstreamAttempt], candidates: &[&'r Route], max_routes: usize) -> Next<'r> {
    if attempts.len() < max_routes
        && let Some(route) = candidates.iter().find(|r| !attempts.iter().any(|a| a.route_index == r.index as i64))
    {
        return if route.is_local() { Next::RenderLocally } else { Next::Submit(route) };
    }
    let last_code = attempts
        .iter()
        .rev()
        .find_map(|a| a.error_code.as_deref().and_then(TaskErrorCode::parse))
        .unwrap_or(TaskErrorCode::ServiceUnavailable);
    let message = if attempts.is_empty() {
        "No provider can serve this request right now.".to_owned()
    } else {
        format!("Every provider failed: {}", attempts_summary(attempts))
    };
    Next::GiveUp(Failure::new(last_code, message))
}

/// Each attempt's provider and error, for a task's final message.
pub fn attempts_summary(attempts: &[UpstreamAttempt]) -> String {
    attempts
        .iter()
        .map(|a| format!("{}: {}", a.provider, a.error_message.as_deref().unwrap_or(a.status.as_str())))
        .collect::<Vec<_>>()
        .join("; ")
}

/// What a submit's answer means.
#[derive(Debug, PartialEq, Eq)]
pub enum AfterSubmit {
    /// Accepted upstream: poll it.
    Accepted(Handle),
    /// Not the request's fault: try the next route (the provider's breaker
    /// counts it).
    NextRoute(String),
    /// The request itself was refused: the task fails with this.
    Finish(Failure),
}

pub fn after_submit(answer: Result<Handle, ProviderError>) -> AfterSubmit {
    match answer {
        Ok(handle) => AfterSubmit::Accepted(handle),
        Err(ProviderError::Transient(message)) => AfterSubmit::NextRoute(message),
        Err(ProviderError::Rejected(failure)) => AfterSubmit::Finish(failure),
    }
}

/// What a poll's answer means.
#[derive(Debug, PartialEq, Eq)]
pub enum AfterPoll {
    /// Still running (or the poll itself failed, which says little about the
    /// task): poll again later. `healthy` says whether the provider answered.
    PollAgain { progress: Option<u8>, healthy: bool },
    /// Done upstream: copy the video and complete the task.
    Complete { video_url: String },
    /// A custom element was made upstream.
    Element { element_id: String },
    /// A failure that is the request's own (content policy, invalid input): final.
    Finish(Failure),
    /// A server-side failure: the task moves to the next route.
    NextRoute(Failure),
}

pub fn after_poll(answer: Result<Poll, ProviderError>) -> AfterPoll {
    match answer {
        Ok(Poll::Running { progress }) => AfterPoll::PollAgain { progress, healthy: true },
        Err(ProviderError::Transient(_)) => AfterPoll::PollAgain { progress: None, healthy: false },
        Ok(Poll::Succeeded { video_url }) => AfterPoll::Complete { video_url },
        Ok(Poll::Element { element_id }) => AfterPoll::Element { element_id },
        Ok(Poll::Failed(failure)) | Err(ProviderError::Rejected(failure)) => {
            if failure.code.is_client_side() {
                AfterPoll::Finish(failure)
            } else {
                AfterPoll::NextRoute(failure)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::{AttemptId, TaskId};
    use crate::routing::{Backend, Supports};
    use crate::store::AttemptStatus;

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
            cost_micro_usd: [0; 5],
            supports: Supports::ALL,
            backend,
        }
    }

    fn failed(route: &Route, code: &str, message: &str) -> UpstreamAttempt {
        UpstreamAttempt {
            id: AttemptId::new(),
            task_id: TaskId::from_raw("t"),
            seq: 1,
            route_index: route.index as i64,
            provider: route.provider.clone(),
            upstream_model: "m".to_owned(),
            upstream_id: None,
            handle: None,
            status: AttemptStatus::Failed,
            error_code: Some(code.to_owned()),
            error_message: Some(message.to_owned()),
            polls: 0,
            cost_micro_usd: 0,
            created_at: 0,
            finished_at: Some(0),
        }
    }

    #[test]
    fn the_first_untried_candidate_is_next() {
        let (a, b) = (route(0, "a", false), route(1, "b", false));
        let candidates = [&b, &a];
        assert!(matches!(next_route(&[], &candidates, 3), Next::Submit(r) if r.provider == "b"));
        let tried = [failed(&b, "service_error", "down")];
        assert!(matches!(next_route(&tried, &candidates, 3), Next::Submit(r) if r.provider == "a"));
    }

    #[test]
    fn a_local_route_is_rendered_here() {
        let (a, l) = (route(0, "a", false), route(1, "local", true));
        let tried = [failed(&a, "service_error", "down")];
        assert!(matches!(next_route(&tried, &[&a, &l], 3), Next::RenderLocally));
    }

    #[test]
    fn when_routes_run_out_the_task_fails_with_the_last_code_and_every_story() {
        let (a, b) = (route(0, "a", false), route(1, "b", false));
        let tried = [failed(&a, "service_error", "a broke"), failed(&b, "generation_timeout", "b timed out")];
        match next_route(&tried, &[&a, &b], 3) {
            Next::GiveUp(f) => {
                assert_eq!(f.code, TaskErrorCode::GenerationTimeout);
                assert!(f.message.contains("a: a broke") && f.message.contains("b: b timed out"), "{}", f.message);
            }
            other => unreachable!("expected give up, got {other:?}"),
        }
    }

    #[test]
    fn the_route_budget_is_respected() {
        let (a, b) = (route(0, "a", false), route(1, "b", false));
        let tried = [failed(&a, "service_error", "down")];
        assert!(matches!(next_route(&tried, &[&a, &b], 1), Next::GiveUp(_)));
    }

    #[test]
    fn nothing_to_try_is_service_unavailable() {
        assert!(matches!(next_route(&[], &[], 3), Next::GiveUp(f) if f.code == TaskErrorCode::ServiceUnavailable));
    }

    #[test]
    fn a_submit_refused_for_the_request_is_final_and_anything_else_moves_on() {
        let refused = Failure::new(TaskErrorCode::InvalidParameters, "bad");
        assert_eq!(after_submit(Err(ProviderError::Rejected(refused.clone()))), AfterSubmit::Finish(refused));
        assert_eq!(after_submit(Err(ProviderError::transient("503"))), AfterSubmit::NextRoute("503".to_owned()));
        assert!(matches!(after_submit(Ok(Handle::default())), AfterSubmit::Accepted(_)));
    }

    #[test]
    fn a_client_side_failure_is_final_and_a_server_side_one_moves_on() {
        let policy = Failure::new(TaskErrorCode::ContentPolicyViolation, "refused");
        assert_eq!(after_poll(Ok(Poll::Failed(policy.clone()))), AfterPoll::Finish(policy));
        let broke = Failure::new(TaskErrorCode::ServiceError, "broke");
        assert_eq!(after_poll(Ok(Poll::Failed(broke.clone()))), AfterPoll::NextRoute(broke));
        assert_eq!(
            after_poll(Err(ProviderError::transient("timeout"))),
            AfterPoll::PollAgain { progress: None, healthy: false }
        );
        assert_eq!(
            after_poll(Ok(Poll::Running { progress: Some(40) })),
            AfterPoll::PollAgain { progress: Some(40), healthy: true }
        );
    }
}
