//! The default backend: files in a folder of the data folder, each written
//! under a temporary name and renamed in place, so a reader never sees half a file.

use std::io::SeekFrom;
use std::ops::Range;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use futures_util::StreamExt;
use tokio::io::{AsyncReadExt, AsyncSeekExt};

use super::{BlobFuture, BlobStore, ByteStream};
use crate::ids::FileId;

#[derive(Debug)]
pub struct LocalFolder {
    root: PathBuf,
}

impl LocalFolder {
    pub fn new(root: PathBuf) -> std::io::Result<Self> {
        std::fs::create_dir_all(&root)?;
        Ok(Self { root })
    }

    fn path(&self, id: &FileId) -> PathBuf {
        self.root.join(id.as_str())
    }
}

impl BlobStore for LocalFolder {
    fn put<'a>(&'a self, id: &'a FileId, bytes: Bytes) -> BlobFuture<'a, ()> {
        Box::pin(async move {
            let tmp = self.root.join(format!(".{id}.put"));
            tokio::fs::write(&tmp, &bytes).await?;
            tokio::fs::rename(&tmp, self.path(id)).await
        })
    }

    fn put_file<'a>(&'a self, id: &'a FileId, src: &'a Path) -> BlobFuture<'a, ()> {
        // Temporary files are made in this same folder: a rename moves them in.
        Box::pin(async move { tokio::fs::rename(src, self.path(id)).await })
    }

    fn size<'a>(&'a self, id: &'a FileId) -> BlobFuture<'a, u64> {
        Box::pin(async move { Ok(tokio::fs::metadata(self.path(id)).await?.len()) })
    }

    fn read<'a>(&'a self, id: &'a FileId, range: Option<Range<u64>>) -> BlobFuture<'a, ByteStream> {
        Box::pin(async move {
            let mut file = tokio::fs::File::open(self.path(id)).await?;
            let stream = match range {
                None => tokio_util::io::ReaderStream::new(file).boxed(),
                Some(r) => {
                    file.seek(SeekFrom::Start(r.start)).await?;
                    tokio_util::io::ReaderStream::new(file.take(r.end.saturating_sub(r.start))).boxed()
                }
            };
            Ok(stream)
        })
    }

    fn delete<'a>(&'a self, id: &'a FileId) -> BlobFuture<'a, ()> {
        Box::pin(async move {
            match tokio::fs::remove_file(self.path(id)).await {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
                _ => Ok(()),
            }
        })
    }

    fn local_path(&self, id: &FileId) -> Option<PathBuf> {
        Some(self.path(id))
    }
}
