//! A small cache of serialized task objects for the polling path, the hottest
//! route of the API. Every change this process makes to a task (create, claim,
//! progress, cancel, finish) replaces its entry with a tombstone at once. A final
//! task never changes, so it is kept until evicted. When this process is the only
//! writer (SQLite: one process per data folder) the cache is exact and open tasks
//! stay cached too; with shared PostgreSQL, where another replica may change a
//! task, an open task is served at most `OPEN_TTL` late.
//!
//! A reader that misses takes a [`Ticket`] before it reads the database and may
//! only fill the entry if nothing changed it meanwhile: otherwise a read taken
//! just before a change could be cached just after it, and (as sole writer) be
//! served forever.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::ids::{AccountId, TaskId};
use crate::util::FastMap;

const OPEN_TTL: Duration = Duration::from_millis(250);
const MAX_ENTRIES: usize = 50_000;

struct Entry {
    stamp: u64,
    /// `None` for a tombstone: the task changed and must be read again.
    value: Option<Value>,
}

struct Value {
    account_id: AccountId,
    body: Bytes,
    at: Instant,
    is_final: bool,
}

/// What a missed lookup saw: the entry's stamp (`None` when there was none) in
/// the cache's current epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ticket {
    epoch: u64,
    stamp: Option<u64>,
}

#[derive(Default)]
struct Entries {
    map: FastMap<TaskId, Entry>,
    /// Raised whenever the map is emptied: every ticket taken before is void,
    /// since the tombstones that would have voided it are gone.
    epoch: u64,
}

impl Entries {
    /// Empties a full map; tombstones count, so memory stays bounded however
    /// many tasks change without being read again.
    fn make_room(&mut self) {
        if self.map.len() >= MAX_ENTRIES {
            self.map.clear();
            self.epoch += 1;
        }
    }
}

#[derive(Default)]
pub struct TaskCache {
    entries: Mutex<Entries>,
    next_stamp: AtomicU64,
    /// True when no other process writes tasks (SQLite).
    sole_writer: bool,
}

impl TaskCache {
    pub fn new(sole_writer: bool) -> Self {
        Self { entries: Mutex::new(Entries::default()), next_stamp: AtomicU64::new(1), sole_writer }
    }

    fn stamp(&self) -> u64 {
        self.next_stamp.fetch_add(1, Ordering::Relaxed)
    }

    /// The cached JSON of the account's task if fresh; otherwise the ticket to
    /// fill it with after reading the database.
    pub fn get(&self, account_id: &AccountId, id: &TaskId) -> Result<Bytes, Ticket> {
        self.get_at(account_id, id, Instant::now())
    }

    fn get_at(&self, account_id: &AccountId, id: &TaskId, now: Instant) -> Result<Bytes, Ticket> {
        let Ok(entries) = self.entries.lock() else { return Err(Ticket { epoch: u64::MAX, stamp: None }) };
        let e = entries.map.get(id);
        let fresh = |v: &Value| v.is_final || self.sole_writer || now.saturating_duration_since(v.at) < OPEN_TTL;
        match e.and_then(|e| e.value.as_ref()) {
            Some(v) if v.account_id == *account_id && fresh(v) => Ok(v.body.clone()),
            _ => Err(Ticket { epoch: entries.epoch, stamp: e.map(|e| e.stamp) }),
        }
    }

    /// The ticket for a task about to be created (it has no entry yet).
    pub fn ticket(&self, id: &TaskId) -> Ticket {
        match self.entries.lock() {
            Ok(entries) => Ticket { epoch: entries.epoch, stamp: entries.map.get(id).map(|e| e.stamp) },
            Err(_) => Ticket { epoch: u64::MAX, stamp: None },
        }
    }

    /// Fills the entry, unless it changed since `ticket` was taken.
    pub fn put(&self, ticket: Ticket, account_id: &AccountId, id: &TaskId, body: Bytes, is_final: bool) {
        let stamp = self.stamp();
        let Ok(mut entries) = self.entries.lock() else { return };
        if entries.epoch != ticket.epoch || entries.map.get(id).map(|e| e.stamp) != ticket.stamp {
            return;
        }
        entries.make_room();
        let value = Value { account_id: account_id.clone(), body, at: Instant::now(), is_final };
        entries.map.insert(id.clone(), Entry { stamp, value: Some(value) });
    }

    /// The task changed: whatever is cached, or being read, is stale.
    pub fn forget(&self, id: &TaskId) {
        let stamp = self.stamp();
        if let Ok(mut entries) = self.entries.lock() {
            entries.make_room();
            entries.map.insert(id.clone(), Entry { stamp, value: None });
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.entries.lock().map(|e| e.map.len()).unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn acc(s: &str) -> AccountId {
        AccountId::from_raw(s)
    }

    fn t(s: &str) -> TaskId {
        TaskId::from_raw(s)
    }

    #[test]
    fn a_read_taken_before_a_change_is_not_cached_after_it() {
        let cache = TaskCache::new(true);
        let ticket = cache.get(&acc("acc"), &t("t")).err().unwrap_or(Ticket { epoch: u64::MAX, stamp: None });
        // The worker finishes the task between the reader's DB read and its put.
        cache.forget(&t("t"));
        cache.put(ticket, &acc("acc"), &t("t"), Bytes::from_static(b"processing"), false);
        let ticket = match cache.get(&acc("acc"), &t("t")) {
            Ok(body) => panic!("a stale body was served: {body:?}"),
            Err(t) => t,
        };
        cache.put(ticket, &acc("acc"), &t("t"), Bytes::from_static(b"completed"), true);
        assert_eq!(cache.get(&acc("acc"), &t("t")).ok(), Some(Bytes::from_static(b"completed")));
        // Another account never sees it.
        assert!(cache.get(&acc("other"), &t("t")).is_err());
    }

    #[test]
    fn a_create_racing_a_claim_does_not_cache_the_pending_body() {
        let cache = TaskCache::new(true);
        let ticket = cache.ticket(&t("t"));
        cache.forget(&t("t"));
        cache.put(ticket, &acc("acc"), &t("t"), Bytes::from_static(b"pending"), false);
        assert!(cache.get(&acc("acc"), &t("t")).is_err());
    }

    #[test]
    fn open_tasks_expire_when_other_replicas_write() {
        let cache = TaskCache::new(false);
        cache.put(cache.ticket(&t("t")), &acc("acc"), &t("t"), Bytes::from_static(b"open"), false);
        assert!(cache.get(&acc("acc"), &t("t")).is_ok());
        let later = Instant::now() + OPEN_TTL + Duration::from_millis(1);
        assert!(cache.get_at(&acc("acc"), &t("t"), later).is_err());
    }

    #[test]
    fn tasks_that_change_and_are_never_read_again_do_not_grow_it() {
        let cache = TaskCache::new(true);
        let before = cache.ticket(&t("late"));
        for i in 0..MAX_ENTRIES + 10 {
            cache.forget(&t(&format!("t{i}")));
        }
        assert!(cache.len() <= MAX_ENTRIES, "{} entries", cache.len());
        // A read from before the map was emptied may not fill it: its tombstone
        // may have gone with the rest.
        cache.put(before, &acc("acc"), &t("late"), Bytes::from_static(b"stale"), false);
        assert!(cache.get(&acc("acc"), &t("late")).is_err());
    }
}
