//! [`SnapshotData`]: what openraft reads a snapshot from and writes a received one to.

use std::io::{Read, Seek, SeekFrom};
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncSeek, AsyncWrite, ReadBuf};

use crate::archive::ArchiveReader;

/// A snapshot as openraft handles it: a stored one, streamed from its checkpoint directory
/// to a follower, one being received from the leader into a file, or the data-less result of
/// a build (see `SnapshotBuilder::build_snapshot`).
#[derive(Debug)]
pub enum SnapshotData {
    /// Read only: writing to it is an error.
    Stored(ArchiveReader),
    Receiving(tokio::fs::File),
    /// Neither read nor written: both are errors, so that an openraft that began to send
    /// what it built fails loudly instead of sending nothing.
    Built,
}

fn read_only() -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::Unsupported, "a stored snapshot is read only")
}

fn no_data() -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::Unsupported,
        "a built snapshot carries only its meta; get_current_snapshot makes the data to send",
    )
}

// A stored snapshot is read with blocking reads of the checkpoint's files from the task that
// sends it. openraft reads a chunk (`snapshot_max_chunk_size`) at a time, and the files were
// written moments or minutes before, mostly still in the page cache; handing each read to a
// blocking thread, as tokio's `File` does, would cost more than it saves.
impl AsyncRead for SnapshotData {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            SnapshotData::Stored(r) => {
                let n = r.read(buf.initialize_unfilled())?;
                buf.advance(n);
                Poll::Ready(Ok(()))
            }
            SnapshotData::Receiving(f) => Pin::new(f).poll_read(cx, buf),
            SnapshotData::Built => Poll::Ready(Err(no_data())),
        }
    }
}

impl AsyncSeek for SnapshotData {
    fn start_seek(self: Pin<&mut Self>, to: SeekFrom) -> std::io::Result<()> {
        match self.get_mut() {
            SnapshotData::Stored(r) => r.seek(to).map(|_| ()),
            SnapshotData::Receiving(f) => Pin::new(f).start_seek(to),
            SnapshotData::Built => Err(no_data()),
        }
    }

    fn poll_complete(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<u64>> {
        match self.get_mut() {
            SnapshotData::Stored(r) => Poll::Ready(r.stream_position()),
            SnapshotData::Receiving(f) => Pin::new(f).poll_complete(cx),
            SnapshotData::Built => Poll::Ready(Err(no_data())),
        }
    }
}

impl AsyncWrite for SnapshotData {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            SnapshotData::Stored(_) => Poll::Ready(Err(read_only())),
            SnapshotData::Built => Poll::Ready(Err(no_data())),
            SnapshotData::Receiving(f) => Pin::new(f).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            SnapshotData::Stored(_) | SnapshotData::Built => Poll::Ready(Ok(())),
            SnapshotData::Receiving(f) => Pin::new(f).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            SnapshotData::Stored(_) | SnapshotData::Built => Poll::Ready(Ok(())),
            SnapshotData::Receiving(f) => Pin::new(f).poll_shutdown(cx),
        }
    }
}
