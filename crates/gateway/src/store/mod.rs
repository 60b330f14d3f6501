//! All SQL lives here, one method per query or transaction, portable between SQLite
//! (the embedded default, WAL) and PostgreSQL. Money moves only inside transactions
//! that also change the task row, and the ledger's unique (task, kind) index makes a
//! second movement of the same task's money impossible.

mod rows;

use std::path::Path;
use std::time::Duration;

use sqlx::any::AnyPoolOptions;
use sqlx::{AnyPool, Executor, Row};

mod attempts;
mod webhooks;

pub use attempts::{MarginRow, UpstreamAttempt};
pub use rows::{AccountRow, AuthKey, ElementRow, FileRow, KeyRow, TaskRow};
pub use webhooks::{AttemptRow, DeliveryRow, WebhookSecrets};

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

/// Handle to the database. Cheap to clone.
///
/// On SQLite all writes go through a single connection (SQLite has one writer at a
/// time anyway; one connection avoids busy-waiting), reads through a small pool.
#[derive(Clone, Debug)]
pub struct Store {
    write: AnyPool,
    read: AnyPool,
    backend: Backend,
    /// SQLite only: the queue of the group-commit writer for creates.
    batcher: Option<tokio::sync::mpsc::Sender<CreateJob>>,
}

/// One create waiting for the group-commit writer.
#[derive(Debug)]
struct CreateJob {
    task: NewTask,
    idem: Option<Idempotency>,
    response: String,
    reply: tokio::sync::oneshot::Sender<Result<CreateOutcome>>,
}

/// Most creates in one shared transaction.
const MAX_BATCH: usize = 64;

/// The group-commit writer: takes whatever creates are waiting (up to a batch),
/// runs them in one transaction and answers each. If the transaction fails as a
/// whole, each create is run again on its own, so one bad create cannot sink the rest.
async fn run_batcher(store: Store, mut rx: tokio::sync::mpsc::Receiver<CreateJob>) {
    while let Some(first) = rx.recv().await {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        let together = async {
            let mut tx = store.write.begin().await?;
            let mut outcomes = Vec::with_capacity(batch.len());
            for job in &batch {
                outcomes.push(create_steps(&mut tx, &job.task, job.idem.as_ref(), &job.response).await?);
            }
            tx.commit().await?;
            Ok::<_, StoreError>(outcomes)
        }
        .await;
        match together {
            Ok(outcomes) => {
                for (job, outcome) in batch.into_iter().zip(outcomes) {
                    let _ = job.reply.send(Ok(outcome));
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, size = batch.len(), "a batch of creates failed; running them one by one");
                for job in batch {
                    let outcome = store.create_task_alone(&job.task, job.idem.as_ref(), &job.response).await;
                    let _ = job.reply.send(outcome);
                }
            }
        }
    }
}

/// A new task, fully validated and priced, ready to be inserted with its hold.
#[derive(Debug, Clone)]
pub struct NewTask {
    pub id: String,
    pub account_id: String,
    pub key_id: String,
    pub user_group: String,
    pub model: String,
    pub request_json: String,
    pub credits_reserved: i64,
    pub video_duration: i64,
    pub estimated_time: i64,
    pub callback_url: Option<String>,
    pub created_at: i64,
    pub created_us: i64,
    pub deadline_at: i64,
}

/// An `Idempotency-Key` to record with the task, and the response to replay.
#[derive(Debug, Clone)]
pub struct Idempotency {
    pub key: String,
    pub body_hash: String,
    /// Oldest creation time (ms) of a stored key that still counts.
    pub not_before: i64,
}

#[derive(Debug)]
pub enum CreateOutcome {
    Created,
    InsufficientQuota,
    KeyCapExceeded,
    /// The same key and body were seen: replay this stored response.
    Replay(String),
    /// The same key was used with another body.
    Conflict,
}

#[derive(Debug)]
pub enum CancelOutcome {
    Cancelled(TaskRow),
    NotCancellable(TaskRow),
    NotFound,
}

/// How a task ends; each variant settles the money its own way.
#[derive(Debug, Clone)]
pub enum Finish {
    Completed { results_json: String, result_data_json: Option<String> },
    Failed { code: String, message: String },
}

/// A callback to enqueue with a task's final state.
#[derive(Debug, Clone)]
pub struct NewDelivery {
    pub id: String,
    pub url: String,
    pub body: String,
}

/// Builds the callback (if any) for a task that has just reached its final state.
pub type Outbox<'a> = &'a (dyn Fn(&TaskRow) -> Option<NewDelivery> + Sync);

/// Balances of an account and of the key asking.
#[derive(Debug, Clone)]
pub struct Balances {
    pub account_remaining: i64,
    pub account_used: i64,
    pub key_cap: Option<i64>,
    pub key_spent: i64,
}

const SQLITE_MIGRATIONS: &[(&str, &str)] = &[
    ("0001_init", include_str!("../../migrations/sqlite/0001_init.sql")),
    ("0002_webhooks", include_str!("../../migrations/sqlite/0002_webhooks.sql")),
    ("0003_routing", include_str!("../../migrations/sqlite/0003_routing.sql")),
];
const POSTGRES_MIGRATIONS: &[(&str, &str)] = &[
    ("0001_init", include_str!("../../migrations/postgres/0001_init.sql")),
    ("0002_webhooks", include_str!("../../migrations/postgres/0002_webhooks.sql")),
    ("0003_routing", include_str!("../../migrations/postgres/0003_routing.sql")),
];

const TASK_COLUMNS: &str = "id, account_id, key_id, user_group, model, status, progress, request, \
    credits_reserved, credits_charged, video_duration, estimated_time, callback_url, results, \
    result_data, error_code, error_message, provider, attempts, lease_owner, lease_until, \
    deadline_at, created_at, created_us, updated_at, finished_at";

/// Per-connection SQLite settings: WAL lets readers work beside the writer;
/// NORMAL sync is durable across process crashes (WAL), fast enough for the API.
fn sqlite_pragmas<'c>(
    conn: &'c mut sqlx::AnyConnection,
    _meta: sqlx::pool::PoolConnectionMetadata,
) -> futures_util::future::BoxFuture<'c, Result<(), sqlx::Error>> {
    Box::pin(async move {
        conn.execute(
            "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; \
             PRAGMA busy_timeout = 5000; PRAGMA foreign_keys = ON;",
        )
        .await?;
        Ok(())
    })
}

/// Copies the SQLite write-ahead log back into the database twice a second, on a
/// reader connection, without blocking the writer (PASSIVE); ends with the pool.
async fn run_checkpointer(pool: AnyPool) {
    loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        if pool.is_closed() {
            return;
        }
        if let Err(e) = sqlx::query("PRAGMA wal_checkpoint(PASSIVE)").fetch_all(&pool).await {
            if matches!(e, sqlx::Error::PoolClosed) {
                return;
            }
            tracing::warn!(error = %e, "WAL checkpoint failed; will retry");
        }
    }
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
                        // Checkpoints run beside the writer (below), not inside
                        // one of its commits, where they stall every create behind.
                        conn.execute("PRAGMA wal_autocheckpoint = 0;").await?;
                        Ok(())
                    })
                })
                .connect(&url)
                .await?;
            let read = AnyPoolOptions::new().max_connections(4).after_connect(sqlite_pragmas).connect(&url).await?;
            tokio::spawn(run_checkpointer(read.clone()));
            let mut store = Self { write, read, backend: Backend::Sqlite, batcher: None };
            let (tx, rx) = tokio::sync::mpsc::channel(4096);
            tokio::spawn(run_batcher(store.clone(), rx));
            store.batcher = Some(tx);
            Ok(store)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            let pool =
                AnyPoolOptions::new().max_connections(16).acquire_timeout(Duration::from_secs(10)).connect(url).await?;
            Ok(Self { write: pool.clone(), read: pool, backend: Backend::Postgres, batcher: None })
        } else {
            Err(StoreError::UnsupportedUrl)
        }
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Applies the migrations this database has not seen yet, each in a transaction.
    #[tracing::instrument(skip_all)]
    pub async fn migrate(&self) -> Result<()> {
        let migrations = match self.backend {
            Backend::Sqlite => SQLITE_MIGRATIONS,
            Backend::Postgres => POSTGRES_MIGRATIONS,
        };
        self.write
            .execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations \
                 (name TEXT PRIMARY KEY, applied_at BIGINT NOT NULL)",
            )
            .await?;
        for (name, sql) in migrations {
            let mut tx = self.write.begin().await?;
            let done = sqlx::query("SELECT 1 FROM schema_migrations WHERE name = $1")
                .bind(*name)
                .fetch_optional(&mut *tx)
                .await?;
            if done.is_some() {
                continue;
            }
            tx.execute(*sql).await?;
            sqlx::query("INSERT INTO schema_migrations (name, applied_at) VALUES ($1, $2)")
                .bind(*name)
                .bind(crate::util::now_ms())
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
        }
        Ok(())
    }

    /// True when the database answers.
    pub async fn ping(&self) -> bool {
        sqlx::query("SELECT 1").fetch_one(&self.read).await.is_ok()
    }

    pub async fn close(&self) {
        self.write.close().await;
        self.read.close().await;
    }

    // ---- meta ----------------------------------------------------------------

    #[tracing::instrument(skip_all)]
    pub async fn meta_get(&self, key: &str) -> Result<Option<String>> {
        let row = sqlx::query("SELECT value FROM meta WHERE key = $1").bind(key).fetch_optional(&self.write).await?;
        Ok(match row {
            Some(r) => Some(r.try_get("value")?),
            None => None,
        })
    }

    /// Stores `value` under `key` unless the key exists; returns the value in force.
    #[tracing::instrument(skip_all)]
    pub async fn meta_get_or_insert(&self, key: &str, value: &str) -> Result<String> {
        sqlx::query("INSERT INTO meta (key, value) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING")
            .bind(key)
            .bind(value)
            .execute(&self.write)
            .await?;
        self.meta_get(key).await?.ok_or_else(|| StoreError::Corrupt(format!("meta key {key} vanished")))
    }

    #[tracing::instrument(skip_all)]
    pub async fn meta_set(&self, key: &str, value: &str) -> Result<()> {
        sqlx::query(
            "INSERT INTO meta (key, value) VALUES ($1, $2) \
             ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        )
        .bind(key)
        .bind(value)
        .execute(&self.write)
        .await?;
        Ok(())
    }

    // ---- accounts and keys ----------------------------------------------------

    /// Creates an account holding `credits` (recorded as a grant in the ledger).
    #[tracing::instrument(skip_all)]
    pub async fn create_account(&self, id: &str, name: &str, credits: i64) -> Result<()> {
        let now = crate::util::now_ms();
        let mut tx = self.write.begin().await?;
        sqlx::query(
            "INSERT INTO accounts (id, name, balance, held, used, created_at) \
             VALUES ($1, $2, $3, 0, 0, $4)",
        )
        .bind(id)
        .bind(name)
        .bind(credits)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        if credits > 0 {
            sqlx::query(
                "INSERT INTO ledger (account_id, kind, amount, note, created_at) \
                 VALUES ($1, 'grant', $2, 'signup', $3)",
            )
            .bind(id)
            .bind(credits)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    #[tracing::instrument(skip_all)]
    pub async fn count_accounts(&self) -> Result<i64> {
        let row = sqlx::query("SELECT COUNT(*) AS n FROM accounts").fetch_one(&self.write).await?;
        Ok(row.try_get("n")?)
    }

    #[tracing::instrument(skip_all)]
    pub async fn get_account(&self, id: &str) -> Result<Option<AccountRow>> {
        let row =
            sqlx::query("SELECT id, name, user_group, balance, held, used, created_at FROM accounts WHERE id = $1")
                .bind(id)
                .fetch_optional(&self.read)
                .await?;
        row.map(|r| AccountRow::from_row(&r)).transpose()
    }

    #[tracing::instrument(skip_all)]
    pub async fn list_accounts(&self) -> Result<Vec<AccountRow>> {
        let rows = sqlx::query(
            "SELECT id, name, user_group, balance, held, used, created_at FROM accounts \
             ORDER BY created_at, id",
        )
        .fetch_all(&self.read)
        .await?;
        rows.iter().map(AccountRow::from_row).collect()
    }

    /// Adds (or, with a negative amount, removes) credits; never below zero.
    /// Returns the new balance, or `None` when the account does not exist or the
    /// removal would make the balance negative.
    #[tracing::instrument(skip_all)]
    pub async fn grant_credits(&self, account_id: &str, amount: i64, note: &str) -> Result<Option<i64>> {
        let now = crate::util::now_ms();
        let mut tx = self.write.begin().await?;
        let row = sqlx::query(
            "UPDATE accounts SET balance = balance + $1 WHERE id = $2 AND balance + $1 >= 0 \
             RETURNING balance",
        )
        .bind(amount)
        .bind(account_id)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(row) = row else {
            return Ok(None);
        };
        let balance: i64 = row.try_get("balance")?;
        sqlx::query(
            "INSERT INTO ledger (account_id, kind, amount, note, created_at) \
             VALUES ($1, 'grant', $2, $3, $4)",
        )
        .bind(account_id)
        .bind(amount)
        .bind(note)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(Some(balance))
    }

    #[tracing::instrument(skip_all)]
    pub async fn create_key(&self, key: &KeyRow) -> Result<()> {
        sqlx::query(
            "INSERT INTO api_keys (id, account_id, key_hash, prefix, name, credit_cap, spent, \
             allowed_models, revoked_at, created_at) VALUES ($1, $2, $3, $4, $5, $6, 0, $7, NULL, $8)",
        )
        .bind(&key.id)
        .bind(&key.account_id)
        .bind(&key.key_hash)
        .bind(&key.prefix)
        .bind(&key.name)
        .bind(key.credit_cap)
        .bind(key.allowed_models.as_ref().map(|m| m.join(",")))
        .bind(key.created_at)
        .execute(&self.write)
        .await?;
        Ok(())
    }

    #[tracing::instrument(skip_all)]
    pub async fn list_keys(&self, account_id: &str) -> Result<Vec<KeyRow>> {
        let rows = sqlx::query(
            "SELECT id, account_id, key_hash, prefix, name, credit_cap, spent, allowed_models, \
             revoked_at, created_at FROM api_keys WHERE account_id = $1 ORDER BY created_at, id",
        )
        .bind(account_id)
        .fetch_all(&self.read)
        .await?;
        rows.iter().map(KeyRow::from_row).collect()
    }

    /// Revokes a key; returns false when there is no such live key.
    #[tracing::instrument(skip_all)]
    pub async fn revoke_key(&self, key_id: &str) -> Result<bool> {
        let done = sqlx::query("UPDATE api_keys SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL")
            .bind(crate::util::now_ms())
            .bind(key_id)
            .execute(&self.write)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Sets or clears a key's credit cap and allowed models.
    #[tracing::instrument(skip_all)]
    pub async fn update_key_limits(
        &self,
        key_id: &str,
        credit_cap: Option<i64>,
        allowed_models: Option<&[String]>,
    ) -> Result<bool> {
        let done = sqlx::query("UPDATE api_keys SET credit_cap = $1, allowed_models = $2 WHERE id = $3")
            .bind(credit_cap)
            .bind(allowed_models.map(|m| m.join(",")))
            .bind(key_id)
            .execute(&self.write)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    /// The key with this hash, live or revoked, with its account's group.
    #[tracing::instrument(skip_all)]
    pub async fn find_key(&self, key_hash: &str) -> Result<Option<AuthKey>> {
        let row = sqlx::query(
            "SELECT k.id, k.account_id, k.credit_cap, k.allowed_models, k.revoked_at, a.user_group \
             FROM api_keys k JOIN accounts a ON a.id = k.account_id WHERE k.key_hash = $1",
        )
        .bind(key_hash)
        .fetch_optional(&self.read)
        .await?;
        row.map(|r| AuthKey::from_row(&r)).transpose()
    }

    #[tracing::instrument(skip_all)]
    pub async fn balances(&self, account_id: &str, key_id: &str) -> Result<Option<Balances>> {
        let row = sqlx::query(
            "SELECT a.balance, a.used, k.credit_cap, k.spent FROM accounts a \
             JOIN api_keys k ON k.account_id = a.id WHERE a.id = $1 AND k.id = $2",
        )
        .bind(account_id)
        .bind(key_id)
        .fetch_optional(&self.read)
        .await?;
        let Some(r) = row else { return Ok(None) };
        Ok(Some(Balances {
            account_remaining: r.try_get("balance")?,
            account_used: r.try_get("used")?,
            key_cap: r.try_get("credit_cap")?,
            key_spent: r.try_get("spent")?,
        }))
    }

    /// Sum of every ledger movement and the account's three buckets, for audits:
    /// grants must equal balance + held + used.
    #[tracing::instrument(skip_all)]
    pub async fn ledger_check(&self, account_id: &str) -> Result<(i64, i64)> {
        let grants = sqlx::query(
            "SELECT CAST(COALESCE(SUM(amount), 0) AS BIGINT) AS s FROM ledger \
             WHERE account_id = $1 AND kind = 'grant'",
        )
        .bind(account_id)
        .fetch_one(&self.write)
        .await?;
        let acct = sqlx::query("SELECT balance + held + used AS t FROM accounts WHERE id = $1")
            .bind(account_id)
            .fetch_one(&self.write)
            .await?;
        Ok((grants.try_get("s")?, acct.try_get("t")?))
    }

    /// The kinds of the ledger entries of a task, oldest first (for audits and tests).
    #[tracing::instrument(skip_all)]
    pub async fn ledger_entries(&self, task_id: &str) -> Result<Vec<String>> {
        let rows = sqlx::query("SELECT kind FROM ledger WHERE task_id = $1 ORDER BY id")
            .bind(task_id)
            .fetch_all(&self.write)
            .await?;
        rows.iter().map(|r| Ok(r.try_get("kind")?)).collect()
    }

    // ---- tasks ------------------------------------------------------------------

    /// Inserts the task and holds its price in one transaction, or changes nothing.
    /// On SQLite, creates arriving together share one transaction (group commit):
    /// the single writer then runs them back to back instead of one lock handoff each.
    #[tracing::instrument(skip_all, fields(task_id = %task.id))]
    pub async fn create_task(
        &self,
        task: &NewTask,
        idem: Option<&Idempotency>,
        response: &str,
    ) -> Result<CreateOutcome> {
        if let Some(batcher) = &self.batcher {
            let (reply, answer) = tokio::sync::oneshot::channel();
            let job = CreateJob { task: task.clone(), idem: idem.cloned(), response: response.to_owned(), reply };
            if batcher.send(job).await.is_ok()
                && let Ok(outcome) = answer.await
            {
                return outcome;
            }
            return Err(StoreError::Corrupt("the create batcher stopped".to_owned()));
        }
        self.create_task_alone(task, idem, response).await
    }

    async fn create_task_alone(
        &self,
        task: &NewTask,
        idem: Option<&Idempotency>,
        response: &str,
    ) -> Result<CreateOutcome> {
        let mut tx = self.write.begin().await?;
        let outcome = create_steps(&mut tx, task, idem, response).await?;
        tx.commit().await?;
        Ok(outcome)
    }

    /// The caller's task; another account's task is indistinguishable from none.
    #[tracing::instrument(skip_all)]
    pub async fn get_task(&self, account_id: &str, id: &str) -> Result<Option<TaskRow>> {
        let sql = format!("SELECT {TASK_COLUMNS} FROM tasks WHERE id = $1 AND account_id = $2");
        let row = sqlx::query(&sql).bind(id).bind(account_id).fetch_optional(&self.read).await?;
        row.map(|r| TaskRow::from_row(&r)).transpose()
    }

    /// A task by id alone, for workers and admins.
    #[tracing::instrument(skip_all)]
    pub async fn get_task_any(&self, id: &str) -> Result<Option<TaskRow>> {
        let sql = format!("SELECT {TASK_COLUMNS} FROM tasks WHERE id = $1");
        let row = sqlx::query(&sql).bind(id).fetch_optional(&self.write).await?;
        row.map(|r| TaskRow::from_row(&r)).transpose()
    }

    /// One page of the caller's tasks, newest first, after `(created_us, id)` if given.
    #[tracing::instrument(skip_all)]
    pub async fn list_tasks(
        &self,
        account_id: &str,
        status: Option<&str>,
        after: Option<(i64, &str)>,
        limit: i64,
    ) -> Result<Vec<TaskRow>> {
        let mut sql = format!("SELECT {TASK_COLUMNS} FROM tasks WHERE account_id = $1");
        let mut n = 1;
        if status.is_some() {
            n += 1;
            sql.push_str(&format!(" AND status = ${n}"));
        }
        if after.is_some() {
            sql.push_str(&format!(
                " AND (created_us < ${a} OR (created_us = ${a} AND id < ${b}))",
                a = n + 1,
                b = n + 2
            ));
            n += 2;
        }
        sql.push_str(&format!(" ORDER BY created_us DESC, id DESC LIMIT ${}", n + 1));
        let mut q = sqlx::query(&sql).bind(account_id);
        if let Some(s) = status {
            q = q.bind(s);
        }
        if let Some((at, id)) = after {
            q = q.bind(at).bind(id);
        }
        let rows = q.bind(limit).fetch_all(&self.read).await?;
        rows.iter().map(TaskRow::from_row).collect()
    }

    /// Takes the oldest open task whose lease is free or expired, marks it processing
    /// and leases it to `owner` until `lease_until`.
    #[tracing::instrument(skip_all)]
    pub async fn claim_task(&self, owner: &str, now: i64, lease_until: i64) -> Result<Option<TaskRow>> {
        let pick = match self.backend {
            Backend::Sqlite => {
                "SELECT id FROM tasks WHERE status IN ('pending', 'processing') \
                 AND lease_until < $3 ORDER BY lease_until, created_at LIMIT 1"
            }
            Backend::Postgres => {
                "SELECT id FROM tasks WHERE status IN ('pending', 'processing') \
                 AND lease_until < $3 ORDER BY lease_until, created_at LIMIT 1 \
                 FOR UPDATE SKIP LOCKED"
            }
        };
        let sql = format!(
            "UPDATE tasks SET status = 'processing', lease_owner = $1, lease_until = $2, \
             attempts = attempts + 1, updated_at = $3 \
             WHERE id = ({pick}) AND status IN ('pending', 'processing') \
             AND lease_until < $3 RETURNING {TASK_COLUMNS}"
        );
        let row = sqlx::query(&sql).bind(owner).bind(lease_until).bind(now).fetch_optional(&self.write).await?;
        row.map(|r| TaskRow::from_row(&r)).transpose()
    }

    /// Extends the lease and raises progress (never lowers it). False when the task
    /// is no longer this owner's open task (cancelled, or taken over).
    #[tracing::instrument(skip_all)]
    pub async fn heartbeat(&self, id: &str, owner: &str, progress: i64, lease_until: i64) -> Result<bool> {
        let sql = match self.backend {
            Backend::Sqlite => {
                "UPDATE tasks SET progress = MAX(progress, $1), lease_until = $2, updated_at = $5 \
                 WHERE id = $3 AND lease_owner = $4 AND status = 'processing'"
            }
            Backend::Postgres => {
                "UPDATE tasks SET progress = GREATEST(progress, $1), lease_until = $2, updated_at = $5 \
                 WHERE id = $3 AND lease_owner = $4 AND status = 'processing'"
            }
        };
        let done = sqlx::query(sql)
            .bind(progress)
            .bind(lease_until)
            .bind(id)
            .bind(owner)
            .bind(crate::util::now_ms())
            .execute(&self.write)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Hands a task back without finishing it (shutdown): it can be claimed at once.
    #[tracing::instrument(skip_all)]
    pub async fn release_lease(&self, id: &str, owner: &str) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE tasks SET lease_owner = NULL, lease_until = 0 WHERE id = $1 AND lease_owner = $2 \
             AND status = 'processing'",
        )
        .bind(id)
        .bind(owner)
        .execute(&self.write)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Records which provider runs the task (shown to admins).
    #[tracing::instrument(skip_all)]
    pub async fn set_provider(&self, id: &str, owner: &str, provider: &str) -> Result<bool> {
        let done =
            sqlx::query("UPDATE tasks SET provider = $1 WHERE id = $2 AND lease_owner = $3 AND status = 'processing'")
                .bind(provider)
                .bind(id)
                .bind(owner)
                .execute(&self.write)
                .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Ends an open task and settles its money in the same transaction: a charge on
    /// completion, a full release on failure. With `owner`, only the lease holder may
    /// finish it. Returns the final row, or `None` when the task was not open (or not
    /// ours), in which case nothing changed.
    #[tracing::instrument(skip_all, fields(task_id = %id))]
    pub async fn finish_task(
        &self,
        id: &str,
        owner: Option<&str>,
        finish: &Finish,
        outbox: Outbox<'_>,
    ) -> Result<Option<TaskRow>> {
        let now = crate::util::now_ms();
        let mut tx = self.write.begin().await?;
        let sql = format!(
            "UPDATE tasks SET status = $1, progress = CASE WHEN $1 = 'completed' THEN 100 ELSE progress END, \
             results = $2, result_data = $3, error_code = $4, error_message = $5, \
             credits_charged = CASE WHEN $1 = 'completed' THEN credits_reserved ELSE 0 END, \
             lease_owner = NULL, lease_until = 0, finished_at = $6, updated_at = $6 \
             WHERE id = $8 AND status IN ('pending', 'processing') \
             AND ($7 = '' OR lease_owner = $7) RETURNING {TASK_COLUMNS}"
        );
        let (status, results, data, code, message) = match finish {
            Finish::Completed { results_json, result_data_json } => {
                ("completed", Some(results_json.as_str()), result_data_json.as_deref(), None, None)
            }
            Finish::Failed { code, message } => ("failed", None, None, Some(code.as_str()), Some(message.as_str())),
        };
        let row = sqlx::query(&sql)
            .bind(status)
            .bind(results)
            .bind(data)
            .bind(code)
            .bind(message)
            .bind(now)
            .bind(owner.unwrap_or_default())
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?;
        let Some(row) = row else {
            tx.rollback().await?;
            return Ok(None);
        };
        let task = TaskRow::from_row(&row)?;
        let amount = task.credits_reserved;
        let (kind, account_sql, key_sql) = if status == "completed" {
            ("charge", "UPDATE accounts SET held = held - $1, used = used + $1 WHERE id = $2", None)
        } else {
            (
                "release",
                "UPDATE accounts SET held = held - $1, balance = balance + $1 WHERE id = $2",
                Some("UPDATE api_keys SET spent = spent - $1 WHERE id = $2"),
            )
        };
        // The unique (task_id, 'settle') entry is the last line of defence against a
        // double settlement: a second one fails and rolls everything back.
        sqlx::query(
            "INSERT INTO ledger (account_id, task_id, kind, amount, note, created_at) \
             VALUES ($1, $2, 'settle', $3, $4, $5)",
        )
        .bind(&task.account_id)
        .bind(&task.id)
        .bind(amount)
        .bind(kind)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        sqlx::query(account_sql).bind(amount).bind(&task.account_id).execute(&mut *tx).await?;
        if let Some(key_sql) = key_sql {
            sqlx::query(key_sql).bind(amount).bind(&task.key_id).execute(&mut *tx).await?;
        }
        // The callback joins the same transaction: it exists if and only if the
        // final state does.
        if let Some(d) = outbox(&task) {
            sqlx::query(
                "INSERT INTO deliveries (id, task_id, account_id, url, body, status, attempts, \
                 next_attempt_at, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, 'pending', 0, $6, $6, $6)",
            )
            .bind(&d.id)
            .bind(&task.id)
            .bind(&task.account_id)
            .bind(&d.url)
            .bind(&d.body)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(Some(task))
    }

    /// Cancels the caller's task if it is still open.
    #[tracing::instrument(skip_all)]
    pub async fn cancel_task(&self, account_id: &str, id: &str, outbox: Outbox<'_>) -> Result<CancelOutcome> {
        let Some(task) = self.get_task_primary(account_id, id).await? else {
            return Ok(CancelOutcome::NotFound);
        };
        if task.is_final() {
            return Ok(CancelOutcome::NotCancellable(task));
        }
        let finish = Finish::Failed {
            code: "request_cancelled".to_owned(),
            message: "The task was cancelled by the client.".to_owned(),
        };
        match self.finish_task(id, None, &finish, outbox).await? {
            Some(done) => Ok(CancelOutcome::Cancelled(done)),
            // It ended between our read and our write: report it as it is now.
            None => match self.get_task_primary(account_id, id).await? {
                Some(t) => Ok(CancelOutcome::NotCancellable(t)),
                None => Ok(CancelOutcome::NotFound),
            },
        }
    }

    async fn get_task_primary(&self, account_id: &str, id: &str) -> Result<Option<TaskRow>> {
        let sql = format!("SELECT {TASK_COLUMNS} FROM tasks WHERE id = $1 AND account_id = $2");
        let row = sqlx::query(&sql).bind(id).bind(account_id).fetch_optional(&self.write).await?;
        row.map(|r| TaskRow::from_row(&r)).transpose()
    }

    /// Counts of the account's tasks by status (for the playground's history line).
    #[tracing::instrument(skip_all)]
    pub async fn count_open_tasks(&self) -> Result<i64> {
        let row = sqlx::query("SELECT COUNT(*) AS n FROM tasks WHERE status IN ('pending', 'processing')")
            .fetch_one(&self.read)
            .await?;
        Ok(row.try_get("n")?)
    }

    // ---- files --------------------------------------------------------------------

    #[tracing::instrument(skip_all)]
    pub async fn insert_file(&self, file: &FileRow) -> Result<()> {
        sqlx::query(
            "INSERT INTO files (id, account_id, kind, content_type, bytes, created_at, expires_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(&file.id)
        .bind(&file.account_id)
        .bind(&file.kind)
        .bind(&file.content_type)
        .bind(file.bytes)
        .bind(file.created_at)
        .bind(file.expires_at)
        .execute(&self.write)
        .await?;
        Ok(())
    }

    #[tracing::instrument(skip_all)]
    pub async fn get_file(&self, id: &str) -> Result<Option<FileRow>> {
        let row = sqlx::query(
            "SELECT id, account_id, kind, content_type, bytes, created_at, expires_at FROM files WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(&self.read)
        .await?;
        row.map(|r| FileRow::from_row(&r)).transpose()
    }

    /// Up to `limit` files whose time is over.
    #[tracing::instrument(skip_all)]
    pub async fn expired_files(&self, now: i64, limit: i64) -> Result<Vec<FileRow>> {
        let rows = sqlx::query(
            "SELECT id, account_id, kind, content_type, bytes, created_at, expires_at FROM files \
             WHERE expires_at < $1 ORDER BY expires_at LIMIT $2",
        )
        .bind(now)
        .bind(limit)
        .fetch_all(&self.read)
        .await?;
        rows.iter().map(FileRow::from_row).collect()
    }

    #[tracing::instrument(skip_all)]
    pub async fn delete_file(&self, id: &str) -> Result<()> {
        sqlx::query("DELETE FROM files WHERE id = $1").bind(id).execute(&self.write).await?;
        Ok(())
    }

    #[tracing::instrument(skip_all)]
    pub async fn delete_idempotency_before(&self, before: i64) -> Result<u64> {
        let done =
            sqlx::query("DELETE FROM idempotency WHERE created_at < $1").bind(before).execute(&self.write).await?;
        Ok(done.rows_affected())
    }

    // ---- elements -------------------------------------------------------------------

    /// Which of `ids` are elements of this account.
    #[tracing::instrument(skip_all)]
    pub async fn known_elements(&self, account_id: &str, ids: &[String]) -> Result<Vec<String>> {
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
            let row = sqlx::query(
                "SELECT id, account_id, task_id, provider, upstream_id, name, description, \
                 frontal_file, created_at FROM elements WHERE id = $1",
            )
            .bind(id)
            .fetch_optional(&self.read)
            .await?;
            if let Some(r) = row {
                out.push(ElementRow::from_row(&r)?);
            }
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

/// The statements of one create, inside a transaction the caller owns. A create
/// that is refused undoes its own changes (so several creates can share one
/// transaction), leaving the transaction as it found it.
async fn create_steps(
    tx: &mut sqlx::AnyConnection,
    task: &NewTask,
    idem: Option<&Idempotency>,
    response: &str,
) -> Result<CreateOutcome> {
    if let Some(idem) = idem {
        // A key older than the window no longer counts: forget it first.
        sqlx::query("DELETE FROM idempotency WHERE account_id = $1 AND key = $2 AND created_at < $3")
            .bind(&task.account_id)
            .bind(&idem.key)
            .bind(idem.not_before)
            .execute(&mut *tx)
            .await?;
        let inserted = sqlx::query(
            "INSERT INTO idempotency (account_id, key, body_hash, task_id, response, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (account_id, key) DO NOTHING",
        )
        .bind(&task.account_id)
        .bind(&idem.key)
        .bind(&idem.body_hash)
        .bind(&task.id)
        .bind(response)
        .bind(task.created_at)
        .execute(&mut *tx)
        .await?;
        if inserted.rows_affected() == 0 {
            let row = sqlx::query("SELECT body_hash, response FROM idempotency WHERE account_id = $1 AND key = $2")
                .bind(&task.account_id)
                .bind(&idem.key)
                .fetch_one(&mut *tx)
                .await?;
            let hash: String = row.try_get("body_hash")?;
            return Ok(if hash == idem.body_hash {
                CreateOutcome::Replay(row.try_get("response")?)
            } else {
                CreateOutcome::Conflict
            });
        }
    }
    let held = sqlx::query(
        "UPDATE accounts SET balance = balance - $1, held = held + $1 \
         WHERE id = $2 AND balance >= $1",
    )
    .bind(task.credits_reserved)
    .bind(&task.account_id)
    .execute(&mut *tx)
    .await?;
    if held.rows_affected() != 1 {
        forget_idempotency(tx, task, idem).await?;
        return Ok(CreateOutcome::InsufficientQuota);
    }
    let capped = sqlx::query(
        "UPDATE api_keys SET spent = spent + $1 \
         WHERE id = $2 AND (credit_cap IS NULL OR spent + $1 <= credit_cap)",
    )
    .bind(task.credits_reserved)
    .bind(&task.key_id)
    .execute(&mut *tx)
    .await?;
    if capped.rows_affected() != 1 {
        sqlx::query("UPDATE accounts SET balance = balance + $1, held = held - $1 WHERE id = $2")
            .bind(task.credits_reserved)
            .bind(&task.account_id)
            .execute(&mut *tx)
            .await?;
        forget_idempotency(tx, task, idem).await?;
        return Ok(CreateOutcome::KeyCapExceeded);
    }
    sqlx::query(
        "INSERT INTO tasks (id, account_id, key_id, model, status, progress, request, \
         credits_reserved, video_duration, estimated_time, callback_url, attempts, deadline_at, \
         created_at, created_us, updated_at, user_group) \
         VALUES ($1, $2, $3, $4, 'pending', 0, $5, $6, $7, $8, $9, 0, $10, $11, $12, $11, $13)",
    )
    .bind(&task.id)
    .bind(&task.account_id)
    .bind(&task.key_id)
    .bind(&task.model)
    .bind(&task.request_json)
    .bind(task.credits_reserved)
    .bind(task.video_duration)
    .bind(task.estimated_time)
    .bind(&task.callback_url)
    .bind(task.deadline_at)
    .bind(task.created_at)
    .bind(task.created_us)
    .bind(&task.user_group)
    .execute(&mut *tx)
    .await?;
    sqlx::query(
        "INSERT INTO ledger (account_id, task_id, kind, amount, created_at) \
         VALUES ($1, $2, 'hold', $3, $4)",
    )
    .bind(&task.account_id)
    .bind(&task.id)
    .bind(task.credits_reserved)
    .bind(task.created_at)
    .execute(&mut *tx)
    .await?;
    Ok(CreateOutcome::Created)
}

async fn forget_idempotency(tx: &mut sqlx::AnyConnection, task: &NewTask, idem: Option<&Idempotency>) -> Result<()> {
    if let Some(idem) = idem {
        sqlx::query("DELETE FROM idempotency WHERE account_id = $1 AND key = $2 AND task_id = $3")
            .bind(&task.account_id)
            .bind(&idem.key)
            .bind(&task.id)
            .execute(&mut *tx)
            .await?;
    }
    Ok(())
}
