//! [`HeldBoundary`]: a cold boundary held by a reader that cannot borrow the store for as long
//! as it reads (SQL's plans are built, then run later on other threads). It holds back
//! [`Store::drop_cold`] exactly as a cursor's pin does (see `store_cold`): the hot store keeps
//! everything from the boundary on until it is dropped, so a reader that lists the cold files
//! after taking it finds every row in one tier or the other.

use std::sync::Arc;

use collabstream_common::TimeRange;

use crate::error::Result;
use crate::event_blocks::StoredEvent;
use crate::matcher::Matcher;
use crate::series_cursor::HotCursor;
use crate::store::Store;
use crate::store_cold::{EVENTS_PINS, SAMPLES_PINS};

pub struct HeldBoundary {
    store: Arc<Store>,
    table: usize,
    at: i64,
}

impl std::fmt::Debug for HeldBoundary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HeldBoundary").field("table", &self.table).field("at", &self.at).finish()
    }
}

impl HeldBoundary {
    /// Where the cold tier ends: rows before it are read from the cold files, the rest from
    /// the hot store (`i64::MIN`: nothing is cold).
    pub fn at(&self) -> i64 {
        self.at
    }

    /// The hot series matching every matcher, with their samples in `range` from the
    /// boundary on (see [`Store::cursor`]). Panics if this holds the events' boundary.
    pub fn samples(&self, matchers: &[Matcher], range: TimeRange) -> HotCursor<'_> {
        assert_eq!(self.table, SAMPLES_PINS, "a samples read needs the samples' boundary");
        self.store.cursor_from(None, self.at, matchers, range)
    }

    /// The hot events in `range` from the boundary on, in (time, log index, position) order,
    /// handed to `f` until it answers false. Panics if this holds the samples' boundary.
    pub fn events(&self, range: TimeRange, f: impl FnMut(StoredEvent) -> bool) -> Result<()> {
        assert_eq!(self.table, EVENTS_PINS, "an events read needs the events' boundary");
        let from = TimeRange { start: range.start.max(self.at), end: range.end };
        crate::event_blocks::scan(&self.store.db, from, f)
    }
}

impl Drop for HeldBoundary {
    fn drop(&mut self) {
        self.store.unpin(self.table, self.at);
    }
}

impl Store {
    /// The samples' cold boundary as of now, held until the value is dropped.
    pub fn hold_cold_boundary(self: &Arc<Self>) -> HeldBoundary {
        HeldBoundary { store: self.clone(), table: SAMPLES_PINS, at: self.pin(SAMPLES_PINS) }
    }

    /// The events' cold boundary as of now, held until the value is dropped.
    pub fn hold_events_cold_boundary(self: &Arc<Self>) -> HeldBoundary {
        HeldBoundary { store: self.clone(), table: EVENTS_PINS, at: self.pin(EVENTS_PINS) }
    }
}
