//! Workers: claim one task with a lease, run it to its end, settle it. The lease is
//! the lock: no transaction is held across work, a heartbeat extends the lease and
//! raises progress, and only the lease holder can finish the task, so a task whose
//! worker died (even `kill -9`) is taken over after its lease and settled once.
//! A task runs either here (`local`: the built-in renderer) or upstream
//! (`remote`: submitted, then held and polled by this process's `poller`);
//! `failover` decides where it goes next, `settle` ends it.

pub mod failover;
mod janitor;
mod local;
pub mod poller;
mod remote;
mod settle;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tracing::Instrument;
use vidgate_api::task::TaskErrorCode;

pub use janitor::{run_janitor, sweep};
pub use poller::run_poller;
pub use remote::poll_delay;

use crate::ids::{LeaseOwner, TaskId};
use crate::job::StoredRequest;
use crate::providers::Failure;
use crate::state::AppState;
use crate::util;

/// What one `try_execute_one` did.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    Done,
    Empty,
}

/// Runs `n` workers until `shutdown` fires; each finishes the task in hand first.
pub fn spawn_workers(state: &AppState, n: usize, shutdown: CancellationToken) -> Vec<tokio::task::JoinHandle<()>> {
    (0..n)
        .map(|i| {
            let state = state.clone();
            let shutdown = shutdown.clone();
            let owner = LeaseOwner::named(&format!("w{i}"));
            tokio::spawn(async move { worker_loop(state, owner, shutdown).await })
        })
        .collect()
}

async fn worker_loop(state: AppState, owner: LeaseOwner, shutdown: CancellationToken) {
    loop {
        if shutdown.is_cancelled() {
            return;
        }
        // Each step runs as its own task, so a bug that panics in one task's step
        // is logged and costs that step's lease, not the worker.
        let step = {
            let (state, owner, shutdown) = (state.clone(), owner.clone(), shutdown.clone());
            tokio::spawn(async move { try_execute_one(&state, &owner, &shutdown).await })
        };
        match step.await {
            Ok(Ok(Outcome::Done)) => continue,
            Ok(Ok(Outcome::Empty)) => {}
            Ok(Err(e)) => tracing::error!(error = ?e, "worker step failed"),
            Err(e) => tracing::error!(error = %e, "worker step panicked"),
        }
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = state.wake.notified() => {}
            () = tokio::time::sleep(state.config.poll_interval_ms) => {}
        }
    }
}

/// When a lease taken now runs out, in ms.
fn lease_until(state: &AppState) -> i64 {
    util::now_ms() + state.config.lease_secs.as_millis() as i64
}

/// Claims one task and runs it to the end (or to losing it). On `shutdown` the work
/// in hand is dropped and the lease handed back, so the next worker (here after a
/// restart, or on another replica) starts the task at once.
pub async fn try_execute_one(
    state: &AppState,
    owner: &LeaseOwner,
    shutdown: &CancellationToken,
) -> anyhow::Result<Outcome> {
    let now = util::now_ms();
    let Some(task) = state.store.claim_task(owner, now, lease_until(state)).await? else {
        return Ok(Outcome::Empty);
    };
    let span = task_span(&task.id, task.provider.as_deref());
    execute(state, owner, shutdown, task, now).instrument(span).await
}

/// A span for the lines logged about one task: its id and, once known, its provider.
pub(crate) fn task_span(id: &TaskId, provider: Option<&str>) -> tracing::Span {
    tracing::info_span!("task", task_id = %id, provider = provider.unwrap_or(""))
}

/// Runs a claimed task (see `try_execute_one`).
async fn execute(
    state: &AppState,
    owner: &LeaseOwner,
    shutdown: &CancellationToken,
    task: crate::store::TaskRow,
    now: i64,
) -> anyhow::Result<Outcome> {
    state.task_cache.forget(&task.id);
    tracing::info!(task_id = %task.id, attempt = task.attempts, "claimed task");
    if now > task.deadline_at {
        settle::time_out(state, &task, owner).await?;
        return Ok(Outcome::Done);
    }
    let request: StoredRequest = match serde_json::from_str(&task.request) {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(error = %e, task_id = %task.id, "stored request is unreadable");
            let failure = Failure::new(TaskErrorCode::UnknownError, "The stored request could not be read.");
            settle::finish(state, &task, owner, Err(failure)).await?;
            return Ok(Outcome::Done);
        }
    };
    if remote::step(state, &task, owner, &request).await? == remote::Step::Done {
        return Ok(Outcome::Done);
    }
    let lost = Arc::new(AtomicBool::new(false));
    let progress = Arc::new(AtomicU32::new(0));
    let heartbeat = spawn_heartbeat(state, &task.id, owner, progress.clone(), lost.clone());
    let stopping = Arc::new(AtomicBool::new(false));
    let watcher = {
        let (shutdown, lost, stopping) = (shutdown.clone(), lost.clone(), stopping.clone());
        tokio::spawn(async move {
            shutdown.cancelled().await;
            stopping.store(true, Ordering::SeqCst);
            lost.store(true, Ordering::SeqCst);
        })
    };
    let ran = local::run(state, &task, &request, owner, progress, lost.clone()).await;
    heartbeat.abort();
    watcher.abort();
    if stopping.load(Ordering::SeqCst) || lost.load(Ordering::SeqCst) {
        if let Ok(settle::Output { file: Some(file), .. }) = &ran {
            crate::files::discard(state, &file.id).await;
        }
        if stopping.load(Ordering::SeqCst) {
            tracing::info!(task_id = %task.id, "shutting down: handing the task back");
            state.store.release_lease(&task.id, owner).await?;
        } else {
            tracing::info!(task_id = %task.id, "task was cancelled or taken over; dropping our work");
        }
        return Ok(Outcome::Done);
    }
    let result = match ran {
        Ok(output) => Ok(output),
        Err(local::Stop::Fail(failure)) => Err(failure),
        Err(local::Stop::StoreDown(why)) => {
            store_down(state, &task, owner, &why).await?;
            return Ok(Outcome::Done);
        }
    };
    settle::finish(state, &task, owner, result).await?;
    Ok(Outcome::Done)
}

fn spawn_heartbeat(
    state: &AppState,
    task_id: &TaskId,
    owner: &LeaseOwner,
    progress: Arc<AtomicU32>,
    lost: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<()> {
    let state = state.clone();
    let task_id = task_id.clone();
    let owner = owner.clone();
    let every = (state.config.lease_secs / 3).clamp(Duration::from_millis(200), Duration::from_secs(1));
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(every).await;
            let p = i64::from(progress.load(Ordering::Relaxed).min(99));
            let beat = state.store.heartbeat(&task_id, &owner, p, lease_until(&state)).await;
            state.task_cache.forget(&task_id);
            match beat {
                Ok(true) => {}
                Ok(false) => {
                    lost.store(true, Ordering::SeqCst);
                    return;
                }
                Err(e) => tracing::warn!(error = %e, %task_id, "heartbeat failed; will retry"),
            }
        }
    })
}

/// How long a task whose step met an unusable blob store waits before it is
/// claimed again.
const STORE_DOWN_RETRY_MS: i64 = 2000;

/// The blob store could not be used in a step: the task is not failed but goes
/// back to the queue, to be claimed again (here or on another replica) shortly.
async fn store_down(
    state: &AppState,
    task: &crate::store::TaskRow,
    owner: &LeaseOwner,
    why: &str,
) -> anyhow::Result<()> {
    tracing::warn!(task_id = %task.id, error = %why, "the blob store cannot be used; the task will be tried again");
    state.store.defer_task(&task.id, owner, util::now_ms() + STORE_DOWN_RETRY_MS).await?;
    state.task_cache.forget(&task.id);
    Ok(())
}

/// A failure of our own machinery while running a task: logged in full, shown to
/// the client as a plain service error.
fn service_error(e: impl std::fmt::Display) -> Failure {
    tracing::error!(error = %e, "task step failed");
    Failure::new(TaskErrorCode::ServiceError, "The service failed while running the task.")
}
