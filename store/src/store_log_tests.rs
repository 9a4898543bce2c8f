//! The log in a database of its own (see `db`).

use std::time::{Duration, Instant};

use collabstream_proto::v1;
use rocksdb::{WriteBatch, WriteOptions};

use super::tests::{commit, config, open, write};
use super::*;

fn join(ts: i64) -> v1::Event {
    v1::Event {
        event: Some(v1::event::Event::User(v1::UserEvent {
            meeting_id: "m1".into(),
            user_id: "u1".into(),
            action: v1::UserAction::Join as i32,
            timestamp_ms: ts,
            ..Default::default()
        })),
    }
}

#[test]
fn the_logs_writes_leave_the_data_in_memory() {
    // In the store's database, every 4 MiB of log (its WAL's bound) made RocksDB flush every
    // data column family's memtable to let the WAL go: small files, compacted again and again.
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    commit(&store, &write("", vec![], vec![join(1_000)]));
    let events_on_disk = || int_property(&store.db, db::CF_EVENTS, SST_BYTES);
    assert_eq!(events_on_disk(), 0, "the applied events are in their memtable");
    // 12 MiB of log: six times the WAL's bound, three times the log's memtable.
    let entry = vec![7u8; 256 << 10];
    let first = store.applied_index() + 1;
    for index in first..first + 48 {
        store.log().append([(index, entry.as_slice())]).unwrap();
    }
    // The log's own flushes run in the background; bounded.
    let deadline = Instant::now() + Duration::from_secs(10);
    while int_property(&store.log_db, db::CF_LOG, SST_BYTES) == 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(int_property(&store.log_db, db::CF_LOG, SST_BYTES) > 0, "the log was flushed");
    assert_eq!(events_on_disk(), 0, "the log's writes flushed the events' memtable");
}

#[test]
fn an_older_data_directory_keeps_its_log_and_its_owners_values() {
    // Older versions kept the log, and the Raft vote beside the store's own values, in the
    // store's database; the first open moves them into the log's.
    let dir = tempfile::tempdir().unwrap();
    {
        let older = db::open(dir.path()).unwrap();
        let mut batch = WriteBatch::default();
        for index in 1..=3u64 {
            batch.put_cf(cf(&older, db::CF_LOG), crate::keys::u64_key(index), format!("entry {index}"));
        }
        batch.put_cf(cf(&older, db::CF_META), b"raft_vote", b"term 7");
        batch.put_cf(cf(&older, db::CF_META), META_NEXT_SERIES, 5u64.to_be_bytes());
        let mut sync = WriteOptions::default();
        sync.set_sync(true);
        older.write_opt(batch, &sync).unwrap();
    }
    for _ in 0..2 {
        // The second open finds nothing left to move, and the log as the first left it.
        let store = Store::open(dir.path(), config()).unwrap();
        let log = store.log();
        let entries: Vec<_> = log.read_range(1, 10).unwrap();
        let want: Vec<_> = (1..=3u64).map(|i| (i, format!("entry {i}").into_bytes())).collect();
        assert_eq!(entries, want);
        assert_eq!(log.get_meta(b"raft_vote").unwrap().as_deref(), Some(&b"term 7"[..]));
        let old_log = store.db.iterator_cf(cf(&store.db, db::CF_LOG), rocksdb::IteratorMode::Start).count();
        assert_eq!(old_log, 0, "the entries were copied, not moved");
        assert_eq!(int_property(&store.db, db::CF_LOG, SST_BYTES), 0, "the old entries' files stay");
        let old_meta = |k: &[u8]| store.db.get_cf(cf(&store.db, db::CF_META), k).unwrap();
        assert_eq!(old_meta(b"raft_vote"), None, "the vote was copied, not moved");
        assert!(old_meta(META_NEXT_SERIES).is_some(), "the store's own values stay");
        assert_eq!(log.get_meta(META_NEXT_SERIES).unwrap(), None, "the store's own values moved");
    }
}
