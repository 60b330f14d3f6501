//! Stored files: uploads, the media of requests and results. A row exists for
//! every blob vidgate keeps, with its expiry, so the janitor can delete both.

use super::{Result, Store};
use crate::ids::{AccountId, FileId};

super::text_enum! {
    /// Why a file is kept.
    FileKind {
        /// Sent to `POST /v1/files`.
        Upload = "upload",
        /// Inline media of a request (a `data:` URI), or media fetched for it.
        Input = "input",
        /// A task's video.
        Result = "result",
    }
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct FileRow {
    pub id: FileId,
    pub account_id: Option<AccountId>,
    #[sqlx(try_from = "super::Text")]
    pub kind: FileKind,
    pub content_type: String,
    pub bytes: i64,
    pub created_at: i64,
    pub expires_at: i64,
}

const COLUMNS: &str = "id, account_id, kind, content_type, bytes, created_at, expires_at";

impl Store {
    #[tracing::instrument(skip_all)]
    pub async fn insert_file(&self, file: &FileRow) -> Result<()> {
        sqlx::query(
            "INSERT INTO files (id, account_id, kind, content_type, bytes, created_at, expires_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(&file.id)
        .bind(&file.account_id)
        .bind(file.kind.as_str())
        .bind(&file.content_type)
        .bind(file.bytes)
        .bind(file.created_at)
        .bind(file.expires_at)
        .execute(&self.write)
        .await?;
        Ok(())
    }

    #[tracing::instrument(skip_all)]
    pub async fn get_file(&self, id: &FileId) -> Result<Option<FileRow>> {
        let sql = format!("SELECT {COLUMNS} FROM files WHERE id = $1");
        Ok(sqlx::query_as(&sql).bind(id).fetch_optional(&self.read).await?)
    }

    /// Up to `limit` files whose time is over.
    #[tracing::instrument(skip_all)]
    pub async fn expired_files(&self, now: i64, limit: i64) -> Result<Vec<FileRow>> {
        let sql = format!("SELECT {COLUMNS} FROM files WHERE expires_at < $1 ORDER BY expires_at LIMIT $2");
        Ok(sqlx::query_as(&sql).bind(now).bind(limit).fetch_all(&self.read).await?)
    }

    #[tracing::instrument(skip_all)]
    pub async fn delete_file(&self, id: &FileId) -> Result<()> {
        sqlx::query("DELETE FROM files WHERE id = $1").bind(id).execute(&self.write).await?;
        Ok(())
    }
}
