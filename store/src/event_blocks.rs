//! Raw events as stored: one block per write of a log entry, and a time index over the blocks.
//!
//! - `events` CF: (log index, write number in the entry) → the write's accepted events, each
//!   with its event time and position in the entry. Keys follow the log, so RocksDB writes
//!   them once per write instead of once per event, and its files never overlap: a flushed
//!   file moves down the levels without being rewritten. (Keyed by event time, one key per
//!   event, the column family's compactions took a third of a core at 180,000 events/s,
//!   because clients' writes interleave in time.)
//! - `event_times` CF: (minute of event time, log index, write number) → nothing: which blocks
//!   hold events of that minute, so that a time range reads only the blocks it needs.
//!
//! Reads give events in (time, log index, position) order, whatever order they were written in.

use rocksdb::{ColumnFamily, IteratorMode, WriteBatch};

use collabstream_common::TimeRange;
use collabstream_proto::v1;
use prost::Message;

use crate::db::{CF_EVENT_TIMES, CF_EVENTS, Rocks};
use crate::error::{Error, Result};
use crate::keys::{from_ordered_i64, ordered_i64};
use crate::store::cf;
use crate::varint::{Reader, put_i64, put_u64};

/// The span of event time one `event_times` row stands for.
pub(crate) const BUCKET_MS: i64 = 60_000;

fn bucket(ts: i64) -> i64 {
    ts.div_euclid(BUCKET_MS).saturating_mul(BUCKET_MS)
}

/// `events` CF: (log index, write number in the entry).
fn block_key(index: u64, write: u32) -> [u8; 12] {
    let mut k = [0u8; 12];
    k[..8].copy_from_slice(&index.to_be_bytes());
    k[8..].copy_from_slice(&write.to_be_bytes());
    k
}

/// `event_times` CF: (bucket start, log index, write number).
fn time_key(bucket: i64, index: u64, write: u32) -> [u8; 20] {
    let mut k = [0u8; 20];
    k[..8].copy_from_slice(&ordered_i64(bucket));
    k[8..].copy_from_slice(&block_key(index, write));
    k
}

fn parse_time_key(k: &[u8]) -> Option<(i64, [u8; 12])> {
    if k.len() != 20 {
        return None;
    }
    Some((from_ordered_i64(&k[..8])?, k[8..].try_into().ok()?))
}

/// The accepted events of one write, gathered by apply.
#[derive(Debug, Default)]
pub(crate) struct EventBlock {
    bytes: Vec<u8>,
    /// The buckets its events fall in, each once (a write spans few).
    buckets: Vec<i64>,
}

impl EventBlock {
    /// An event at `ts`, `position`th of its entry, encoded as the leader logged it.
    pub(crate) fn push(&mut self, ts: i64, position: u32, event: &[u8]) {
        put_i64(&mut self.bytes, ts);
        put_u64(&mut self.bytes, u64::from(position));
        put_u64(&mut self.bytes, event.len() as u64);
        self.bytes.extend_from_slice(event);
        let b = bucket(ts);
        if !self.buckets.contains(&b) {
            self.buckets.push(b);
        }
    }

    /// Puts the block and its time rows into `batch` (nothing for a write without events).
    pub(crate) fn write(self, db: &Rocks, batch: &mut WriteBatch, index: u64, write: u32) {
        if self.bytes.is_empty() {
            return;
        }
        let times = cf(db, CF_EVENT_TIMES);
        for b in &self.buckets {
            batch.put_cf(times, time_key(*b, index, write), []);
        }
        batch.put_cf(cf(db, CF_EVENTS), block_key(index, write), self.bytes);
    }
}

/// The events of a block: (time, position in the entry, encoded event).
fn decode(block: &[u8]) -> impl Iterator<Item = Result<(i64, u32, &[u8])>> {
    let mut r = Reader::new(block);
    std::iter::from_fn(move || {
        if r.is_empty() {
            return None;
        }
        let item = (|| {
            let ts = r.i64()?;
            let position = u32::try_from(r.u64()?).ok()?;
            let len = usize::try_from(r.u64()?).ok()?;
            Some((ts, position, r.bytes(len)?))
        })();
        Some(item.ok_or(Error::Corrupt { what: "event block" }))
    })
}

/// One stored event as reads give it: its time, and where it was logged (which orders events
/// of the same millisecond and names each once, whichever tier it is read from).
#[derive(Debug, Clone, PartialEq)]
pub struct StoredEvent {
    pub timestamp_ms: i64,
    pub log_index: u64,
    /// Its position among the events of its log entry.
    pub position: u32,
    pub event: v1::Event,
}

impl StoredEvent {
    /// What reads order events by, and what names one.
    pub fn key(&self) -> (i64, u64, u32) {
        (self.timestamp_ms, self.log_index, self.position)
    }
}

/// Events with event time in `range`, in (time, log index, position) order, handed to `f`
/// until it answers false. Minute by minute: no more than a minute's events are held.
pub(crate) fn scan(db: &Rocks, range: TimeRange, mut f: impl FnMut(StoredEvent) -> bool) -> Result<()> {
    if range.start > range.end {
        return Ok(());
    }
    let (events, times) = (cf(db, CF_EVENTS), cf(db, CF_EVENT_TIMES));
    let from = time_key(bucket(range.start), 0, 0);
    // The blocks of one bucket, read together: its events are sorted only once all are in.
    let mut pending: Option<(i64, Vec<[u8; 12]>)> = None;
    let mut go_on = true;
    for item in db.iterator_cf(times, IteratorMode::From(&from, rocksdb::Direction::Forward)) {
        let (k, _) = item?;
        let (b, block) = parse_time_key(&k).ok_or(Error::Corrupt { what: "event time key" })?;
        if b > range.end {
            break;
        }
        match &mut pending {
            Some((pb, blocks)) if *pb == b => blocks.push(block),
            _ => {
                if let Some((pb, blocks)) = pending.replace((b, vec![block])) {
                    go_on = read_bucket(db, events, pb, &blocks, range, &mut f)?;
                    if !go_on {
                        break;
                    }
                }
            }
        }
    }
    if go_on && let Some((pb, blocks)) = pending {
        read_bucket(db, events, pb, &blocks, range, &mut f)?;
    }
    Ok(())
}

/// Events with event time in `range`, in (time, log index, position) order, at most `limit`:
/// what is on disk, the cold boundary aside (tests look below it).
#[cfg(test)]
pub(crate) fn read(db: &Rocks, range: TimeRange, limit: usize) -> Result<Vec<v1::Event>> {
    let mut out = Vec::new();
    if limit == 0 {
        return Ok(out);
    }
    scan(db, range, |e| {
        out.push(e.event);
        out.len() < limit
    })?;
    Ok(out)
}

/// Hands the events of bucket `b` in `range` to `f`, sorted, from `blocks` (which may hold
/// events of other buckets too: those are left to their own bucket's turn). False once `f`
/// asked to stop.
fn read_bucket(
    db: &Rocks,
    events: &ColumnFamily,
    b: i64,
    blocks: &[[u8; 12]],
    range: TimeRange,
    f: &mut impl FnMut(StoredEvent) -> bool,
) -> Result<bool> {
    let mut found = Vec::new();
    for (key, value) in blocks.iter().zip(db.batched_multi_get_cf(events, blocks, true)) {
        let Some(value) = value? else { return Err(Error::Corrupt { what: "event block missing" }) };
        let log_index = u64::from_be_bytes(key[..8].try_into().expect("12-byte key"));
        for e in decode(&value) {
            let (ts, position, bytes) = e?;
            if bucket(ts) == b && range.start <= ts && ts <= range.end {
                let event = v1::Event::decode(bytes).map_err(|_| Error::Corrupt { what: "event" })?;
                found.push(StoredEvent { timestamp_ms: ts, log_index, position, event });
            }
        }
    }
    found.sort_by_key(StoredEvent::key);
    for e in found {
        if !f(e) {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Blocks rewritten or deleted per RocksDB write while dropping.
const DROP_BATCH: usize = 4096;

/// Deletes the events before `until` (the cold tier holds them): the blocks holding nothing
/// later, the earlier events of blocks that hold later ones too (rewritten with the rest), and
/// the time rows of minutes no block holds an event of any more. Gives how many events went.
/// Not logged (`no_wal`): a crash brings some back, and the next drop takes them again;
/// readers never see them, reading from the boundary on.
///
/// No time row is left naming a block that is gone (a read would take it for corruption): a
/// block is gone only when all its events were before `until`, so all its rows are among
/// those before it, which are the rows this walks; and a row whose block a crash already
/// took (the two column families reach disk apart, without a WAL) is deleted here too.
///
/// Only whole minutes go (`until` rounded down to one): a reader from the boundary on reads the
/// rows of the boundary's minute, which are then never touched here, nor the blocks they name.
pub(crate) fn drop_before(db: &Rocks, until: i64, write: impl Fn(&WriteBatch) -> Result<()>) -> Result<u64> {
    let until = bucket(until);
    let (events, times) = (cf(db, CF_EVENTS), cf(db, CF_EVENT_TIMES));
    let mut dropped = 0u64;
    // Blocks met in the rows walked, with the minutes of those rows, handled a batch at a
    // time. A block met again in a later batch is handled again, which changes nothing more.
    let mut todo: std::collections::HashMap<[u8; 12], Vec<i64>> = std::collections::HashMap::new();
    let mut flush = |todo: &mut std::collections::HashMap<[u8; 12], Vec<i64>>| -> Result<()> {
        // Sorted: RocksDB is told they are (a lookup in sorted order is faster, and it
        // relies on it).
        let mut keys: Vec<[u8; 12]> = todo.keys().copied().collect();
        keys.sort_unstable();
        let mut batch = WriteBatch::default();
        for (key, value) in keys.iter().zip(db.batched_multi_get_cf(events, &keys, true)) {
            let rows = &todo[key];
            let index = u64::from_be_bytes(key[..8].try_into().expect("12-byte key"));
            let write_no = u32::from_be_bytes(key[8..].try_into().expect("12-byte key"));
            let mut kept = EventBlock::default();
            if let Some(value) = value? {
                for e in decode(&value) {
                    let (ts, position, bytes) = e?;
                    if ts < until {
                        dropped += 1;
                    } else {
                        kept.push(ts, position, bytes);
                    }
                }
                if kept.bytes.is_empty() {
                    batch.delete_cf(events, key);
                } else if kept.bytes.len() < value.len() {
                    batch.put_cf(events, key, &kept.bytes);
                }
            }
            for b in rows.iter().filter(|b| !kept.buckets.contains(b)) {
                batch.delete_cf(times, time_key(*b, index, write_no));
            }
        }
        todo.clear();
        write(&batch)
    };
    for item in db.iterator_cf(times, IteratorMode::Start) {
        let (k, _) = item?;
        let (b, block) = parse_time_key(&k).ok_or(Error::Corrupt { what: "event time key" })?;
        if b >= until {
            break;
        }
        todo.entry(block).or_default().push(b);
        if todo.len() >= DROP_BATCH {
            flush(&mut todo)?;
        }
    }
    flush(&mut todo)?;
    Ok(dropped)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_block_gives_back_what_was_pushed_and_counts_each_bucket_once() {
        let mut b = EventBlock::default();
        b.push(59_999, 0, b"a");
        b.push(-1, 7, b"");
        b.push(60_000, 9, b"ccc");
        b.push(59_000, 10, b"d");
        assert_eq!(b.buckets, [0, -60_000, 60_000]);
        let back: Vec<_> = decode(&b.bytes).map(|r| r.unwrap()).collect();
        assert_eq!(back, [(59_999, 0, &b"a"[..]), (-1, 7, b""), (60_000, 9, b"ccc"), (59_000, 10, b"d")]);
        assert!(decode(&b.bytes[..b.bytes.len() - 1]).any(|r| r.is_err()), "a truncated block is an error");
    }

    #[test]
    fn time_keys_sort_by_bucket_then_log_order() {
        assert!(time_key(-60_000, 9, 9) < time_key(0, 0, 0));
        assert!(time_key(0, 1, 9) < time_key(0, 2, 0));
        assert_eq!(parse_time_key(&time_key(120_000, 5, 3)), Some((120_000, block_key(5, 3))));
    }
}
