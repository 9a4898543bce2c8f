//! The durable form of a rule's window state: what a checkpoint writes and a restart reads.
//!
//! An engine ([`Windows`](crate::agg::Windows), [`Sessions`](crate::agg::Sessions)) keeps
//! track of the rows it changed since its last checkpoint and writes them into a [`RowSink`]:
//! the store's sink puts them in the checkpoint's batch, together with the applied index, so
//! that the rows on disk are always the state as of that index and a replay from it counts
//! nothing twice.

use crate::error::{Error, Result};
use crate::keys::{from_ordered_i64, ordered_i64};
use crate::varint::{Reader, put_i64, put_u64};

/// Where an engine writes the rows it changed since its last checkpoint, as it encodes them.
/// The store's sink puts them straight into the checkpoint's batch, under apply's lock:
/// collected first, each with a key and a value of its own, encoding ~160,000 panes and
/// putting them into the batch took 68-87 ms of the 75-105 ms apply waited for a big
/// checkpoint (docs/benchmarks.md, session 28).
pub trait RowSink {
    /// Every row keyed before `time` (as [`row_key`] orders them) is to be deleted: panes that
    /// expired while out of memory. Called before any row.
    fn delete_before(&mut self, time: i64);
    /// A state row to write (`Some`) or delete (`None`), by key.
    fn row(&mut self, key: &[u8], value: Option<&[u8]>);
}

/// Where an engine finds the rows it let go of from memory: the state rows (keyed by
/// [`row_key`]) as the last checkpoint wrote them.
pub trait ColdRows {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>>;
}

/// Nothing out of memory: for an engine that never lets go of a row.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoColdRows;

impl ColdRows for NoColdRows {
    fn get(&self, _key: &[u8]) -> Result<Option<Vec<u8>>> {
        Ok(None)
    }
}

/// What an engine keeps besides its rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Meta {
    pub(crate) watermark: i64,
    pub(crate) last_event_clock: Option<i64>,
    pub(crate) late_dropped: u64,
}

impl Meta {
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        put_i64(&mut out, self.watermark);
        match self.last_event_clock {
            Some(c) => {
                put_u64(&mut out, 1);
                put_i64(&mut out, c);
            }
            None => put_u64(&mut out, 0),
        }
        put_u64(&mut out, self.late_dropped);
        out
    }

    pub(crate) fn decode(bytes: &[u8]) -> Result<Self> {
        let corrupt = || Error::Corrupt { what: "aggregation meta" };
        let mut r = Reader::new(bytes);
        let watermark = r.i64().ok_or_else(corrupt)?;
        let last_event_clock = match r.u64().ok_or_else(corrupt)? {
            0 => None,
            1 => Some(r.i64().ok_or_else(corrupt)?),
            _ => return Err(corrupt()),
        };
        let late_dropped = r.u64().ok_or_else(corrupt)?;
        if !r.is_empty() {
            return Err(corrupt());
        }
        Ok(Self { watermark, last_event_clock, late_dropped })
    }
}

/// The bytes every row key of a time before `time` sorts below.
pub(crate) fn time_bound(time: i64) -> [u8; 8] {
    ordered_i64(time)
}

/// A row key: a time (the pane's or session's start, ordered as bytes), then the group.
pub(crate) fn row_key(time: i64, group: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(8 + group.len());
    put_row_key(&mut k, time, group);
    k
}

/// [`row_key`], appended to `out`.
pub(crate) fn put_row_key(out: &mut Vec<u8>, time: i64, group: &[u8]) {
    out.extend_from_slice(&ordered_i64(time));
    out.extend_from_slice(group);
}

pub(crate) fn parse_row_key(k: &[u8]) -> Result<(i64, Vec<u8>)> {
    let corrupt = || Error::Corrupt { what: "aggregation state key" };
    let time = from_ordered_i64(k.get(..8).ok_or_else(corrupt)?).ok_or_else(corrupt)?;
    Ok((time, k[8..].to_vec()))
}
