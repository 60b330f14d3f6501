//! Ending a task: the final state, its settlement and its callback are written in
//! one transaction by the lease holder; a result made for a task that is no
//! longer ours (cancelled, or taken over) is discarded.

use vidgate_api::task::TaskErrorCode;

use crate::ids::LeaseOwner;
use crate::providers::Failure;
use crate::state::AppState;
use crate::store::{FileRow, Finish, TaskRow};

/// What a finished run produced: a stored result file (videos) and/or data, and
/// how long the video is (models billed by their output are charged on it).
#[derive(Debug)]
pub(super) struct Output {
    pub file: Option<FileRow>,
    pub data: Option<serde_json::Value>,
    pub video_ms: Option<u64>,
}

/// What a completed task is charged, when its model bills the output rather than
/// what was held: the output's seconds (rounded) priced, never above the hold.
/// `None` charges the whole hold.
fn charge(state: &AppState, task: &TaskRow, video_ms: Option<u64>) -> Option<i64> {
    let spec = state.catalog.get(&task.model)?;
    let request: crate::job::StoredRequest = serde_json::from_str(&task.request).ok()?;
    let held = u32::try_from(task.video_duration).ok()?;
    let seconds = spec.settle_seconds(held, Some(video_ms?));
    let price = spec.price(request.quality, request.sound, seconds)?.units();
    (price < task.credits_reserved).then_some(price)
}

pub(super) type RunResult = Result<Output, Failure>;

pub(super) async fn finish(
    state: &AppState,
    task: &TaskRow,
    owner: &LeaseOwner,
    result: RunResult,
) -> anyhow::Result<()> {
    let (finish, file_id) = match result {
        Ok(Output { file, data, video_ms }) => {
            let charge = charge(state, task, video_ms);
            let results: Vec<String> =
                file.iter().map(|f| state.blobs.signed_url(&f.id, f.expires_at / 1000)).collect();
            (
                Finish::Completed {
                    results_json: serde_json::to_string(&results)?,
                    result_data_json: data.map(|d| d.to_string()),
                    charge,
                },
                file.map(|f| f.id),
            )
        }
        Err(failure) => (Finish::Failed { code: failure.code, message: failure.message }, None),
    };
    let finished = state
        .store
        .finish_task(&task.id, Some(owner), &finish, &|row| crate::tasks::callback_for(&state.catalog, row))
        .await?;
    state.task_cache.forget(&task.id);
    match finished {
        Some(done) => {
            if done.callback_url.is_some() {
                state.webhooks.wake.notify_one();
            }
            let code = done.error_code.as_deref().unwrap_or("");
            let secs = (done.finished_at.unwrap_or_else(crate::util::now_ms) - done.created_at) as f64 / 1000.0;
            let (provider, charged) = (done.provider.as_deref(), done.credits_charged.unwrap_or(0));
            state.metrics.task_finished(&done.model, provider, done.status.as_str(), code, charged, secs);
            tracing::info!(task_id = %done.id, status = %done.status.as_str(), code, "task finished");
        }
        None => {
            // Cancelled or taken over meanwhile: our result is not the task's.
            if let Some(id) = file_id {
                crate::files::discard(state, &id).await;
            }
        }
    }
    Ok(())
}

/// Fails a task past its deadline with a full refund; an upstream attempt still
/// running is told to stop (and costs us no more).
pub(super) async fn time_out(state: &AppState, task: &TaskRow, owner: &LeaseOwner) -> anyhow::Result<()> {
    let failure = Failure::new(TaskErrorCode::GenerationTimeout, "The task did not finish before its deadline.");
    finish(state, task, owner, Err(failure)).await?;
    state
        .routing
        .cancel_running(&state.store, &task.id, TaskErrorCode::GenerationTimeout, "past the task deadline")
        .await;
    Ok(())
}
