//! Stored files (uploads, request images, results) behind one trait, `BlobStore`,
//! with two backends: a folder on this machine (`local`, the default) and an
//! S3-compatible object store (`s3`, when `blob_url` is set), so replicas that
//! share no disk share their files. Files are served through vidgate's own
//! HMAC-signed links that expire, by whichever replica is asked: a link is
//! `{public}/files/{id}?exp=..&sig=..`; the signature covers the id and the
//! expiry, so a tampered or stale link is refused.
//!
//! Files are written from, and read into, temporary files in the data folder
//! (`temp_path`, `local_copy`) or streamed (`read_range`): no file is ever read
//! whole into memory here, except the small images a task decodes anyway (`read`).

mod local;
mod s3;

use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bytes::Bytes;
use futures_util::StreamExt;
use futures_util::future::BoxFuture;
use futures_util::stream::BoxStream;

use crate::ids::FileId;
use crate::secret::Secret;
use crate::util;

pub use s3::{S3Location, aws_env};

/// What a backend's operations answer: `io::ErrorKind::NotFound` when the file
/// is not stored; any other error means the store could not be used just now
/// (unreachable, refusing, failing) and the operation may be tried again.
pub type BlobFuture<'a, T> = BoxFuture<'a, std::io::Result<T>>;
/// A file's bytes as they arrive.
pub type ByteStream = BoxStream<'static, std::io::Result<Bytes>>;

/// Where files are kept. Ids given to a backend are valid (`valid_id`).
pub trait BlobStore: Send + Sync + std::fmt::Debug {
    /// Stores `bytes` as `id`, whole or not at all.
    fn put<'a>(&'a self, id: &'a FileId, bytes: Bytes) -> BlobFuture<'a, ()>;
    /// Stores the finished file at `src` (a temporary file in the data folder) as
    /// `id`, whole or not at all, streaming it; `src` is gone once this succeeds
    /// and left in place when it fails, so the caller may try again.
    fn put_file<'a>(&'a self, id: &'a FileId, src: &'a Path) -> BlobFuture<'a, ()>;
    /// The size of `id` in bytes.
    fn size<'a>(&'a self, id: &'a FileId) -> BlobFuture<'a, u64>;
    /// Bytes `range` of `id` (the whole file when `None`), streamed. The range
    /// is within the file (the caller checked it against `size`).
    fn read<'a>(&'a self, id: &'a FileId, range: Option<Range<u64>>) -> BlobFuture<'a, ByteStream>;
    /// Deletes `id`; a file already gone is not an error.
    fn delete<'a>(&'a self, id: &'a FileId) -> BlobFuture<'a, ()>;
    /// The file's own path when it lives on this machine (no copy needed).
    fn local_path(&self, id: &FileId) -> Option<PathBuf>;
}

/// The store `blob_url` names (an S3 bucket, checked at once: see
/// `s3::S3Store::connect`, read with the `AWS_*` variables `aws_env`), or the
/// folder `folder` when it is unset. The error is one line naming
/// `VIDGATE_BLOB_URL`.
pub async fn open_store(
    blob_url: Option<&S3Location>,
    aws_env: &[(String, String)],
    folder: PathBuf,
) -> anyhow::Result<Arc<dyn BlobStore>> {
    std::fs::create_dir_all(&folder)?;
    Ok(match blob_url {
        Some(location) => Arc::new(s3::S3Store::connect(location, aws_env).await?),
        None => Arc::new(local::LocalFolder::new(folder)?),
    })
}

/// The blob store in use, a scratch folder on this machine for files on their
/// way in or out, and the link signer. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Blobs {
    store: Arc<dyn BlobStore>,
    scratch: PathBuf,
    secret: Secret,
    public_url: String,
}

/// A file of the store available at a path on this machine: the file itself
/// (local folder), or a temporary copy that is deleted when this is dropped.
#[derive(Debug)]
pub struct LocalCopy {
    path: PathBuf,
    temporary: bool,
}

impl LocalCopy {
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for LocalCopy {
    fn drop(&mut self) {
        if self.temporary {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

impl Blobs {
    /// Files in the folder `root` (made if missing).
    pub fn new(root: PathBuf, secret: Secret, public_url: String) -> std::io::Result<Self> {
        let store = local::LocalFolder::new(root.clone())?;
        Ok(Self::with_store(Arc::new(store), root, secret, public_url))
    }

    /// Files in `store`, temporary files in `scratch` (which must exist).
    pub fn with_store(store: Arc<dyn BlobStore>, scratch: PathBuf, secret: Secret, public_url: String) -> Self {
        Self { store, scratch, secret, public_url: public_url.trim_end_matches('/').to_owned() }
    }

    /// Writes the file whole or not at all.
    pub async fn put(&self, id: &FileId, bytes: &[u8]) -> std::io::Result<()> {
        check(id)?;
        self.store.put(id, Bytes::copy_from_slice(bytes)).await
    }

    /// A temporary path on this machine to write a file into before
    /// `commit_temp` stores it.
    pub fn temp_path(&self, id: &FileId) -> Option<PathBuf> {
        valid_id(id.as_str()).then(|| self.scratch.join(format!(".{id}.tmp")))
    }

    /// Stores the file written at `temp_path(id)`. On failure the temporary file
    /// stays, so the caller may try again or remove it.
    pub async fn commit_temp(&self, id: &FileId) -> std::io::Result<()> {
        let tmp = self.temp_path(id).ok_or_else(bad_id)?;
        self.store.put_file(id, &tmp).await
    }

    /// `commit_temp` once; when the store refuses, the temporary file goes too
    /// (for callers that do not try again).
    pub async fn commit_or_discard_temp(&self, id: &FileId) -> std::io::Result<()> {
        let committed = self.commit_temp(id).await;
        if committed.is_err()
            && let Some(tmp) = self.temp_path(id)
        {
            let _ = tokio::fs::remove_file(tmp).await;
        }
        committed
    }

    /// The whole file in memory: for images, which are decoded whole anyway.
    pub async fn read(&self, id: &FileId) -> std::io::Result<Vec<u8>> {
        check(id)?;
        let mut stream = self.store.read(id, None).await?;
        let mut out = Vec::new();
        while let Some(chunk) = stream.next().await {
            out.extend_from_slice(&chunk?);
        }
        Ok(out)
    }

    /// The size of the stored file.
    pub async fn size(&self, id: &FileId) -> std::io::Result<u64> {
        check(id)?;
        self.store.size(id).await
    }

    /// Bytes `range` of the file (all when `None`), streamed.
    pub async fn read_range(&self, id: &FileId, range: Option<Range<u64>>) -> std::io::Result<ByteStream> {
        check(id)?;
        self.store.read(id, range).await
    }

    /// The file at a path on this machine, for what needs one (probing a video,
    /// the renderer reading its input): the file itself when it lives here, or
    /// a temporary copy in the data folder, streamed there and deleted when the
    /// answer is dropped.
    pub async fn local_copy(&self, id: &FileId) -> std::io::Result<LocalCopy> {
        check(id)?;
        if let Some(path) = self.store.local_path(id) {
            return match tokio::fs::metadata(&path).await {
                Ok(_) => Ok(LocalCopy { path, temporary: false }),
                Err(e) => Err(e),
            };
        }
        let copy = LocalCopy {
            path: self.scratch.join(format!(".{id}.{}.copy", util::random_lower_alnum(8))),
            temporary: true,
        };
        let mut stream = self.store.read(id, None).await?;
        let mut out = tokio::fs::File::create(copy.path()).await?;
        while let Some(chunk) = stream.next().await {
            tokio::io::AsyncWriteExt::write_all(&mut out, &chunk?).await?;
        }
        tokio::io::AsyncWriteExt::flush(&mut out).await?;
        Ok(copy)
    }

    /// Deletes the file; a file already gone is not an error.
    pub async fn delete(&self, id: &FileId) -> std::io::Result<()> {
        check(id)?;
        self.store.delete(id).await
    }

    /// Removes temporary files of this folder older than `age`: what a process
    /// that died mid-write (a render, an upload, a copy) left behind. Answers
    /// how many went.
    pub async fn sweep_temporary(&self, age: std::time::Duration) -> std::io::Result<usize> {
        let cutoff = std::time::SystemTime::now().checked_sub(age).unwrap_or(std::time::UNIX_EPOCH);
        let mut removed = 0;
        let mut dir = tokio::fs::read_dir(&self.scratch).await?;
        while let Some(entry) = dir.next_entry().await? {
            let name = entry.file_name();
            let name = name.to_string_lossy();
            let temporary =
                name.starts_with('.') && [".tmp", ".put", ".copy"].iter().any(|suffix| name.ends_with(suffix));
            let stale = entry.metadata().await.and_then(|m| m.modified()).is_ok_and(|t| t < cutoff);
            if temporary && stale && tokio::fs::remove_file(entry.path()).await.is_ok() {
                removed += 1;
            }
        }
        Ok(removed)
    }

    fn signature(&self, id: &str, exp: i64) -> String {
        URL_SAFE_NO_PAD.encode(util::hmac_sha256(self.secret.expose().as_bytes(), format!("{id}.{exp}").as_bytes()))
    }

    /// A link to the file valid until `exp` (Unix seconds).
    pub fn signed_url(&self, id: &FileId, exp: i64) -> String {
        format!("{}/files/{id}?exp={exp}&sig={}", self.public_url, self.signature(id.as_str(), exp))
    }

    /// True when `sig` is ours for this id and expiry and the link has not expired.
    pub fn verify(&self, id: &str, exp: i64, sig: &str, now_secs: i64) -> bool {
        exp >= now_secs && util::ct_eq(self.signature(id, exp).as_bytes(), sig.as_bytes())
    }

    /// If `url` is a valid, unexpired link made by this server (whatever host the
    /// client used to reach us), the file id it names.
    pub fn own_link_id(&self, url: &str, now_secs: i64) -> Option<FileId> {
        let rest = url.split_once("://")?.1;
        let path_and_query = &rest[rest.find('/')?..];
        let (path, query) = path_and_query.split_once('?')?;
        let id = path.strip_prefix("/files/")?;
        if !valid_id(id) {
            return None;
        }
        let mut exp = None;
        let mut sig = None;
        for pair in query.split('&') {
            match pair.split_once('=') {
                Some(("exp", v)) => exp = v.parse::<i64>().ok(),
                Some(("sig", v)) => sig = Some(v),
                _ => {}
            }
        }
        self.verify(id, exp?, sig?, now_secs).then(|| FileId::from_raw(id))
    }
}

/// True when an error of the store means the file is not there (as opposed to
/// a store that could not be used just now).
pub fn is_missing(e: &std::io::Error) -> bool {
    matches!(e.kind(), std::io::ErrorKind::NotFound | std::io::ErrorKind::InvalidInput)
}

/// The shape of a file id this store accepts: what `FileId::new` makes, and
/// nothing that could leave the folder or the bucket's prefix.
pub fn valid_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 64 && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

fn check(id: &FileId) -> std::io::Result<()> {
    if valid_id(id.as_str()) { Ok(()) } else { Err(bad_id()) }
}

fn bad_id() -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidInput, "invalid file id")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn blobs() -> Blobs {
        let dir = std::env::temp_dir().join(format!("vidgate-blobs-{}", util::random_lower_alnum(8)));
        match Blobs::new(dir, Secret::new("secret"), "http://h:1/".to_owned()) {
            Ok(b) => b,
            Err(e) => unreachable!("temp dir: {e}"),
        }
    }

    #[test]
    fn a_signed_link_verifies_until_it_expires() {
        let b = blobs();
        let url = b.signed_url(&FileId::from_raw("file-abc"), 1000);
        assert_eq!(b.own_link_id(&url, 999), Some(FileId::from_raw("file-abc")));
        assert_eq!(b.own_link_id(&url, 1001), None);
    }

    #[test]
    fn a_tampered_link_is_refused() {
        let b = blobs();
        let url = b.signed_url(&FileId::from_raw("file-abc"), 1000);
        assert_eq!(b.own_link_id(&url.replace("file-abc", "file-abd"), 0), None);
        assert_eq!(b.own_link_id(&url.replace("exp=1000", "exp=1001"), 0), None);
        assert_eq!(b.own_link_id("https://evil.example/files/file-abc?exp=1000&sig=x", 0), None);
    }

    #[test]
    fn ids_cannot_escape_the_folder() {
        let b = blobs();
        assert!(b.temp_path(&FileId::from_raw("../etc/passwd")).is_none());
        assert!(b.temp_path(&FileId::from_raw("a/b")).is_none());
    }

    #[tokio::test]
    async fn the_local_folder_stores_reads_ranges_copies_and_deletes() {
        let b = blobs();
        let id = FileId::from_raw("file-xyz");
        b.put(&id, b"0123456789").await.unwrap_or_else(|e| unreachable!("{e}"));
        assert_eq!(b.size(&id).await.ok(), Some(10));
        assert_eq!(b.read(&id).await.ok().as_deref(), Some(b"0123456789".as_slice()));
        let mut part = Vec::new();
        let mut s = b.read_range(&id, Some(2..5)).await.unwrap_or_else(|e| unreachable!("{e}"));
        while let Some(c) = s.next().await {
            part.extend_from_slice(&c.unwrap_or_else(|e| unreachable!("{e}")));
        }
        assert_eq!(part, b"234");
        let copy = b.local_copy(&id).await.unwrap_or_else(|e| unreachable!("{e}"));
        assert_eq!(std::fs::read(copy.path()).ok().as_deref(), Some(b"0123456789".as_slice()));
        drop(copy);
        assert!(b.size(&id).await.is_ok(), "the file itself is not a temporary copy");
        b.delete(&id).await.unwrap_or_else(|e| unreachable!("{e}"));
        assert!(b.size(&id).await.is_err_and(|e| is_missing(&e)));
        assert!(b.delete(&id).await.is_ok(), "deleting twice is fine");
        assert!(b.read(&FileId::from_raw("../x")).await.is_err_and(|e| is_missing(&e)));
    }

    #[tokio::test]
    async fn stale_temporary_files_are_swept_and_nothing_else() {
        let b = blobs();
        let hour = std::time::Duration::from_secs(3600);
        let old = std::time::SystemTime::now() - 3 * hour;
        let stored = FileId::from_raw("file-kept");
        b.put(&stored, b"x").await.unwrap_or_else(|e| unreachable!("{e}"));
        let write = |name: &str, aged: bool| {
            let path = b.scratch.join(name);
            std::fs::write(&path, b"x").unwrap_or_else(|e| unreachable!("{e}"));
            if aged {
                let f = std::fs::File::options().write(true).open(&path).unwrap_or_else(|e| unreachable!("{e}"));
                f.set_modified(old).unwrap_or_else(|e| unreachable!("{e}"));
            }
            path
        };
        let stale = write(".file-dead.tmp", true);
        let fresh = write(".file-busy.tmp", false);
        let old_copy = write(".file-x.abc.copy", true);
        let kept = b.scratch.join("file-kept");
        let f = std::fs::File::options().write(true).open(&kept).unwrap_or_else(|e| unreachable!("{e}"));
        f.set_modified(old).unwrap_or_else(|e| unreachable!("{e}"));
        assert_eq!(b.sweep_temporary(hour).await.ok(), Some(2));
        assert!(!stale.exists() && !old_copy.exists());
        assert!(fresh.exists(), "a file being written is left alone");
        assert!(kept.exists(), "a stored file is never swept");
    }
}
