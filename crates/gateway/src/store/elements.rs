//! Custom elements made by `kling-custom-element` tasks: vidgate's own `el-` id,
//! the provider that made it (tasks that name it are pinned there) and, for the
//! local provider, the frontal image it insets.

use super::{Result, Store};
use crate::ids::{AccountId, ElementId, FileId, TaskId};

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ElementRow {
    pub id: ElementId,
    pub account_id: AccountId,
    pub task_id: TaskId,
    pub provider: String,
    pub upstream_id: Option<String>,
    pub name: String,
    pub description: String,
    pub frontal_file: Option<FileId>,
    pub created_at: i64,
}

impl Store {
    /// Which of `ids` are elements of this account.
    #[tracing::instrument(skip_all)]
    pub async fn known_elements(&self, account_id: &AccountId, ids: &[String]) -> Result<Vec<String>> {
        let mut known = Vec::with_capacity(ids.len());
        for id in ids {
            let row = sqlx::query("SELECT id FROM elements WHERE id = $1 AND account_id = $2")
                .bind(id)
                .bind(account_id)
                .fetch_optional(&self.read)
                .await?;
            if row.is_some() {
                known.push(id.clone());
            }
        }
        Ok(known)
    }

    /// The elements with these ids (any account; callers checked ownership at create).
    #[tracing::instrument(skip_all)]
    pub async fn get_elements(&self, ids: &[String]) -> Result<Vec<ElementRow>> {
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            let row = sqlx::query_as(
                "SELECT id, account_id, task_id, provider, upstream_id, name, description, \
                 frontal_file, created_at FROM elements WHERE id = $1",
            )
            .bind(id)
            .fetch_optional(&self.read)
            .await?;
            out.extend(row);
        }
        Ok(out)
    }

    #[tracing::instrument(skip_all)]
    pub async fn insert_element(&self, e: &ElementRow) -> Result<()> {
        sqlx::query(
            "INSERT INTO elements (id, account_id, task_id, provider, upstream_id, name, description, \
             frontal_file, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(&e.id)
        .bind(&e.account_id)
        .bind(&e.task_id)
        .bind(&e.provider)
        .bind(&e.upstream_id)
        .bind(&e.name)
        .bind(&e.description)
        .bind(&e.frontal_file)
        .bind(e.created_at)
        .execute(&self.write)
        .await?;
        Ok(())
    }
}
