//! Input videos of a create request (video edit, reference, motion control,
//! video elements): fetched through the guarded client at create time, streamed
//! to storage (never whole in memory) under the model's size cap and a total time
//! limit, at most `FETCHES_PER_ACCOUNT` at once per account, then probed
//! (container, codec, duration, size, frame rate) so the model's documented
//! limits are checked before anything is held.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use vidgate_api::error::ErrorCode;
use vidgate_api::video::VideoFacts;
use vidgate_render::probe::{Container, MediaInfo, ProbeError};

use crate::error::ApiError;
use crate::files;
use crate::ids::{AccountId, FileId};
use crate::state::AppState;
use crate::store::{FileKind, FileRow};

/// Video fetches one account may run at once.
pub const FETCHES_PER_ACCOUNT: usize = 2;
/// The longest a create may spend fetching one video.
pub const FETCH_LIMIT: Duration = Duration::from_secs(120);

/// Fetches in flight per account, in this process.
#[derive(Debug, Default)]
pub struct FetchSlots {
    in_flight: Arc<Mutex<HashMap<AccountId, usize>>>,
}

/// One fetch slot; given back when dropped.
#[derive(Debug)]
pub struct FetchSlot {
    in_flight: Arc<Mutex<HashMap<AccountId, usize>>>,
    account: AccountId,
}

impl FetchSlots {
    /// A slot for `account`, or `None` when it already runs its share.
    pub fn take(&self, account: &AccountId) -> Option<FetchSlot> {
        let mut map = self.in_flight.lock().ok()?;
        let n = map.entry(account.clone()).or_insert(0);
        if *n >= FETCHES_PER_ACCOUNT {
            return None;
        }
        *n += 1;
        Some(FetchSlot { in_flight: self.in_flight.clone(), account: account.clone() })
    }
}

impl Drop for FetchSlot {
    fn drop(&mut self) {
        if let Ok(mut map) = self.in_flight.lock()
            && let Some(n) = map.get_mut(&self.account)
        {
            *n = n.saturating_sub(1);
            if *n == 0 {
                map.remove(&self.account);
            }
        }
    }
}

/// A stored input video and what its probe found.
#[derive(Debug, Clone)]
pub struct Probed {
    pub file: FileRow,
    pub info: MediaInfo,
    pub facts: VideoFacts,
}

/// The catalog's view of a probe.
pub fn facts(info: &MediaInfo, byte_len: u64) -> VideoFacts {
    let codec = match info.video.codec.as_str() {
        "avc1" | "avc3" => "h264".to_owned(),
        "hvc1" | "hev1" => "hevc".to_owned(),
        "av01" => "av1".to_owned(),
        "vp09" => "vp9".to_owned(),
        other => other.trim().to_ascii_lowercase(),
    };
    let (width, height) = info.video.display_size();
    VideoFacts {
        container: match info.container {
            Container::Mp4 => "mp4".to_owned(),
            Container::QuickTime => "mov".to_owned(),
        },
        video_codec: codec,
        duration_ms: info.duration_ms,
        width,
        height,
        fps_milli: (info.video.frame_rate * 1000.0).round().clamp(0.0, f64::from(u32::MAX)) as u32,
        has_audio: info.audio.is_some(),
        byte_len,
    }
}

fn probe_error(param: &str, e: &ProbeError) -> ApiError {
    ApiError::invalid(param, format!("The video cannot be read: {e}."))
}

async fn probe_file(path: std::path::PathBuf) -> Result<Result<MediaInfo, ProbeError>, ApiError> {
    tokio::task::spawn_blocking(move || vidgate_render::probe::probe_path(&path)).await.map_err(ApiError::internal)
}

/// Fetches the video at `url` for `param` into a new stored file of `account`
/// (kept until `expires_at`), at most `max_bytes`, and probes it. A failure is a
/// 400 naming `param` (429 when the account already fetches its share).
pub async fn fetch_video(
    state: &AppState,
    account: &AccountId,
    param: &str,
    url: &str,
    max_bytes: u64,
    expires_at: i64,
) -> Result<Probed, ApiError> {
    let _slot = state.fetches.take(account).ok_or_else(|| {
        ApiError::new(
            ErrorCode::RateLimitExceeded,
            format!("This account already fetches {FETCHES_PER_ACCOUNT} videos; try again when one is done."),
        )
        .with_param(param)
    })?;
    let id = FileId::new();
    let tmp = state.blobs.temp_path(&id).ok_or_else(|| ApiError::internal(anyhow::anyhow!("bad file id")))?;
    let fetched = async {
        let mut out = tokio::fs::File::create(&tmp).await?;
        let written = state.guard.fetch_to(url, max_bytes, FETCH_LIMIT, &mut out).await.map_err(|e| {
            let message = match e {
                crate::net::FetchError::TooLarge(_) => {
                    format!("The video is larger than {} MB.", max_bytes.div_ceil(1024 * 1024))
                }
                other => format!("The video could not be fetched: {other}."),
            };
            ApiError::invalid(param, message)
        })?;
        let info = probe_file(tmp.clone()).await?.map_err(|e| probe_error(param, &e))?;
        Ok::<_, ApiError>((written, info))
    }
    .await;
    let (written, info) = match fetched {
        Ok(ok) => ok,
        Err(e) => {
            let _ = tokio::fs::remove_file(&tmp).await;
            return Err(e);
        }
    };
    if let Err(e) = state.blobs.commit_or_discard_temp(&id).await {
        return Err(files::store_unavailable(&e));
    }
    let mut file = files::new_file(state, id, Some(account), FileKind::Input, files::container_mime(&info), written);
    file.expires_at = expires_at;
    if let Err(e) = state.store.insert_file(&file).await {
        files::discard(state, &file.id).await;
        return Err(e.into());
    }
    let facts = facts(&info, written);
    Ok(Probed { file, info, facts })
}

/// Probes a video already in storage (an upload of the caller's, named by its
/// own link) for `param`.
pub async fn probe_stored(state: &AppState, param: &str, file: FileRow) -> Result<Probed, ApiError> {
    if !file.content_type.starts_with("video/") {
        return Err(ApiError::invalid(param, "This link is not a video; give an MP4 or MOV."));
    }
    // On S3 the video is copied here for the probe, and the copy removed after.
    let copy = state.blobs.local_copy(&file.id).await.map_err(|e| {
        if crate::blobs::is_missing(&e) {
            ApiError::invalid(param, "This file is no longer stored.")
        } else {
            files::store_unavailable(&e)
        }
    })?;
    let info = probe_file(copy.path().to_owned()).await?.map_err(|e| probe_error(param, &e))?;
    drop(copy);
    let facts = facts(&info, u64::try_from(file.bytes).unwrap_or(0));
    Ok(Probed { file, info, facts })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_account_gets_two_fetch_slots_at_once() {
        let slots = FetchSlots::default();
        let a = AccountId::from_raw("a");
        let first = slots.take(&a);
        let second = slots.take(&a);
        assert!(first.is_some() && second.is_some());
        assert!(slots.take(&a).is_none(), "a third fetch waits");
        assert!(slots.take(&AccountId::from_raw("b")).is_some(), "other accounts are not held up");
        drop(first);
        assert!(slots.take(&a).is_some(), "a slot comes back when a fetch ends");
    }
}
