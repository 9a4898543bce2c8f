//! [`Panes`]: the window panes a rule holds in memory, by pane start and then by group.

use std::collections::BTreeMap;
use std::collections::hash_map::Entry;
use std::sync::Arc;

use rustc_hash::FxHashMap;

use crate::agg::measures::Measures;

/// A group's key, held once however many panes and windows name it.
pub(crate) type Group = Arc<[u8]>;

/// `key`'s shared copy in `groups`, added if new.
pub(crate) fn intern(groups: &mut rustc_hash::FxHashSet<Group>, key: &[u8]) -> Group {
    if let Some(g) = groups.get(key) {
        return g.clone();
    }
    let g: Group = key.into();
    groups.insert(g.clone());
    g
}

/// One pane of one group: what it accumulated, and whether that changed since the last
/// checkpoint took the rule's changes.
#[derive(Debug, Clone, Default)]
pub(crate) struct Pane {
    pub(crate) measures: Measures,
    pub(crate) dirty: bool,
    /// Bytes of its row as the last checkpoint wrote it (0 if none has).
    pub(crate) bytes: u32,
}

/// The panes by start, and a start's by group in a hash map: an event's pane is found with
/// one hash of its group's bytes, where an ordered map over (start, group) compared the bytes
/// of a dozen groups held elsewhere on the way down (the rule's busiest panes number hundreds
/// of thousands: a sliding window's hops, kept for its lateness). Nothing iterates a start's
/// map for an output: emissions are ordered by their own set (`Windows::pending`), and which
/// clean panes leave memory decides nothing but memory.
#[derive(Debug, Clone, Default)]
pub(crate) struct Panes {
    by_start: BTreeMap<i64, FxHashMap<Group, Pane>>,
    len: usize,
}

impl Panes {
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    pub(crate) fn get(&self, start: i64, group: &Group) -> Option<&Pane> {
        self.by_start.get(&start)?.get(group)
    }

    pub(crate) fn get_mut(&mut self, start: i64, group: &Group) -> Option<&mut Pane> {
        self.by_start.get_mut(&start)?.get_mut(group)
    }

    /// The pane of `group` at `start`, held from now on as `pane()` if it was not; and whether
    /// it was.
    pub(crate) fn get_or_insert(
        &mut self,
        start: i64,
        group: &Group,
        pane: impl FnOnce() -> Pane,
    ) -> (bool, &mut Pane) {
        match self.by_start.entry(start).or_default().entry(group.clone()) {
            Entry::Occupied(e) => (true, e.into_mut()),
            Entry::Vacant(e) => {
                self.len += 1;
                (false, e.insert(pane()))
            }
        }
    }

    /// The earliest start held.
    pub(crate) fn first_start(&self) -> Option<i64> {
        self.by_start.first_key_value().map(|(s, _)| *s)
    }

    /// Every pane of the earliest start, let go of.
    pub(crate) fn pop_first_start(&mut self) -> Option<(i64, Vec<(Group, Pane)>)> {
        let (start, panes) = self.by_start.pop_first()?;
        self.len -= panes.len();
        Some((start, panes.into_iter().collect()))
    }

    /// Lets go of clean panes, earliest start first, until at most `keep` are held; calls
    /// `gone` with each. Changed panes stay (their rows are not written yet), and are passed
    /// over: a checkpoint runs beside apply, so a pane apply changed meanwhile must not keep
    /// the clean ones after it in memory.
    pub(crate) fn let_go(&mut self, keep: usize, mut gone: impl FnMut(i64, &Pane)) {
        let mut excess = self.len.saturating_sub(keep);
        for (&start, panes) in self.by_start.iter_mut() {
            if excess == 0 {
                break;
            }
            let before = panes.len();
            panes.retain(|_, p| {
                if excess == 0 || p.dirty {
                    return true;
                }
                gone(start, p);
                excess -= 1;
                false
            });
            self.len -= before - panes.len();
            // A map keeps its capacity as it empties: give most of it back.
            if panes.len() < panes.capacity() / 4 {
                panes.shrink_to_fit();
            }
        }
        self.by_start.retain(|_, panes| !panes.is_empty());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_changed_pane_stays_and_the_clean_ones_after_it_go() {
        let mut panes = Panes::default();
        for (start, dirty) in [(0, false), (10, true), (20, false), (30, false)] {
            panes.get_or_insert(start, &Group::from(&b"g"[..]), || Pane { dirty, ..Pane::default() });
        }
        let mut gone = Vec::new();
        panes.let_go(1, |start, _| gone.push(start));
        assert_eq!(gone, [0, 20, 30], "the oldest clean panes, past the changed one");
        assert_eq!(panes.first_start(), Some(10));
        panes.let_go(0, |start, _| gone.push(start));
        assert_eq!(panes.len(), 1, "a changed pane is never let go of");
    }
}
