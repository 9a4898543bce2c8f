//! The snapshot format sent to followers: a directory (a RocksDB checkpoint) as one stream of
//! files, each `[name length u16][name][size u64][bytes]`, all big-endian.
//!
//! The sender never writes that stream to disk: [`ArchiveReader`] presents the checkpoint's
//! files as the stream, reading them in place. A checkpoint's files are hard links to the
//! store's immutable SST files, so a snapshot costs a flush and a directory of links, not a
//! copy of the store. The receiver unpacks the stream into a directory of its own
//! ([`unpack`]).

use std::fs::File;
use std::io::{self, BufReader, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::path::Path;

/// One file of the archive: its header, then its bytes.
#[derive(Debug)]
struct Part {
    /// Offset of the header in the stream.
    start: u64,
    header: Vec<u8>,
    file: File,
    len: u64,
}

impl Part {
    fn end(&self) -> u64 {
        self.start + self.header.len() as u64 + self.len
    }
}

/// A directory read as an archive stream, with seeks (openraft reads a snapshot chunk by
/// chunk, seeking to each chunk's offset).
///
/// Every file is opened when the reader is made, so that the directory may be replaced by a
/// newer snapshot (and removed) while a follower is still being sent this one.
#[derive(Debug)]
pub struct ArchiveReader {
    parts: Vec<Part>,
    len: u64,
    pos: u64,
}

/// RocksDB's own text logs: not needed to open a checkpoint, and they change when one is
/// opened.
fn is_info_log(name: &str) -> bool {
    name == "LOG" || name.starts_with("LOG.old")
}

impl ArchiveReader {
    /// The regular files of `dir` (not recursive: a checkpoint is flat), in name order.
    pub fn open(dir: &Path) -> io::Result<Self> {
        let mut entries: Vec<_> = std::fs::read_dir(dir)?.collect::<Result<Vec<_>, _>>()?;
        entries.sort_by_key(|e| e.file_name());
        let mut parts = Vec::with_capacity(entries.len());
        let mut start = 0;
        for e in entries {
            if !e.file_type()?.is_file() {
                continue;
            }
            let name = e.file_name().into_string().map_err(|_| io::Error::other("non-UTF-8 file name"))?;
            if is_info_log(&name) {
                continue;
            }
            let file = File::open(e.path())?;
            let len = file.metadata()?.len();
            let mut header = Vec::with_capacity(10 + name.len());
            header.extend_from_slice(&(name.len() as u16).to_be_bytes());
            header.extend_from_slice(name.as_bytes());
            header.extend_from_slice(&len.to_be_bytes());
            let part = Part { start, header, file, len };
            start = part.end();
            parts.push(part);
        }
        Ok(Self { parts, len: start, pos: 0 })
    }
}

impl Read for ArchiveReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let i = self.parts.partition_point(|p| p.end() <= self.pos);
        let Some(part) = self.parts.get(i) else { return Ok(0) };
        let at = self.pos - part.start;
        let header_len = part.header.len() as u64;
        let n = if at < header_len {
            let rest = &part.header[at as usize..];
            let n = rest.len().min(buf.len());
            buf[..n].copy_from_slice(&rest[..n]);
            n
        } else {
            let in_file = at - header_len;
            let want = ((part.len - in_file) as usize).min(buf.len());
            let n = part.file.read_at(&mut buf[..want], in_file)?;
            if n == 0 && want > 0 {
                return Err(io::Error::other("a snapshot file shrank while being sent"));
            }
            n
        };
        self.pos += n as u64;
        Ok(n)
    }
}

impl Seek for ArchiveReader {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        let pos = match to {
            SeekFrom::Start(p) => Some(p),
            SeekFrom::End(d) => self.len.checked_add_signed(d),
            SeekFrom::Current(d) => self.pos.checked_add_signed(d),
        };
        self.pos = pos.ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "seek before the start"))?;
        Ok(self.pos)
    }
}

/// Unpacks an archive stream into `dir` (created), each file and then the directory synced.
pub fn unpack(archive: impl Read, dir: &Path) -> io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let mut r = BufReader::with_capacity(1 << 20, archive);
    loop {
        let mut len = [0u8; 2];
        match r.read_exact(&mut len) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => break,
            Err(e) => return Err(e),
        }
        let mut name = vec![0u8; u16::from_be_bytes(len) as usize];
        r.read_exact(&mut name)?;
        let name =
            String::from_utf8(name).map_err(|_| io::Error::other("non-UTF-8 file name in snapshot"))?;
        if name.contains('/') || name.contains("..") {
            return Err(io::Error::other(format!("unsafe file name {name:?} in snapshot")));
        }
        let mut size = [0u8; 8];
        r.read_exact(&mut size)?;
        let size = u64::from_be_bytes(size);
        let mut f = File::create(dir.join(&name))?;
        let copied = io::copy(&mut (&mut r).take(size), &mut f)?;
        if copied != size {
            return Err(io::Error::other(format!("snapshot truncated inside {name}")));
        }
        f.flush()?;
        f.sync_all()?;
    }
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_directory_survives_streaming_and_unpacking() {
        let src = tempfile::tempdir().unwrap();
        let big: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        std::fs::write(src.path().join("a.sst"), &big).unwrap();
        std::fs::write(src.path().join("CURRENT"), b"MANIFEST-1\n").unwrap();
        std::fs::write(src.path().join("empty"), b"").unwrap();
        std::fs::write(src.path().join("LOG"), b"rocksdb's text log, left out").unwrap();
        let out = tempfile::tempdir().unwrap();

        // Read in odd-sized chunks at explicit offsets, as openraft sends a snapshot.
        let mut reader = ArchiveReader::open(src.path()).unwrap();
        let end = reader.seek(SeekFrom::End(0)).unwrap();
        let mut stream = Vec::new();
        let mut offset = 0;
        while offset < end {
            reader.seek(SeekFrom::Start(offset)).unwrap();
            let mut chunk = vec![0u8; 7_777];
            let mut filled = 0;
            while filled < chunk.len() {
                let n = reader.read(&mut chunk[filled..]).unwrap();
                if n == 0 {
                    break;
                }
                filled += n;
            }
            stream.extend_from_slice(&chunk[..filled]);
            offset += filled as u64;
        }
        assert_eq!(stream.len() as u64, end);
        // The directory may go away once the reader is made (a newer snapshot replaced it).
        let mut again = ArchiveReader::open(src.path()).unwrap();
        let src_path = src.path().to_path_buf();
        drop(src);
        assert!(!src_path.exists());
        let mut second = Vec::new();
        again.read_to_end(&mut second).unwrap();
        assert_eq!(second, stream);

        let dst = out.path().join("unpacked");
        unpack(stream.as_slice(), &dst).unwrap();
        assert_eq!(std::fs::read(dst.join("a.sst")).unwrap(), big);
        assert_eq!(std::fs::read(dst.join("CURRENT")).unwrap(), b"MANIFEST-1\n");
        assert_eq!(std::fs::read(dst.join("empty")).unwrap(), b"");
        assert!(!dst.join("LOG").exists());
        // A truncated stream is an error, not a silently shorter file.
        assert!(unpack(&stream[..stream.len() - 10], &out.path().join("again")).is_err());
    }
}
