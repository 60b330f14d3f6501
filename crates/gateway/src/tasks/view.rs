//! Task rows to the wire task object of SPEC 1.2: the only place that decides
//! what a client sees of a task, in answers and in callbacks alike.

use vidgate_api::catalog::{BillingRule, Catalog};
use vidgate_api::task::{TASK_KIND, TASK_OBJECT, TaskError, TaskErrorCode, TaskInfo, TaskObject, TaskStatus, Usage};

use crate::error::ApiError;
use crate::ids::DeliveryId;
use crate::store::{NewDelivery, NewTask, TaskRow};

/// The model's billing rule; a model an operator has since removed from the
/// catalog shows as per-second, as every video model bills.
fn billing_rule(catalog: &Catalog, model: &str) -> BillingRule {
    catalog.get(model).map_or(BillingRule::PerSecond, |m| m.pricing.rule())
}

fn seconds(v: i64) -> u32 {
    u32::try_from(v.max(0)).unwrap_or(u32::MAX)
}

/// The object answered by a create: a pending task that holds its price.
pub(super) fn new_task_object(task: &NewTask, billing_rule: BillingRule) -> TaskObject {
    TaskObject {
        created: task.created_at / 1000,
        error: None,
        id: task.id.to_string(),
        model: task.model.clone(),
        object: TASK_OBJECT.to_owned(),
        progress: 0,
        result_data: None,
        results: None,
        status: TaskStatus::Pending,
        task_info: TaskInfo {
            can_cancel: true,
            estimated_time: seconds(task.estimated_time),
            video_duration: seconds(task.video_duration),
        },
        kind: TASK_KIND.to_owned(),
        usage: Usage {
            billing_rule,
            credits_charged: None,
            credits_reserved: task.credits_reserved,
            user_group: task.user_group.clone(),
        },
    }
}

/// The task object exactly as `GET /v1/tasks/{id}` answers it.
pub fn task_object(row: &TaskRow, catalog: &Catalog) -> Result<TaskObject, ApiError> {
    let status = row.status;
    let completed = status == TaskStatus::Completed;
    let results = match &row.results {
        Some(json) if completed => Some(serde_json::from_str::<Vec<String>>(json).map_err(ApiError::internal)?),
        _ => None,
    };
    let result_data = match &row.result_data {
        Some(json) if completed => Some(serde_json::from_str::<serde_json::Value>(json).map_err(ApiError::internal)?),
        _ => None,
    };
    let error = (status == TaskStatus::Failed).then(|| {
        let code = row.error_code.as_deref().and_then(TaskErrorCode::parse).unwrap_or(TaskErrorCode::UnknownError);
        TaskError::new(code, row.error_message.clone().unwrap_or_default())
    });
    Ok(TaskObject {
        created: row.created_at / 1000,
        error,
        id: row.id.to_string(),
        model: row.model.clone(),
        object: TASK_OBJECT.to_owned(),
        progress: row.progress.clamp(0, 100) as u8,
        result_data,
        results,
        status,
        task_info: TaskInfo {
            can_cancel: !status.is_final(),
            estimated_time: seconds(row.estimated_time),
            video_duration: seconds(row.video_duration),
        },
        kind: TASK_KIND.to_owned(),
        usage: Usage {
            billing_rule: billing_rule(catalog, &row.model),
            credits_charged: if status.is_final() { Some(row.credits_charged.unwrap_or(0)) } else { None },
            credits_reserved: row.credits_reserved,
            user_group: row.user_group.clone(),
        },
    })
}

/// The callback of a task that has just ended, if it asked for one: its body is
/// exactly the task object `GET /v1/tasks/{id}` answers.
pub fn callback_for(catalog: &Catalog, row: &TaskRow) -> Option<NewDelivery> {
    let url = row.callback_url.clone()?;
    let body = match task_object(row, catalog).map(|t| serde_json::to_string(&t)) {
        Ok(Ok(body)) => body,
        _ => {
            tracing::error!(task_id = %row.id, "cannot render the callback body");
            return None;
        }
    };
    Some(NewDelivery { id: DeliveryId::new(), url, body })
}
