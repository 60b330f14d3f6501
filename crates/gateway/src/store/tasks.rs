//! Tasks: create (with its hold and idempotency key, in one transaction), read,
//! list, finish (with its settlement and callback, in one transaction) and cancel.

use sqlx::any::AnyArguments;
use sqlx::{Any, AnyConnection, Arguments, Row};
use vidgate_api::task::{TaskErrorCode, TaskStatus};

use super::ledger;
use super::{Backend, Result, Store, StoreError};
use crate::ids::{AccountId, DeliveryId, KeyId, LeaseOwner, TaskId};

/// A task as stored. Decoded from a row, or (on SQLite, for a page of tasks)
/// from a JSON object of its columns by name.
#[derive(Debug, Clone, sqlx::FromRow, serde::Deserialize)]
pub struct TaskRow {
    pub id: TaskId,
    pub account_id: AccountId,
    pub key_id: KeyId,
    pub user_group: String,
    pub model: String,
    #[sqlx(try_from = "super::Text")]
    pub status: TaskStatus,
    pub progress: i64,
    /// The stored request (`job::StoredRequest` as JSON).
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
    /// How many times a worker claimed the task.
    pub attempts: i64,
    pub lease_owner: Option<String>,
    pub lease_until: i64,
    pub deadline_at: i64,
    pub created_at: i64,
    pub created_us: i64,
    pub updated_at: i64,
    pub finished_at: Option<i64>,
}

impl Default for TaskRow {
    fn default() -> Self {
        Self {
            id: TaskId::default(),
            account_id: AccountId::default(),
            key_id: KeyId::default(),
            user_group: "default".to_owned(),
            model: String::new(),
            status: TaskStatus::Pending,
            progress: 0,
            request: String::new(),
            credits_reserved: 0,
            credits_charged: None,
            video_duration: 0,
            estimated_time: 0,
            callback_url: None,
            results: None,
            result_data: None,
            error_code: None,
            error_message: None,
            provider: None,
            attempts: 0,
            lease_owner: None,
            lease_until: 0,
            deadline_at: 0,
            created_at: 0,
            created_us: 0,
            updated_at: 0,
            finished_at: None,
        }
    }
}

impl TaskRow {
    pub fn is_final(&self) -> bool {
        self.status.is_final()
    }
}

pub(super) const TASK_COLUMNS: &str = "id, account_id, key_id, user_group, model, status, progress, request, \
    credits_reserved, credits_charged, video_duration, estimated_time, callback_url, results, \
    result_data, error_code, error_message, provider, attempts, lease_owner, lease_until, \
    deadline_at, created_at, created_us, updated_at, finished_at";

/// A new task, fully validated and priced, ready to be inserted with its hold.
#[derive(Debug, Clone)]
pub struct NewTask {
    pub id: TaskId,
    pub account_id: AccountId,
    pub key_id: KeyId,
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
    /// The balance or a limit of the key said no; nothing was created or held.
    Refused(crate::limits::Refusal),
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

/// The `WHERE` clause of a page of tasks and the values it binds, built one
/// condition at a time.
struct Page<'q> {
    filter: String,
    args: AnyArguments<'q>,
}

impl Default for Page<'_> {
    fn default() -> Self {
        Self { filter: "1 = 1".to_owned(), args: AnyArguments::default() }
    }
}

impl<'q> Page<'q> {
    /// Binds `value`; the number of its parameter.
    fn bind<T: 'q + sqlx::Encode<'q, Any> + sqlx::Type<Any>>(&mut self, value: T) -> Result<usize> {
        self.args.add(value).map_err(sqlx::Error::Encode)?;
        Ok(self.args.len())
    }

    /// Keeps the tasks where `test` (a column and an operator, `"status = "`)
    /// holds for `value`.
    fn and<T: 'q + sqlx::Encode<'q, Any> + sqlx::Type<Any>>(&mut self, test: &str, value: T) -> Result<()> {
        let n = self.bind(value)?;
        self.filter.push_str(&format!(" AND {test}${n}"));
        Ok(())
    }

    /// Keeps the tasks older than `(created_us, id)`: those after it, newest first.
    fn after(&mut self, (created_us, id): (i64, &'q str)) -> Result<()> {
        let (a, b) = (self.bind(created_us)?, self.bind(id)?);
        self.filter.push_str(&format!(" AND (created_us < ${a} OR (created_us = ${a} AND id < ${b}))"));
        Ok(())
    }
}

/// Which tasks an operator lists: every field narrows.
#[derive(Debug, Clone, Default)]
pub struct TaskFilter {
    pub status: Option<TaskStatus>,
    pub model: Option<String>,
    pub provider: Option<String>,
    pub account_id: Option<AccountId>,
}

/// How a task ends; each variant settles the money its own way.
#[derive(Debug, Clone)]
pub enum Finish {
    /// `charge` is what the task costs, at most its hold (models billed on their
    /// output may cost less than they held); `None` charges the whole hold.
    Completed {
        results_json: String,
        result_data_json: Option<String>,
        charge: Option<i64>,
    },
    Failed {
        code: TaskErrorCode,
        message: String,
    },
}

/// A callback to enqueue with a task's final state.
#[derive(Debug, Clone)]
pub struct NewDelivery {
    pub id: DeliveryId,
    pub url: String,
    pub body: String,
}

/// Renders the callback (if any) of a task that has just reached its final
/// state, inside the transaction that puts it there.
pub type CallbackFor<'a> = &'a (dyn Fn(&TaskRow) -> Option<NewDelivery> + Sync);

impl Store {
    /// Inserts the task and holds its price in one transaction, or changes nothing.
    /// Creates arriving together share one transaction (group commit): SQLite's
    /// single writer runs them back to back instead of one lock handoff each, and
    /// PostgreSQL flushes them and passes the account's row lock on once.
    #[tracing::instrument(skip_all, fields(task_id = %task.id))]
    pub async fn create_task(
        &self,
        task: &NewTask,
        idem: Option<&Idempotency>,
        response: &str,
    ) -> Result<CreateOutcome> {
        if let Some(batcher) = &self.batcher {
            let (reply, answer) = tokio::sync::oneshot::channel();
            let job = super::batcher::CreateJob {
                task: task.clone(),
                idem: idem.cloned(),
                response: response.to_owned(),
                reply,
            };
            if batcher.send(job).await.is_ok()
                && let Ok(outcome) = answer.await
            {
                return outcome;
            }
            return Err(StoreError::Corrupt("the create batcher stopped".to_owned()));
        }
        self.create_task_alone(task, idem, response).await
    }

    pub(super) async fn create_task_alone(
        &self,
        task: &NewTask,
        idem: Option<&Idempotency>,
        response: &str,
    ) -> Result<CreateOutcome> {
        let mut tx = self.write.begin().await?;
        let outcome = create_steps(&mut tx, task, idem, response).await?;
        if matches!(outcome, CreateOutcome::Created) {
            insert_created(&mut tx, &[task]).await?;
        }
        tx.commit().await?;
        Ok(outcome)
    }

    /// The caller's task; another account's task is indistinguishable from none.
    #[tracing::instrument(skip_all)]
    pub async fn get_task(&self, account_id: &AccountId, id: &TaskId) -> Result<Option<TaskRow>> {
        let sql = format!("SELECT {TASK_COLUMNS} FROM tasks WHERE id = $1 AND account_id = $2");
        Ok(sqlx::query_as(&sql).bind(id).bind(account_id).fetch_optional(&self.read).await?)
    }

    /// A task by id alone, for workers and admins (read from the writer: fresh).
    #[tracing::instrument(skip_all)]
    pub async fn get_task_any(&self, id: &TaskId) -> Result<Option<TaskRow>> {
        let sql = format!("SELECT {TASK_COLUMNS} FROM tasks WHERE id = $1");
        Ok(sqlx::query_as(&sql).bind(id).fetch_optional(&self.write).await?)
    }

    async fn get_task_primary(&self, account_id: &AccountId, id: &TaskId) -> Result<Option<TaskRow>> {
        let sql = format!("SELECT {TASK_COLUMNS} FROM tasks WHERE id = $1 AND account_id = $2");
        Ok(sqlx::query_as(&sql).bind(id).bind(account_id).fetch_optional(&self.write).await?)
    }

    /// One page of the caller's tasks, newest first, after `(created_us, id)` if given.
    #[tracing::instrument(skip_all)]
    pub async fn list_tasks(
        &self,
        account_id: &AccountId,
        status: Option<TaskStatus>,
        after: Option<(i64, &str)>,
        limit: i64,
    ) -> Result<Vec<TaskRow>> {
        let mut page = Page::default();
        page.and("account_id = ", account_id)?;
        if let Some(s) = status {
            page.and("status = ", s.as_str())?;
        }
        if let Some(after) = after {
            page.after(after)?;
        }
        self.newest_tasks(page, limit).await
    }

    /// One page of tasks across accounts, newest first, after `(created_us, id)`
    /// if given (the console's task list).
    #[tracing::instrument(skip_all)]
    pub async fn list_all_tasks(
        &self,
        filter: &TaskFilter,
        after: Option<(i64, &str)>,
        limit: i64,
    ) -> Result<Vec<TaskRow>> {
        let mut page = Page::default();
        if let Some(s) = filter.status {
            page.and("status = ", s.as_str())?;
        }
        if let Some(m) = &filter.model {
            page.and("model = ", m)?;
        }
        if let Some(p) = &filter.provider {
            page.and("provider = ", p)?;
        }
        if let Some(a) = &filter.account_id {
            page.and("account_id = ", a)?;
        }
        if let Some(after) = after {
            page.after(after)?;
        }
        self.newest_tasks(page, limit).await
    }

    /// The newest `limit` tasks that `page` admits, newest first.
    ///
    /// On SQLite the page comes back as one row holding a JSON array of the
    /// tasks: sqlx hands each row of a SQLite result from the connection's
    /// thread to the caller's task on its own, a thread wake-up per row, which
    /// was most of a listing's cost (a page of 20 took four times as long as a
    /// page of one). PostgreSQL sends the rows together and reads them as rows.
    async fn newest_tasks(&self, mut page: Page<'_>, limit: i64) -> Result<Vec<TaskRow>> {
        const NEWEST_FIRST: &str = "created_us DESC, id DESC";
        let limit_param = page.bind(limit)?;
        let rows = format!(
            "SELECT {TASK_COLUMNS} FROM tasks WHERE {} ORDER BY {NEWEST_FIRST} LIMIT ${limit_param}",
            page.filter
        );
        if self.backend == Backend::Postgres {
            return Ok(sqlx::query_as_with(&rows, page.args).fetch_all(&self.read).await?);
        }
        // Each task an object keyed by its columns' names, so that serde
        // matches the fields by name, not by position.
        static OBJECT: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
            let pairs: Vec<String> = TASK_COLUMNS.split(',').map(|c| format!("'{0}', {0}", c.trim())).collect();
            format!("json_object({})", pairs.join(", "))
        });
        let sql = format!("SELECT json_group_array({} ORDER BY {NEWEST_FIRST}) FROM ({rows})", *OBJECT);
        let json: String = sqlx::query_scalar_with(&sql, page.args).fetch_one(&self.read).await?;
        serde_json::from_str(&json).map_err(|e| StoreError::Corrupt(format!("a page of tasks: {e}")))
    }

    /// Records which provider runs the task (shown to admins).
    #[tracing::instrument(skip_all)]
    pub async fn set_provider(&self, id: &TaskId, owner: &LeaseOwner, provider: &str) -> Result<bool> {
        let done =
            sqlx::query("UPDATE tasks SET provider = $1 WHERE id = $2 AND lease_owner = $3 AND status = 'processing'")
                .bind(provider)
                .bind(id)
                .bind(owner)
                .execute(&self.write)
                .await?;
        Ok(done.rows_affected() == 1)
    }

    #[tracing::instrument(skip_all)]
    pub async fn set_task_cost(&self, id: &TaskId, owner: &LeaseOwner, cost_micro_usd: i64) -> Result<()> {
        sqlx::query("UPDATE tasks SET upstream_cost_micro_usd = $1 WHERE id = $2 AND lease_owner = $3")
            .bind(cost_micro_usd)
            .bind(id)
            .bind(owner)
            .execute(&self.write)
            .await?;
        Ok(())
    }

    /// Ends an open task and settles its money in the same transaction: a charge on
    /// completion, a full release on failure. With `owner`, only the lease holder may
    /// finish it. Returns the final row, or `None` when the task was not open (or not
    /// ours), in which case nothing changed.
    #[tracing::instrument(skip_all, fields(task_id = %id))]
    pub async fn finish_task(
        &self,
        id: &TaskId,
        owner: Option<&LeaseOwner>,
        finish: &Finish,
        callback_for: CallbackFor<'_>,
    ) -> Result<Option<TaskRow>> {
        let now = crate::util::now_ms();
        let mut tx = self.write.begin().await?;
        let sql = format!(
            "UPDATE tasks SET status = $1, progress = CASE WHEN $1 = 'completed' THEN 100 ELSE progress END, \
             results = $2, result_data = $3, error_code = $4, error_message = $5, \
             credits_charged = CASE WHEN $1 = 'completed' THEN MIN_CHARGE ELSE 0 END, \
             lease_owner = NULL, lease_until = 0, finished_at = $6, updated_at = $6 \
             WHERE id = $8 AND status IN ('pending', 'processing') \
             AND ($7 = '' OR lease_owner = $7) RETURNING {TASK_COLUMNS}"
        );
        let (status, results, data, code, message, charge) = match finish {
            Finish::Completed { results_json, result_data_json, charge } => {
                (TaskStatus::Completed, Some(results_json.as_str()), result_data_json.as_deref(), None, None, *charge)
            }
            Finish::Failed { code, message } => {
                (TaskStatus::Failed, None, None, Some(code.as_str()), Some(message.as_str()), None)
            }
        };
        // What completes is charged at most its hold (the clamp is in SQL, where
        // the hold is read in the same statement).
        let charge_sql = match charge {
            Some(units) => format!("{}(0, {}(credits_reserved, {}))", self.greatest(), self.least(), units.max(0)),
            None => "credits_reserved".to_owned(),
        };
        let sql = sql.replace("MIN_CHARGE", &charge_sql);
        let task: Option<TaskRow> = sqlx::query_as(&sql)
            .bind(status.as_str())
            .bind(results)
            .bind(data)
            .bind(code)
            .bind(message)
            .bind(now)
            .bind(owner.map(LeaseOwner::as_str).unwrap_or_default())
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?;
        let Some(task) = task else {
            tx.rollback().await?;
            return Ok(None);
        };
        ledger::settle(&mut tx, &task, now).await?;
        // The callback joins the same transaction: it exists if and only if the
        // final state does.
        if let Some(d) = callback_for(&task) {
            super::webhooks::insert_delivery(&mut tx, &task, &d, now).await?;
        }
        tx.commit().await?;
        Ok(Some(task))
    }

    /// Cancels the caller's task if it is still open.
    #[tracing::instrument(skip_all)]
    pub async fn cancel_task(
        &self,
        account_id: &AccountId,
        id: &TaskId,
        callback_for: CallbackFor<'_>,
    ) -> Result<CancelOutcome> {
        let Some(task) = self.get_task_primary(account_id, id).await? else {
            return Ok(CancelOutcome::NotFound);
        };
        if task.is_final() {
            return Ok(CancelOutcome::NotCancellable(task));
        }
        let finish = Finish::Failed {
            code: TaskErrorCode::RequestCancelled,
            message: "The task was cancelled by the client.".to_owned(),
        };
        match self.finish_task(id, None, &finish, callback_for).await? {
            Some(done) => Ok(CancelOutcome::Cancelled(done)),
            // It ended between our read and our write: report it as it is now.
            None => match self.get_task_primary(account_id, id).await? {
                Some(t) => Ok(CancelOutcome::NotCancellable(t)),
                None => Ok(CancelOutcome::NotFound),
            },
        }
    }

    /// Tasks `pending` (the queue) and `processing`, across all accounts (for `/metrics`).
    #[tracing::instrument(skip_all)]
    pub async fn count_open_tasks_by_status(&self) -> Result<(i64, i64)> {
        let rows = sqlx::query(
            "SELECT status, COUNT(*) AS n FROM tasks WHERE status IN ('pending', 'processing') GROUP BY status",
        )
        .fetch_all(&self.read)
        .await?;
        let (mut pending, mut processing) = (0, 0);
        for row in rows {
            let n: i64 = row.try_get("n")?;
            match row.try_get::<String, _>("status")?.as_str() {
                "pending" => pending = n,
                _ => processing = n,
            }
        }
        Ok((pending, processing))
    }

    #[tracing::instrument(skip_all)]
    pub async fn delete_idempotency_before(&self, before: i64) -> Result<u64> {
        let done =
            sqlx::query("DELETE FROM idempotency WHERE created_at < $1").bind(before).execute(&self.write).await?;
        Ok(done.rows_affected())
    }
}

/// The checks and holds of one create, inside a transaction the caller owns; a
/// `Created` outcome obliges the caller to `insert_created` the task in that
/// transaction. A create that is refused undoes its own changes (so several
/// creates can share one transaction), leaving the transaction as it found it.
pub(super) async fn create_steps(
    tx: &mut AnyConnection,
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
    if let Err(refusal) =
        ledger::hold(tx, &task.account_id, &task.key_id, task.credits_reserved, task.created_at).await?
    {
        forget_idempotency(tx, task, idem).await?;
        return Ok(CreateOutcome::Refused(refusal));
    }
    Ok(CreateOutcome::Created)
}

/// Writes the rows of creates that `create_steps` admitted, in the same
/// transaction: each task, pending, and its `hold` ledger entry. Two statements
/// for a whole batch: SQLite's one writer runs one statement at a time, so rows
/// per statement is what makes a busy create path fast.
pub(super) async fn insert_created(tx: &mut AnyConnection, tasks: &[&NewTask]) -> Result<()> {
    let positional = tx.backend_name() == <sqlx::Sqlite as sqlx::Database>::NAME;
    // 14 bound values a task, far within SQLite's 32766 per statement.
    for chunk in tasks.chunks(128) {
        let sql = format!(
            "INSERT INTO tasks (id, account_id, key_id, model, status, progress, request, credits_reserved, \
             video_duration, estimated_time, callback_url, attempts, deadline_at, created_at, created_us, \
             updated_at, user_group) VALUES {}",
            values_sql("(?, ?, ?, ?, 'pending', 0, ?, ?, ?, ?, ?, 0, ?, ?, ?, ?, ?)", chunk.len(), positional)
        );
        let mut insert = sqlx::query(&sql);
        for task in chunk {
            insert = insert
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
                .bind(task.created_at)
                .bind(&task.user_group);
        }
        insert.execute(&mut *tx).await?;
        let sql = format!(
            "INSERT INTO ledger (account_id, task_id, kind, amount, created_at) VALUES {}",
            values_sql("(?, ?, 'hold', ?, ?)", chunk.len(), positional)
        );
        let mut insert = sqlx::query(&sql);
        for task in chunk {
            insert = insert.bind(&task.account_id).bind(&task.id).bind(task.credits_reserved).bind(task.created_at);
        }
        insert.execute(&mut *tx).await?;
    }
    Ok(())
}

/// `rows` copies of `row`, joined, for a multi-row insert; each `?` in `row` is
/// a bound value. SQLite keeps the `?`, which it binds by position; PostgreSQL
/// gets them numbered `$1, $2, ...` across the statement. (SQLite finds a
/// numbered parameter's name by walking a list as long as the statement's
/// parameters, and sqlx asks it once per parameter: quadratic in the rows, 3%
/// of a create's CPU at twelve rows a statement.)
fn values_sql(row: &str, rows: usize, positional: bool) -> String {
    let mut sql = String::with_capacity((row.len() + 16) * rows);
    let mut n = 0;
    for i in 0..rows {
        if i > 0 {
            sql.push_str(", ");
        }
        for part in row.split_inclusive('?') {
            match part.strip_suffix('?') {
                Some(text) if !positional => {
                    n += 1;
                    sql.push_str(text);
                    sql.push('$');
                    sql.push_str(&n.to_string());
                }
                _ => sql.push_str(part),
            }
        }
    }
    sql
}

async fn forget_idempotency(tx: &mut AnyConnection, task: &NewTask, idem: Option<&Idempotency>) -> Result<()> {
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

#[cfg(test)]
mod tests {
    use super::values_sql;

    #[test]
    fn multi_row_values_keep_positional_marks_or_number_them_across_rows() {
        assert_eq!(values_sql("(?, 'hold', ?)", 2, true), "(?, 'hold', ?), (?, 'hold', ?)");
        assert_eq!(values_sql("(?, 'hold', ?)", 2, false), "($1, 'hold', $2), ($3, 'hold', $4)");
        assert_eq!(values_sql("(?, 0)", 1, false), "($1, 0)");
        assert_eq!(values_sql("(?)", 0, false), "");
    }
}
