//! The write path under load: creates that arrive together share one
//! transaction (group commit: behind SQLite's single writer, and on PostgreSQL
//! one flush and one turn of the account's row lock for many creates), and
//! SQLite's write-ahead log is kept short beside the writer.

use std::time::Duration;

use sqlx::AnyPool;

use super::ledger;
use super::tasks::{CreateOutcome, Idempotency, NewTask, create_steps, insert_created};
use super::{Result, Store, StoreError};

/// One create waiting for the group-commit writer.
#[derive(Debug)]
pub(super) struct CreateJob {
    pub task: NewTask,
    pub idem: Option<Idempotency>,
    pub response: String,
    pub reply: tokio::sync::oneshot::Sender<Result<CreateOutcome>>,
}

/// Most creates in one shared transaction.
const MAX_BATCH: usize = 64;

/// Starts the group-commit writer for `store`; its queue is the returned sender.
pub(super) fn spawn(store: Store) -> tokio::sync::mpsc::Sender<CreateJob> {
    let (tx, rx) = tokio::sync::mpsc::channel(4096);
    tokio::spawn(run(store, rx));
    tx
}

/// Creates of one key without an idempotency key form a group (held together);
/// creates with one stay apart. Sorting by it also takes accounts in id order.
fn group_of(job: &CreateJob) -> (&crate::ids::AccountId, &crate::ids::KeyId, bool) {
    (&job.task.account_id, &job.task.key_id, job.idem.is_some())
}

/// Takes whatever creates are waiting (up to a batch), runs them in one
/// transaction and answers each. If the transaction fails as a whole, each create
/// is run again on its own, so one bad create cannot sink the rest.
async fn run(store: Store, mut rx: tokio::sync::mpsc::Receiver<CreateJob>) {
    while let Some(first) = rx.recv().await {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        // Rows are locked account first, then key (as a settlement does), and
        // batches lock accounts in id order, so two replicas' batches never
        // wait on each other in a circle.
        batch.sort_by(|a, b| group_of(a).cmp(&group_of(b)));
        let together = async {
            let mut tx = store.write.begin().await?;
            let mut outcomes = Vec::with_capacity(batch.len());
            for group in batch.chunk_by(|a, b| group_of(a) == group_of(b)) {
                // A key's creates without an idempotency key are held at once
                // when they all pass; otherwise (and with idempotency keys, which
                // may replay) each on its own, as they would be alone.
                let creates: Vec<(i64, i64)> =
                    group.iter().map(|job| (job.task.credits_reserved, job.task.created_at)).collect();
                let first = &group[0].task;
                if group[0].idem.is_none()
                    && group.len() > 1
                    && ledger::hold_all(&mut tx, &first.account_id, &first.key_id, &creates).await?
                {
                    outcomes.extend(group.iter().map(|_| CreateOutcome::Created));
                    continue;
                }
                for job in group {
                    outcomes.push(create_steps(&mut tx, &job.task, job.idem.as_ref(), &job.response).await?);
                }
            }
            let created: Vec<&NewTask> = batch
                .iter()
                .zip(&outcomes)
                .filter(|(_, o)| matches!(o, CreateOutcome::Created))
                .map(|(job, _)| &job.task)
                .collect();
            insert_created(&mut tx, &created).await?;
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

/// How often the log is copied back into the database.
const CHECKPOINT_EVERY: Duration = Duration::from_millis(100);
/// A log at least this long (bytes) is started again from the top after the copy.
const RESTART_AT_BYTES: i64 = 16 * 1024 * 1024;

/// Keeps the SQLite write-ahead log small under sustained writes; ends with the pools.
///
/// Every round a PASSIVE checkpoint on a reader connection copies the log back
/// into the database beside the writer, without blocking it. Under a steady
/// stream of commits that alone never lets the log start again from its
/// beginning (the writer appends while it copies, so the log is never wholly
/// copied): it grew to ten times the database in a minute of creates. So when
/// the log has grown past `RESTART_AT_BYTES`, a RESTART checkpoint follows at
/// once on the writer's own connection, between two commits: it copies only
/// what was committed during the passive copy (so creates wait 3 to 5 ms, not
/// the whole copy and its flush), waits briefly for readers to leave
/// the log, and the next commit starts the log from the top, cutting the file
/// back to `journal_size_limit`. (Restarting five times a second whatever the
/// log's length, each restart copying 100 ms of commits, kept creates waiting
/// 15 ms at a time: p99 16 ms.)
pub(super) async fn run_checkpointer(read: AnyPool, write: AnyPool) {
    // A frame is a page and its 24-byte header; SQLite's default page if unread.
    let page = sqlx::query_scalar::<_, i64>("PRAGMA page_size").fetch_one(&read).await.unwrap_or(4096);
    let frame_bytes = page + 24;
    loop {
        tokio::time::sleep(CHECKPOINT_EVERY).await;
        if read.is_closed() || write.is_closed() {
            return;
        }
        // (busy, frames in the log, frames copied)
        let copied = sqlx::query_as::<_, (i64, i64, i64)>("PRAGMA wal_checkpoint(PASSIVE)").fetch_one(&read).await;
        let result = match copied {
            Ok((_, log, _)) if log.saturating_mul(frame_bytes) >= RESTART_AT_BYTES => {
                sqlx::raw_sql("PRAGMA busy_timeout = 20; PRAGMA wal_checkpoint(RESTART); PRAGMA busy_timeout = 5000;")
                    .execute(&write)
                    .await
                    .map(drop)
            }
            other => other.map(drop),
        };
        if let Err(e) = result {
            if matches!(e, sqlx::Error::PoolClosed) {
                return;
            }
            tracing::warn!(error = %e, "WAL checkpoint failed; will retry");
        }
    }
}
