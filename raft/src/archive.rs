//! A directory (a RocksDB checkpoint) packed into one file and back: the snapshot format sent
//! to followers. Each file is `[name length u16][name][size u64][bytes]`, all big-endian.

use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::path::Path;

/// Packs the regular files of `dir` (not recursive; a checkpoint is flat) into `out`.
pub fn pack(dir: &Path, out: &Path) -> io::Result<()> {
    let mut w = BufWriter::new(File::create(out)?);
    let mut names: Vec<_> = std::fs::read_dir(dir)?.collect::<Result<Vec<_>, _>>()?;
    names.sort_by_key(|e| e.file_name());
    for e in names {
        if !e.file_type()?.is_file() {
            continue;
        }
        let name = e.file_name().into_string().map_err(|_| io::Error::other("non-UTF-8 file name"))?;
        let len = e.metadata()?.len();
        w.write_all(&(name.len() as u16).to_be_bytes())?;
        w.write_all(name.as_bytes())?;
        w.write_all(&len.to_be_bytes())?;
        let copied = io::copy(&mut File::open(e.path())?.take(len), &mut w)?;
        if copied != len {
            return Err(io::Error::other(format!("{name} shrank while being packed")));
        }
    }
    w.into_inner().map_err(|e| e.into_error())?.sync_all()
}

/// Unpacks an archive made by [`pack`] into `dir` (created).
pub fn unpack(archive: &Path, dir: &Path) -> io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let mut r = BufReader::new(File::open(archive)?);
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
        f.sync_all()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_directory_survives_pack_and_unpack() {
        let src = tempfile::tempdir().unwrap();
        std::fs::write(src.path().join("a.sst"), vec![7u8; 100_000]).unwrap();
        std::fs::write(src.path().join("CURRENT"), b"MANIFEST-1\n").unwrap();
        std::fs::write(src.path().join("empty"), b"").unwrap();
        let out = tempfile::tempdir().unwrap();
        let archive = out.path().join("snap");
        pack(src.path(), &archive).unwrap();
        let dst = out.path().join("unpacked");
        unpack(&archive, &dst).unwrap();
        for name in ["a.sst", "CURRENT", "empty"] {
            assert_eq!(std::fs::read(src.path().join(name)).unwrap(), std::fs::read(dst.join(name)).unwrap());
        }
        // A truncated archive is an error, not a silently shorter file.
        let bytes = std::fs::read(&archive).unwrap();
        std::fs::write(&archive, &bytes[..bytes.len() - 10]).unwrap();
        assert!(unpack(&archive, &out.path().join("again")).is_err());
    }
}
