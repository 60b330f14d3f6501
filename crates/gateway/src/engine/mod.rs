//! Workers: claim one task with a lease, run it to its end, settle it. The lease is
//! the lock: no transaction is held across work, a heartbeat extends the lease and
//! raises progress, and only the lease holder can finish the task, so a task whose
//! worker died (even `kill -9`) is taken over after its lease and settled once.

mod janitor;
pub mod poller;
pub mod upstream;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use vidgate_api::catalog::ModelId;
use vidgate_api::image::{check_image_rules, sniff_image};
use vidgate_api::task::TaskErrorCode;

pub use janitor::run_janitor;
pub use poller::run_poller;

use crate::providers::local;
use crate::state::AppState;
use crate::store::{ElementRow, FileRow, Finish, TaskRow};
use crate::tasks::{ImageRef, StoredElement, StoredRequest};
use crate::util;

/// What one `try_execute_one` did.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    Done,
    Empty,
}

/// A task-level failure with its SPEC error code and a message for the client.
#[derive(Debug)]
pub struct TaskFailure {
    pub code: TaskErrorCode,
    pub message: String,
}

impl TaskFailure {
    pub fn new(code: TaskErrorCode, message: impl Into<String>) -> Self {
        Self { code, message: message.into() }
    }
}

/// Runs `n` workers until `shutdown` fires; each finishes the task in hand first.
pub fn spawn_workers(state: &AppState, n: usize, shutdown: CancellationToken) -> Vec<tokio::task::JoinHandle<()>> {
    (0..n)
        .map(|i| {
            let state = state.clone();
            let shutdown = shutdown.clone();
            let owner = format!("w{i}-{}", util::random_lower_alnum(12));
            tokio::spawn(async move { worker_loop(state, owner, shutdown).await })
        })
        .collect()
}

async fn worker_loop(state: AppState, owner: String, shutdown: CancellationToken) {
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
            () = tokio::time::sleep(state.config.poll_interval) => {}
        }
    }
}

/// Claims one task and runs it to the end (or to losing it). On `shutdown` the work
/// in hand is dropped and the lease handed back, so the next worker (here after a
/// restart, or on another replica) starts the task at once.
pub async fn try_execute_one(state: &AppState, owner: &str, shutdown: &CancellationToken) -> anyhow::Result<Outcome> {
    let now = util::now_ms();
    let lease_ms = state.config.lease.as_millis() as i64;
    let Some(task) = state.store.claim_task(owner, now, now + lease_ms).await? else {
        return Ok(Outcome::Empty);
    };
    state.task_cache.forget(&task.id);
    tracing::info!(task_id = %task.id, attempt = task.attempts, "claimed task");
    if now > task.deadline_at {
        time_out(state, &task, owner).await?;
        return Ok(Outcome::Done);
    }
    let request: StoredRequest = match serde_json::from_str(&task.request) {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(error = %e, task_id = %task.id, "stored request is unreadable");
            let failure = TaskFailure::new(TaskErrorCode::UnknownError, "The stored request could not be read.");
            finish(state, &task, owner, Err(failure)).await?;
            return Ok(Outcome::Done);
        }
    };
    if let upstream::Step::Handled = upstream::step(state, &task, owner, &request).await? {
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
    let result = run(state, &task, &request, owner, progress, lost.clone()).await;
    heartbeat.abort();
    watcher.abort();
    if stopping.load(Ordering::SeqCst) {
        tracing::info!(task_id = %task.id, "shutting down: handing the task back");
        if let Ok(Output { file: Some(file), .. }) = &result {
            let _ = state.store.delete_file(&file.id).await;
            let _ = state.blobs.delete(&file.id).await;
        }
        state.store.release_lease(&task.id, owner).await?;
        return Ok(Outcome::Done);
    }
    if lost.load(Ordering::SeqCst) {
        tracing::info!(task_id = %task.id, "task was cancelled or taken over; dropping our work");
        if let Ok(Output { file: Some(file), .. }) = &result {
            let _ = state.store.delete_file(&file.id).await;
            let _ = state.blobs.delete(&file.id).await;
        }
        return Ok(Outcome::Done);
    }
    finish(state, &task, owner, result).await?;
    Ok(Outcome::Done)
}

/// Fails a task past its deadline with a full refund; an upstream attempt still
/// running is told to stop (and costs us no more).
async fn time_out(state: &AppState, task: &TaskRow, owner: &str) -> anyhow::Result<()> {
    let failure = TaskFailure::new(TaskErrorCode::GenerationTimeout, "The task did not finish before its deadline.");
    finish(state, task, owner, Err(failure)).await?;
    upstream::cancel_upstream(state.clone(), task.id.clone()).await;
    Ok(())
}

/// What a finished run produced: a stored result file (videos) and/or data.
#[derive(Debug)]
struct Output {
    file: Option<FileRow>,
    data: Option<serde_json::Value>,
}

type RunResult = Result<Output, TaskFailure>;

async fn finish(state: &AppState, task: &TaskRow, owner: &str, result: RunResult) -> anyhow::Result<()> {
    let (finish, file_id) = match result {
        Ok(Output { file, data }) => {
            let results: Vec<String> =
                file.iter().map(|f| state.blobs.signed_url(&f.id, f.expires_at / 1000)).collect();
            (
                Finish::Completed {
                    results_json: serde_json::to_string(&results)?,
                    result_data_json: data.map(|d| d.to_string()),
                },
                file.map(|f| f.id),
            )
        }
        Err(failure) => (Finish::Failed { code: failure.code.as_str().to_owned(), message: failure.message }, None),
    };
    let finished = state.store.finish_task(&task.id, Some(owner), &finish, &crate::webhooks::outbox_entry).await?;
    state.task_cache.forget(&task.id);
    match finished {
        Some(done) => {
            if done.callback_url.is_some() {
                state.webhooks.wake.notify_one();
            }
            let code = done.error_code.as_deref().unwrap_or("");
            state.metrics.task_finished(&done.model, &done.status, code, done.credits_charged.unwrap_or(0));
            tracing::info!(task_id = %done.id, status = %done.status, code, "task finished");
        }
        None => {
            // Cancelled or taken over meanwhile: our result is not the task's.
            if let Some(id) = file_id {
                let _ = state.store.delete_file(&id).await;
                let _ = state.blobs.delete(&id).await;
            }
        }
    }
    Ok(())
}

fn spawn_heartbeat(
    state: &AppState,
    task_id: &str,
    owner: &str,
    progress: Arc<AtomicU32>,
    lost: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<()> {
    let state = state.clone();
    let task_id = task_id.to_owned();
    let owner = owner.to_owned();
    let every = (state.config.lease / 3).clamp(Duration::from_millis(200), Duration::from_secs(1));
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(every).await;
            let lease_until = util::now_ms() + state.config.lease.as_millis() as i64;
            let p = i64::from(progress.load(Ordering::Relaxed).min(99));
            let beat = state.store.heartbeat(&task_id, &owner, p, lease_until).await;
            state.task_cache.forget(&task_id);
            match beat {
                Ok(true) => {}
                Ok(false) => {
                    lost.store(true, Ordering::SeqCst);
                    return;
                }
                Err(e) => tracing::warn!(error = %e, task_id, "heartbeat failed; will retry"),
            }
        }
    })
}

async fn run(
    state: &AppState,
    task: &TaskRow,
    request: &StoredRequest,
    owner: &str,
    progress: Arc<AtomicU32>,
    lost: Arc<AtomicBool>,
) -> RunResult {
    let _ = state.store.set_provider(&task.id, owner, "local").await;
    progress.store(2, Ordering::Relaxed);
    if request.model == ModelId::KlingCustomElement {
        return create_element(state, task, request).await;
    }
    let start = load_optional(state, "image_start", request.image_start.as_ref()).await?;
    let end = load_optional(state, "image_end", request.image_end.as_ref()).await?;
    let elements = state.store.get_elements(&request.element_ids).await.map_err(service_error)?;
    let mut element_images = Vec::new();
    for e in &elements {
        if let Some(id) = &e.frontal_file
            && let Ok(bytes) = state.blobs.read(id).await
        {
            element_images.push(bytes);
        }
    }
    progress.store(5, Ordering::Relaxed);
    let spec = local::video_spec(request, start, end, element_images);
    let file_id = crate::blobs::Blobs::new_id();
    let tmp = state.blobs.temp_path(&file_id).ok_or_else(|| service_error("bad file id"))?;
    let rendered = local::render_to_file(spec, tmp.clone(), progress, lost).await;
    match rendered {
        Ok(bytes) => {
            state.blobs.commit_temp(&file_id).await.map_err(service_error)?;
            let now = util::now_ms();
            let file = FileRow {
                id: file_id,
                account_id: Some(task.account_id.clone()),
                kind: "result".to_owned(),
                content_type: "video/mp4".to_owned(),
                bytes: bytes as i64,
                created_at: now,
                expires_at: now + state.config.link_ttl.as_millis() as i64,
            };
            state.store.insert_file(&file).await.map_err(service_error)?;
            Ok(Output { file: Some(file), data: None })
        }
        Err(failure) => {
            let _ = tokio::fs::remove_file(&tmp).await;
            Err(failure)
        }
    }
}

/// `kling-custom-element` on the local provider: the element is its frontal image.
async fn create_element(state: &AppState, task: &TaskRow, request: &StoredRequest) -> RunResult {
    let element = request
        .element
        .as_ref()
        .ok_or_else(|| TaskFailure::new(TaskErrorCode::InvalidParameters, "The element definition is missing."))?;
    // Every image is checked; the frontal one is kept.
    let images = load_images(state, request).await?;
    let frontal = images.element.first().map(Vec::as_slice).unwrap_or_default();
    let file_id = crate::blobs::Blobs::new_id();
    state.blobs.put(&file_id, frontal).await.map_err(service_error)?;
    let data = record_element(state, task, Some(element), "local", None, Some(file_id)).await.map_err(service_error)?;
    Ok(Output { file: None, data: Some(data) })
}

/// Records an element under our own `el-` id (a client never sees an upstream's)
/// and answers the task's `result_data`.
async fn record_element(
    state: &AppState,
    task: &TaskRow,
    element: Option<&StoredElement>,
    provider: &str,
    upstream_id: Option<String>,
    frontal_file: Option<String>,
) -> anyhow::Result<serde_json::Value> {
    let id = format!("el-{}", util::random_lower_alnum(16));
    state
        .store
        .insert_element(&ElementRow {
            id: id.clone(),
            account_id: task.account_id.clone(),
            task_id: task.id.clone(),
            provider: provider.to_owned(),
            upstream_id,
            name: element.map(|e| e.name.clone()).unwrap_or_default(),
            description: element.map(|e| e.description.clone()).unwrap_or_default(),
            frontal_file,
            created_at: util::now_ms(),
        })
        .await?;
    Ok(serde_json::json!({ "element_id": id }))
}

/// A request's images: start and end frames, and for an element its frontal
/// then reference images.
struct Images {
    start: Option<Vec<u8>>,
    end: Option<Vec<u8>>,
    element: Vec<Vec<u8>>,
}

async fn load_images(state: &AppState, request: &StoredRequest) -> Result<Images, TaskFailure> {
    let start = load_optional(state, "image_start", request.image_start.as_ref()).await?;
    let end = load_optional(state, "image_end", request.image_end.as_ref()).await?;
    let mut element = Vec::new();
    if let Some(e) = &request.element {
        element.push(load_image(state, "frontal_image", &e.frontal_image).await?);
        for (i, r) in e.refer_images.iter().enumerate() {
            element.push(load_image(state, &format!("refer_images[{i}]"), r).await?);
        }
    }
    Ok(Images { start, end, element })
}

async fn load_optional(state: &AppState, what: &str, r: Option<&ImageRef>) -> Result<Option<Vec<u8>>, TaskFailure> {
    match r {
        None => Ok(None),
        Some(r) => load_image(state, what, r).await.map(Some),
    }
}

/// Reads a request image from storage, or fetches it through the guarded client,
/// and checks it by content.
async fn load_image(state: &AppState, what: &str, r: &ImageRef) -> Result<Vec<u8>, TaskFailure> {
    let bytes = match r {
        ImageRef::File(id) => state.blobs.read(id).await.map_err(|_| {
            TaskFailure::new(TaskErrorCode::ImageProcessingError, format!("The {what} file is no longer available."))
        })?,
        ImageRef::Url(url) => state.guard.fetch(url, vidgate_api::image::MAX_IMAGE_BYTES).await.map_err(|e| {
            TaskFailure::new(TaskErrorCode::ImageProcessingError, format!("Could not fetch {what}: {e}."))
        })?,
    };
    let info = sniff_image(&bytes)
        .map_err(|e| TaskFailure::new(e.task_error_code(), format!("The {what} is not usable: {e}.")))?;
    check_image_rules(&info)
        .map_err(|e| TaskFailure::new(e.task_error_code(), format!("The {what} is not usable: {e}.")))?;
    Ok(bytes)
}

fn service_error(e: impl std::fmt::Display) -> TaskFailure {
    tracing::error!(error = %e, "task step failed");
    TaskFailure::new(TaskErrorCode::ServiceError, "The service failed while running the task.")
}
