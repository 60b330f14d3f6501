//! The request as a task row keeps it, and as workers and providers read it: the
//! validated `CreateTask` with every medium turned into a stored file or an
//! external image URL still to be fetched by the worker. Input videos are always
//! stored (fetched and probed at create).

use serde::{Deserialize, Serialize};
use vidgate_api::create::CreateTask;

use crate::ids::FileId;

/// Where a request medium is: in our storage already, or at a URL to fetch.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ImageRef {
    File(FileId),
    Url(String),
}

impl ImageRef {
    pub fn file(&self) -> Option<&FileId> {
        match self {
            Self::File(id) => Some(id),
            Self::Url(_) => None,
        }
    }
}

/// A task's request as stored in its row.
pub type StoredRequest = CreateTask<ImageRef>;
