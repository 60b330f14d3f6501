//! The janitor: deletes files whose links have expired, forgets idempotency
//! keys older than their 24-hour window and removes temporary files a crash left.

use tokio_util::sync::CancellationToken;

use crate::state::AppState;
use crate::util;

/// One sweep; returns how many files it deleted.
pub async fn sweep(state: &AppState) -> anyhow::Result<usize> {
    let now = util::now_ms();
    let mut deleted = 0;
    loop {
        let batch = state.store.expired_files(now, 500).await?;
        if batch.is_empty() {
            break;
        }
        for file in &batch {
            // The blob first: a row without a blob is harmless, a blob without a
            // row would never be found again.
            state.blobs.delete(&file.id).await?;
            state.store.delete_file(&file.id).await?;
            deleted += 1;
        }
    }
    state.store.delete_idempotency_before(now - 24 * 3600 * 1000).await?;
    // Temporary files a crash left in the data folder: no write lasts longer
    // than a task may, and an hour more.
    let stale_after = state.config.task_deadline_secs + std::time::Duration::from_secs(3600);
    match state.blobs.sweep_temporary(stale_after).await {
        Ok(0) => {}
        Ok(n) => tracing::info!(removed = n, "janitor removed temporary files left by a crash"),
        Err(e) => tracing::warn!(error = %e, "could not sweep temporary files"),
    }
    Ok(deleted)
}

pub async fn run_janitor(state: AppState, shutdown: CancellationToken) {
    loop {
        match sweep(&state).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(deleted = n, "janitor deleted expired files"),
            Err(e) => tracing::warn!(error = ?e, "janitor sweep failed"),
        }
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(state.config.janitor_interval_secs) => {}
        }
    }
}
