//! The upstream poller: one per process, it holds the leases of every task that
//! runs on a remote provider and polls each when it is due. Between polls a task
//! costs nothing: its lease is renewed with all the others in one statement, its
//! poll count and progress live in memory and reach the database only when they
//! change enough to matter, so the steady state of many long upstream tasks is
//! one HTTP poll each and no write. If the process dies, the leases run out and
//! any worker (here after a restart, or on another replica) takes the tasks over;
//! on a clean stop they are handed back at once. Each held task remembers when
//! its provider last answered, so one that stops answering is given up on after
//! the grace (`failover::after_poll`) instead of waiting for the task's deadline.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tokio::sync::Notify;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use vidgate_api::task::TaskErrorCode;

use super::remote;
use super::settle::time_out;
use crate::ids::{LeaseOwner, TaskId};
use crate::job::StoredRequest;
use crate::state::AppState;
use crate::store::{AttemptStatus, TaskRow, UpstreamAttempt};
use crate::util;

/// Progress is written when it has risen by this much since the last write.
const PROGRESS_STEP: i64 = 10;

/// A task the poller holds.
#[derive(Debug, Clone)]
pub struct Held {
    pub task: TaskRow,
    pub request: StoredRequest,
    /// Every attempt so far; the last running one is polled.
    pub attempts: Vec<UpstreamAttempt>,
    /// Polls since they were last written.
    pub unwritten_polls: i64,
    /// When the provider last gave a usable answer about the attempt, in ms
    /// (when it was put here, at first: a takeover starts the grace again).
    pub last_answer_ms: i64,
    due: i64,
    /// When it was (last) put here, in ms.
    since: i64,
}

impl Held {
    /// `task.progress` is taken as the progress last written.
    pub fn new(task: TaskRow, request: StoredRequest, attempts: Vec<UpstreamAttempt>) -> Self {
        Self { task, request, attempts, unwritten_polls: 0, last_answer_ms: util::now_ms(), due: 0, since: 0 }
    }

    pub fn active(&self) -> Option<&UpstreamAttempt> {
        self.attempts.iter().rev().find(|a| a.status == AttemptStatus::Running)
    }
}

/// The held tasks and when each is next due (a heap entry is stale when its
/// task was dropped or held again since).
#[derive(Default)]
struct DueQueue {
    held: HashMap<TaskId, Held>,
    due: BinaryHeap<Reverse<(i64, TaskId)>>,
}

pub struct Poller {
    /// The lease owner of every task held here.
    pub owner: LeaseOwner,
    book: Mutex<DueQueue>,
    wake: Notify,
}

impl Default for Poller {
    fn default() -> Self {
        Self::new()
    }
}

impl Poller {
    pub fn new() -> Self {
        Self { owner: LeaseOwner::named("poller"), book: Mutex::new(DueQueue::default()), wake: Notify::new() }
    }

    /// Takes a task (whose lease is already ours) to poll at `due` (ms).
    pub fn hold(&self, mut held: Held, due: i64) {
        held.due = due;
        held.since = util::now_ms();
        if let Ok(mut book) = self.book.lock() {
            book.due.push(Reverse((due, held.task.id.clone())));
            book.held.insert(held.task.id.clone(), held);
        }
        self.wake.notify_one();
    }

    /// How many tasks are held here.
    pub fn held_count(&self) -> usize {
        self.book.lock().map(|b| b.held.len()).unwrap_or(0)
    }

    /// Removes and returns the tasks due by `now`.
    fn take_due(&self, now: i64) -> Vec<Held> {
        let Ok(mut book) = self.book.lock() else { return Vec::new() };
        let mut out = Vec::new();
        while let Some(Reverse((due, _))) = book.due.peek() {
            if *due > now {
                break;
            }
            let Some(Reverse((due, id))) = book.due.pop() else { break };
            // A heap entry is stale when its task was dropped or held again since.
            if book.held.get(&id).is_some_and(|h| h.due == due)
                && let Some(h) = book.held.remove(&id)
            {
                out.push(h);
            }
        }
        out
    }

    fn next_due(&self) -> Option<i64> {
        self.book.lock().ok()?.due.peek().map(|Reverse((due, _))| *due)
    }

    /// Keeps only the tasks whose leases a renewal that started at `renewed_at`
    /// found ours, and those put here since (their lease was moved to us after
    /// the renewal read the table); answers the tasks dropped.
    fn retain(&self, ours: &HashSet<TaskId>, renewed_at: i64) -> Vec<TaskId> {
        let mut dropped = Vec::new();
        if let Ok(mut book) = self.book.lock() {
            book.held.retain(|id, h| {
                let keep = ours.contains(id) || h.since >= renewed_at;
                if !keep {
                    dropped.push(id.clone());
                }
                keep
            });
            if book.due.len() > 2 * book.held.len() + 1024 {
                let held = &book.held;
                let fresh: BinaryHeap<_> =
                    held.values().map(|h| Reverse((h.due, h.task.id.clone()))).collect::<Vec<_>>().into();
                book.due = fresh;
            }
        }
        dropped
    }
}

/// Polls the held tasks until `shutdown`, then hands their leases back.
pub async fn run_poller(state: AppState, shutdown: CancellationToken) {
    let poller = &state.poller;
    let renew_every = (state.config.lease_secs / 3).max(Duration::from_millis(100));
    let mut next_renew = Instant::now() + renew_every;
    let mut jobs = JoinSet::new();
    loop {
        while jobs.try_join_next().is_some() {}
        for held in poller.take_due(util::now_ms()) {
            let span = super::task_span(&held.task.id, held.active().map(|a| a.provider.as_str()));
            jobs.spawn(poll_one(state.clone(), held).instrument(span));
        }
        if Instant::now() >= next_renew {
            renew(&state).await;
            next_renew = Instant::now() + renew_every;
        }
        let until_due = poller.next_due().map_or(1000, |d| d - util::now_ms()).clamp(1, 1000);
        let wait = Duration::from_millis(until_due as u64).min(next_renew.saturating_duration_since(Instant::now()));
        tokio::select! {
            () = shutdown.cancelled() => break,
            () = poller.wake.notified() => {}
            () = tokio::time::sleep(wait) => {}
        }
    }
    // Let the polls in flight land, then give every lease back.
    let _ = tokio::time::timeout(Duration::from_secs(5), async { while jobs.join_next().await.is_some() {} }).await;
    jobs.abort_all();
    match state.store.release_leases(&poller.owner).await {
        Ok(n) if n > 0 => tracing::info!(tasks = n, "shutting down: handed the upstream tasks back"),
        Ok(_) => {}
        Err(e) => tracing::warn!(error = %e, "could not hand the upstream tasks back; their leases will run out"),
    }
}

/// Extends every lease we hold in one statement and drops the tasks that are no
/// longer ours: cancelled by their owner (their upstream work is stopped), or
/// taken over after a stall (the new holder polls them on).
async fn renew(state: &AppState) {
    let started = util::now_ms();
    let until = started + state.config.lease_secs.as_millis() as i64;
    let dropped = match state.store.renew_leases(&state.poller.owner, until).await {
        Ok(ids) => state.poller.retain(&ids.into_iter().collect(), started),
        Err(e) => {
            tracing::warn!(error = %e, "renewing the upstream leases failed; will retry");
            return;
        }
    };
    for id in dropped {
        if let Ok(Some(task)) = state.store.get_task_any(&id).await
            && task.is_final()
        {
            let why = "the task ended without it";
            let state = state.clone();
            tokio::spawn(async move {
                state.routing.cancel_running(&state.store, &task.id, TaskErrorCode::RequestCancelled, why).await;
            });
        }
    }
}

async fn poll_one(state: AppState, mut held: Held) {
    let owner = state.poller.owner.clone();
    let now = util::now_ms();
    if now > held.task.deadline_at {
        if let Some(a) = held.active() {
            let _ = state.store.add_polls(&a.id, held.unwritten_polls).await;
        }
        if let Err(e) = time_out(&state, &held.task, &owner).await {
            tracing::warn!(error = ?e, task_id = %held.task.id, "could not time the task out; will retry");
            state.poller.hold(held, now + 1000);
        }
        return;
    }
    match remote::poll(&state, &held, &owner).await {
        Ok(remote::Polled::Running { progress, age_ms, answered }) => {
            held.unwritten_polls += 1;
            if answered {
                held.last_answer_ms = util::now_ms();
            }
            if progress >= held.task.progress + PROGRESS_STEP {
                let lease_until = util::now_ms() + state.config.lease_secs.as_millis() as i64;
                match state.store.heartbeat(&held.task.id, &owner, progress, lease_until).await {
                    Ok(true) => {
                        held.task.progress = progress;
                        state.task_cache.forget(&held.task.id);
                        if let Some(a) = held.active()
                            && state.store.add_polls(&a.id, held.unwritten_polls).await.is_ok()
                        {
                            held.unwritten_polls = 0;
                        }
                    }
                    // Cancelled, or taken over: no longer ours to poll.
                    Ok(false) => return,
                    Err(e) => tracing::warn!(error = %e, task_id = %held.task.id, "progress write failed"),
                }
            }
            let next = util::now_ms() + remote::poll_delay(&state.config, age_ms).as_millis() as i64;
            state.poller.hold(held, next);
        }
        Ok(remote::Polled::Ended) => {}
        Err(e) => {
            // A database error: keep the task and try again shortly.
            tracing::warn!(error = ?e, task_id = %held.task.id, "upstream poll step failed; will retry");
            state.poller.hold(held, util::now_ms() + 1000);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn held(id: &str) -> Held {
        let task = TaskRow { id: TaskId::from_raw(id), ..TaskRow::default() };
        let request: StoredRequest =
            serde_json::from_value(serde_json::json!({"model": "kling-v3-text-to-video", "prompt": null,
                "negative_prompt": null, "image_start": null, "image_end": null, "duration": 5,
                "quality": "720p", "sound": "off", "aspect_ratio": "16:9", "multi_shot": null,
                "element_ids": [], "watermark": false, "element": null}))
            .unwrap();
        Held::new(task, request, Vec::new())
    }

    #[test]
    fn tasks_come_due_in_order_and_a_rescheduled_task_only_once() {
        let p = Poller::new();
        p.hold(held("b"), 20);
        p.hold(held("a"), 10);
        p.hold(held("c"), 30);
        // Re-held later: its first heap entry is stale.
        p.hold(held("a"), 25);
        assert_eq!(p.next_due(), Some(10));
        assert!(p.take_due(9).is_empty());
        let ids = |v: Vec<Held>| v.into_iter().map(|h| h.task.id.to_string()).collect::<Vec<_>>();
        assert_eq!(ids(p.take_due(26)), ["b", "a"]);
        assert_eq!(p.held_count(), 1);
        assert!(p.retain(&HashSet::new(), 0).is_empty());
        assert_eq!(p.held_count(), 1, "a task put here after the renewal began is kept");
        assert_eq!(p.retain(&HashSet::new(), util::now_ms() + 1), [TaskId::from_raw("c")]);
        assert!(p.take_due(100).is_empty(), "a task that is no longer ours is dropped");
        assert_eq!(p.held_count(), 0);
    }
}
