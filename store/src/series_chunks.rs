//! [`series_chunks`]: an iterator over one series' stored chunks, bounded to that series.
//!
//! Why bounded: a deleted chunk stays in RocksDB as a tombstone until a compaction drops it,
//! and a seek skips every tombstone between its target and the next live key, whatever series
//! that key belongs to. A tiering pass deletes every chunk of every series below the cold
//! boundary; when the hot data left is all in heads (no stored chunk above the boundary, the
//! usual case with a short hot retention and a slow series), an unbounded seek per series
//! walked the tombstones of every later (or, backwards, earlier) series: a scan of 10,000
//! series spun for minutes. With the series' own keys as bounds a seek stops at its edge, so it
//! skips at most that series' own tombstones.

use collabstream_common::SeriesId;
use rocksdb::DBRawIteratorWithThreadMode;

use crate::db::{CF_CHUNKS, Rocks, total_order};
use crate::keys;
use crate::store::cf;

/// A raw iterator over the chunks of `id` that start before `before` (all of them with `None`),
/// not positioned yet: seek before reading.
pub(crate) fn series_chunks(
    db: &Rocks,
    id: SeriesId,
    before: Option<i64>,
) -> DBRawIteratorWithThreadMode<'_, Rocks> {
    let mut opts = total_order();
    opts.set_iterate_lower_bound(keys::chunk_key(id, i64::MIN).to_vec());
    // The upper bound is exclusive: the first key of the next series covers a chunk at i64::MAX.
    let upper = match before {
        Some(t) => Some(keys::chunk_key(id, t)),
        None => id.0.checked_add(1).map(|next| keys::chunk_key(SeriesId(next), i64::MIN)),
    };
    if let Some(upper) = upper {
        opts.set_iterate_upper_bound(upper.to_vec());
    }
    db.raw_iterator_cf_opt(cf(db, CF_CHUNKS), opts)
}

/// One iterator for the chunks of many series, not positioned yet: each seek to a series' key
/// keeps it to that series (RocksDB stops at the first key of another series id, tombstones
/// included: the prefix extractor and `prefix_same_as_start`), with no iterator to create a
/// series. It has no bound in time: the reader stops at the end of its range itself.
pub(crate) fn chunks_by_series(db: &Rocks) -> DBRawIteratorWithThreadMode<'_, Rocks> {
    let mut opts = total_order();
    opts.set_prefix_same_as_start(true);
    db.raw_iterator_cf_opt(cf(db, CF_CHUNKS), opts)
}
