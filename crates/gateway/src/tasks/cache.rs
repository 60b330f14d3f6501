//! A small cache of serialized task objects for the polling path, the hottest
//! route of the API. Every change this process makes to a task (create, claim,
//! progress, cancel, finish) drops or replaces its entry at once. A final task
//! never changes, so it is kept until evicted. When this process is the only
//! writer (SQLite: one process per data folder) the cache is exact and open tasks
//! stay cached too; with shared PostgreSQL, where another replica may change a
//! task, an open task is served at most `OPEN_TTL` late.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use bytes::Bytes;

const OPEN_TTL: Duration = Duration::from_millis(250);
const MAX_ENTRIES: usize = 50_000;

struct Entry {
    account_id: String,
    body: Bytes,
    at: Instant,
    is_final: bool,
}

#[derive(Default)]
pub struct TaskCache {
    entries: Mutex<HashMap<String, Entry>>,
    /// True when no other process writes tasks (SQLite).
    sole_writer: bool,
}

impl TaskCache {
    pub fn new(sole_writer: bool) -> Self {
        Self { entries: Mutex::new(HashMap::new()), sole_writer }
    }

    /// The cached JSON of the account's task, if fresh.
    pub fn get(&self, account_id: &str, id: &str) -> Option<Bytes> {
        let entries = self.entries.lock().ok()?;
        let e = entries.get(id)?;
        let fresh = e.is_final || self.sole_writer || e.at.elapsed() < OPEN_TTL;
        (e.account_id == account_id && fresh).then(|| e.body.clone())
    }

    pub fn put(&self, account_id: &str, id: &str, body: Bytes, is_final: bool) {
        if let Ok(mut entries) = self.entries.lock() {
            if entries.len() >= MAX_ENTRIES {
                entries.clear();
            }
            entries
                .insert(id.to_owned(), Entry { account_id: account_id.to_owned(), body, at: Instant::now(), is_final });
        }
    }

    pub fn forget(&self, id: &str) {
        if let Ok(mut entries) = self.entries.lock() {
            entries.remove(id);
        }
    }
}
