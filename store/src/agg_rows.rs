//! A rule's rows: one per group and window emitted, with the window's start and end and every
//! output, in the `agg_rows` column family. What the per-rule read API answers (and what the
//! SQL tables will read); the output series hold the same values for PromQL.
//!
//! Written by apply in the entry's batch, like samples (replayed after a crash like them); a
//! correction replaces its row, a withdrawn session deletes it, and a dropped rule's rows go
//! with it in the entry that drops it.
//!
//! Key: rule name length, name, window end (ordered), group key. Value: start, the group's
//! labels, the outputs (each absent or an f64).

use collabstream_common::TimeRange;
use rocksdb::{Direction, IteratorMode, WriteBatch};

use crate::db::{CF_AGG_ROWS, Rocks};
use crate::error::{Error, Result};
use crate::keys::{from_ordered_i64, ordered_i64};
use crate::store::cf;
use crate::varint::{Reader, put_i64, put_u64};

/// One window of one group.
#[derive(Debug, Clone, PartialEq)]
pub struct AggRow {
    pub group: Vec<(String, String)>,
    pub start: i64,
    pub end: i64,
    /// One per output of the rule, in order; `None` where the window has no value.
    pub values: Vec<Option<f64>>,
}

fn rule_prefix(rule: &str) -> Vec<u8> {
    let n = rule.len().min(255);
    let mut k = Vec::with_capacity(n + 1);
    k.push(n as u8);
    k.extend_from_slice(&rule.as_bytes()[..n]);
    k
}

fn key(rule: &str, end: i64, group: &[u8]) -> Vec<u8> {
    let mut k = rule_prefix(rule);
    k.extend_from_slice(&ordered_i64(end));
    k.extend_from_slice(group);
    k
}

/// The first key past every key starting with `prefix`.
fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0xff; prefix.len() + 1]
}

/// Adds a window's row to `batch` (replacing an earlier one of the same window).
pub(crate) fn put(batch: &mut WriteBatch, db: &Rocks, rule: &str, group: &[u8], row: &AggRow) {
    let cf = cf(db, CF_AGG_ROWS);
    let mut v = Vec::with_capacity(32);
    put_i64(&mut v, row.start);
    put_u64(&mut v, row.group.len() as u64);
    for (n, value) in &row.group {
        for s in [n, value] {
            put_u64(&mut v, s.len() as u64);
            v.extend_from_slice(s.as_bytes());
        }
    }
    put_u64(&mut v, row.values.len() as u64);
    for x in &row.values {
        match x {
            Some(x) => {
                v.push(1);
                v.extend_from_slice(&x.to_bits().to_le_bytes());
            }
            None => v.push(0),
        }
    }
    batch.put_cf(cf, key(rule, row.end, group), v);
}

/// Deletes a window's row.
pub(crate) fn delete(batch: &mut WriteBatch, db: &Rocks, rule: &str, end: i64, group: &[u8]) {
    batch.delete_cf(cf(db, CF_AGG_ROWS), key(rule, end, group));
}

/// Deletes every row of a rule.
pub(crate) fn drop_rule(batch: &mut WriteBatch, db: &Rocks, rule: &str) {
    let p = rule_prefix(rule);
    batch.delete_range_cf(cf(db, CF_AGG_ROWS), &p, &prefix_end(&p));
}

/// The rule's rows whose window ends in `range`, by end then group, at most `limit`.
pub(crate) fn read(db: &Rocks, rule: &str, range: TimeRange, limit: usize) -> Result<Vec<AggRow>> {
    let mut out = Vec::new();
    if limit > 0 {
        scan(db, rule, range, |row| {
            out.push(row);
            out.len() < limit
        })?;
    }
    Ok(out)
}

/// A rule's rows whose window ends in `range`, by end then group, handed to `f` until it
/// answers false.
pub(crate) fn scan(
    db: &Rocks,
    rule: &str,
    range: TimeRange,
    mut f: impl FnMut(AggRow) -> bool,
) -> Result<()> {
    let p = rule_prefix(rule);
    let mut from = p.clone();
    from.extend_from_slice(&ordered_i64(range.start));
    for item in db.iterator_cf(cf(db, CF_AGG_ROWS), IteratorMode::From(&from, Direction::Forward)) {
        let (k, v) = item?;
        let Some(rest) = k.strip_prefix(p.as_slice()) else { break };
        let end =
            rest.get(..8).and_then(from_ordered_i64).ok_or(Error::Corrupt { what: "aggregation row key" })?;
        if end > range.end || !f(decode(end, &v)?) {
            break;
        }
    }
    Ok(())
}

fn decode(end: i64, v: &[u8]) -> Result<AggRow> {
    let corrupt = || Error::Corrupt { what: "aggregation row" };
    let mut r = Reader::new(v);
    let start = r.i64().ok_or_else(corrupt)?;
    let n = r.u64().ok_or_else(corrupt)?;
    let mut group = Vec::with_capacity(n.min(64) as usize);
    for _ in 0..n {
        let mut text = || -> Option<String> {
            let len = usize::try_from(r.u64()?).ok()?;
            std::str::from_utf8(r.bytes(len)?).ok().map(str::to_string)
        };
        let pair = (text().ok_or_else(corrupt)?, text().ok_or_else(corrupt)?);
        group.push(pair);
    }
    let n = r.u64().ok_or_else(corrupt)?;
    let mut values = Vec::with_capacity(n.min(64) as usize);
    for _ in 0..n {
        values.push(match r.bytes(1).ok_or_else(corrupt)? {
            [0] => None,
            [1] => {
                let bits: [u8; 8] = r.bytes(8).ok_or_else(corrupt)?.try_into().map_err(|_| corrupt())?;
                Some(f64::from_bits(u64::from_le_bytes(bits)))
            }
            _ => return Err(corrupt()),
        });
    }
    if !r.is_empty() {
        return Err(corrupt());
    }
    Ok(AggRow { group, start, end, values })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_end_of_a_prefix_is_past_every_key_with_it() {
        assert_eq!(prefix_end(&[3, b'a', b'b', b'c']), [3, b'a', b'b', b'd']);
        assert_eq!(prefix_end(&[1, 0xff]), [2]);
    }
}
