//! Tasks: create (validate, price, hold, persist in one transaction), query, list
//! and cancel. No HTTP types here: handlers, workers, the CLI and tests share it.

pub mod cache;
mod view;

use std::collections::HashMap;
use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::Value;
use vidgate_api::catalog::{ModelSpec, Shape};
use vidgate_api::create::{CreateTask, MediaKind, MediaSource, ParseOptions};
use vidgate_api::error::ErrorCode;
use vidgate_api::task::{TaskList, TaskObject, TaskStatus};

use crate::error::ApiError;
use crate::ids::{FileId, TaskId};
use crate::job::{ImageRef, StoredRequest};
use crate::state::AppState;
use crate::store::{AuthKey, CancelOutcome, CreateOutcome, FileKind, FileRow, Idempotency, NewTask};
use crate::{files, media, util};
pub use view::{callback_for, task_object};

/// Who is asking: the API key `http::auth` resolved, shared with its cache
/// entry (a request reads the key's fields, such as `account_id`, through it
/// and copies nothing).
#[derive(Debug, Clone)]
pub struct Caller(Arc<AuthKey>);

impl Caller {
    pub fn new(key: Arc<AuthKey>) -> Self {
        Self(key)
    }
}

impl std::ops::Deref for Caller {
    type Target = AuthKey;

    fn deref(&self) -> &AuthKey {
        &self.0
    }
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
    let input = state.catalog.parse_create(&json, &opts).map_err(field_error)?;
    let spec = state
        .catalog
        .get(input.model.as_str())
        .ok_or_else(|| ApiError::invalid("model", "This model is not served."))?;
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
    let result = persist(state, caller, spec, input, body, idempotency_key, now, &mut stored_files).await;
    if !matches!(result, Ok(Created::New(_))) {
        // Nothing may be left half-written: drop the media stored for this attempt.
        for id in stored_files {
            files::discard(state, &id).await;
        }
    }
    result
}

/// A rejected field of the body: a 400 naming it (an unreadable image has its own code).
fn field_error(e: vidgate_api::error::FieldError) -> ApiError {
    ApiError::new(e.code, e.message).with_param(e.param)
}

#[expect(clippy::too_many_arguments, reason = "one create's whole context, passed once from `create`")]
async fn persist(
    state: &AppState,
    caller: &Caller,
    spec: &ModelSpec,
    input: CreateTask<MediaSource>,
    body: &[u8],
    idempotency_key: Option<&str>,
    now: i64,
    stored_files: &mut Vec<FileId>,
) -> Result<Created, ApiError> {
    let deadline_at = now + state.config.task_deadline_secs.as_millis() as i64;
    let file_expiry = deadline_at + state.config.link_ttl_secs.as_millis() as i64;
    let (mut refs, videos) = store_media(state, caller, spec, &input, file_expiry, stored_files).await?;
    let request: StoredRequest = input
        .try_map_media(|_, param, _| refs.remove(param).ok_or(param.to_owned()))
        .map_err(|param| ApiError::internal(anyhow::anyhow!("medium {param} was not stored")))?;
    if !request.element_ids.is_empty() {
        let known = state.store.known_elements(&caller.account_id, &request.element_ids).await?;
        if let Some((i, _)) = request.element_ids.iter().enumerate().find(|(_, e)| !known.contains(*e)) {
            return Err(ApiError::invalid(
                format!("model_params.element_list[{i}].element_id"),
                "No element with this id was created by this account.",
            ));
        }
    }
    let candidates = state.routing.candidates(&request, None);
    if !candidates.is_empty() && candidates.iter().all(|r| r.is_local()) {
        // Only the built-in renderer can serve this: it must be able to read the video.
        for (param, probed) in &videos {
            if let Err(e) = probed.info.video.check_decodable() {
                return Err(ApiError::invalid(param.as_str(), format!("{e}. Give an H.264 video (8-bit 4:2:0).")));
            }
        }
    }
    let input_ms = videos.first().map(|(_, p)| p.info.duration_ms);
    let price = spec.hold_price(&request, input_ms).ok_or_else(|| {
        ApiError::invalid(
            "quality",
            format!("{} is not made at {} with sound {}.", spec.id, request.quality.as_str(), request.sound.as_str()),
        )
    })?;
    let video_seconds = spec.video_seconds(&request, input_ms);
    let new = NewTask {
        id: TaskId::new(now),
        account_id: caller.account_id.clone(),
        key_id: caller.key_id.clone(),
        user_group: caller.user_group.clone(),
        model: request.model.as_str().to_owned(),
        request_json: serde_json::to_string(&request).map_err(ApiError::internal)?,
        credits_reserved: price.units(),
        video_duration: i64::from(video_seconds),
        estimated_time: estimated_time(spec, &request, video_seconds, candidates.first().is_none_or(|r| r.is_local())),
        callback_url: request.callback_url.clone(),
        created_at: now,
        created_us: util::monotonic_us(),
        deadline_at,
    };
    let object = view::new_task_object(&new, spec.pricing.rule());
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

/// Every medium of a request as the task row keeps it: inline images and videos
/// become stored files (videos fetched, probed and checked against the model
/// now), our own links their files, other image URLs stay URLs for the worker.
/// Answers the references by request field, and the probed videos.
async fn store_media(
    state: &AppState,
    caller: &Caller,
    spec: &ModelSpec,
    input: &CreateTask<MediaSource>,
    file_expiry: i64,
    stored_files: &mut Vec<FileId>,
) -> Result<(HashMap<String, ImageRef>, Vec<(String, media::Probed)>), ApiError> {
    let mut refs: HashMap<String, ImageRef> = HashMap::new();
    let mut videos: Vec<(String, media::Probed)> = Vec::new();
    for (kind, param, source) in input.media() {
        let r = match (kind, source) {
            (MediaKind::Image, MediaSource::Inline { bytes, info }) => {
                let mut file = files::new_file(
                    state,
                    FileId::new(),
                    Some(&caller.account_id),
                    FileKind::Input,
                    info.format.mime(),
                    bytes.len() as u64,
                );
                file.expires_at = file_expiry;
                files::keep(state, &file, bytes).await?;
                stored_files.push(file.id.clone());
                ImageRef::File(file.id)
            }
            (MediaKind::Image, MediaSource::Url(url)) => match own_file(state, &param, url).await? {
                Some(file) if file.content_type.starts_with("image/") => ImageRef::File(file.id),
                Some(_) => {
                    return Err(ApiError::invalid(param, "This link is not an image; give a JPG or PNG."));
                }
                None => ImageRef::Url(url.clone()),
            },
            (MediaKind::Video, source) => {
                let url = match source {
                    MediaSource::Url(url) => url,
                    MediaSource::Inline { .. } => {
                        return Err(ApiError::invalid(param, "A video must be given as a URL or an uploaded file."));
                    }
                };
                let probed = match own_file(state, &param, url).await? {
                    Some(file) => media::probe_stored(state, &param, file).await?,
                    None => {
                        let max =
                            spec.video_limits(input, &param).map_or(state.catalog.max_video_bytes(), |l| l.max_bytes);
                        let p = media::fetch_video(state, &caller.account_id, &param, url, max, file_expiry).await?;
                        stored_files.push(p.file.id.clone());
                        p
                    }
                };
                spec.check_video(input, &param, &probed.facts).map_err(field_error)?;
                let r = ImageRef::File(probed.file.id.clone());
                videos.push((param.clone(), probed));
                r
            }
        };
        refs.insert(param, r);
    }
    Ok((refs, videos))
}

/// The stored file a URL names when it is one of our own signed links (read
/// from storage, never fetched); `None` for any other URL.
async fn own_file(state: &AppState, param: &str, url: &str) -> Result<Option<FileRow>, ApiError> {
    if let Some(id) = state.blobs.own_link_id(url, util::now_ms() / 1000) {
        return match state.store.get_file(&id).await? {
            Some(file) => Ok(Some(file)),
            None => Err(ApiError::invalid(param, "The uploaded file no longer exists; upload it again.")),
        };
    }
    if vidgate_api::addr::is_file_link(url) {
        // Shaped like ours but not signed by us (or expired): never fetch it.
        return Err(ApiError::invalid(param, "This file link is expired or invalid; upload the file again."));
    }
    Ok(None)
}

/// Seconds a client should expect to wait (shown as `task_info.estimated_time`),
/// for the route that will serve first: the local renderer takes a few seconds
/// (about 0.2 s per second of 1080p video on two cores, plus start-up, more with
/// an input video to decode), an upstream model minutes.
fn estimated_time(spec: &ModelSpec, request: &StoredRequest, seconds: u32, local: bool) -> i64 {
    let seconds = i64::from(seconds);
    let high = request.quality.short_side() >= 1080;
    let with_video = request.input_videos().next().is_some();
    match (spec.shape, local) {
        (Shape::CustomElement, true) => 1,
        (Shape::CustomElement, false) => 30,
        (_, true) => {
            let per = if with_video {
                1
            } else if high {
                4
            } else {
                8
            };
            2 + (seconds + per - 1) / per
        }
        (_, false) => 30 + seconds * if high { 24 } else { 18 },
    }
}

pub async fn get(state: &AppState, caller: &Caller, id: &str) -> Result<TaskObject, ApiError> {
    let id = check_task_id(id)?;
    let row = state.store.get_task(&caller.account_id, &id).await?.ok_or_else(ApiError::task_not_found)?;
    view::task_object(&row, &state.catalog)
}

/// True when the caller's account has a task with this id (no object is built).
pub async fn owns(state: &AppState, caller: &Caller, id: &str) -> Result<TaskId, ApiError> {
    let id = check_task_id(id)?;
    state.store.get_task(&caller.account_id, &id).await?.ok_or_else(ApiError::task_not_found)?;
    Ok(id)
}

/// The task object as JSON bytes, from the cache when fresh (the polling path).
pub async fn get_json(state: &AppState, caller: &Caller, id: String) -> Result<bytes::Bytes, ApiError> {
    let id = TaskId::parse_owned(id).ok_or_else(malformed_task_id)?;
    let ticket = match state.task_cache.get(&caller.account_id, &id) {
        Ok(body) => return Ok(body),
        Err(ticket) => ticket,
    };
    let row = state.store.get_task(&caller.account_id, &id).await?.ok_or_else(ApiError::task_not_found)?;
    let task = view::task_object(&row, &state.catalog)?;
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
        data.push(view::task_object(row, &state.catalog)?);
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
    match state.store.cancel_task(&caller.account_id, &id, &|row| callback_for(&state.catalog, row)).await? {
        CancelOutcome::Cancelled(row) => {
            if row.callback_url.is_some() {
                state.webhooks.wake.notify_one();
            }
            let secs = (util::now_ms() - row.created_at) as f64 / 1000.0;
            state.metrics.task_finished(&row.model, row.provider.as_deref(), "failed", "request_cancelled", 0, secs);
            state.task_cache.forget(&row.id);
            view::task_object(&row, &state.catalog)
        }
        CancelOutcome::NotCancellable(row) => Err(ApiError::invalid(
            "task_id",
            format!("The task is already {} and can no longer be cancelled.", row.status.as_str()),
        )),
        CancelOutcome::NotFound => Err(ApiError::task_not_found()),
    }
}

fn check_task_id(id: &str) -> Result<TaskId, ApiError> {
    TaskId::parse(id).ok_or_else(malformed_task_id)
}

fn malformed_task_id() -> ApiError {
    ApiError::new(ErrorCode::InvalidTaskId, "The task id is malformed.").with_param("task_id")
}
