//! Task rows to the wire task object of SPEC 1.2. The only place that decides
//! what a client sees of a task.

use vidgate_api::catalog::{BillingRule, ModelId};
use vidgate_api::task::{TaskError, TaskErrorCode, TaskInfo, TaskObject, TaskStatus, Usage};

use crate::error::ApiError;
use crate::store::{NewTask, TaskRow};

fn billing_rule(model: &str) -> BillingRule {
    match ModelId::parse(model) {
        Some(ModelId::KlingCustomElement) => BillingRule::PerCall,
        _ => BillingRule::PerSecond,
    }
}

/// The object answered by a create: a pending task that holds its price.
pub(super) fn new_task_object(task: &NewTask) -> TaskObject {
    TaskObject {
        created: task.created_at / 1000,
        error: None,
        id: task.id.clone(),
        model: task.model.clone(),
        object: "video.generation.task".to_owned(),
        progress: 0,
        result_data: None,
        results: None,
        status: TaskStatus::Pending,
        task_info: TaskInfo {
            can_cancel: true,
            estimated_time: task.estimated_time.clamp(0, i64::from(u32::MAX)) as u32,
            video_duration: task.video_duration.clamp(0, i64::from(u32::MAX)) as u32,
        },
        kind: "video".to_owned(),
        usage: Usage {
            billing_rule: billing_rule(&task.model),
            credits_charged: None,
            credits_reserved: task.credits_reserved,
            user_group: task.user_group.clone(),
        },
    }
}

/// The task object exactly as `GET /v1/tasks/{id}` answers it (callbacks send the same).
pub fn task_object(row: &TaskRow) -> Result<TaskObject, ApiError> {
    let status = TaskStatus::parse(&row.status)
        .ok_or_else(|| ApiError::internal(anyhow::anyhow!("task {} has status {}", row.id, row.status)))?;
    let results = match (&row.results, status) {
        (Some(json), TaskStatus::Completed) => {
            Some(serde_json::from_str::<Vec<String>>(json).map_err(ApiError::internal)?)
        }
        _ => None,
    };
    let result_data = match (&row.result_data, status) {
        (Some(json), TaskStatus::Completed) => {
            Some(serde_json::from_str::<serde_json::Value>(json).map_err(ApiError::internal)?)
        }
        _ => None,
    };
    let error = match status {
        TaskStatus::Failed => Some(TaskError {
            code: row.error_code.as_deref().and_then(TaskErrorCode::parse).unwrap_or(TaskErrorCode::UnknownError),
            message: row.error_message.clone().unwrap_or_default(),
            kind: "task_error".to_owned(),
        }),
        _ => None,
    };
    Ok(TaskObject {
        created: row.created_at / 1000,
        error,
        id: row.id.clone(),
        model: row.model.clone(),
        object: "video.generation.task".to_owned(),
        progress: row.progress.clamp(0, 100) as u8,
        result_data,
        results,
        status,
        task_info: TaskInfo {
            can_cancel: !status.is_final(),
            estimated_time: row.estimated_time.clamp(0, i64::from(u32::MAX)) as u32,
            video_duration: row.video_duration.clamp(0, i64::from(u32::MAX)) as u32,
        },
        kind: "video".to_owned(),
        usage: Usage {
            billing_rule: billing_rule(&row.model),
            credits_charged: if status.is_final() { Some(row.credits_charged.unwrap_or(0)) } else { None },
            credits_reserved: row.credits_reserved,
            user_group: row.user_group.clone(),
        },
    })
}
