//! Database rows as plain structs, decoded by column name. These are storage
//! shapes, not wire types: `tasks::view` turns a `TaskRow` into the API's object.

use sqlx::Row;
use sqlx::any::AnyRow;

use super::Result;

#[derive(Debug, Clone)]
pub struct AccountRow {
    pub id: String,
    pub name: String,
    pub user_group: String,
    pub balance: i64,
    pub held: i64,
    pub used: i64,
    pub created_at: i64,
}

impl AccountRow {
    pub(super) fn from_row(r: &AnyRow) -> Result<Self> {
        Ok(Self {
            id: r.try_get("id")?,
            name: r.try_get("name")?,
            user_group: r.try_get("user_group")?,
            balance: r.try_get("balance")?,
            held: r.try_get("held")?,
            used: r.try_get("used")?,
            created_at: r.try_get("created_at")?,
        })
    }
}

/// An API key as stored: only the SHA-256 of the secret is kept.
#[derive(Debug, Clone)]
pub struct KeyRow {
    pub id: String,
    pub account_id: String,
    pub key_hash: String,
    /// The first characters of the key, for people to tell keys apart.
    pub prefix: String,
    pub name: String,
    pub credit_cap: Option<i64>,
    pub spent: i64,
    pub allowed_models: Option<Vec<String>>,
    pub revoked_at: Option<i64>,
    pub created_at: i64,
}

impl KeyRow {
    pub(super) fn from_row(r: &AnyRow) -> Result<Self> {
        Ok(Self {
            id: r.try_get("id")?,
            account_id: r.try_get("account_id")?,
            key_hash: r.try_get("key_hash")?,
            prefix: r.try_get("prefix")?,
            name: r.try_get("name")?,
            credit_cap: r.try_get("credit_cap")?,
            spent: r.try_get("spent")?,
            allowed_models: split_models(r.try_get("allowed_models")?),
            revoked_at: r.try_get("revoked_at")?,
            created_at: r.try_get("created_at")?,
        })
    }
}

/// What authentication needs to know about a presented key.
#[derive(Debug, Clone)]
pub struct AuthKey {
    pub key_id: String,
    pub account_id: String,
    pub credit_cap: Option<i64>,
    pub allowed_models: Option<Vec<String>>,
    pub revoked: bool,
    pub user_group: String,
}

impl AuthKey {
    pub(super) fn from_row(r: &AnyRow) -> Result<Self> {
        let revoked_at: Option<i64> = r.try_get("revoked_at")?;
        Ok(Self {
            key_id: r.try_get("id")?,
            account_id: r.try_get("account_id")?,
            credit_cap: r.try_get("credit_cap")?,
            allowed_models: split_models(r.try_get("allowed_models")?),
            revoked: revoked_at.is_some(),
            user_group: r.try_get("user_group")?,
        })
    }
}

fn split_models(s: Option<String>) -> Option<Vec<String>> {
    s.map(|s| s.split(',').filter(|m| !m.is_empty()).map(str::to_owned).collect())
}

#[derive(Debug, Clone, Default)]
pub struct TaskRow {
    pub id: String,
    pub account_id: String,
    pub key_id: String,
    pub user_group: String,
    pub model: String,
    pub status: String,
    pub progress: i64,
    pub request: String,
    pub credits_reserved: i64,
    pub credits_charged: Option<i64>,
    pub video_duration: i64,
    pub estimated_time: i64,
    pub callback_url: Option<String>,
    pub results: Option<String>,
    pub result_data: Option<String>,
    pub error_code: Option<String>,
    pub error_message: Option<String>,
    pub provider: Option<String>,
    pub attempts: i64,
    pub lease_owner: Option<String>,
    pub lease_until: i64,
    pub deadline_at: i64,
    pub created_at: i64,
    pub created_us: i64,
    pub updated_at: i64,
    pub finished_at: Option<i64>,
}

impl TaskRow {
    pub(super) fn from_row(r: &AnyRow) -> Result<Self> {
        Ok(Self {
            id: r.try_get("id")?,
            account_id: r.try_get("account_id")?,
            key_id: r.try_get("key_id")?,
            user_group: r.try_get("user_group")?,
            model: r.try_get("model")?,
            status: r.try_get("status")?,
            progress: r.try_get("progress")?,
            request: r.try_get("request")?,
            credits_reserved: r.try_get("credits_reserved")?,
            credits_charged: r.try_get("credits_charged")?,
            video_duration: r.try_get("video_duration")?,
            estimated_time: r.try_get("estimated_time")?,
            callback_url: r.try_get("callback_url")?,
            results: r.try_get("results")?,
            result_data: r.try_get("result_data")?,
            error_code: r.try_get("error_code")?,
            error_message: r.try_get("error_message")?,
            provider: r.try_get("provider")?,
            attempts: r.try_get("attempts")?,
            lease_owner: r.try_get("lease_owner")?,
            lease_until: r.try_get("lease_until")?,
            deadline_at: r.try_get("deadline_at")?,
            created_at: r.try_get("created_at")?,
            created_us: r.try_get("created_us")?,
            updated_at: r.try_get("updated_at")?,
            finished_at: r.try_get("finished_at")?,
        })
    }

    pub fn is_final(&self) -> bool {
        self.status == "completed" || self.status == "failed"
    }
}

#[derive(Debug, Clone)]
pub struct FileRow {
    pub id: String,
    pub account_id: Option<String>,
    /// `upload`, `input` (an inline image of a request) or `result`.
    pub kind: String,
    pub content_type: String,
    pub bytes: i64,
    pub created_at: i64,
    pub expires_at: i64,
}

impl FileRow {
    pub(super) fn from_row(r: &AnyRow) -> Result<Self> {
        Ok(Self {
            id: r.try_get("id")?,
            account_id: r.try_get("account_id")?,
            kind: r.try_get("kind")?,
            content_type: r.try_get("content_type")?,
            bytes: r.try_get("bytes")?,
            created_at: r.try_get("created_at")?,
            expires_at: r.try_get("expires_at")?,
        })
    }
}

#[derive(Debug, Clone)]
pub struct ElementRow {
    pub id: String,
    pub account_id: String,
    pub task_id: String,
    pub provider: String,
    pub upstream_id: Option<String>,
    pub name: String,
    pub description: String,
    pub frontal_file: Option<String>,
    pub created_at: i64,
}

impl ElementRow {
    pub(super) fn from_row(r: &AnyRow) -> Result<Self> {
        Ok(Self {
            id: r.try_get("id")?,
            account_id: r.try_get("account_id")?,
            task_id: r.try_get("task_id")?,
            provider: r.try_get("provider")?,
            upstream_id: r.try_get("upstream_id")?,
            name: r.try_get("name")?,
            description: r.try_get("description")?,
            frontal_file: r.try_get("frontal_file")?,
            created_at: r.try_get("created_at")?,
        })
    }
}
