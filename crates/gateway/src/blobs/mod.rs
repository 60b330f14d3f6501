//! Stored files (uploads, request images, results) on local disk, served through
//! HMAC-signed links that expire. A link is `{public}/files/{id}?exp=..&sig=..`; the
//! signature covers the id and the expiry, so a tampered or stale link is refused.

use std::path::PathBuf;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use crate::ids::FileId;
use crate::secret::Secret;
use crate::util;

/// The local-disk blob store and its link signer. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Blobs {
    root: PathBuf,
    secret: Secret,
    public_url: String,
}

impl Blobs {
    pub fn new(root: PathBuf, secret: Secret, public_url: String) -> std::io::Result<Self> {
        std::fs::create_dir_all(&root)?;
        Ok(Self { root, secret, public_url: public_url.trim_end_matches('/').to_owned() })
    }

    /// Where the file with this id lives. Ids are ours, but check anyway so no
    /// caller can ever walk out of the folder.
    pub fn path(&self, id: &FileId) -> Option<PathBuf> {
        valid_id(id.as_str()).then(|| self.root.join(id.as_str()))
    }

    /// Writes the file atomically (temporary name, then rename).
    pub async fn put(&self, id: &FileId, bytes: &[u8]) -> std::io::Result<()> {
        let path = self.path(id).ok_or_else(bad_id)?;
        let tmp = self.temp_path(id).ok_or_else(bad_id)?;
        tokio::fs::write(&tmp, bytes).await?;
        tokio::fs::rename(&tmp, &path).await
    }

    /// A temporary path to write a file into before `commit_temp` moves it in place.
    pub fn temp_path(&self, id: &FileId) -> Option<PathBuf> {
        valid_id(id.as_str()).then(|| self.root.join(format!(".{id}.tmp")))
    }

    pub async fn commit_temp(&self, id: &FileId) -> std::io::Result<()> {
        let (Some(tmp), Some(path)) = (self.temp_path(id), self.path(id)) else {
            return Err(bad_id());
        };
        tokio::fs::rename(tmp, path).await
    }

    pub async fn read(&self, id: &FileId) -> std::io::Result<Vec<u8>> {
        tokio::fs::read(self.path(id).ok_or_else(bad_id)?).await
    }

    /// Deletes the file; a file already gone is not an error.
    pub async fn delete(&self, id: &FileId) -> std::io::Result<()> {
        let path = self.path(id).ok_or_else(bad_id)?;
        match tokio::fs::remove_file(path).await {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
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

/// The shape of a file id this store accepts: what `FileId::new` makes, and
/// nothing that could leave the folder.
pub fn valid_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 64 && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
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
        assert!(b.path(&FileId::from_raw("../etc/passwd")).is_none());
        assert!(b.path(&FileId::from_raw("a/b")).is_none());
    }
}
