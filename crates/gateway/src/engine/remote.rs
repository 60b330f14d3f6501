//! A task on a remote provider: submit it to the route `failover` picks, or act
//! on a poll of the attempt in flight. Once accepted upstream, a task's lease goes
//! to this process's poller (`poller.rs`), which polls it when due without tying
//! up a worker; a submit to retry later sends the task back to the queue with a
//! not-before time (its lease's end), so no worker ever sleeps on a backoff.
//! Every attempt is a row; the client sees one task, charged once; what we may
//! owe upstream (the route that delivered, and any upstream task we gave up on
//! while it may still run) is the task's cost in the margin report.

use std::time::Duration;

use vidgate_api::task::TaskErrorCode;

use super::failover::{self, AfterPoll, AfterSubmit};
use super::local::{Images, Stop, load_images, record_element};
use super::poller::Held;
use super::settle::{Output, finish};
use crate::files;
use crate::ids::{AttemptId, FileId, LeaseOwner};
use crate::job::{ImageRef, StoredRequest};
use crate::providers::{Failure, Handle, Job};
use crate::routing::Route;
use crate::state::AppState;
use crate::store::{AttemptEnd, AttemptStatus, FileKind, FileRow, TaskRow, UpstreamAttempt};
use crate::util;

/// Largest upstream video we copy into storage.
const MAX_RESULT_BYTES: u64 = 512 * 1024 * 1024;

/// What the worker should do with a claimed task.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Step {
    /// Render it here.
    RenderHere,
    /// Done for now (submitted and handed to the poller, re-routed or finished).
    Done,
}

/// The wait before the next poll of an attempt `age_ms` old: an eighth of its
/// age, between the configured bounds, so it grows while a task runs long and
/// needs no state to survive a takeover.
pub fn poll_delay(config: &crate::config::Config, age_ms: i64) -> Duration {
    let min = config.upstream_poll_min_ms;
    let max = config.upstream_poll_max_ms.max(min);
    Duration::from_millis((age_ms.max(0) / 8) as u64).clamp(min, max)
}

pub(super) async fn step(
    state: &AppState,
    task: &TaskRow,
    owner: &LeaseOwner,
    request: &StoredRequest,
) -> anyhow::Result<Step> {
    let attempts = state.store.upstream_attempts(&task.id).await?;
    if attempts.iter().any(|a| a.status == AttemptStatus::Running) {
        // Taken over (after a restart, or from another replica): poll it now.
        hand_to_poller(state, task, owner, request, attempts, util::now_ms()).await?;
        return Ok(Step::Done);
    }
    submit_next(state, task, owner, request, attempts).await
}

/// Moves the task's lease to this process's poller, which polls it at `due`.
async fn hand_to_poller(
    state: &AppState,
    task: &TaskRow,
    owner: &LeaseOwner,
    request: &StoredRequest,
    attempts: Vec<UpstreamAttempt>,
    due: i64,
) -> anyhow::Result<()> {
    let poller = &state.poller;
    let until = util::now_ms() + state.config.lease_secs.as_millis() as i64;
    let progress = task.progress.max(5);
    if !state.store.transfer_lease(&task.id, owner, &poller.owner, until, progress).await? {
        // The task ended meanwhile (cancelled by its owner): the upstream work
        // just started is not wanted.
        if state.store.get_task_any(&task.id).await?.is_some_and(|t| t.is_final()) {
            let why = "the task was cancelled";
            state.routing.cancel_running(&state.store, &task.id, TaskErrorCode::RequestCancelled, why).await;
        }
        return Ok(());
    }
    state.task_cache.forget(&task.id);
    let task = TaskRow { progress, ..task.clone() };
    poller.hold(Held::new(task, request.clone(), attempts), due);
    Ok(())
}

/// The provider the request's elements pin it to, with their ids there; an
/// element lives on the provider that made it.
struct ElementPin {
    provider: Option<String>,
    refs: Vec<String>,
}

async fn pinned_provider(state: &AppState, request: &StoredRequest) -> anyhow::Result<Result<ElementPin, Failure>> {
    if request.element_ids.is_empty() {
        return Ok(Ok(ElementPin { provider: None, refs: Vec::new() }));
    }
    let elements = state.store.get_elements(&request.element_ids).await?;
    let Some(first) = elements.first() else {
        return Ok(Err(Failure::new(TaskErrorCode::InvalidParameters, "The named elements no longer exist.")));
    };
    if elements.iter().any(|e| e.provider != first.provider) {
        return Ok(Err(Failure::new(
            TaskErrorCode::InvalidParameters,
            "The named elements were made on different providers and cannot be used together.",
        )));
    }
    let refs = elements.iter().filter_map(|e| e.upstream_id.clone()).collect();
    Ok(Ok(ElementPin { provider: Some(first.provider.clone()), refs }))
}

/// Submits the task to the next route `failover` picks, moving on while submits
/// fail for reasons that are not the request's, until one accepts it, the next
/// route is local, or none is left.
async fn submit_next(
    state: &AppState,
    task: &TaskRow,
    owner: &LeaseOwner,
    request: &StoredRequest,
    mut attempts: Vec<UpstreamAttempt>,
) -> anyhow::Result<Step> {
    let pin = match pinned_provider(state, request).await? {
        Ok(pin) => pin,
        Err(f) => {
            finish(state, task, owner, Err(f)).await?;
            return Ok(Step::Done);
        }
    };
    let candidates = state.routing.candidates(request, pin.provider.as_deref());
    let is_open = |provider: &str| state.routing.is_open(provider);
    // The request's images, loaded once for however many routes are tried.
    let mut images: Option<Images> = None;
    loop {
        let next = failover::next_route(&attempts, &candidates, &is_open, state.routing.max_attempts, util::now_ms());
        let route = match next {
            failover::Next::RenderLocally => return Ok(Step::RenderHere),
            failover::Next::GiveUp(failure) => {
                finish(state, task, owner, Err(failure)).await?;
                return Ok(Step::Done);
            }
            failover::Next::Wait { not_before } => {
                // Back to the queue until the retry is due: any worker (here, or
                // on another replica) takes it then.
                state.store.defer_task(&task.id, owner, not_before).await?;
                state.task_cache.forget(&task.id);
                return Ok(Step::Done);
            }
            failover::Next::Submit(route) => route,
        };
        // Never pay an upstream for a task that was cancelled (or taken over)
        // while we held it: the poller learns of a cancel only at its next renewal.
        if !state.store.holds_lease(&task.id, owner).await? {
            return Ok(Step::Done);
        }
        let Some(upstream) = route.upstream() else { return Ok(Step::RenderHere) };
        let Some(upstream_model) = route.upstream_model_for(request.quality) else {
            // Routing only offers routes that make this quality.
            return Ok(Step::RenderHere);
        };
        let loaded = match images.take() {
            Some(i) => i,
            None => match load_images(state, request).await {
                Ok(i) => i,
                Err(Stop::Fail(f)) => {
                    finish(state, task, owner, Err(f)).await?;
                    return Ok(Step::Done);
                }
                Err(Stop::StoreDown(why)) => {
                    super::store_down(state, task, owner, &why).await?;
                    return Ok(Step::Done);
                }
            },
        };
        let loaded = images.insert(loaded);
        let video_links = video_links(state, request);
        let job = Job {
            request,
            spec: &route.spec,
            seconds: u32::try_from(task.video_duration).unwrap_or(0),
            upstream_model,
            start_image: loaded.start.as_deref(),
            end_image: loaded.end.as_deref(),
            reference_images: &loaded.references,
            video_links: &video_links,
            element_images: &loaded.element,
            element_refs: &pin.refs,
        };
        let mut attempt = new_attempt(task, route, upstream_model, attempts.len());
        let started = std::time::Instant::now();
        let answer = upstream.submit(&job).await;
        let after = failover::after_submit(answer);
        let outcome = match &after {
            AfterSubmit::Accepted(_) => "accepted",
            AfterSubmit::Refused { .. } => "refused",
            AfterSubmit::Finish(_) => "failed",
        };
        state.metrics.upstream_submit(&route.provider, outcome, started.elapsed().as_secs_f64());
        if let Some(ok) = after.breaker_outcome() {
            state.routing.record(&route.provider, ok);
        }
        match after {
            AfterSubmit::Accepted(handle) => {
                attempt.upstream_id = Some(handle.id.clone());
                attempt.handle = Some(serde_json::to_string(&handle)?);
                state.store.insert_upstream_attempt(&attempt).await?;
                state.store.set_provider(&task.id, owner, &route.provider).await?;
                tracing::info!(task_id = %task.id, provider = %route.provider, upstream_id = %handle.id, "submitted upstream");
                attempts.push(attempt);
                let due = util::now_ms() + poll_delay(&state.config, 0).as_millis() as i64;
                hand_to_poller(state, task, owner, request, attempts, due).await?;
                return Ok(Step::Done);
            }
            AfterSubmit::Refused { retry, code, message } => {
                tracing::warn!(task_id = %task.id, provider = %route.provider, error = %message,
                    retry = retry.map_or("no", |p| p.as_str()), "submit refused");
                attempt.status = AttemptStatus::Error;
                attempt.error_code = Some(code.as_str().to_owned());
                attempt.error_message = Some(message);
                attempt.retry = retry.map(|p| p.as_str().to_owned());
                attempt.finished_at = Some(util::now_ms());
                state.store.insert_upstream_attempt(&attempt).await?;
                attempts.push(attempt);
            }
            AfterSubmit::Finish(failure) => {
                attempt.status = AttemptStatus::Failed;
                attempt.error_code = Some(failure.code.as_str().to_owned());
                attempt.error_message = Some(failure.message.clone());
                attempt.finished_at = Some(util::now_ms());
                state.store.insert_upstream_attempt(&attempt).await?;
                finish(state, task, owner, Err(failure)).await?;
                return Ok(Step::Done);
            }
        }
    }
}

/// Signed links to the request's stored input videos (and an element's reference
/// video), which an upstream fetches itself: videos are too big to send inline.
/// They last as long as any link we give; the upstream must reach `public_url`.
fn video_links(state: &AppState, request: &StoredRequest) -> Vec<String> {
    let expires = util::now_ms() / 1000 + state.config.link_ttl_secs.as_secs() as i64;
    let element_video = request.element.as_ref().and_then(|e| e.refer_video.as_ref());
    request
        .input_videos()
        .chain(element_video)
        .filter_map(ImageRef::file)
        .map(|id| state.blobs.signed_url(id, expires))
        .collect()
}

fn new_attempt(task: &TaskRow, route: &Route, upstream_model: &str, tried: usize) -> UpstreamAttempt {
    UpstreamAttempt {
        id: AttemptId::new(),
        task_id: task.id.clone(),
        seq: tried as i64 + 1,
        route_index: route.index as i64,
        provider: route.provider.clone(),
        upstream_model: upstream_model.to_owned(),
        upstream_id: None,
        handle: None,
        status: AttemptStatus::Running,
        error_code: None,
        error_message: None,
        polls: 0,
        cost_micro_usd: 0,
        created_at: util::now_ms(),
        finished_at: None,
        retry: None,
    }
}

/// What one poll of a held task came to.
pub(super) enum Polled {
    /// Still running upstream: poll again later. `progress` is the upstream's, or
    /// a guess that rises with the polls; `answered` says whether the provider
    /// gave a usable answer this time.
    Running { progress: i64, age_ms: i64, answered: bool },
    /// The attempt ended: the task finished, went to another route (and so to the
    /// poller again, or back to the workers for a local render), or was lost.
    Ended,
}

/// Polls the held task's running attempt once and acts on the answer.
pub(super) async fn poll(state: &AppState, held: &Held, owner: &LeaseOwner) -> anyhow::Result<Polled> {
    let (task, request) = (&held.task, &held.request);
    let Some(active) = held.active() else { return Ok(Polled::Ended) };
    let polls = active.polls + held.unwritten_polls + 1;
    let route = usize::try_from(active.route_index).ok().and_then(|i| state.routing.route(i)).cloned();
    let handle: Option<Handle> = active.handle.as_deref().and_then(|h| serde_json::from_str(h).ok());
    let (Some(route), Some(handle)) = (route, handle) else {
        let why = Failure::new(TaskErrorCode::ServiceError, "the route is no longer configured");
        return ended(state, reroute(state, held, owner, end_failed(why)).await?, task, owner).await;
    };
    let Some(upstream) = route.upstream().cloned() else {
        let why = Failure::new(TaskErrorCode::ServiceError, "the route is no longer remote");
        return ended(state, reroute(state, held, owner, end_failed(why)).await?, task, owner).await;
    };
    let upstream_id = handle.id.as_str();
    let answer = {
        let _slot = match state.routing.poll_slots(&route.provider) {
            Some(s) => Some(s.acquire_owned().await?),
            None => None,
        };
        let started = std::time::Instant::now();
        let answer = upstream.poll(&handle).await;
        state.metrics.upstream_poll(&route.provider, answer.is_ok(), started.elapsed().as_secs_f64());
        answer
    };
    if let Err(e) = &answer {
        // Bad input from an upstream (a truncated body, a wrong type, a status it
        // does not document) is told with who sent it.
        tracing::warn!(task_id = %task.id, provider = %route.provider, upstream_id, error = %e, "poll gave no answer");
    }
    let now = util::now_ms();
    let age_ms = now - active.created_at;
    let decision = failover::after_poll(answer, held.last_answer_ms, now, state.config.upstream_dead_grace_secs);
    if !matches!(decision, AfterPoll::PollAgain { .. }) {
        state.store.add_polls(&active.id, held.unwritten_polls + 1).await?;
    }
    let step = match decision {
        AfterPoll::PollAgain { progress, answered } => {
            state.routing.record(&route.provider, answered);
            let guess = (10 + polls * 5).min(90);
            let progress = if answered { progress.map(i64::from).unwrap_or(guess).clamp(5, 95) } else { 0 };
            return Ok(Polled::Running { progress, age_ms, answered });
        }
        AfterPoll::Complete { video_url } => {
            state.routing.record(&route.provider, true);
            match keep_result(state, task, &video_url).await {
                Ok((file, video_ms)) => {
                    let seconds = u32::try_from(task.video_duration).unwrap_or(0);
                    let cost = route.cost_for(request, seconds);
                    let end = AttemptEnd::Succeeded { cost_micro_usd: cost };
                    state.store.end_upstream_attempt(&active.id, &end).await?;
                    // What we owe upstream: this route, and any task we gave up on
                    // that may still have run (and been billed) elsewhere.
                    let abandoned: i64 = held
                        .attempts
                        .iter()
                        .filter(|a| a.status == AttemptStatus::Abandoned)
                        .map(|a| a.cost_micro_usd)
                        .sum();
                    state.store.set_task_cost(&task.id, owner, cost + abandoned).await?;
                    finish(state, task, owner, Ok(Output { file: Some(file), data: None, video_ms })).await?;
                    Step::Done
                }
                Err(Keep::StoreDown(why)) => {
                    // Nothing is wrong with the upstream's task: keep polling it
                    // (its result is fetched again) under the lease.
                    tracing::warn!(task_id = %task.id, provider = %route.provider, upstream_id, error = %why,
                        "could not store the upstream result; will try again");
                    return Ok(Polled::Running { progress: 95, age_ms, answered: true });
                }
                Err(Keep::Unusable(message)) => {
                    tracing::warn!(task_id = %task.id, provider = %route.provider, upstream_id, error = %message,
                        "the upstream result is unusable");
                    let why = Failure::new(TaskErrorCode::ServiceError, message);
                    reroute(state, held, owner, end_failed(why)).await?
                }
            }
        }
        AfterPoll::Element { element_id } => {
            state.routing.record(&route.provider, true);
            // The frontal image, when we stored it, stays with the element.
            let element = request.element.as_ref();
            let frontal = element.and_then(|e| e.frontal_image.as_ref()).and_then(ImageRef::file).cloned();
            let data = record_element(state, task, element, &route.provider, Some(element_id), frontal).await?;
            state.store.end_upstream_attempt(&active.id, &AttemptEnd::Succeeded { cost_micro_usd: 0 }).await?;
            finish(state, task, owner, Ok(Output { file: None, data: Some(data), video_ms: None })).await?;
            Step::Done
        }
        AfterPoll::Finish(failure) => {
            state.routing.record(&route.provider, true);
            let end = AttemptEnd::Failed { code: failure.code, message: failure.message.clone() };
            state.store.end_upstream_attempt(&active.id, &end).await?;
            finish(state, task, owner, Err(failure)).await?;
            Step::Done
        }
        AfterPoll::NextRoute(failure) => {
            tracing::warn!(task_id = %task.id, provider = %route.provider, upstream_id, error = %failure,
                "the upstream task failed; moving on");
            state.routing.record(&route.provider, false);
            reroute(state, held, owner, end_failed(failure)).await?
        }
        AfterPoll::Abandon(failure) => {
            tracing::warn!(task_id = %task.id, provider = %route.provider, upstream_id, error = %failure,
                "the provider stopped answering; giving up on its task and resubmitting");
            state.routing.record(&route.provider, false);
            // Stop it there if the API allows (the provider may well be down:
            // the attempt is ended first, the cancel is best effort).
            let (cancel_upstream, cancel_handle, id) = (upstream.clone(), handle.clone(), task.id.clone());
            tokio::spawn(async move {
                if let Err(e) = cancel_upstream.cancel(&cancel_handle).await {
                    tracing::info!(task_id = %id, upstream_id = %cancel_handle.id, error = %e, "cancel of an abandoned upstream task failed");
                }
            });
            let end = AttemptEnd::Abandoned {
                code: failure.code,
                message: failure.message,
                cost_micro_usd: route.cost_for(request, u32::try_from(task.video_duration).unwrap_or(0)),
            };
            reroute(state, held, owner, end).await?
        }
    };
    ended(state, step, task, owner).await
}

fn end_failed(why: Failure) -> AttemptEnd {
    AttemptEnd::Failed { code: why.code, message: why.message }
}

/// After an attempt ended: if the next route is the local renderer, the poller
/// cannot render, so the task goes back to the workers at once.
async fn ended(state: &AppState, step: Step, task: &TaskRow, owner: &LeaseOwner) -> anyhow::Result<Polled> {
    if step == Step::RenderHere && state.store.release_lease(&task.id, owner).await? {
        state.wake.notify_one();
    }
    Ok(Polled::Ended)
}

/// Ends the running attempt as `end` says and moves the task to the next route.
async fn reroute(state: &AppState, held: &Held, owner: &LeaseOwner, end: AttemptEnd) -> anyhow::Result<Step> {
    let mut attempts = held.attempts.clone();
    if let Some(active) = attempts.iter_mut().rev().find(|a| a.status == AttemptStatus::Running) {
        state.store.end_upstream_attempt(&active.id, &end).await?;
        let (status, code, message, cost) = match end {
            AttemptEnd::Succeeded { cost_micro_usd } => (AttemptStatus::Succeeded, None, None, cost_micro_usd),
            AttemptEnd::Failed { code, message } => (AttemptStatus::Failed, Some(code), Some(message), 0),
            AttemptEnd::Abandoned { code, message, cost_micro_usd } => {
                (AttemptStatus::Abandoned, Some(code), Some(message), cost_micro_usd)
            }
        };
        active.status = status;
        active.error_code = code.map(|c| c.as_str().to_owned());
        active.error_message = message;
        active.cost_micro_usd = cost;
        active.finished_at = Some(util::now_ms());
    }
    submit_next(state, &held.task, owner, &held.request, attempts).await
}

/// Copies the upstream's video into our storage (through the guarded client: the
/// URL came from the upstream), so the client's link never points upstream. The
/// download must be an MP4 a probe can read; anything else (an error page, an
/// expired link's body) fails this attempt.
async fn keep_result(state: &AppState, task: &TaskRow, url: &str) -> Result<(FileRow, Option<u64>), Keep> {
    let id = FileId::new();
    let tmp = state.blobs.temp_path(&id).ok_or_else(|| Keep::Unusable("bad file id".to_owned()))?;
    let fetched = async {
        // Streamed to a temporary file (never whole in memory), then probed there.
        let mut out = tokio::fs::File::create(&tmp).await.map_err(|e| Keep::StoreDown(e.to_string()))?;
        let bytes = state
            .guard
            .fetch_to(url, MAX_RESULT_BYTES, state.config.fetch_timeout_secs, &mut out)
            .await
            .map_err(|e| Keep::Unusable(format!("could not fetch the result: {e}")))?;
        drop(out);
        if bytes == 0 {
            return Err(Keep::Unusable("the upstream result is empty".to_owned()));
        }
        // An MP4 opens with its `ftyp` box; anything else (an error page, an expired
        // link's body) is not the video.
        let mut head = [0u8; 8];
        let n = {
            use tokio::io::AsyncReadExt;
            let mut f = tokio::fs::File::open(&tmp).await.map_err(|e| Keep::StoreDown(e.to_string()))?;
            f.read(&mut head).await.map_err(|e| Keep::StoreDown(e.to_string()))?
        };
        if head.get(4..8) != Some(b"ftyp".as_slice()) || n < 8 {
            return Err(Keep::Unusable("the upstream result is not an MP4 video".to_owned()));
        }
        let path = tmp.clone();
        let probed = tokio::task::spawn_blocking(move || vidgate_render::probe::probe_path(&path))
            .await
            .map_err(|e| Keep::Unusable(e.to_string()))?;
        let video_ms = probed
            .map_err(|e| Keep::Unusable(format!("the upstream result is not a readable video: {e}")))?
            .duration_ms;
        Ok((bytes, video_ms))
    }
    .await;
    let (bytes, video_ms) = match fetched {
        Ok(ok) => ok,
        Err(e) => {
            let _ = tokio::fs::remove_file(&tmp).await;
            return Err(e);
        }
    };
    if let Err(e) = state.blobs.commit_or_discard_temp(&id).await {
        return Err(Keep::StoreDown(e.to_string()));
    }
    let file = files::new_file(state, id, Some(&task.account_id), FileKind::Result, "video/mp4", bytes);
    if let Err(e) = state.store.insert_file(&file).await {
        files::discard(state, &file.id).await;
        return Err(Keep::StoreDown(format!("could not record the result: {e}")));
    }
    Ok((file, Some(video_ms)))
}

/// Why an upstream's result was not kept.
enum Keep {
    /// The download is not the video: this attempt failed.
    Unusable(String),
    /// It could not be stored just now: the result is fetched again at the next poll.
    StoreDown(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_poll_interval_grows_with_the_attempts_age_within_its_bounds() {
        let c = crate::config::Config::default();
        assert_eq!((c.upstream_poll_min_ms, c.upstream_poll_max_ms), (Duration::from_secs(2), Duration::from_secs(30)));
        assert_eq!(poll_delay(&c, 0), Duration::from_secs(2));
        assert_eq!(poll_delay(&c, 16_000), Duration::from_secs(2));
        assert_eq!(poll_delay(&c, 80_000), Duration::from_secs(10));
        assert_eq!(poll_delay(&c, 240_000), Duration::from_secs(30));
        assert_eq!(poll_delay(&c, 3_600_000), Duration::from_secs(30));
        assert_eq!(poll_delay(&c, -5), Duration::from_secs(2), "a clock step back is not a negative wait");
    }
}
