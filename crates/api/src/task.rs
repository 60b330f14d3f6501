//! The task object of SPEC 1.2 and the other response bodies of SPEC 1.3, field
//! for field as EvoLink sends them (alphabetical order, as in its examples).

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::catalog::BillingRule;

/// `object` of every task.
pub const TASK_OBJECT: &str = "video.generation.task";
/// `type` of every task.
pub const TASK_KIND: &str = "video";
/// `type` of every task error.
pub const TASK_ERROR_KIND: &str = "task_error";

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum TaskStatus {
    Pending,
    Processing,
    Completed,
    Failed,
}

impl TaskStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Processing => "processing",
            Self::Completed => "completed",
            Self::Failed => "failed",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        [Self::Pending, Self::Processing, Self::Completed, Self::Failed].into_iter().find(|x| x.as_str() == s)
    }
    pub fn is_final(self) -> bool {
        matches!(self, Self::Completed | Self::Failed)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum TaskErrorCode {
    ContentPolicyViolation,
    InvalidParameters,
    ImageProcessingError,
    ImageDimensionMismatch,
    RequestCancelled,
    GenerationFailedNoContent,
    ServiceError,
    GenerationTimeout,
    ResourceExhausted,
    QuotaExceeded,
    ServiceUnavailable,
    ResourceNotFound,
    UnknownError,
}

impl TaskErrorCode {
    pub const ALL: [TaskErrorCode; 13] = [
        Self::ContentPolicyViolation,
        Self::InvalidParameters,
        Self::ImageProcessingError,
        Self::ImageDimensionMismatch,
        Self::RequestCancelled,
        Self::GenerationFailedNoContent,
        Self::ServiceError,
        Self::GenerationTimeout,
        Self::ResourceExhausted,
        Self::QuotaExceeded,
        Self::ServiceUnavailable,
        Self::ResourceNotFound,
        Self::UnknownError,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::ContentPolicyViolation => "content_policy_violation",
            Self::InvalidParameters => "invalid_parameters",
            Self::ImageProcessingError => "image_processing_error",
            Self::ImageDimensionMismatch => "image_dimension_mismatch",
            Self::RequestCancelled => "request_cancelled",
            Self::GenerationFailedNoContent => "generation_failed_no_content",
            Self::ServiceError => "service_error",
            Self::GenerationTimeout => "generation_timeout",
            Self::ResourceExhausted => "resource_exhausted",
            Self::QuotaExceeded => "quota_exceeded",
            Self::ServiceUnavailable => "service_unavailable",
            Self::ResourceNotFound => "resource_not_found",
            Self::UnknownError => "unknown_error",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.as_str() == s)
    }

    /// Caused by the request itself: retrying elsewhere would not help.
    pub fn is_client_side(self) -> bool {
        matches!(
            self,
            Self::ContentPolicyViolation
                | Self::InvalidParameters
                | Self::ImageProcessingError
                | Self::ImageDimensionMismatch
                | Self::RequestCancelled
        )
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct TaskError {
    pub code: TaskErrorCode,
    pub message: String,
    /// Always `task_error`.
    #[serde(rename = "type")]
    pub kind: String,
}

impl TaskError {
    pub fn new(code: TaskErrorCode, message: impl Into<String>) -> Self {
        Self { code, message: message.into(), kind: TASK_ERROR_KIND.to_owned() }
    }
}

impl std::fmt::Display for TaskStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::fmt::Display for TaskErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct TaskInfo {
    pub can_cancel: bool,
    /// Seconds.
    pub estimated_time: u32,
    /// Seconds of video.
    pub video_duration: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Usage {
    pub billing_rule: BillingRule,
    /// Units of 1/10000 credit; present once the task is final.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub credits_charged: Option<i64>,
    /// Units of 1/10000 credit held for this task.
    pub credits_reserved: i64,
    pub user_group: String,
}

/// A video generation task as clients see it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct TaskObject {
    /// Unix seconds.
    pub created: i64,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub error: Option<TaskError>,
    pub id: String,
    pub model: String,
    /// Always `video.generation.task`.
    pub object: String,
    /// 0..=100, never decreasing.
    pub progress: u8,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub result_data: Option<serde_json::Value>,
    /// Video URLs, when completed; each works for 24 h.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub results: Option<Vec<String>>,
    pub status: TaskStatus,
    pub task_info: TaskInfo,
    /// Always `video`.
    #[serde(rename = "type")]
    pub kind: String,
    pub usage: Usage,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct TaskList {
    pub data: Vec<TaskObject>,
    pub next_cursor: Option<String>,
}

/// The API key's view. `remaining_credits` is what it may still hold for new
/// tasks: the account's available balance, or less when the key has a budget.
/// `used_credits` is what it has committed: charged for completed tasks plus
/// held by running ones (`held_credits`, given back if they fail).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct TokenCredits {
    pub remaining_credits: f64,
    pub unlimited_credits: bool,
    pub used_credits: f64,
    #[serde(default)]
    pub held_credits: f64,
}

/// The account's view, with the same meanings as the key's: remaining is
/// available now; used is charged plus held; held is the part of used that
/// running tasks hold.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct UserCredits {
    pub remaining_credits: f64,
    pub used_credits: f64,
    #[serde(default)]
    pub held_credits: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct CreditsData {
    pub token: TokenCredits,
    pub user: UserCredits,
}

/// `GET /v1/credits`; credits as decimal numbers, as EvoLink answers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct CreditsResponse {
    pub data: CreditsData,
    pub message: String,
    pub success: bool,
}

/// `POST /v1/files`: an upload (an image or a video) whose link a create may name
/// in any media field until it expires.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct FileObject {
    pub id: String,
    pub url: String,
    /// Unix seconds.
    pub expires_at: i64,
}

/// `task-unified-<unix seconds>-<8 lowercase alphanumerics>`.
pub fn is_valid_task_id(s: &str) -> bool {
    let Some(rest) = s.strip_prefix("task-unified-") else {
        return false;
    };
    let Some((secs, tail)) = rest.split_once('-') else {
        return false;
    };
    !secs.is_empty()
        && secs.len() <= 12
        && secs.bytes().all(|b| b.is_ascii_digit())
        && tail.len() == 8
        && tail.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serializes_like_the_spec_example() {
        let t = TaskObject {
            created: 1_764_000_000,
            error: None,
            id: "task-unified-1764000000-7cvnl5zw".to_owned(),
            model: "kling-v3-image-to-video".to_owned(),
            object: "video.generation.task".to_owned(),
            progress: 0,
            result_data: None,
            results: None,
            status: TaskStatus::Pending,
            task_info: TaskInfo { can_cancel: true, estimated_time: 120, video_duration: 5 },
            kind: "video".to_owned(),
            usage: Usage {
                billing_rule: BillingRule::PerSecond,
                credits_charged: None,
                credits_reserved: 270_000,
                user_group: "default".to_owned(),
            },
        };
        let expected = r#"{"created":1764000000,"id":"task-unified-1764000000-7cvnl5zw","model":"kling-v3-image-to-video","object":"video.generation.task","progress":0,"status":"pending","task_info":{"can_cancel":true,"estimated_time":120,"video_duration":5},"type":"video","usage":{"billing_rule":"per_second","credits_reserved":270000,"user_group":"default"}}"#;
        assert_eq!(serde_json::to_string(&t).ok().as_deref(), Some(expected));
        let back: Result<TaskObject, _> = serde_json::from_str(expected);
        assert_eq!(back.ok(), Some(t));
    }

    #[test]
    fn task_ids_have_the_unified_shape() {
        assert!(is_valid_task_id("task-unified-1764000000-7cvnl5zw"));
        assert!(!is_valid_task_id("task-unified-1764000000-7CVNL5ZW"));
        assert!(!is_valid_task_id("task-unified-abc-7cvnl5zw"));
        assert!(!is_valid_task_id("task-unified-1-7cvnl5z"));
        assert!(!is_valid_task_id("../etc"));
        assert!(!is_valid_task_id("task-unified--7cvnl5zw"));
        assert!(!is_valid_task_id("task-unified-1764000000-7cvnl5zw1"));
        assert!(!is_valid_task_id("task-unified-1764000000-7cvnl5z_"));
        assert!(!is_valid_task_id("TASK-unified-1764000000-7cvnl5zw"));
    }

    #[test]
    fn a_failed_task_carries_its_error_and_charge() {
        let json = r#"{"created":1,"error":{"code":"request_cancelled","message":"cancelled by the client","type":"task_error"},"id":"task-unified-1-abcdefgh","model":"kling-v3-text-to-video","object":"video.generation.task","progress":0,"status":"failed","task_info":{"can_cancel":false,"estimated_time":0,"video_duration":5},"type":"video","usage":{"billing_rule":"per_second","credits_charged":0,"credits_reserved":270000,"user_group":"default"}}"#;
        let t: Result<TaskObject, _> = serde_json::from_str(json);
        let t = match t {
            Ok(t) => t,
            Err(e) => unreachable!("{e}"),
        };
        assert_eq!(t.error, Some(TaskError::new(TaskErrorCode::RequestCancelled, "cancelled by the client")));
        assert_eq!(t.usage.credits_charged, Some(0));
        assert_eq!(serde_json::to_string(&t).ok().as_deref(), Some(json));
    }

    #[test]
    fn a_completed_task_lists_results_and_data() {
        let json = r#"{"created":1,"id":"task-unified-1-abcdefgh","model":"kling-custom-element","object":"video.generation.task","progress":100,"result_data":{"element_id":"el_1"},"results":["https://x.example/v.mp4"],"status":"completed","task_info":{"can_cancel":false,"estimated_time":0,"video_duration":0},"type":"video","usage":{"billing_rule":"per_call","credits_charged":10000,"credits_reserved":10000,"user_group":"default"}}"#;
        let t: Result<TaskObject, _> = serde_json::from_str(json);
        assert!(
            matches!(&t, Ok(t) if t.status.is_final() && t.result_data == Some(serde_json::json!({"element_id": "el_1"}))),
            "{t:?}"
        );
        assert_eq!(t.ok().and_then(|t| serde_json::to_string(&t).ok()).as_deref(), Some(json));
    }

    #[test]
    fn statuses_parse_and_only_two_are_final() {
        for (s, fin) in [("pending", false), ("processing", false), ("completed", true), ("failed", true)] {
            let st = TaskStatus::parse(s);
            assert_eq!(st.map(|x| (x.as_str(), x.is_final())), Some((s, fin)));
            assert_eq!(serde_json::to_value(st).ok(), Some(serde_json::json!(s)));
        }
        assert_eq!(TaskStatus::parse("cancelled"), None);
    }

    #[test]
    fn a_task_list_shows_a_null_cursor() {
        let l = TaskList { data: Vec::new(), next_cursor: None };
        assert_eq!(serde_json::to_string(&l).ok().as_deref(), Some(r#"{"data":[],"next_cursor":null}"#));
    }

    #[test]
    fn credits_response_matches_evolink() {
        let r = CreditsResponse {
            data: CreditsData {
                token: TokenCredits {
                    remaining_credits: 7.1982,
                    unlimited_credits: false,
                    used_credits: 27.0,
                    held_credits: 0.0,
                },
                user: UserCredits { remaining_credits: 7.1982, used_credits: 27.0, held_credits: 0.0 },
            },
            message: String::new(),
            success: true,
        };
        assert_eq!(
            serde_json::to_string(&r).ok().as_deref(),
            Some(
                r#"{"data":{"token":{"remaining_credits":7.1982,"unlimited_credits":false,"used_credits":27.0,"held_credits":0.0},"user":{"remaining_credits":7.1982,"used_credits":27.0,"held_credits":0.0}},"message":"","success":true}"#
            )
        );
    }

    #[test]
    fn file_objects_serialize_plainly() {
        let f = FileObject { id: "file_1".to_owned(), url: "https://x.example/f".to_owned(), expires_at: 5 };
        assert_eq!(
            serde_json::to_string(&f).ok().as_deref(),
            Some(r#"{"id":"file_1","url":"https://x.example/f","expires_at":5}"#)
        );
    }

    #[test]
    fn error_codes_round_trip() {
        for c in TaskErrorCode::ALL {
            assert_eq!(TaskErrorCode::parse(c.as_str()), Some(c));
        }
        assert_eq!(TaskErrorCode::ALL.iter().filter(|c| c.is_client_side()).count(), 5);
        for c in TaskErrorCode::ALL {
            assert_eq!(serde_json::to_value(c).ok(), Some(serde_json::json!(c.as_str())));
        }
        assert!(!TaskErrorCode::ServiceError.is_client_side());
        assert!(TaskErrorCode::RequestCancelled.is_client_side());
    }
}
