//! The durable form of a rule's window state: what a checkpoint writes and a restart reads.
//!
//! An engine ([`Windows`](crate::agg::Windows), [`Sessions`](crate::agg::Sessions)) keeps
//! track of the rows it changed since its last [`Changes`] were taken. The store writes them in
//! the checkpoint's batch, together with the applied index, so that the rows on disk are
//! always the state as of that index and a replay from it counts nothing twice.

use crate::error::{Error, Result};
use crate::keys::{from_ordered_i64, ordered_i64};
use crate::varint::{Reader, put_i64, put_u64};

/// A rule's rows changed since the last call: the meta row (watermark and counters), and
/// state rows to write (`Some`) or delete (`None`), by key; and, first, every row keyed before
/// `delete_before` (a time, as [`row_key`] orders it) to delete: panes that expired while
/// out of memory.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Changes {
    pub meta: Vec<u8>,
    pub rows: Vec<(Vec<u8>, Option<Vec<u8>>)>,
    pub delete_before: Option<i64>,
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
    k.extend_from_slice(&ordered_i64(time));
    k.extend_from_slice(group);
    k
}

pub(crate) fn parse_row_key(k: &[u8]) -> Result<(i64, Vec<u8>)> {
    let corrupt = || Error::Corrupt { what: "aggregation state key" };
    let time = from_ordered_i64(k.get(..8).ok_or_else(corrupt)?).ok_or_else(corrupt)?;
    Ok((time, k[8..].to_vec()))
}
