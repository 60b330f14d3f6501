//! Files in an S3-compatible bucket through `object_store`: `blob_url`
//! (`s3://bucket/prefix`) names the bucket and the prefix, the standard `AWS_*`
//! variables the rest (endpoint, credentials, region, `AWS_ALLOW_HTTP`).
//! Requests are path-style unless `AWS_VIRTUAL_HOSTED_STYLE_REQUEST` says
//! otherwise, as self-hosted servers want. Large files go up in parts, streamed
//! from their temporary file; reads are streamed, ranges asked of the store.

use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use object_store::aws::{AmazonS3, AmazonS3Builder, AmazonS3ConfigKey};
use object_store::path::Path as ObjectPath;
use object_store::{
    BackoffConfig, ClientConfigKey, GetOptions, GetRange, ObjectStore, ObjectStoreExt, PutPayload, RetryConfig,
    WriteMultipart,
};
use tokio::io::AsyncReadExt;

use super::{BlobFuture, BlobStore, ByteStream};
use crate::ids::FileId;
use crate::util;

/// The setting's name in the environment, which start-up errors name.
const SETTING: &str = "VIDGATE_BLOB_URL";
/// Files up to this size go up in one request; larger ones in parts of this size.
const PART_BYTES: usize = 8 * 1024 * 1024;
/// Parts of one file in flight at once.
const PARTS_IN_FLIGHT: usize = 2;

/// A bucket and a prefix inside it, from `s3://bucket/prefix`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Location {
    pub bucket: String,
    pub prefix: String,
}

impl S3Location {
    /// Reads `s3://bucket` or `s3://bucket/some/prefix`.
    pub fn parse(url: &str) -> Result<Self, String> {
        let rest = url.strip_prefix("s3://").ok_or_else(|| format!("expected s3://bucket/prefix, got {url:?}"))?;
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        let bucket_ok = (3..=63).contains(&bucket.len())
            && bucket.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.');
        if !bucket_ok {
            return Err(format!("{bucket:?} is not a bucket name (3 to 63 lowercase letters, digits, '-' or '.')"));
        }
        let prefix = prefix.trim_matches('/');
        let prefix_ok = prefix.split('/').all(|part| {
            prefix.is_empty()
                || (!part.is_empty()
                    && part != "."
                    && part != ".."
                    && part.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b)))
        });
        if !prefix_ok {
            return Err(format!("{prefix:?} is not a prefix (letters, digits, '-', '_', '.' and '/')"));
        }
        Ok(Self { bucket: bucket.to_owned(), prefix: prefix.to_owned() })
    }
}

impl std::fmt::Display for S3Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "s3://{}/{}", self.bucket, self.prefix)
    }
}

#[derive(Debug)]
pub struct S3Store {
    store: AmazonS3,
    prefix: String,
}

impl S3Store {
    /// Builds the client and checks the bucket at once (a listing of the prefix,
    /// then a small object put, read back and deleted), so bad settings stop
    /// the start, not the first upload. The error is one line naming the
    /// setting and the problem, never a credential.
    ///
    /// `aws_env` is the `AWS_*` variables (name, value) to read, as
    /// `AmazonS3Builder::from_env` reads them from the process's environment.
    pub async fn connect(location: &S3Location, aws_env: &[(String, String)]) -> anyhow::Result<Self> {
        let mut builder = AmazonS3Builder::new();
        for (name, value) in aws_env {
            if let Ok(key) = name.to_ascii_lowercase().parse::<AmazonS3ConfigKey>() {
                builder = builder.with_config(key, value);
            }
        }
        let store = builder
            .with_bucket_name(&location.bucket)
            // A store that does not answer is told within seconds; a task step
            // that meets it is retried later under its lease.
            .with_config(AmazonS3ConfigKey::Client(ClientConfigKey::ConnectTimeout), "5s")
            .with_retry(RetryConfig {
                backoff: BackoffConfig::default(),
                max_retries: 2,
                retry_timeout: Duration::from_secs(15),
            })
            .build()
            .map_err(|e| anyhow::anyhow!("{SETTING}: the S3 settings cannot be used: {}", one_line(&e)))?;
        let s3 = Self { store, prefix: location.prefix.clone() };
        s3.check(location, &endpoint(aws_env)).await?;
        Ok(s3)
    }

    fn object(&self, name: &str) -> ObjectPath {
        if self.prefix.is_empty() {
            ObjectPath::from(name)
        } else {
            ObjectPath::from(format!("{}/{name}", self.prefix))
        }
    }

    async fn check(&self, location: &S3Location, endpoint: &str) -> anyhow::Result<()> {
        let probe = self.object(&format!("vidgate-check-{}", util::random_lower_alnum(12)));
        let body = Bytes::from_static(b"vidgate start-up check");
        let bucket = &location.bucket;
        let fail = |what: &str, problem: Problem| {
            let why = match problem {
                Problem::MissingBucket => format!("bucket {bucket:?} does not exist"),
                Problem::Credentials => {
                    "the credentials were refused: check AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY".to_owned()
                }
                Problem::AccessDenied => {
                    format!("access to bucket {bucket:?} was refused: check the credentials and the bucket's policy")
                }
                Problem::Refused(text) => format!("the S3 server at {endpoint} refused it ({text})"),
                Problem::Unreachable(text) => format!("the S3 server at {endpoint} cannot be reached ({text})"),
            };
            anyhow::anyhow!("{SETTING}={location}: {why} (while {what})")
        };
        // A listing tells a missing bucket (some servers make one on a write);
        // a policy may refuse listings to a key that can read and write, so
        // that refusal alone is let pass.
        let prefix = (!self.prefix.is_empty()).then(|| ObjectPath::from(self.prefix.as_str()));
        if let Err(e) = self.store.list_with_delimiter(prefix.as_ref()).await {
            match Problem::of(&e) {
                Problem::AccessDenied => {}
                problem => return Err(fail("listing the prefix", problem)),
            }
        }
        self.store
            .put(&probe, PutPayload::from_bytes(body.clone()))
            .await
            .map_err(|e| fail("writing a check object", Problem::of(&e)))?;
        let read = async { self.store.get(&probe).await?.bytes().await }
            .await
            .map_err(|e| fail("reading it back", Problem::of(&e)))?;
        if read != body {
            return Err(anyhow::anyhow!("{SETTING}={location}: the S3 server answered other bytes than were written"));
        }
        self.store.delete(&probe).await.map_err(|e| fail("deleting it", Problem::of(&e)))?;
        Ok(())
    }

    async fn upload(&self, path: &ObjectPath, file: &mut tokio::fs::File, len: u64) -> std::io::Result<()> {
        if len <= PART_BYTES as u64 {
            let mut buf = Vec::with_capacity(usize::try_from(len).unwrap_or(0));
            file.read_to_end(&mut buf).await?;
            self.store.put(path, PutPayload::from(buf)).await.map_err(io)?;
            return Ok(());
        }
        let upload = self.store.put_multipart(path).await.map_err(io)?;
        let mut writer = WriteMultipart::new_with_chunk_size(upload, PART_BYTES);
        let mut buf = vec![0u8; 1024 * 1024];
        loop {
            let step = async {
                let n = file.read(&mut buf).await?;
                writer.wait_for_capacity(PARTS_IN_FLIGHT).await.map_err(io)?;
                Ok::<_, std::io::Error>(n)
            }
            .await;
            match step {
                Ok(0) => break,
                Ok(n) => writer.write(buf.get(..n).unwrap_or_default()),
                Err(e) => {
                    let _ = writer.abort().await;
                    return Err(e);
                }
            }
        }
        writer.finish().await.map_err(io)?;
        Ok(())
    }
}

impl BlobStore for S3Store {
    fn put<'a>(&'a self, id: &'a FileId, bytes: Bytes) -> BlobFuture<'a, ()> {
        Box::pin(async move {
            self.store.put(&self.object(id.as_str()), PutPayload::from_bytes(bytes)).await.map_err(io)?;
            Ok(())
        })
    }

    fn put_file<'a>(&'a self, id: &'a FileId, src: &'a Path) -> BlobFuture<'a, ()> {
        Box::pin(async move {
            let mut file = tokio::fs::File::open(src).await?;
            let len = file.metadata().await?.len();
            self.upload(&self.object(id.as_str()), &mut file, len).await?;
            drop(file);
            if let Err(e) = tokio::fs::remove_file(src).await {
                tracing::warn!(file_id = %id, error = %e, "could not remove a stored file's temporary copy");
            }
            Ok(())
        })
    }

    fn size<'a>(&'a self, id: &'a FileId) -> BlobFuture<'a, u64> {
        Box::pin(async move { Ok(self.store.head(&self.object(id.as_str())).await.map_err(io)?.size) })
    }

    fn read<'a>(&'a self, id: &'a FileId, range: Option<Range<u64>>) -> BlobFuture<'a, ByteStream> {
        Box::pin(async move {
            let options = GetOptions { range: range.map(GetRange::Bounded), ..GetOptions::default() };
            let got = self.store.get_opts(&self.object(id.as_str()), options).await.map_err(io)?;
            Ok(got.into_stream().map(|chunk| chunk.map_err(io)).boxed())
        })
    }

    fn delete<'a>(&'a self, id: &'a FileId) -> BlobFuture<'a, ()> {
        Box::pin(async move {
            match self.store.delete(&self.object(id.as_str())).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
                Err(e) => Err(io(e)),
            }
        })
    }

    fn local_path(&self, _id: &FileId) -> Option<PathBuf> {
        None
    }
}

/// What went wrong with the start-up check, from the store's error (its kind
/// where `object_store` tells it, else the S3 error code in the answer).
enum Problem {
    MissingBucket,
    Credentials,
    AccessDenied,
    Refused(String),
    Unreachable(String),
}

impl Problem {
    fn of(e: &object_store::Error) -> Self {
        let text = one_line(e);
        let has = |codes: &[&str]| codes.iter().any(|c| text.contains(c));
        if has(&["NoSuchBucket"]) || matches!(e, object_store::Error::NotFound { .. }) {
            Self::MissingBucket
        } else if has(&["SignatureDoesNotMatch", "InvalidAccessKeyId", "401 Unauthorized"])
            || matches!(e, object_store::Error::Unauthenticated { .. })
        {
            Self::Credentials
        } else if has(&["AccessDenied", "403 Forbidden"]) || matches!(e, object_store::Error::PermissionDenied { .. }) {
            Self::AccessDenied
        } else if has(&["non-2xx status"]) {
            Self::Refused(text)
        } else {
            Self::Unreachable(text)
        }
    }
}

/// A store error as an I/O error: `NotFound` when the object is not there,
/// `Other` when the store could not be used.
fn io(e: object_store::Error) -> std::io::Error {
    let kind = match e {
        object_store::Error::NotFound { .. } => std::io::ErrorKind::NotFound,
        _ => std::io::ErrorKind::Other,
    };
    std::io::Error::new(kind, one_line(&e))
}

/// An error and its causes on one line, bounded (a server's error page may be
/// long; credentials are never in these messages, only paths and statuses).
fn one_line(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let next = s.to_string();
        if !text.contains(&next) {
            text.push_str(": ");
            text.push_str(&next);
        }
        source = s.source();
    }
    let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
    match text.char_indices().nth(500) {
        Some((i, _)) => format!("{}...", &text[..i]),
        None => text,
    }
}

/// The S3 endpoint the `AWS_*` variables name, for messages (never secret).
fn endpoint(aws_env: &[(String, String)]) -> String {
    ["AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL", "AWS_ENDPOINT"]
        .iter()
        .find_map(|k| aws_env.iter().find(|(n, v)| n == k && !v.is_empty()).map(|(_, v)| v.clone()))
        .unwrap_or_else(|| "the AWS default endpoint".to_owned())
}

/// The `AWS_*` variables of this process's environment.
pub fn aws_env() -> Vec<(String, String)> {
    std::env::vars().filter(|(k, _)| k.starts_with("AWS_")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_blob_url_names_a_bucket_and_a_prefix() {
        let l = S3Location::parse("s3://media/vidgate/files/").ok();
        assert_eq!(l, Some(S3Location { bucket: "media".to_owned(), prefix: "vidgate/files".to_owned() }));
        let l = S3Location::parse("s3://media").ok();
        assert_eq!(l, Some(S3Location { bucket: "media".to_owned(), prefix: String::new() }));
        assert!(S3Location::parse("http://media/x").is_err());
        assert!(S3Location::parse("s3://Media/x").is_err());
        assert!(S3Location::parse("s3://media/../x").is_err());
        assert!(S3Location::parse("s3://media/a//b").is_err());
    }

    fn generic(text: &str) -> object_store::Error {
        object_store::Error::Generic { store: "S3", source: text.to_owned().into() }
    }

    #[test]
    fn start_up_problems_are_told_apart() {
        let is = |e: object_store::Error, want: &str| {
            let got = match Problem::of(&e) {
                Problem::MissingBucket => "bucket",
                Problem::Credentials => "credentials",
                Problem::AccessDenied => "denied",
                Problem::Refused(_) => "refused",
                Problem::Unreachable(_) => "unreachable",
            };
            assert_eq!(got, want, "{e}");
        };
        is(generic("404 Not Found: <Error><Code>NoSuchBucket</Code></Error>"), "bucket");
        is(object_store::Error::NotFound { path: "p".to_owned(), source: "404".into() }, "bucket");
        is(generic("403 Forbidden: <Error><Code>SignatureDoesNotMatch</Code></Error>"), "credentials");
        is(generic("403 Forbidden: <Error><Code>InvalidAccessKeyId</Code></Error>"), "credentials");
        is(generic("403 Forbidden: <Error><Code>AccessDenied</Code></Error>"), "denied");
        is(object_store::Error::PermissionDenied { path: "p".to_owned(), source: "403".into() }, "denied");
        is(generic("Server returned non-2xx status code: 500 Internal Server Error"), "refused");
        is(generic("HTTP error: error sending request: tcp connect error: Connection refused"), "unreachable");
    }

    #[test]
    fn error_text_is_one_bounded_line() {
        let long = format!("first\nsecond {}", "x".repeat(2000));
        let text = one_line(&generic(&long));
        assert!(!text.contains('\n') && text.ends_with("...") && text.chars().count() <= 503, "{text}");
    }
}
