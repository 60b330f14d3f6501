//! Tasks: create (validate, price, hold, persist in one transaction), query, list
//! and cancel. No HTTP types here: handlers, workers, the CLI and tests share it.

pub mod cache;
mod view;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::Value;
use vidgate_api::catalog::ModelId;
use vidgate_api::create::{CreateTask, ImageSource, ParseOptions, parse_create};
use vidgate_api::error::ErrorCode;
use vidgate_api::task::{TaskList, TaskObject, TaskStatus};

use crate::error::ApiError;
use crate::files;
use crate::ids::{AccountId, FileId, KeyId, TaskId};
use crate::job::{ImageRef, StoredElement, StoredRequest};
use crate::state::AppState;
use crate::store::{AllowedModels, CancelOutcome, CreateOutcome, FileKind, Idempotency, NewTask};
use crate::util;
pub use view::{callback_for, task_object};

/// Who is asking: resolved from the API key by `http::auth`.
#[derive(Debug, Clone)]
pub struct Caller {
    pub key_id: KeyId,
    pub account_id: AccountId,
    pub allowed_models: AllowedModels,
    pub user_group: String,
}

/// The answer to a create: either a fresh task or the stored first response of an
/// idempotent retry (sent byte for byte).
#[derive(Debug)]
pub enum Created {
    New(Box<TaskObject>),
    Replay(String),
}

const IDEMPOTENCY_WINDOW_MS: i64 = 24 * 3600 * 1000;

/// Validates, prices and persists a new task with its credit hold.
#[tracing::instrument(skip_all, fields(account = %caller.account_id))]
pub async fn create(
    state: &AppState,
    caller: &Caller,
    body: &[u8],
    idempotency_key: Option<&str>,
) -> Result<Created, ApiError> {
    if let Some(key) = idempotency_key
        && (key.is_empty() || key.len() > 255)
    {
        return Err(ApiError::invalid("Idempotency-Key", "The Idempotency-Key header must be 1 to 255 characters."));
    }
    let json: Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::invalid("body", format!("The body is not valid JSON: {e}")))?;
    let opts = ParseOptions { allow_private_urls: state.config.allow_private_urls, trust_file_links: true };
    let input = parse_create(&json, &opts).map_err(|e| ApiError::invalid(e.param, e.message))?;

    let model = input.model.as_str();
    if !caller.allowed_models.allows(model) {
        return Err(ApiError::new(
            ErrorCode::ModelAccessDenied,
            format!("This API key may not use the model {model}."),
        )
        .with_param("model"));
    }
    if let Some(url) = &input.callback_url {
        state
            .guard
            .check_resolves_public(url)
            .await
            .map_err(|e| ApiError::invalid("callback_url", format!("The callback URL is not allowed: {e}.")))?;
    }
    let now = util::now_ms();
    let mut stored_files = Vec::new();
    let result = persist(state, caller, &input, body, idempotency_key, now, &mut stored_files).await;
    if !matches!(result, Ok(Created::New(_))) {
        // Nothing may be left half-written: drop the images stored for this attempt.
        for id in stored_files {
            files::discard(state, &id).await;
        }
    }
    result
}

async fn persist(
    state: &AppState,
    caller: &Caller,
    input: &CreateTask,
    body: &[u8],
    idempotency_key: Option<&str>,
    now: i64,
    stored_files: &mut Vec<FileId>,
) -> Result<Created, ApiError> {
    let deadline_at = now + state.config.task_deadline_secs.as_millis() as i64;
    let file_expiry = deadline_at + state.config.link_ttl_secs.as_millis() as i64;
    let mut images = ImageStore { state, caller, expires_at: file_expiry, stored: stored_files };
    let image_start = images.persist_image("image_start", input.image_start.as_ref()).await?;
    let image_end = images.persist_image("image_end", input.image_end.as_ref()).await?;
    let element = match &input.element {
        None => None,
        Some(e) => {
            let frontal =
                images.persist_image("model_params.element_image_list.frontal_image", Some(&e.frontal_image)).await?;
            let mut refer = Vec::with_capacity(e.refer_images.len());
            for (i, img) in e.refer_images.iter().enumerate() {
                let param = format!("model_params.element_image_list.refer_images[{i}].image_url");
                if let Some(r) = images.persist_image(&param, Some(img)).await? {
                    refer.push(r);
                }
            }
            frontal.map(|frontal_image| StoredElement {
                name: e.name.clone(),
                description: e.description.clone(),
                frontal_image,
                refer_images: refer,
            })
        }
    };
    let request = StoredRequest {
        model: input.model,
        prompt: input.prompt.clone(),
        negative_prompt: input.negative_prompt.clone(),
        image_start,
        image_end,
        duration: input.duration,
        quality: input.quality,
        sound: input.sound,
        aspect_ratio: input.aspect_ratio,
        multi_shot: input.multi_shot.clone(),
        element_ids: input.element_ids.clone(),
        watermark: input.watermark,
        element,
    };
    if !input.element_ids.is_empty() {
        let known = state.store.known_elements(&caller.account_id, &input.element_ids).await?;
        if let Some((i, _)) = input.element_ids.iter().enumerate().find(|(_, e)| !known.contains(*e)) {
            return Err(ApiError::invalid(
                format!("model_params.element_list[{i}].element_id"),
                "No element with this id was created by this account.",
            ));
        }
    }

    let price = input.price().units();
    let new = NewTask {
        id: TaskId::new(now),
        account_id: caller.account_id.clone(),
        key_id: caller.key_id.clone(),
        user_group: caller.user_group.clone(),
        model: input.model.as_str().to_owned(),
        request_json: serde_json::to_string(&request).map_err(ApiError::internal)?,
        credits_reserved: price,
        video_duration: i64::from(input.video_duration()),
        estimated_time: estimated_time(state, &request),
        callback_url: input.callback_url.clone(),
        created_at: now,
        created_us: util::monotonic_us(),
        deadline_at,
    };
    let object = view::new_task_object(&new);
    let response = serde_json::to_string(&object).map_err(ApiError::internal)?;
    let idem = idempotency_key.map(|key| Idempotency {
        key: key.to_owned(),
        body_hash: util::sha256_hex(body),
        not_before: now - IDEMPOTENCY_WINDOW_MS,
    });
    let ticket = state.task_cache.ticket(&new.id);
    match state.store.create_task(&new, idem.as_ref(), &response).await? {
        CreateOutcome::Created => {
            state.metrics.task_created(&new.model);
            state.task_cache.put(ticket, &new.account_id, &new.id, bytes::Bytes::from(response), false);
            state.wake.notify_one();
            Ok(Created::New(Box::new(object)))
        }
        CreateOutcome::Replay(stored) => Ok(Created::Replay(stored)),
        CreateOutcome::Conflict => Err(ApiError::new(
            ErrorCode::IdempotencyConflict,
            "This Idempotency-Key was already used with a different request body.",
        )
        .with_param("Idempotency-Key")),
        CreateOutcome::Refused(refusal) => Err(refusal.into()),
    }
}

/// Turns request images into references the task row can hold: inline bytes are
/// stored as files now (and remembered, so a failed create can remove them).
struct ImageStore<'a> {
    state: &'a AppState,
    caller: &'a Caller,
    expires_at: i64,
    stored: &'a mut Vec<FileId>,
}

impl ImageStore<'_> {
    async fn persist_image(&mut self, param: &str, src: Option<&ImageSource>) -> Result<Option<ImageRef>, ApiError> {
        match src {
            None => Ok(None),
            Some(ImageSource::Url(url)) => {
                let r = resolve_url(self.state, param, url)?;
                if let ImageRef::File(id) = &r {
                    match self.state.store.get_file(id).await? {
                        None => {
                            return Err(ApiError::invalid(
                                param,
                                "The uploaded file no longer exists; upload it again.",
                            ));
                        }
                        // A result link of ours names a video, not a frame.
                        Some(f) if !f.content_type.starts_with("image/") => {
                            return Err(ApiError::new(
                                ErrorCode::InvalidRequest,
                                "This link is not an image; give a JPG or PNG.",
                            )
                            .with_param(param));
                        }
                        Some(_) => {}
                    }
                }
                Ok(Some(r))
            }
            Some(ImageSource::Inline { bytes, info }) => {
                let mut file = files::new_file(
                    self.state,
                    FileId::new(),
                    Some(&self.caller.account_id),
                    FileKind::Input,
                    info.format.mime(),
                    bytes.len() as u64,
                );
                // Kept until the task's deadline has passed and its link would expire.
                file.expires_at = self.expires_at;
                files::keep(self.state, &file, bytes).await?;
                self.stored.push(file.id.clone());
                Ok(Some(ImageRef::File(file.id)))
            }
        }
    }
}

/// A URL naming one of our own file links is read from storage, never fetched.
fn resolve_url(state: &AppState, param: &str, url: &str) -> Result<ImageRef, ApiError> {
    if let Some(id) = state.blobs.own_link_id(url, util::now_ms() / 1000) {
        return Ok(ImageRef::File(id));
    }
    if vidgate_api::create::is_file_link(url) {
        // Shaped like ours but not signed by us (or expired): never fetch it.
        return Err(ApiError::invalid(param, "This file link is expired or invalid; upload the file again."));
    }
    Ok(ImageRef::Url(url.to_owned()))
}

/// Seconds a client should expect to wait (shown as `task_info.estimated_time`),
/// for the route that will serve first: the local renderer takes a few seconds
/// (about 0.2 s per second of 1080p video on two cores, plus start-up), an
/// upstream model minutes.
fn estimated_time(state: &AppState, request: &StoredRequest) -> i64 {
    let local = state.routing.candidates(request, None).first().is_none_or(|r| r.is_local());
    let seconds = i64::from(request.duration);
    match (request.model, local) {
        (ModelId::KlingCustomElement, true) => 1,
        (ModelId::KlingCustomElement, false) => 30,
        (_, true) => {
            let per = if request.quality.short_side() >= 1080 { 4 } else { 8 };
            2 + (seconds + per - 1) / per
        }
        (_, false) => {
            let per_sec = if request.quality.short_side() >= 1080 { 24 } else { 18 };
            30 + seconds * per_sec
        }
    }
}

pub async fn get(state: &AppState, caller: &Caller, id: &str) -> Result<TaskObject, ApiError> {
    let id = check_task_id(id)?;
    let row = state.store.get_task(&caller.account_id, &id).await?.ok_or_else(ApiError::task_not_found)?;
    view::task_object(&row)
}

/// True when the caller's account has a task with this id (no object is built).
pub async fn owns(state: &AppState, caller: &Caller, id: &str) -> Result<TaskId, ApiError> {
    let id = check_task_id(id)?;
    state.store.get_task(&caller.account_id, &id).await?.ok_or_else(ApiError::task_not_found)?;
    Ok(id)
}

/// The task object as JSON bytes, from the cache when fresh (the polling path).
pub async fn get_json(state: &AppState, caller: &Caller, id: &str) -> Result<bytes::Bytes, ApiError> {
    let id = check_task_id(id)?;
    let ticket = match state.task_cache.get(&caller.account_id, &id) {
        Ok(body) => return Ok(body),
        Err(ticket) => ticket,
    };
    let row = state.store.get_task(&caller.account_id, &id).await?.ok_or_else(ApiError::task_not_found)?;
    let task = view::task_object(&row)?;
    let body = bytes::Bytes::from(serde_json::to_vec(&task).map_err(ApiError::internal)?);
    state.task_cache.put(ticket, &caller.account_id, &id, body.clone(), task.status.is_final());
    Ok(body)
}

/// Query of `GET /v1/tasks`.
/// Query of `GET /v1/tasks`; values are read leniently here and checked in
/// `list`, so a bad one gets a 400 naming it.
#[derive(Debug, Default, serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Page size, 1..=100 (default 20).
    #[param(value_type = Option<i64>, minimum = 1, maximum = 100)]
    pub limit: Option<String>,
    /// `next_cursor` of the previous page.
    #[param(max_length = 512)]
    pub cursor: Option<String>,
    /// Only tasks in this status.
    #[param(value_type = Option<TaskStatus>)]
    pub status: Option<String>,
}

pub async fn list(state: &AppState, caller: &Caller, q: &ListQuery) -> Result<TaskList, ApiError> {
    let limit = match &q.limit {
        None => 20,
        Some(s) => match s.parse::<i64>() {
            Ok(n) if (1..=100).contains(&n) => n,
            _ => return Err(ApiError::invalid("limit", "limit must be an integer from 1 to 100.")),
        },
    };
    let status = match q.status.as_deref() {
        None | Some("") => None,
        Some(s) => match TaskStatus::parse(s) {
            Some(st) => Some(st),
            None => {
                return Err(ApiError::invalid(
                    "status",
                    "status must be one of pending, processing, completed, failed.",
                ));
            }
        },
    };
    let after = match q.cursor.as_deref() {
        None | Some("") => None,
        Some(c) => Some(decode_cursor(c).ok_or_else(|| ApiError::invalid("cursor", "The cursor is not valid."))?),
    };
    let rows = state
        .store
        .list_tasks(&caller.account_id, status, after.as_ref().map(|(t, id)| (*t, id.as_str())), limit + 1)
        .await?;
    let has_more = rows.len() as i64 > limit;
    let mut data = Vec::with_capacity(rows.len());
    for row in rows.iter().take(limit as usize) {
        data.push(view::task_object(row)?);
    }
    let next_cursor =
        if has_more { rows.get(limit as usize - 1).map(|r| encode_cursor(r.created_us, &r.id)) } else { None };
    Ok(TaskList { data, next_cursor })
}

/// The cursor of a page of tasks that ends with this one.
pub fn encode_cursor(created_us: i64, id: &TaskId) -> String {
    URL_SAFE_NO_PAD.encode(format!("{created_us}:{id}"))
}

pub fn decode_cursor(c: &str) -> Option<(i64, String)> {
    let raw = String::from_utf8(URL_SAFE_NO_PAD.decode(c).ok()?).ok()?;
    let (t, id) = raw.split_once(':')?;
    Some((t.parse().ok()?, id.to_owned()))
}

/// Cancels the caller's open task with a full refund. Work in progress stops on
/// its own: a worker's heartbeat, or the upstream poller's next lease renewal,
/// finds the task gone (the poller then cancels the upstream task too).
pub async fn cancel(state: &AppState, caller: &Caller, id: &str) -> Result<TaskObject, ApiError> {
    let id = check_task_id(id)?;
    match state.store.cancel_task(&caller.account_id, &id, &callback_for).await? {
        CancelOutcome::Cancelled(row) => {
            if row.callback_url.is_some() {
                state.webhooks.wake.notify_one();
            }
            state.metrics.task_finished(&row.model, "failed", "request_cancelled", 0);
            state.task_cache.forget(&row.id);
            view::task_object(&row)
        }
        CancelOutcome::NotCancellable(row) => Err(ApiError::invalid(
            "task_id",
            format!("The task is already {} and can no longer be cancelled.", row.status.as_str()),
        )),
        CancelOutcome::NotFound => Err(ApiError::task_not_found()),
    }
}

fn check_task_id(id: &str) -> Result<TaskId, ApiError> {
    TaskId::parse(id)
        .ok_or_else(|| ApiError::new(ErrorCode::InvalidTaskId, "The task id is malformed.").with_param("task_id"))
}
