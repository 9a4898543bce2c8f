//! The store's RocksDB files: what its options make RocksDB keep on disk (the info log, the
//! log's files and WAL after a purge, heads and event blocks moving out of level 0).

use std::time::Duration;

use collabstream_proto::v1;

use super::tests::{commit, open, series, write};
use super::*;

#[test]
fn rocksdb_info_log_rolls_and_keeps_a_bounded_number_of_files() {
    // Never rolled, the info log grew for as long as the node ran. RocksDB records the options
    // it opened with in an OPTIONS file; the bound is read back from there.
    let dir = tempfile::tempdir().unwrap();
    let _store = open(dir.path());
    let options = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.file_name().unwrap().to_string_lossy().starts_with("OPTIONS-"))
        .max()
        .expect("RocksDB writes an OPTIONS file at open");
    let text = std::fs::read_to_string(options).unwrap();
    let value = |key: &str| -> u64 {
        text.lines()
            .find_map(|l| l.trim().strip_prefix(key)?.strip_prefix('='))
            .unwrap_or_else(|| panic!("{key} is not in the OPTIONS file"))
            .parse()
            .unwrap()
    };
    let (size, files) = (value("max_log_file_size"), value("keep_log_file_num"));
    assert!(size > 0, "the info log never rolls");
    assert!(files > 0 && (files + 1) * size <= 32 << 20, "{files} old files of {size} bytes kept");
}

#[test]
fn a_purge_gives_back_the_files_of_flushed_log_entries() {
    // A purge drops whole SST files with DeleteFilesInRange, which skips level 0, where every
    // flush lands: until four flushes made RocksDB compact them down, purged entries stayed on
    // disk (db.rs, the log's options).
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let entry = vec![7u8; 64 << 10];
    let mut index = 0;
    for _ in 0..3 {
        for _ in 0..8 {
            index += 1;
            store.log().append([(index, entry.as_slice())]).unwrap();
        }
        store.log_db.flush_cf(cf(&store.log_db, db::CF_LOG)).unwrap();
    }
    assert!(store.stats().log_sst_bytes > 0);
    // Level 0 empties in the background (a trivial move, as the files do not overlap).
    assert_eq!(level0_after_compactions(&store.log_db, db::CF_LOG), 0, "flushed log files stay in level 0");
    store.log().purge(index).unwrap();
    assert_eq!(store.stats().log_sst_bytes, 0, "purged log entries are still on disk");
}

#[test]
fn a_purge_gives_back_the_wal_of_the_entries_it_drops() {
    // Entries still in the log's memtable keep RocksDB's WAL; a quiet node never fills the
    // memtable, so without a flush the WAL held them after the purge for good (raft's log
    // writer has `release_wal` run after each purge).
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let entry = vec![7u8; 64 << 10];
    for index in 1..=8 {
        store.log().append([(index, entry.as_slice())]).unwrap();
    }
    // The WAL files of the store's database and of the log's.
    let wal = || -> u64 {
        [dir.path().to_path_buf(), dir.path().join(db::LOG_DIR)]
            .iter()
            .flat_map(|d| std::fs::read_dir(d).unwrap())
            .map(|e| e.unwrap())
            .filter(|e| e.file_name().to_string_lossy().ends_with(".log"))
            .map(|e| e.metadata().unwrap().len())
            .sum()
    };
    assert!(wal() >= 8 * (64 << 10), "the entries are in the WAL");
    store.log().purge(8).unwrap();
    store.log().release_wal().unwrap();
    // RocksDB deletes the WAL's obsolete files in the background; bounded.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while wal() > 64 << 10 && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(wal() <= 64 << 10, "the WAL still holds {} bytes of purged entries", wal());
}

#[test]
fn flushed_heads_leave_level_0_at_once() {
    // Each checkpoint writes every changed head again; files of superseded heads left in
    // level 0 until RocksDB's usual four were nearly half of the live data directory after
    // `collabstream bench`'s ingestion (db.rs, the heads' options).
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    commit(&store, &write("", vec![series("up", "a", &[(1_000, 1.0)])], vec![]));
    store.checkpoint().unwrap();
    store.db.flush_cf(cf(&store.db, db::CF_HEADS)).unwrap();
    assert!(int_property(&store.db, db::CF_HEADS, SST_BYTES) > 0, "the head was flushed");
    assert_eq!(
        level0_after_compactions(&store.db, db::CF_HEADS),
        0,
        "a flushed file of heads stays in level 0"
    );
}

#[test]
fn flushed_event_blocks_go_down_without_being_compressed_again() {
    // Event blocks' keys follow the log, so no flushed file overlaps another and each can go
    // to the bottom level as it is. RocksDB moves a file only if its compression is that
    // level's: with LZ4 above zstd it merged every four, compressing them again (db.rs, the
    // events' options).
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let flushes: u32 = 6;
    for i in 0..flushes {
        let event = v1::Event {
            event: Some(v1::event::Event::User(v1::UserEvent {
                meeting_id: format!("m{i}"),
                user_id: "u".into(),
                timestamp_ms: 1_000 * i64::from(i),
                ..Default::default()
            })),
        };
        assert_eq!(commit(&store, &write("", vec![], vec![event])).events_accepted, 1);
        store.db.flush_cf(cf(&store.db, db::CF_EVENTS)).unwrap();
    }
    // Six files pass RocksDB's trigger of four in level 0 at least once; whatever the order
    // of its compactions and the flushes, merging files would leave fewer than six.
    let busy = || {
        int_property(&store.db, db::CF_EVENTS, "rocksdb.compaction-pending") > 0
            || int_property(&store.db, db::CF_EVENTS, "rocksdb.num-running-compactions") > 0
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while busy() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(!busy(), "the compactions of event blocks did not finish within 10 s");
    let level = |l: u32| int_property(&store.db, db::CF_EVENTS, &format!("rocksdb.num-files-at-level{l}"));
    assert!((1..7).map(level).sum::<u64>() > 0, "nothing left level 0: {} files there", level(0));
    let files: u64 = (0..7).map(level).sum();
    assert_eq!(files, u64::from(flushes), "each flushed file went down whole, none merged with another");
}

/// The files in level 0 of `name` once the background compactions have emptied it, or after
/// ten seconds.
fn level0_after_compactions(rocks: &Rocks, name: &str) -> u64 {
    let level0 = || int_property(rocks, name, "rocksdb.num-files-at-level0");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while level0() > 0 && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    level0()
}
