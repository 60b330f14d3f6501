//! One step of a task on a remote provider: submit it to the best route left, or
//! poll the attempt in flight. Submit errors move to the next route at once; a
//! server-side failure after acceptance resubmits to the next route (up to the
//! configured number of routes); a client-side failure is final. Once accepted
//! upstream, a task's lease goes to this process's poller (`poller.rs`), which
//! polls it when due without tying up a worker. The client sees one task,
//! charged once.

use std::time::Duration;

use vidgate_api::task::TaskErrorCode;

use super::{Images, Output, TaskFailure, finish, load_images, record_element};
use crate::providers::{Handle, Job, Poll, ProviderError};
use crate::routing::Route;
use crate::state::AppState;
use crate::store::{FileRow, TaskRow, UpstreamAttempt};
use crate::tasks::StoredRequest;
use crate::util;

/// Largest upstream video we copy into storage.
const MAX_RESULT_BYTES: usize = 512 * 1024 * 1024;

/// What the engine should do with a claimed task.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Step {
    /// Render it here, on this route.
    Local,
    /// Done for now (submitted and handed to the poller, re-routed or finished).
    Handled,
}

/// The wait before the next poll of an attempt `age_ms` old: an eighth of its
/// age, between the configured bounds, so it grows while a task runs long and
/// needs no state to survive a takeover.
pub fn poll_delay(config: &crate::config::Config, age_ms: i64) -> Duration {
    let min = config.upstream_poll_min;
    let max = config.upstream_poll_max.max(min);
    Duration::from_millis((age_ms.max(0) / 8) as u64).clamp(min, max)
}

pub(super) async fn step(
    state: &AppState,
    task: &TaskRow,
    owner: &str,
    request: &StoredRequest,
) -> anyhow::Result<Step> {
    let attempts = state.store.upstream_attempts(&task.id).await?;
    if attempts.iter().any(|a| a.status == "running") {
        // Taken over (after a restart, or from another replica): poll it now.
        hand_to_poller(state, task, owner, request, attempts, util::now_ms()).await?;
        return Ok(Step::Handled);
    }
    submit_next(state, task, owner, request, &attempts).await
}

/// Moves the task's lease to this process's poller, which polls it at `due`.
async fn hand_to_poller(
    state: &AppState,
    task: &TaskRow,
    owner: &str,
    request: &StoredRequest,
    attempts: Vec<UpstreamAttempt>,
    due: i64,
) -> anyhow::Result<()> {
    let poller = &state.poller;
    let until = util::now_ms() + state.config.lease.as_millis() as i64;
    let progress = task.progress.max(5);
    if !state.store.transfer_lease(&task.id, owner, &poller.owner, until, progress).await? {
        // Cancelled meanwhile: nothing to poll.
        return Ok(());
    }
    state.task_cache.forget(&task.id);
    let task = TaskRow { progress, ..task.clone() };
    poller.hold(super::poller::Held::new(task, request.clone(), attempts), due);
    Ok(())
}

/// The provider the request's elements pin it to, with their ids there; an
/// element lives on the provider that made it.
struct Pin {
    provider: Option<String>,
    refs: Vec<String>,
}

async fn pinned_provider(state: &AppState, request: &StoredRequest) -> anyhow::Result<Result<Pin, TaskFailure>> {
    if request.element_ids.is_empty() {
        return Ok(Ok(Pin { provider: None, refs: Vec::new() }));
    }
    let elements = state.store.get_elements(&request.element_ids).await?;
    let Some(first) = elements.first() else {
        return Ok(Err(TaskFailure::new(TaskErrorCode::InvalidParameters, "The named elements no longer exist.")));
    };
    if elements.iter().any(|e| e.provider != first.provider) {
        return Ok(Err(TaskFailure::new(
            TaskErrorCode::InvalidParameters,
            "The named elements were made on different providers and cannot be used together.",
        )));
    }
    let refs = elements.iter().filter_map(|e| e.upstream_id.clone()).collect();
    Ok(Ok(Pin { provider: Some(first.provider.clone()), refs }))
}

/// The whole story of a task's attempts, for its final error.
fn story(attempts: &[UpstreamAttempt]) -> String {
    attempts
        .iter()
        .map(|a| format!("{}: {}", a.provider, a.error_message.as_deref().unwrap_or(&a.status)))
        .collect::<Vec<_>>()
        .join("; ")
}

async fn submit_next(
    state: &AppState,
    task: &TaskRow,
    owner: &str,
    request: &StoredRequest,
    attempts: &[UpstreamAttempt],
) -> anyhow::Result<Step> {
    let mut attempts = attempts.to_vec();
    let pin = match pinned_provider(state, request).await? {
        Ok(pin) => pin,
        Err(f) => {
            finish(state, task, owner, Err(f)).await?;
            return Ok(Step::Handled);
        }
    };
    let candidates: Vec<Route> = state
        .routing
        .candidates(request, pin.provider.as_deref())
        .into_iter()
        .filter(|r| !attempts.iter().any(|a| a.route_index == r.index as i64))
        .cloned()
        .collect();
    // The request's images, loaded once for however many routes are tried.
    let mut images: Option<Images> = None;
    for route in candidates {
        if attempts.len() >= state.routing.max_routes {
            break;
        }
        if route.is_local() {
            return Ok(Step::Local);
        }
        // Never pay an upstream for a task that was cancelled (or taken over)
        // while we held it: the poller learns of a cancel only at its next renewal.
        if !state.store.holds_lease(&task.id, owner).await? {
            return Ok(Step::Handled);
        }
        let Some(client) = route.client.clone() else { continue };
        let loaded = match images.take() {
            Some(i) => i,
            None => match load_images(state, request).await {
                Ok(i) => i,
                Err(f) => {
                    finish(state, task, owner, Err(f)).await?;
                    return Ok(Step::Handled);
                }
            },
        };
        let loaded = images.insert(loaded);
        let job = Job {
            request,
            upstream_model: &route.upstream_model,
            start_image: loaded.start.as_deref(),
            end_image: loaded.end.as_deref(),
            element_images: &loaded.element,
            element_refs: &pin.refs,
        };
        let seq = attempts.len() as i64 + 1;
        let mut attempt = UpstreamAttempt {
            id: format!("att-{}", util::random_lower_alnum(16)),
            task_id: task.id.clone(),
            seq,
            route_index: route.index as i64,
            provider: route.provider.clone(),
            upstream_model: route.upstream_model.clone(),
            upstream_id: None,
            handle: None,
            status: "running".to_owned(),
            error_code: None,
            error_message: None,
            polls: 0,
            cost_micro_usd: 0,
            created_at: util::now_ms(),
            finished_at: None,
        };
        match client.submit(&job).await {
            Ok(handle) => {
                state.routing.record(&route.provider, true);
                attempt.upstream_id = Some(handle.id.clone());
                attempt.handle = Some(serde_json::to_string(&handle)?);
                state.store.insert_upstream_attempt(&attempt).await?;
                state.store.set_provider(&task.id, owner, &route.provider).await?;
                tracing::info!(task_id = %task.id, provider = %route.provider, upstream_id = %handle.id, "submitted upstream");
                attempts.push(attempt);
                let due = util::now_ms() + poll_delay(&state.config, 0).as_millis() as i64;
                hand_to_poller(state, task, owner, request, attempts, due).await?;
                return Ok(Step::Handled);
            }
            Err(ProviderError::Transient(msg)) => {
                state.routing.record(&route.provider, false);
                tracing::warn!(task_id = %task.id, provider = %route.provider, error = %msg, "submit failed; trying the next route");
                attempt.status = "error".to_owned();
                attempt.error_code = Some("service_unavailable".to_owned());
                attempt.error_message = Some(msg);
                attempt.finished_at = Some(util::now_ms());
                state.store.insert_upstream_attempt(&attempt).await?;
                attempts.push(attempt);
            }
            Err(ProviderError::Rejected { code, message }) => {
                state.routing.record(&route.provider, true);
                attempt.status = "failed".to_owned();
                attempt.error_code = Some(code.as_str().to_owned());
                attempt.error_message = Some(message.clone());
                attempt.finished_at = Some(util::now_ms());
                state.store.insert_upstream_attempt(&attempt).await?;
                finish(state, task, owner, Err(TaskFailure::new(code, message))).await?;
                return Ok(Step::Handled);
            }
        }
    }
    // No route left: fail with the last upstream's code, and every route's story.
    let last_code = attempts
        .iter()
        .rev()
        .find_map(|a| a.error_code.as_deref().and_then(TaskErrorCode::parse))
        .unwrap_or(TaskErrorCode::ServiceUnavailable);
    let message = if attempts.is_empty() {
        "No provider can serve this request right now.".to_owned()
    } else {
        format!("Every provider failed: {}", story(&attempts))
    };
    finish(state, task, owner, Err(TaskFailure::new(last_code, message))).await?;
    Ok(Step::Handled)
}

/// What one poll of a held task came to.
pub(super) enum Polled {
    /// Still running upstream: poll again later. `progress` is the upstream's, or
    /// a guess that rises with the polls.
    Running { progress: i64, age_ms: i64 },
    /// The attempt ended: the task finished, went to another route (and so to the
    /// poller again, or back to the workers for a local render), or was lost.
    Ended,
}

/// Polls the held task's running attempt once and acts on the answer.
pub(super) async fn poll(state: &AppState, held: &super::poller::Held, owner: &str) -> anyhow::Result<Polled> {
    let (task, request, attempts) = (&held.task, &held.request, &held.attempts[..]);
    let Some(active) = held.active() else { return Ok(Polled::Ended) };
    let polls = active.polls + held.unwritten_polls + 1;
    let route = state.routing.route(active.route_index as usize).cloned();
    let handle: Option<Handle> = active.handle.as_deref().and_then(|h| serde_json::from_str(h).ok());
    let (Some(route), Some(handle)) = (route, handle) else {
        // The route is gone from the configuration: treat the attempt as lost.
        let why = "the route is no longer configured";
        return ended(state, reroute(state, task, owner, request, active, attempts, why).await?, task, owner).await;
    };
    let Some(client) = route.client.clone() else {
        let why = "the route is no longer remote";
        return ended(state, reroute(state, task, owner, request, active, attempts, why).await?, task, owner).await;
    };
    let polled = {
        let _slot = match state.routing.poll_slots(&route.provider) {
            Some(s) => Some(s.acquire_owned().await?),
            None => None,
        };
        client.poll(&handle).await
    };
    let age_ms = util::now_ms() - active.created_at;
    if !matches!(polled, Ok(Poll::Running { .. }) | Err(ProviderError::Transient(_))) {
        state.store.add_polls(&active.id, held.unwritten_polls + 1).await?;
    }
    let step = match polled {
        Ok(Poll::Running { progress }) => {
            let guess = (10 + polls * 5).min(90);
            let progress = progress.map(i64::from).unwrap_or(guess).clamp(5, 95);
            return Ok(Polled::Running { progress, age_ms });
        }
        Err(ProviderError::Transient(msg)) => {
            // A poll that failed says little about the task: poll again later (the
            // task deadline bounds how long).
            tracing::warn!(task_id = %task.id, provider = %route.provider, error = %msg, "poll failed; will poll again");
            state.routing.record(&route.provider, false);
            return Ok(Polled::Running { progress: 0, age_ms });
        }
        Ok(Poll::Succeeded { video_url }) => {
            state.routing.record(&route.provider, true);
            match keep_result(state, task, &video_url).await {
                Ok(file) => {
                    let cost = route.cost_for(request);
                    state.store.end_upstream_attempt(&active.id, "succeeded", None, cost).await?;
                    state.store.set_task_cost(&task.id, owner, cost).await?;
                    finish(state, task, owner, Ok(Output { file: Some(file), data: None })).await?;
                    Step::Handled
                }
                Err(msg) => reroute(state, task, owner, request, active, attempts, &msg).await?,
            }
        }
        Ok(Poll::Element { element_id }) => {
            state.routing.record(&route.provider, true);
            // The frontal image, when we stored it, stays with the element.
            let element = request.element.as_ref();
            let frontal = match element.map(|e| &e.frontal_image) {
                Some(crate::tasks::ImageRef::File(id)) => Some(id.clone()),
                _ => None,
            };
            let data = record_element(state, task, element, &route.provider, Some(element_id), frontal).await?;
            state.store.end_upstream_attempt(&active.id, "succeeded", None, 0).await?;
            finish(state, task, owner, Ok(Output { file: None, data: Some(data) })).await?;
            Step::Handled
        }
        Ok(Poll::Failed { code, message }) | Err(ProviderError::Rejected { code, message }) => {
            if code.is_client_side() {
                state.routing.record(&route.provider, true);
                state.store.end_upstream_attempt(&active.id, "failed", Some((code.as_str(), &message)), 0).await?;
                finish(state, task, owner, Err(TaskFailure::new(code, message))).await?;
                Step::Handled
            } else {
                state.routing.record(&route.provider, false);
                state.store.end_upstream_attempt(&active.id, "failed", Some((code.as_str(), &message)), 0).await?;
                let mut done = attempts.to_vec();
                if let Some(a) = done.iter_mut().find(|a| a.id == active.id) {
                    a.status = "failed".to_owned();
                    a.error_code = Some(code.as_str().to_owned());
                    a.error_message = Some(message);
                }
                submit_next(state, task, owner, request, &done).await?
            }
        }
    };
    ended(state, step, task, owner).await
}

/// After an attempt ended: if the next route is the local renderer, the poller
/// cannot render, so the task goes back to the workers at once.
async fn ended(state: &AppState, step: Step, task: &TaskRow, owner: &str) -> anyhow::Result<Polled> {
    if step == Step::Local && state.store.release_lease(&task.id, owner).await? {
        state.wake.notify_one();
    }
    Ok(Polled::Ended)
}

async fn reroute(
    state: &AppState,
    task: &TaskRow,
    owner: &str,
    request: &StoredRequest,
    active: &UpstreamAttempt,
    attempts: &[UpstreamAttempt],
    why: &str,
) -> anyhow::Result<Step> {
    state.store.end_upstream_attempt(&active.id, "failed", Some(("service_error", why)), 0).await?;
    let mut done = attempts.to_vec();
    if let Some(a) = done.iter_mut().find(|a| a.id == active.id) {
        a.status = "failed".to_owned();
        a.error_code = Some("service_error".to_owned());
        a.error_message = Some(why.to_owned());
    }
    submit_next(state, task, owner, request, &done).await
}

/// Copies the upstream's video into our storage (through the guarded client: the
/// URL came from the upstream), so the client's link never points upstream.
async fn keep_result(state: &AppState, task: &TaskRow, url: &str) -> Result<FileRow, String> {
    let bytes =
        state.guard.fetch(url, MAX_RESULT_BYTES).await.map_err(|e| format!("could not fetch the result: {e}"))?;
    if bytes.is_empty() {
        return Err("the upstream result is empty".to_owned());
    }
    // An MP4 opens with its `ftyp` box; anything else (an error page, an expired
    // link's body) is not the video.
    if bytes.get(4..8) != Some(b"ftyp".as_slice()) {
        return Err("the upstream result is not an MP4 video".to_owned());
    }
    let id = crate::blobs::Blobs::new_id();
    state.blobs.put(&id, &bytes).await.map_err(|e| format!("could not store the result: {e}"))?;
    let now = util::now_ms();
    let file = FileRow {
        id,
        account_id: Some(task.account_id.clone()),
        kind: "result".to_owned(),
        content_type: "video/mp4".to_owned(),
        bytes: bytes.len() as i64,
        created_at: now,
        expires_at: now + state.config.link_ttl.as_millis() as i64,
    };
    state.store.insert_file(&file).await.map_err(|e| format!("could not record the result: {e}"))?;
    Ok(file)
}

/// After a client's cancel: ends the task's running attempt and asks its provider
/// to stop. Failures only cost upstream money, never the client's.
pub async fn cancel_upstream(state: AppState, task_id: String) {
    let Ok(attempts) = state.store.upstream_attempts(&task_id).await else { return };
    for a in attempts.iter().filter(|a| a.status == "running") {
        let _ = state
            .store
            .end_upstream_attempt(&a.id, "failed", Some(("request_cancelled", "cancelled by the client")), 0)
            .await;
        let handle: Option<Handle> = a.handle.as_deref().and_then(|h| serde_json::from_str(h).ok());
        let client = state.routing.route(a.route_index as usize).and_then(|r| r.client.clone());
        if let (Some(handle), Some(client)) = (handle, client)
            && let Err(e) = client.cancel(&handle).await
        {
            tracing::warn!(task_id, provider = %a.provider, error = %e, "upstream cancel failed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_poll_interval_grows_with_the_attempts_age_within_its_bounds() {
        let c = crate::config::Config::default();
        assert_eq!((c.upstream_poll_min, c.upstream_poll_max), (Duration::from_secs(2), Duration::from_secs(30)));
        assert_eq!(poll_delay(&c, 0), Duration::from_secs(2));
        assert_eq!(poll_delay(&c, 16_000), Duration::from_secs(2));
        assert_eq!(poll_delay(&c, 80_000), Duration::from_secs(10));
        assert_eq!(poll_delay(&c, 240_000), Duration::from_secs(30));
        assert_eq!(poll_delay(&c, 3_600_000), Duration::from_secs(30));
        assert_eq!(poll_delay(&c, -5), Duration::from_secs(2), "a clock step back is not a negative wait");
    }
}
