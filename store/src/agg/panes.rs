//! [`Panes`]: the window panes a rule holds in memory, by pane start and then by group.
//!
//! An event finds its pane with a few integer comparisons (a rule has tens of pane starts
//! alive, not millions) and one hash of its group, where one ordered map over (start, group)
//! compared group keys byte by byte at every level. Panes of one start are in no order: what
//! is done with them in that order (letting them go of memory, dropping expired ones, whose
//! rows are deleted through an ordered set) does not reach an output.

use std::collections::BTreeMap;
use std::collections::hash_map::Entry;
use std::sync::Arc;

use rustc_hash::FxHashMap;

use crate::agg::measures::Measures;

/// A group's key, held once however many panes and windows name it.
pub(crate) type Group = Arc<[u8]>;

/// One pane of one group: what it accumulated, and whether that changed since the last
/// checkpoint took the rule's changes.
#[derive(Debug, Clone, Default)]
pub(crate) struct Pane {
    pub(crate) measures: Measures,
    pub(crate) dirty: bool,
    /// Bytes of its row as the last checkpoint wrote it (0 if none has).
    pub(crate) bytes: u32,
}

#[derive(Debug, Clone, Default)]
pub(crate) struct Panes {
    by_start: BTreeMap<i64, FxHashMap<Group, Pane>>,
    len: usize,
}

impl Panes {
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    pub(crate) fn get(&self, start: i64, group: &[u8]) -> Option<&Pane> {
        self.by_start.get(&start)?.get(group)
    }

    pub(crate) fn get_mut(&mut self, start: i64, group: &[u8]) -> Option<&mut Pane> {
        self.by_start.get_mut(&start)?.get_mut(group)
    }

    /// The pane of `group` at `start`, held from now on as `pane` if it was not; and whether
    /// it was.
    pub(crate) fn get_or_insert(
        &mut self,
        start: i64,
        group: Group,
        pane: impl FnOnce() -> Pane,
    ) -> (bool, &mut Pane) {
        match self.by_start.entry(start).or_default().entry(group) {
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
    pub(crate) fn pop_first_start(&mut self) -> Option<(i64, FxHashMap<Group, Pane>)> {
        let (start, panes) = self.by_start.pop_first()?;
        self.len -= panes.len();
        Some((start, panes))
    }

    /// Lets go of clean panes of the earliest starts until at most `keep` are held or the
    /// earliest start left holds a changed pane; calls `gone` with each.
    pub(crate) fn let_go(&mut self, keep: usize, mut gone: impl FnMut(i64, &Pane)) {
        while self.len > keep {
            let Some(mut first) = self.by_start.first_entry() else { return };
            let start = *first.key();
            let panes = first.get_mut();
            let before = panes.len();
            let mut over = self.len - keep;
            panes.retain(|_, p| {
                if over == 0 || p.dirty {
                    return true;
                }
                over -= 1;
                gone(start, p);
                false
            });
            self.len -= before - panes.len();
            if !panes.is_empty() {
                return;
            }
            first.remove();
        }
    }
}
