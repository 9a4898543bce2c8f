//! The in-memory series index: label set → series, and postings (label name → value → sorted
//! series ids) that resolve matchers.
//!
//! The index is rebuilt from the `series` column family when the store opens; it is the only
//! structure queries use to find series, so a series is queryable as soon as it is inserted.
//! Values per label name are kept in a sorted map, which plays the part of a term dictionary:
//! a regex with a literal prefix (`u12.*`) only visits the values in that prefix's range, and a
//! literal alternation (`a|b|c`) is answered by direct lookups, and any other regex by a
//! snapshot of the values built for it (`value_fst`: an FST walked with the regex's DFA, or a
//! substring search for a literal every match holds).

use std::collections::{BTreeMap, HashMap};
use std::ops::Bound;
use std::sync::Arc;

use collabstream_common::{Labels, SeriesId};

use collabstream_proto::log_write::canonical_labels;

use crate::head::SeriesEntry;
use crate::label_map::LabelMap;
use crate::matcher::{MatchOp, Matcher};
use crate::value_fst::ValueFsts;

/// Series ids, sorted ascending, no duplicates.
pub(crate) type Postings = Vec<SeriesId>;

#[derive(Debug, Default)]
pub(crate) struct SeriesIndex {
    /// Label set → series, for writes (which look up every series they carry).
    by_labels: LabelMap,
    /// Indexed by `SeriesId.0`; ids are dense, so this is the id → series table.
    entries: Vec<Option<Arc<SeriesEntry>>>,
    postings: HashMap<String, BTreeMap<String, Postings>>,
    /// FSTs of the values of the labels regexes without a literal prefix ask for.
    fsts: ValueFsts,
    len: usize,
}

impl SeriesIndex {
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    pub(crate) fn get(&self, id: SeriesId) -> Option<&Arc<SeriesEntry>> {
        self.entries.get(id.0 as usize)?.as_ref()
    }

    /// Finds the series by its canonical label bytes
    /// ([`canonical_labels`](collabstream_proto::log_write::canonical_labels)).
    pub(crate) fn find(&self, canonical: &[u8]) -> Option<&Arc<SeriesEntry>> {
        self.get(self.by_labels.find(canonical)?)
    }

    /// The ids of the series with these canonical label bytes, one per key.
    pub(crate) fn find_ids<'a>(
        &'a self,
        keys: &'a [&'a [u8]],
    ) -> impl Iterator<Item = Option<SeriesId>> + 'a {
        self.by_labels.find_many(keys)
    }

    /// Adds a series. Ids must be inserted in increasing order, which keeps postings sorted.
    pub(crate) fn insert(&mut self, entry: Arc<SeriesEntry>) {
        let id = entry.id;
        let slot = id.0 as usize;
        if self.entries.len() <= slot {
            self.entries.resize(slot + 1, None);
        }
        debug_assert!(self.entries[slot].is_none(), "series id {} inserted twice", id.0);
        let mut canonical = Vec::new();
        canonical_labels(entry.labels.iter().map(|l| (&l.name, &l.value)), &mut canonical);
        self.by_labels.insert(&canonical, id);
        for l in &entry.labels {
            let values = self.postings.entry(l.name.clone()).or_default();
            self.fsts.added(&l.name, &l.value, !values.contains_key(&l.value));
            let list = values.entry(l.value.clone()).or_default();
            if list.last().is_some_and(|last| *last >= id) {
                let pos = list.partition_point(|x| *x < id);
                list.insert(pos, id);
            } else {
                list.push(id);
            }
        }
        self.entries[slot] = Some(entry);
        self.len += 1;
    }

    /// Every series id, sorted.
    fn all(&self) -> Postings {
        self.entries.iter().flatten().map(|e| e.id).collect()
    }

    /// The ids of the series that satisfy every matcher (all series when there is none).
    pub(crate) fn select(&self, matchers: &[Matcher]) -> Postings {
        let (positive, negative): (Vec<_>, Vec<_>) = matchers.iter().partition(|m| !m.matches_empty());
        let mut result: Option<Postings> = None;
        // Cheap and selective matchers first, so later intersections work on short lists.
        let mut positive = positive;
        positive.sort_by_key(|m| match m.op {
            MatchOp::Equal => 0,
            MatchOp::Regex => 1,
            _ => 2,
        });
        for m in positive {
            let ids = self.having(m);
            result = Some(match result {
                None => ids,
                Some(r) => intersect(&r, &ids),
            });
            if result.as_ref().is_some_and(|r| r.is_empty()) {
                return Vec::new();
            }
        }
        let mut result = result.unwrap_or_else(|| self.all());
        for m in negative {
            // A matcher that accepts "" keeps series without the label and removes the series
            // whose value it rejects, which are exactly those the negated matcher accepts.
            let rejected = self.having(&m.negated());
            result = subtract(&result, &rejected);
        }
        result
    }

    /// Ids of series that have label `m.name` with a value `m` accepts.
    fn having(&self, m: &Matcher) -> Postings {
        let Some(values) = self.postings.get(&m.name) else {
            return Vec::new();
        };
        if m.op == MatchOp::Equal {
            return values.get(&m.value).cloned().unwrap_or_default();
        }
        let prefixes = m.literal_prefixes();
        match &prefixes {
            // `a|b|c`: direct lookups.
            Some((exact, true)) => {
                return union(exact.iter().filter_map(|p| values.get(p.as_str())).collect());
            }
            // `prefix.*` (what Grafana's variable filters send) accepts every value in the
            // prefix's range: no need to test any.
            Some((p, false)) if p.len() == 1 && m.value == format!("{}.*", regex_syntax::escape(&p[0])) => {
                let range = values.range::<str, _>((Bound::Included(p[0].as_str()), Bound::Unbounded));
                return union(
                    range.take_while(|(v, _)| v.starts_with(p[0].as_str())).map(|(_, ids)| ids).collect(),
                );
            }
            _ => {}
        }
        // Any other regex: a search of the label's value snapshot (an FST walk with the regex's
        // DFA, which keeps to a literal prefix's range by itself, or a substring search).
        if m.op == MatchOp::Regex
            && let Some(found) = self.fsts.matching(&m.name, values, m)
        {
            return found;
        }
        // A regex whose DFA would be too large: each candidate tested.
        let mut lists: Vec<&Postings> = Vec::new();
        match prefixes {
            Some((prefixes, _)) => {
                for p in &prefixes {
                    let range = values.range::<str, _>((Bound::Included(p.as_str()), Bound::Unbounded));
                    for (v, ids) in range.take_while(|(v, _)| v.starts_with(p.as_str())) {
                        if m.matches(v) {
                            lists.push(ids);
                        }
                    }
                }
            }
            None => lists.extend(values.iter().filter(|(v, _)| m.matches(v)).map(|(_, ids)| ids)),
        }
        union(lists)
    }

    /// Label names present on any of `ids`, or on any series when `ids` is `None`; sorted.
    pub(crate) fn label_names(&self, ids: Option<&[SeriesId]>) -> Vec<String> {
        match ids {
            None => {
                let mut names: Vec<_> = self.postings.keys().cloned().collect();
                names.sort();
                names
            }
            Some(ids) => {
                let mut names = std::collections::BTreeSet::new();
                for e in ids.iter().filter_map(|id| self.get(*id)) {
                    for l in &e.labels {
                        if !names.contains(l.name.as_str()) {
                            names.insert(l.name.clone());
                        }
                    }
                }
                names.into_iter().collect()
            }
        }
    }

    /// Values of label `name` on any of `ids`, or on any series when `ids` is `None`; sorted.
    pub(crate) fn label_values(&self, name: &str, ids: Option<&[SeriesId]>) -> Vec<String> {
        match ids {
            None => self.postings.get(name).map(|v| v.keys().cloned().collect()).unwrap_or_default(),
            Some(ids) => {
                let mut values = std::collections::BTreeSet::new();
                for e in ids.iter().filter_map(|id| self.get(*id)) {
                    if let Some(v) = e.labels.get(name) {
                        values.insert(v.to_string());
                    }
                }
                values.into_iter().collect()
            }
        }
    }

    pub(crate) fn entries(&self) -> impl Iterator<Item = &Arc<SeriesEntry>> {
        self.entries.iter().flatten()
    }

    pub(crate) fn labels_of(&self, id: SeriesId) -> Option<&Labels> {
        self.get(id).map(|e| &e.labels)
    }
}

fn intersect(a: &[SeriesId], b: &[SeriesId]) -> Postings {
    let mut out = Vec::with_capacity(a.len().min(b.len()));
    let (mut i, mut j) = (0, 0);
    while i < a.len() && j < b.len() {
        match a[i].cmp(&b[j]) {
            std::cmp::Ordering::Less => i += 1,
            std::cmp::Ordering::Greater => j += 1,
            std::cmp::Ordering::Equal => {
                out.push(a[i]);
                i += 1;
                j += 1;
            }
        }
    }
    out
}

fn subtract(a: &[SeriesId], b: &[SeriesId]) -> Postings {
    let mut out = Vec::with_capacity(a.len());
    let mut j = 0;
    for &x in a {
        while j < b.len() && b[j] < x {
            j += 1;
        }
        if j >= b.len() || b[j] != x {
            out.push(x);
        }
    }
    out
}

fn union(lists: Vec<&Postings>) -> Postings {
    match lists.len() {
        0 => Vec::new(),
        1 => lists[0].clone(),
        _ => {
            let mut out: Postings = lists.into_iter().flatten().copied().collect();
            out.sort_unstable();
            out.dedup();
            out
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::head::HeadSeries;

    fn index(sets: &[&[(&str, &str)]]) -> SeriesIndex {
        let mut idx = SeriesIndex::default();
        for (i, pairs) in sets.iter().enumerate() {
            let labels = Labels::from_pairs(pairs).unwrap();
            idx.insert(Arc::new(SeriesEntry::new(SeriesId(i as u64 + 1), labels, HeadSeries::default())));
        }
        idx
    }

    fn ids(v: &[u64]) -> Postings {
        v.iter().map(|i| SeriesId(*i)).collect()
    }

    #[test]
    fn resolves_every_matcher_kind() {
        let idx = index(&[
            &[("__name__", "up"), ("job", "api")],
            &[("__name__", "up"), ("job", "web")],
            &[("__name__", "up")],
            &[("__name__", "cpu"), ("job", "api")],
        ]);
        let m = |op, n: &str, v: &str| Matcher::new(op, n, v).unwrap();
        assert_eq!(idx.select(&[m(MatchOp::Equal, "__name__", "up")]), ids(&[1, 2, 3]));
        assert_eq!(
            idx.select(&[m(MatchOp::Equal, "__name__", "up"), m(MatchOp::NotEqual, "job", "api")]),
            ids(&[2, 3])
        );
        assert_eq!(idx.select(&[m(MatchOp::Regex, "job", "a.*|w.b")]), ids(&[1, 2, 4]));
        assert_eq!(idx.select(&[m(MatchOp::Equal, "job", "")]), ids(&[3]));
        assert_eq!(
            idx.select(&[m(MatchOp::Equal, "__name__", "up"), m(MatchOp::NotRegex, "job", "ap.")]),
            ids(&[2, 3])
        );
        assert_eq!(idx.select(&[m(MatchOp::Regex, "job", ".+")]), ids(&[1, 2, 4]));
        assert_eq!(idx.select(&[m(MatchOp::Regex, "job", "api|nope")]), ids(&[1, 4]));
        assert_eq!(idx.select(&[m(MatchOp::Equal, "zone", "x")]), ids(&[]));
        assert_eq!(idx.select(&[]), ids(&[1, 2, 3, 4]));
        assert_eq!(idx.label_names(None), vec!["__name__", "job"]);
        assert_eq!(idx.label_values("job", Some(&ids(&[2, 3]))), vec!["web"]);
    }

    #[test]
    fn finds_by_canonical_labels() {
        let idx = index(&[&[("__name__", "up"), ("job", "api")]]);
        let canonical = |pairs: &[(&str, &str)]| {
            let mut out = Vec::new();
            canonical_labels(pairs.iter().copied(), &mut out);
            out
        };
        assert_eq!(
            idx.find(&canonical(&[("__name__", "up"), ("job", "api")])).map(|e| e.id),
            Some(SeriesId(1))
        );
        assert!(idx.find(&canonical(&[("__name__", "up"), ("job", "x")])).is_none());
    }
}
