//! The cold tier's side of [`Store`]: applying `seal`, `tier` and `expire_cold`, what readers
//! and the tiering pass ask of the manifest, and dropping hot data the cold tier holds.
//!
//! Hot data below the cold boundary is dropped lazily, not by apply: readers stop at the
//! boundary from the entry that moved it ([`Store::cold_until`]), and [`Store::drop_cold`]
//! (run beside apply on every node, and again after a restart, since its deletes are not
//! logged) deletes the chunks and trims the heads below it once a checkpoint has recorded it,
//! and never below the boundary an open hot cursor started from ([`Store::cursor_pinned`]):
//! a cursor reads lazily, a batch of series at a time, and what moved after its reader listed
//! the cold files is in neither those files nor, were it dropped, the hot store. A reader that
//! lists the cold files after taking the boundary therefore reads each sample in one tier or
//! both (the seam that merges the tiers does so).

use std::sync::Arc;
use std::sync::atomic::Ordering;

use collabstream_common::TimeRange;
use collabstream_proto::log_view::TierCommand;

use crate::cold_manifest::{ColdView, Manifest};
use crate::db::CF_CHUNKS;
use crate::error::Result;
use crate::event_blocks::StoredEvent;
use crate::head::SeriesEntry;
use crate::keys;
use crate::series_chunks::series_chunks;
use crate::store::{Store, WriterState, cf, no_wal};
use crate::store_apply::ApplyOutcome;

/// What [`Store::drop_cold`] removed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Dropped {
    pub chunks: u64,
    pub head_samples: u64,
    pub events: u64,
    /// Whether an open reader kept the drop short of a durable boundary: a later drop, once
    /// it is done, goes further.
    pub held_back: bool,
}

/// Which registry of [`Store::cold_readers`] a pin is in.
pub(crate) const SAMPLES_PINS: usize = 0;
pub(crate) const EVENTS_PINS: usize = 1;

/// A hot reader's cold boundary, registered while it reads (see [`Store::pin_cold`]).
pub(crate) struct ColdPin<'a> {
    store: &'a Store,
    table: usize,
    pub(crate) at: i64,
}

impl Drop for ColdPin<'_> {
    fn drop(&mut self) {
        self.store.unpin(self.table, self.at);
    }
}

/// Series handled per hold of the locks while heads are trimmed, so apply waits little.
const TRIM_BATCH: usize = 4096;

impl Store {
    /// Applies a cold-tier command: its outcome is refused with the reason when apply did not
    /// take it (a block proposed twice, out of turn or not sealed).
    pub(crate) fn apply_tiering(
        &self,
        index: u64,
        clock_ms: i64,
        cmd: &TierCommand,
        writer: &mut WriterState,
    ) -> ApplyOutcome {
        let manifest = &mut writer.manifest;
        let refused = match cmd {
            TierCommand::Seal(s) => {
                if manifest.adopt_token(index, clock_ms) {
                    tracing::info!(index, token = %manifest.view().object_token, "the cold tier's object token");
                }
                if manifest.seal(s.before_ms, s.events) {
                    tracing::info!(
                        index,
                        before_ms = s.before_ms,
                        events = s.events,
                        "samples (and events, if said) before this are sealed for the cold tier"
                    );
                }
                None
            }
            TierCommand::Tier(block) => match manifest.tier(block) {
                Ok(()) => {
                    tracing::info!(index, from_ms = block.from_ms, to_ms = block.to_ms, path = %block.path, "block tiered");
                    None
                }
                Err(why) => {
                    tracing::info!(index, %why, "a tier entry was not taken");
                    Some(why)
                }
            },
            TierCommand::ExpireCold(e) => {
                let gone = manifest.expire(e.before_ms);
                tracing::info!(index, before_ms = e.before_ms, blocks = gone, "cold blocks expired");
                None
            }
        };
        self.publish_cold(manifest);
        ApplyOutcome { refused, ..ApplyOutcome::default() }
    }

    /// Makes the manifest apply holds the one readers see.
    ///
    /// The view goes first: a reader that sees the new boundary must find the new block among
    /// the files it lists after it (see the module's doc).
    pub(crate) fn publish_cold(&self, manifest: &Manifest) {
        let view = manifest.view();
        *self.cold.write() = view.clone();
        self.sealed_before.store(view.sealed_before, Ordering::Release);
        self.cold_until.store(view.cold_until, Ordering::Release);
    }

    /// The manifest as of the last applied entry.
    pub fn cold_view(&self) -> Arc<ColdView> {
        self.cold.read().clone()
    }

    /// Where the cold tier ends: the hot store answers for samples at or after it only
    /// (`i64::MIN`: nothing is cold).
    pub fn cold_until(&self) -> i64 {
        self.cold_until.load(Ordering::Acquire)
    }

    /// The cold boundary as of the last checkpoint: [`Store::drop_cold`] drops below it.
    pub fn durable_cold_until(&self) -> i64 {
        self.durable_cold_until.load(Ordering::Acquire)
    }

    /// The events' cold boundary as of the last checkpoint: [`Store::drop_cold`] drops events
    /// below it.
    pub fn durable_events_cold_until(&self) -> i64 {
        self.durable_events_cold_until.load(Ordering::Acquire)
    }

    /// Samples refused since start because their block was sealed for the cold tier.
    pub fn cold_refused(&self) -> u64 {
        self.cold_refused.load(Ordering::Relaxed)
    }

    /// The oldest sample the hot store holds at or after the cold boundary, if any: where the
    /// next block to tier starts. One seek per series.
    pub fn oldest_hot_sample(&self) -> Result<Option<i64>> {
        let from = self.cold_until();
        let entries = self.entries();
        let mut oldest: Option<i64> = None;
        for e in entries {
            let head = e.head.lock().first_from(from);
            // Chunks never cross a block boundary, and the cold boundary is one: the first
            // chunk starting at or after it is the series' oldest hot one.
            let mut it = series_chunks(&self.db, e.id, None);
            it.seek(keys::chunk_key(e.id, from));
            let stored = it.key().and_then(keys::parse_chunk_key).map(|(_, t)| t);
            it.status()?;
            for t in head.into_iter().chain(stored) {
                oldest = Some(oldest.map_or(t, |o| o.min(t)));
            }
        }
        Ok(oldest)
    }

    /// Deletes the chunks and head samples before the cold boundary (see the module's doc).
    /// Safe to run at any time and again: it removes only what readers no longer read.
    ///
    /// Only below the boundary a checkpoint recorded (see `Store::durable_cold_until`), so that
    /// a crash never reopens the store with hot data missing above its boundary.
    ///
    /// Nor below the boundary an open hot cursor reads from: it reads lazily, and the cold
    /// files its reader listed may not hold what moved after it started.
    pub fn drop_cold(&self) -> Result<Dropped> {
        let (until, events_until, held_back) = {
            let readers = self.cold_readers.lock();
            let oldest = |table: usize| readers[table].keys().next().copied().unwrap_or(i64::MAX);
            let durable = self.durable_cold_until();
            let durable_events = self.durable_events_cold_until();
            let held_back = oldest(SAMPLES_PINS) < durable || oldest(EVENTS_PINS) < durable_events;
            (durable.min(oldest(SAMPLES_PINS)), durable_events.min(oldest(EVENTS_PINS)), held_back)
        };
        let mut dropped = Dropped { held_back, ..Dropped::default() };
        if events_until != i64::MIN {
            dropped.events = crate::event_blocks::drop_before(&self.db, events_until, |b| {
                self.write("dropping cold events", b, &no_wal())
            })?;
            if dropped.events > 0 {
                tracing::info!(until = events_until, events = dropped.events, "hot events now cold dropped");
            }
        }
        if until == i64::MIN {
            return Ok(dropped);
        }
        let entries = self.entries();
        for batch in entries.chunks(TRIM_BATCH) {
            // Heads change under apply's lock, and outside a checkpoint (which records what it
            // wrote of each head between taking and finishing).
            let _one = self.checkpointing.lock();
            let _writer = self.writer.lock();
            for e in batch {
                dropped.head_samples += e.head.lock().drop_before(until) as u64;
            }
        }
        let cf_chunks = cf(&self.db, CF_CHUNKS);
        let mut deletes = rocksdb::WriteBatch::default();
        for e in &entries {
            // Bounded to the chunks to drop: an unbounded seek would walk the tombstones earlier
            // passes left in the series after it (see `series_chunks`).
            let mut it = series_chunks(&self.db, e.id, Some(until));
            it.seek_to_first();
            while let Some(key) = it.key() {
                deletes.delete_cf(cf_chunks, key);
                dropped.chunks += 1;
                it.next();
            }
            it.status()?;
            if deletes.len() >= 10_000 {
                // Not logged: lost in a crash, they are made again after the restart.
                self.write("dropping cold chunks", &deletes, &no_wal())?;
                deletes = rocksdb::WriteBatch::default();
            }
        }
        self.write("dropping cold chunks", &deletes, &no_wal())?;
        if dropped.chunks + dropped.head_samples > 0 {
            tracing::info!(
                until,
                chunks = dropped.chunks,
                head_samples = dropped.head_samples,
                "hot data now cold dropped"
            );
        }
        Ok(dropped)
    }

    /// The cold boundary as of now, registered as read from until the pin is dropped (read and
    /// registered under the lock [`Store::drop_cold`] reads the pins with, so no drop can
    /// start below it in between).
    pub(crate) fn pin_cold(&self) -> ColdPin<'_> {
        ColdPin { store: self, table: SAMPLES_PINS, at: self.pin(SAMPLES_PINS) }
    }

    /// The same for the events' boundary.
    fn pin_cold_events(&self) -> ColdPin<'_> {
        ColdPin { store: self, table: EVENTS_PINS, at: self.pin(EVENTS_PINS) }
    }

    /// Registers a reader at the current boundary of `table` (a registry of
    /// [`Store::cold_readers`]) and gives that boundary.
    pub(crate) fn pin(&self, table: usize) -> i64 {
        let mut readers = self.cold_readers.lock();
        let at = if table == SAMPLES_PINS { self.cold_until() } else { self.cold_view().events_cold_until };
        *readers[table].entry(at).or_insert(0) += 1;
        at
    }

    /// Undoes one [`Store::pin`].
    pub(crate) fn unpin(&self, table: usize, at: i64) {
        let mut all = self.cold_readers.lock();
        let readers = &mut all[table];
        if let Some(n) = readers.get_mut(&at) {
            *n -= 1;
            if *n == 0 {
                readers.remove(&at);
            }
        }
    }

    /// Events refused since start because their block was sealed for the cold tier.
    pub fn events_cold_refused(&self) -> u64 {
        self.events_cold_refused.load(Ordering::Relaxed)
    }

    /// Where the events' cold tier ends: the hot store answers for events at or after it
    /// only (`i64::MIN`: none is cold).
    pub fn events_cold_until(&self) -> i64 {
        self.cold_view().events_cold_until
    }

    /// The hot store's events in `range` from the events' cold boundary on, in (time, log
    /// index, position) order, handed to `f` until it answers false; gives the boundary, which
    /// no drop passes until this returns (see [`Store::drop_cold`]). A reader listing the cold
    /// files after this started finds in them whatever moved meanwhile.
    pub fn scan_hot_events(&self, range: TimeRange, f: impl FnMut(StoredEvent) -> bool) -> Result<i64> {
        let pin = self.pin_cold_events();
        let from = TimeRange { start: range.start.max(pin.at), end: range.end };
        crate::event_blocks::scan(&self.db, from, f)?;
        Ok(pin.at)
    }

    /// The oldest event the hot store holds at or after the events' cold boundary, if any.
    pub fn oldest_hot_event(&self) -> Result<Option<i64>> {
        let mut oldest = None;
        self.scan_hot_events(TimeRange::ALL, |e| {
            oldest = Some(e.timestamp_ms);
            false
        })?;
        Ok(oldest)
    }

    fn entries(&self) -> Vec<Arc<SeriesEntry>> {
        self.index.read().entries().cloned().collect()
    }
}
