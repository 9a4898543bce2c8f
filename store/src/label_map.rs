//! [`LabelMap`]: label set → series id, keyed by the label set's canonical bytes.
//!
//! Every write looks up each of its series by labels: the proposer, which names the series it
//! finds by id in the log entry (see `LogSeries` in `log.proto`), and apply, for series sent
//! with labels. A label set is known here by its canonical bytes
//! ([`canonical_labels`](collabstream_proto::log_write::canonical_labels): the labels as a
//! series message encodes them), which is also what a remote-write sender that sorts its
//! labels sends. So the hot lookup hashes one contiguous slice of the request and compares it
//! with one contiguous buffer: no parsing of labels, no pointer chasing through a series'
//! [`Labels`](collabstream_common::Labels), whose every name and value is its own allocation.

use collabstream_common::SeriesId;
use rustc_hash::FxHashMap;
use xxhash_rust::xxh3::xxh3_64;

/// One label set's canonical bytes.
#[derive(Debug)]
struct Known {
    id: SeriesId,
    canonical: Box<[u8]>,
}

/// xxh3 of the canonical bytes → series.
#[derive(Debug, Default)]
pub(crate) struct LabelMap {
    /// The first series with each hash: with 64-bit hashes, almost always the only one.
    first: FxHashMap<u64, Known>,
    /// Further series whose canonical bytes have the same hash as another's.
    collisions: FxHashMap<u64, Vec<Known>>,
}

impl LabelMap {
    /// Adds a series; its label set must not be in the map yet.
    pub(crate) fn insert(&mut self, canonical: &[u8], id: SeriesId) {
        self.insert_hashed(xxh3_64(canonical), canonical, id);
    }

    /// The series whose canonical label bytes are exactly `canonical`.
    pub(crate) fn find(&self, canonical: &[u8]) -> Option<SeriesId> {
        self.find_hashed(xxh3_64(canonical), canonical)
    }

    /// [`LabelMap::find`] of each key, in order. The lookups are memory-bound: done in phases
    /// (hash every key, then probe every slot, then compare as the result is read) so that the
    /// cache misses of different keys overlap instead of waiting for one another.
    pub(crate) fn find_many<'a>(
        &'a self,
        keys: &'a [&'a [u8]],
    ) -> impl Iterator<Item = Option<SeriesId>> + 'a {
        let hashes: Vec<u64> = keys.iter().map(|k| xxh3_64(k)).collect();
        let slots: Vec<Option<&Known>> = hashes.iter().map(|h| self.first.get(h)).collect();
        keys.iter().zip(slots).zip(hashes).map(move |((key, slot), hash)| match slot {
            Some(k) if *k.canonical == **key => Some(k.id),
            Some(_) => self.find_hashed(hash, key),
            None => None,
        })
    }

    fn insert_hashed(&mut self, hash: u64, canonical: &[u8], id: SeriesId) {
        let known = Known { id, canonical: canonical.into() };
        match self.first.entry(hash) {
            std::collections::hash_map::Entry::Vacant(slot) => {
                slot.insert(known);
            }
            std::collections::hash_map::Entry::Occupied(_) => {
                self.collisions.entry(hash).or_default().push(known);
            }
        }
    }

    fn find_hashed(&self, hash: u64, canonical: &[u8]) -> Option<SeriesId> {
        let first = self.first.get(&hash)?;
        if *first.canonical == *canonical {
            return Some(first.id);
        }
        self.collisions.get(&hash)?.iter().find(|k| *k.canonical == *canonical).map(|k| k.id)
    }
}

#[cfg(test)]
mod tests {
    use collabstream_proto::log_write::canonical_labels;

    use super::*;

    fn canonical(pairs: &[(&str, &str)]) -> Vec<u8> {
        let mut out = Vec::new();
        canonical_labels(pairs.iter().copied(), &mut out);
        out
    }

    #[test]
    fn finds_exact_label_sets_only() {
        let mut map = LabelMap::default();
        map.insert(&canonical(&[("__name__", "up"), ("job", "api")]), SeriesId(1));
        assert_eq!(map.find(&canonical(&[("__name__", "up"), ("job", "api")])), Some(SeriesId(1)));
        map.insert(&canonical(&[("__name__", "down")]), SeriesId(2));
        let keys = [
            canonical(&[("__name__", "down")]),
            canonical(&[("__name__", "x")]),
            canonical(&[("__name__", "up"), ("job", "api")]),
        ];
        let keys: Vec<&[u8]> = keys.iter().map(Vec::as_slice).collect();
        let found: Vec<_> = map.find_many(&keys).collect();
        assert_eq!(found, [Some(SeriesId(2)), None, Some(SeriesId(1))]);
        for other in [
            &[("__name__", "up")][..],
            &[("__name__", "up"), ("job", "api"), ("x", "y")],
            &[("__name__", "up"), ("job", "ap")],
            &[("__name__", "up"), ("jo", "bapi")],
            &[("job", "api"), ("__name__", "up")],
        ] {
            assert_eq!(map.find(&canonical(other)), None, "{other:?}");
        }
    }

    #[test]
    fn colliding_hashes_keep_every_series() {
        // Real xxh3 collisions cannot be found by hand: the same hash is forced instead.
        let mut map = LabelMap::default();
        let sets: Vec<Vec<u8>> = ["a", "b", "c"].iter().map(|n| canonical(&[("__name__", n)])).collect();
        for (i, set) in sets.iter().enumerate() {
            map.insert_hashed(7, set, SeriesId(i as u64 + 1));
        }
        for (i, set) in sets.iter().enumerate() {
            assert_eq!(map.find_hashed(7, set), Some(SeriesId(i as u64 + 1)));
        }
        // find_many falls back to the collision list when the first slot's bytes differ.
        map.first.insert(xxh3_64(&sets[1]), Known { id: SeriesId(1), canonical: sets[0].as_slice().into() });
        map.collisions
            .insert(xxh3_64(&sets[1]), vec![Known { id: SeriesId(2), canonical: sets[1].as_slice().into() }]);
        let keys = [sets[1].as_slice()];
        assert_eq!(map.find_many(&keys).collect::<Vec<_>>(), [Some(SeriesId(2))]);
        assert_eq!(map.find_hashed(7, &canonical(&[("__name__", "d")])), None);
        assert_eq!(map.find_hashed(8, &sets[0]), None);
    }
}
