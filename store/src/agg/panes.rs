//! [`Panes`]: the window panes a rule holds in memory, ordered by pane start and then by group.

use std::collections::BTreeMap;
use std::collections::btree_map::Entry;
use std::sync::Arc;

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

/// One ordered map over (start, group). Panes held by start and then by group in a hash map
/// found an event's pane faster, but took about 35 MiB more at 1M open keys (314-320 against
/// 281-282 MiB RSS, docs/benchmarks.md) with no gain in events/s the bench could tell.
#[derive(Debug, Clone, Default)]
pub(crate) struct Panes {
    map: BTreeMap<(i64, Group), Pane>,
}

impl Panes {
    pub(crate) fn len(&self) -> usize {
        self.map.len()
    }

    pub(crate) fn get(&self, start: i64, group: &Group) -> Option<&Pane> {
        self.map.get(&(start, group.clone()))
    }

    pub(crate) fn get_mut(&mut self, start: i64, group: &Group) -> Option<&mut Pane> {
        self.map.get_mut(&(start, group.clone()))
    }

    /// The pane of `group` at `start`, held from now on as `pane()` if it was not; and whether
    /// it was.
    pub(crate) fn get_or_insert(
        &mut self,
        start: i64,
        group: Group,
        pane: impl FnOnce() -> Pane,
    ) -> (bool, &mut Pane) {
        match self.map.entry((start, group)) {
            Entry::Occupied(e) => (true, e.into_mut()),
            Entry::Vacant(e) => (false, e.insert(pane())),
        }
    }

    /// The earliest start held.
    pub(crate) fn first_start(&self) -> Option<i64> {
        self.map.first_key_value().map(|((s, _), _)| *s)
    }

    /// Every pane of the earliest start, let go of.
    pub(crate) fn pop_first_start(&mut self) -> Option<(i64, Vec<(Group, Pane)>)> {
        let start = self.first_start()?;
        let mut gone = Vec::new();
        while let Some(e) = self.map.first_entry()
            && e.key().0 == start
        {
            let ((_, g), p) = e.remove_entry();
            gone.push((g, p));
        }
        Some((start, gone))
    }

    /// Lets go of clean panes, earliest first, until at most `keep` are held; calls `gone`
    /// with each. Changed panes stay (their rows are not written yet), and are passed over:
    /// a checkpoint runs beside apply, so a pane apply changed meanwhile must not keep the
    /// clean ones after it in memory.
    pub(crate) fn let_go(&mut self, keep: usize, mut gone: impl FnMut(i64, &Pane)) {
        let excess = self.map.len().saturating_sub(keep);
        if excess == 0 {
            return;
        }
        let clean: Vec<(i64, Group)> =
            self.map.iter().filter(|(_, p)| !p.dirty).take(excess).map(|(k, _)| k.clone()).collect();
        for key in clean {
            if let Some(p) = self.map.remove(&key) {
                gone(key.0, &p);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_changed_pane_stays_and_the_clean_ones_after_it_go() {
        let mut panes = Panes::default();
        for (start, dirty) in [(0, false), (10, true), (20, false), (30, false)] {
            panes.get_or_insert(start, Group::from(&b"g"[..]), || Pane { dirty, ..Pane::default() });
        }
        let mut gone = Vec::new();
        panes.let_go(1, |start, _| gone.push(start));
        assert_eq!(gone, [0, 20, 30], "the oldest clean panes, past the changed one");
        assert_eq!(panes.first_start(), Some(10));
        panes.let_go(0, |start, _| gone.push(start));
        assert_eq!(panes.len(), 1, "a changed pane is never let go of");
    }
}
