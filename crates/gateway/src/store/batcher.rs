//! SQLite's write path under load: creates that arrive together share one
//! transaction behind the single writer (group commit), and the write-ahead log is
//! copied back into the database beside the writer, never inside its commits.

use std::time::Duration;

use sqlx::AnyPool;

use super::tasks::{CreateOutcome, Idempotency, NewTask, create_steps};
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

/// Copies the SQLite write-ahead log back into the database twice a second, on a
/// reader connection, without blocking the writer (PASSIVE); ends with the pool.
pub(super) async fn run_checkpointer(pool: AnyPool) {
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
