//! All SQL lives under this module, one file per table (or concern), one method
//! per query or transaction, portable between SQLite (the embedded default, WAL)
//! and PostgreSQL. Money moves only inside transactions that also change the task
//! row, and the ledger's unique (task, kind) index makes a second movement of the
//! same task's money impossible. Rows are plain structs decoded by column name;
//! `tasks::view` turns them into wire objects.

mod accounts;
mod attempts;
mod audit;
mod batcher;
mod codes;
mod elements;
mod files;
mod leases;
mod ledger;
mod meta;
mod migrate;
mod tasks;
mod usage;
mod webhooks;

use std::path::Path;
use std::time::Duration;

use sqlx::any::AnyPoolOptions;
use sqlx::{AnyPool, Executor};

pub use crate::limits::AllowedModels;
pub use accounts::{AccountRow, AuthKey, Balances, KeyRow, NewKeyOutcome};
pub use attempts::{AttemptEnd, AttemptStatus, MarginRow, UpstreamAttempt};
pub use audit::{Actor, AuditRow};
pub use codes::{CodeBatchRow, CodeRefusal, NewCode, Redeemed};
pub use elements::ElementRow;
pub use files::{FileKind, FileRow};
pub use tasks::{
    CallbackFor, CancelOutcome, CreateOutcome, Finish, Idempotency, NewDelivery, NewTask, TaskFilter, TaskRow,
};
pub use usage::{LedgerRow, MarginDay, ProviderStats, UsageGroup, UsageRow};
pub use webhooks::{DeliveryAttemptRow, DeliveryRow, DeliveryStatus, WebhookSecrets};

/// Which SQL dialect is behind the pools.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Db(#[from] sqlx::Error),
    #[error("unsupported database URL (expected sqlite:// or postgres://)")]
    UnsupportedUrl,
    #[error("cannot create data folder: {0}")]
    Io(#[from] std::io::Error),
    #[error("stored data is malformed: {0}")]
    Corrupt(String),
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// A TEXT column read as-is, for enums that decode themselves from it.
#[derive(Debug, sqlx::Type)]
#[sqlx(transparent)]
pub struct Text(pub String);

/// A TEXT column held a value no enum variant names.
#[derive(Debug, thiserror::Error)]
#[error("unknown stored value {0:?}")]
pub struct UnknownValue(pub String);

impl TryFrom<Text> for vidgate_api::task::TaskStatus {
    type Error = UnknownValue;
    fn try_from(t: Text) -> Result<Self, UnknownValue> {
        Self::parse(&t.0).ok_or(UnknownValue(t.0))
    }
}

/// An enum stored as TEXT: `as_str` for binding, decoded through `Text`.
macro_rules! text_enum {
    ($(#[$doc:meta])* $name:ident { $($(#[$vdoc:meta])* $variant:ident = $text:literal),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
        #[serde(rename_all = "snake_case")]
        pub enum $name { $($(#[$vdoc])* $variant),+ }

        impl $name {
            pub fn as_str(self) -> &'static str {
                match self { $(Self::$variant => $text),+ }
            }

            pub fn parse(s: &str) -> Option<Self> {
                match s { $($text => Some(Self::$variant),)+ _ => None }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl TryFrom<$crate::store::Text> for $name {
            type Error = $crate::store::UnknownValue;
            fn try_from(t: $crate::store::Text) -> Result<Self, $crate::store::UnknownValue> {
                Self::parse(&t.0).ok_or($crate::store::UnknownValue(t.0))
            }
        }
    };
}
pub(crate) use text_enum;

/// Handle to the database. Cheap to clone.
///
/// On SQLite all writes go through a single connection (SQLite has one writer at a
/// time anyway; one connection avoids busy-waiting), reads through a small pool,
/// and creates arriving together share one transaction (`batcher`).
#[derive(Clone, Debug)]
pub struct Store {
    write: AnyPool,
    read: AnyPool,
    backend: Backend,
    /// The queue of the group-commit writer for creates.
    batcher: Option<tokio::sync::mpsc::Sender<batcher::CreateJob>>,
}

/// Per-connection SQLite settings: WAL lets readers work beside the writer;
/// NORMAL sync is durable across process crashes (WAL), fast enough for the API;
/// reads go through a memory map of up to 1 GiB and a 32 MiB page cache, so a
/// large database is read without a system call per page.
fn sqlite_pragmas<'c>(
    conn: &'c mut sqlx::AnyConnection,
    _meta: sqlx::pool::PoolConnectionMetadata,
) -> futures_util::future::BoxFuture<'c, Result<(), sqlx::Error>> {
    Box::pin(async move {
        conn.execute(
            "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; \
             PRAGMA busy_timeout = 5000; PRAGMA foreign_keys = ON; \
             PRAGMA mmap_size = 1073741824; PRAGMA cache_size = -32768;",
        )
        .await?;
        Ok(())
    })
}

impl Store {
    /// Connects to `url`, creating the SQLite file (and its folder) if needed.
    pub async fn connect(url: &str) -> Result<Self> {
        sqlx::any::install_default_drivers();
        if let Some(path) = url.strip_prefix("sqlite://") {
            let path = path.split('?').next().unwrap_or(path);
            if let Some(parent) = Path::new(path).parent()
                && !parent.as_os_str().is_empty()
            {
                std::fs::create_dir_all(parent)?;
            }
            let url = format!("sqlite://{path}?mode=rwc");
            let write = AnyPoolOptions::new()
                .max_connections(1)
                .min_connections(1)
                .after_connect(|conn, meta| {
                    Box::pin(async move {
                        sqlite_pragmas(conn, meta).await?;
                        // Checkpoints run beside the writer (`batcher`), not inside
                        // one of its commits, where they stall every create behind.
                        // When the log starts again from the top, its file is cut
                        // back to this size (bytes), so it cannot stay large.
                        conn.execute("PRAGMA wal_autocheckpoint = 0; PRAGMA journal_size_limit = 16777216;").await?;
                        Ok(())
                    })
                })
                .connect(&url)
                .await?;
            let read = AnyPoolOptions::new().max_connections(4).after_connect(sqlite_pragmas).connect(&url).await?;
            tokio::spawn(batcher::run_checkpointer(read.clone(), write.clone()));
            let mut store = Self { write, read, backend: Backend::Sqlite, batcher: None };
            store.batcher = Some(batcher::spawn(store.clone()));
            Ok(store)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            let pool =
                AnyPoolOptions::new().max_connections(16).acquire_timeout(Duration::from_secs(10)).connect(url).await?;
            let mut store = Self { write: pool.clone(), read: pool, backend: Backend::Postgres, batcher: None };
            // Group commit here too: a create's transaction holds its account's
            // row lock until the commit's flush, so one transaction per create
            // would let one account's creates through one flush at a time.
            store.batcher = Some(batcher::spawn(store.clone()));
            Ok(store)
        } else {
            Err(StoreError::UnsupportedUrl)
        }
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// `MAX` or `GREATEST`: the two-argument maximum of this dialect.
    fn greatest(&self) -> &'static str {
        match self.backend {
            Backend::Sqlite => "MAX",
            Backend::Postgres => "GREATEST",
        }
    }

    /// `MIN` or `LEAST`: the two-argument minimum of this dialect.
    fn least(&self) -> &'static str {
        match self.backend {
            Backend::Sqlite => "MIN",
            Backend::Postgres => "LEAST",
        }
    }

    /// True when the database answers.
    pub async fn ping(&self) -> bool {
        sqlx::query("SELECT 1").fetch_one(&self.read).await.is_ok()
    }

    pub async fn close(&self) {
        self.write.close().await;
        self.read.close().await;
    }
}
