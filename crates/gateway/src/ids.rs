//! Identifiers as types: each kind of id is minted in exactly one place (its
//! `new`), with one alphabet and one prefix, and a function that takes a task id
//! cannot be handed an account id by mistake. On the wire and in the database they
//! are plain strings.

use std::fmt;

use crate::util;

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident, $prefix:literal, $len:literal, $random:path) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
        #[derive(serde::Serialize, serde::Deserialize, sqlx::Type)]
        #[serde(transparent)]
        #[sqlx(transparent)]
        pub struct $name(String);

        impl $name {
            /// A fresh, unguessable id.
            pub fn new() -> Self {
                Self(format!(concat!($prefix, "{}"), $random($len)))
            }

            /// An id as found in a URL, a row or a stored document; whether it
            /// names anything is for the store to say.
            pub fn from_raw(s: impl Into<String>) -> Self {
                Self(s.into())
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl PartialEq<str> for $name {
            fn eq(&self, other: &str) -> bool {
                self.0 == other
            }
        }

        impl PartialEq<&str> for $name {
            fn eq(&self, other: &&str) -> bool {
                self.0 == *other
            }
        }
    };
}

id_type!(
    /// `acct-` and 16 of `[a-z0-9]`.
    AccountId, "acct-", 16, util::random_lower_alnum
);
id_type!(
    /// `key-` and 16 of `[a-z0-9]` (the id of an API key, never the key itself).
    KeyId, "key-", 16, util::random_lower_alnum
);
id_type!(
    /// `file-` and 24 of `[a-z0-9]`: uploads, request media and results.
    FileId, "file-", 24, util::random_lower_alnum
);
id_type!(
    /// `el-` and 16 of `[a-z0-9]`: vidgate's own id of a custom element.
    ElementId, "el-", 16, util::random_lower_alnum
);
id_type!(
    /// `batch-` and 16 of `[a-z0-9]`: a batch of top-up codes.
    BatchId, "batch-", 16, util::random_lower_alnum
);
id_type!(
    /// `msg_` and 24 of `[A-Za-z0-9]`: a callback delivery, the `webhook-id` header.
    DeliveryId, "msg_", 24, util::random_alnum
);
id_type!(
    /// `att-` and 16 of `[a-z0-9]`: one try of a task at an upstream route.
    AttemptId, "att-", 16, util::random_lower_alnum
);
id_type!(
    /// Who holds a lease on a task or a delivery: a worker, the upstream poller
    /// or a callback dispatcher of one process (`<role>-<12 of [a-z0-9]>`).
    LeaseOwner, "owner-", 12, util::random_lower_alnum
);

/// `task-unified-<unix seconds>-<8 of [a-z0-9]>`, EvoLink's shape (SPEC 1.2).
#[derive(
    Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Default, serde::Serialize, serde::Deserialize, sqlx::Type,
)]
#[serde(transparent)]
#[sqlx(transparent)]
pub struct TaskId(String);

impl TaskId {
    /// A fresh id made at `now_ms`: the tail starts with the millisecond in
    /// two characters that sort as it does, then six random ones, so ids made
    /// one after another sort one after another. New rows then land at the end
    /// of the id indexes (tasks, ledger) instead of on pages all over them: a
    /// busy create path writes a fraction of the pages to SQLite's log.
    pub fn new(now_ms: i64) -> Self {
        const SORTED: &[u8; 36] = b"0123456789abcdefghijklmnopqrstuvwxyz";
        let ms = now_ms.rem_euclid(1000) as usize;
        let (hi, lo) = (char::from(SORTED[ms / 36]), char::from(SORTED[ms % 36]));
        Self(format!("task-unified-{}-{hi}{lo}{}", now_ms / 1000, util::random_lower_alnum(6)))
    }

    /// An id as a client sent it, if it has the documented shape.
    pub fn parse(s: &str) -> Option<Self> {
        vidgate_api::task::is_valid_task_id(s).then(|| Self(s.to_owned()))
    }

    /// `parse` for an id already owned (a path parameter): nothing is copied.
    pub fn parse_owned(s: String) -> Option<Self> {
        vidgate_api::task::is_valid_task_id(&s).then_some(Self(s))
    }

    /// An id read back from our own rows or documents.
    pub fn from_raw(s: impl Into<String>) -> Self {
        Self(s.into())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for TaskId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for TaskId {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl PartialEq<str> for TaskId {
    fn eq(&self, other: &str) -> bool {
        self.0 == other
    }
}

impl LeaseOwner {
    /// A lease owner name for one worker, poller or dispatcher: `role-<random>`.
    pub fn named(role: &str) -> Self {
        Self(format!("{role}-{}", util::random_lower_alnum(12)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_kind_of_id_has_its_prefix_and_length() {
        assert!(AccountId::new().as_str().starts_with("acct-"));
        assert_eq!(FileId::new().as_str().len(), "file-".len() + 24);
        assert!(DeliveryId::new().as_str().starts_with("msg_"));
        let t = TaskId::new(1_764_000_000_123);
        assert!(t.as_str().starts_with("task-unified-1764000000-"), "{t}");
        assert_eq!(TaskId::parse(t.as_str()), Some(t));
        assert_eq!(TaskId::parse("task-unified-x"), None);
    }

    #[test]
    fn ids_are_plain_strings_on_the_wire() {
        let id = KeyId::from_raw("key-abc");
        assert_eq!(serde_json::to_string(&id).ok().as_deref(), Some("\"key-abc\""));
    }
}
