//! The write side of [`Store`]: applying log entries. Apply is deterministic (the outcome and
//! the resulting state depend only on the state before and the entry), so every replica that
//! applies the same entries holds the same data and gives series the same ids.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use collabstream_common::{Labels, SeriesId};
use collabstream_proto::log_view::{CommandView, WriteView};
use collabstream_proto::log_write::canonical_labels;
use collabstream_proto::v1::{self, ItemKind, Rejection};
use parking_lot::RwLockReadGuard;
use prost::Message;
use rocksdb::WriteBatch;

use crate::aggregations::Emitted;
use crate::aggregations::RuleOutcome;
use crate::db::{CF_CHUNKS, CF_SERIES};
use crate::error::{Error, Result};
use crate::event_blocks::EventBlock;
use crate::head::{Appended, HeadSeries, SeriesEntry};
use crate::index::SeriesIndex;
use crate::settings::Settings;
use crate::store::{Store, WriterState, cf, no_wal};
use crate::{chunk, keys, series_codec};

/// What applying one entry did, reported back to the writer that proposed it.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct ApplyOutcome {
    pub samples_accepted: u64,
    pub events_accepted: u64,
    pub rejected: Vec<Rejection>,
    /// The entry's batch id had been applied before, so nothing was applied again.
    pub duplicate: bool,
    /// For a change of the catalog, an aggregation rule's or an external SQL table's (an entry
    /// without writes, carrying one change and answered by this one outcome): what it did.
    pub catalog_change: Option<RuleOutcome>,
    /// Why the whole write was refused: its Kafka spans do not continue their partitions
    /// (see `source_offsets`). Nothing of it was applied.
    pub refused: Option<String>,
}

impl From<&ApplyOutcome> for v1::WriteResponse {
    /// The outcome as a client sees it (a rule change's answer is not part of it).
    fn from(o: &ApplyOutcome) -> Self {
        v1::WriteResponse {
            samples_accepted: o.samples_accepted,
            events_accepted: o.events_accepted,
            rejected: o.rejected.clone(),
            duplicate_batches: u64::from(o.duplicate),
        }
    }
}

/// See [`Store::known_series`].
pub struct KnownSeries<'a>(RwLockReadGuard<'a, SeriesIndex>);

impl KnownSeries<'_> {
    /// The ids of the series with these canonical label bytes
    /// ([`canonical_labels`](collabstream_proto::log_write::canonical_labels)), one per key
    /// (raw, as the wire encoders take them), appended to `out`. Looking many up at once is
    /// faster than one by one: their cache misses overlap.
    pub fn find_raw(&self, keys: &[&[u8]], out: &mut Vec<Option<u64>>) {
        out.extend(self.0.find_ids(keys).map(|id| id.map(|i| i.0)));
    }
}

impl std::fmt::Debug for KnownSeries<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KnownSeries").field("series", &self.0.len()).finish()
    }
}

impl Store {
    /// Applies log entry `index`. Deterministic: the outcome and the resulting state depend only
    /// on the state before and the entry. Entries must come in increasing index order.
    pub fn apply(&self, index: u64, cmd: &v1::Command) -> Result<ApplyOutcome> {
        Ok(self.apply_batch(index, &cmd.encode_to_vec(), None)?.pop().unwrap_or_default())
    }

    /// Applies log entry `index`, an encoded [`v1::Command`] whose payload may carry a batch of
    /// writes (one outcome each), and records `sm_meta` as the replication layer's state at
    /// this index. The entry is read in place ([`CommandView`]): nothing of it is copied but
    /// the label sets of new series.
    ///
    /// A failed write stops the state machine ([`Store::stopped`]): nothing more is applied.
    pub fn apply_batch(
        &self,
        index: u64,
        entry: &[u8],
        sm_meta: Option<Vec<u8>>,
    ) -> Result<Vec<ApplyOutcome>> {
        self.check_running()?;
        let applied = self.apply_batch_unchecked(index, entry, sm_meta);
        self.stop_after(applied)
    }

    fn apply_batch_unchecked(
        &self,
        index: u64,
        entry: &[u8],
        sm_meta: Option<Vec<u8>>,
    ) -> Result<Vec<ApplyOutcome>> {
        // Every proposer checks what it logs, so an entry this node cannot read whole was
        // written by a newer version. Skipping it (or what of it is not understood) would leave
        // this replica different from the others without a sign: apply stops instead, and the
        // node says why (`/readyz`) until it is upgraded.
        let cmd = CommandView::parse(entry)
            .map_err(|source| Error::UnknownEntry { index, reason: source.to_string() })?;
        let mut writer = self.writer.lock();
        let applied = self.applied.load(Ordering::Acquire);
        if index <= applied {
            return Err(Error::OutOfOrderApply { index, applied });
        }
        if let Some(p) = &cmd.settings {
            self.apply_settings(index, p, &mut writer);
        }
        let settings = *self.settings.read();
        let mut batch = WriteBatch::default();
        let mut outcomes = Vec::with_capacity(cmd.writes.len());
        // Events are keyed by (time, index, position); positions run on across the writes of a
        // batch, so no two events of an entry share one. (An entry is far smaller than 2^32
        // events: its size is bounded by the proposer.)
        let mut event_base = 0u32;
        let mut emitted = Vec::new();
        for (write, req) in (0u32..).zip(&cmd.writes) {
            let mut outcome = ApplyOutcome::default();
            let at = EntryAt { index, write, clock: cmd.leader_time_ms, event_base };
            self.apply_write(&mut writer, &settings, at, req, &mut batch, &mut outcome, &mut emitted)?;
            event_base = event_base.wrapping_add(req.events.len() as u32);
            outcomes.push(outcome);
        }
        if cmd.tick {
            writer.aggs.tick(&self.db, cmd.leader_time_ms, &mut emitted)?;
        }
        // A window late events changed is emitted again once an entry, not once an event.
        writer.aggs.flush(&self.db, &mut emitted)?;
        if let Some(t) = &cmd.tiering {
            outcomes.push(self.apply_tiering(index, cmd.leader_time_ms, t, &mut writer));
        }
        // A rule and an external SQL table are tables of one SQL namespace: neither takes a
        // name the other has.
        if let Some(change) = &cmd.rule_change {
            let outcome = match &change.change {
                Some(v1::rule_change::Change::Create(def)) if writer.sql_tables.has(&def.name) => {
                    RuleOutcome::Refused(format!(
                        "{} is an external SQL table: name the rule otherwise, or DROP TABLE {} first",
                        def.name, def.name
                    ))
                }
                _ => writer.aggs.change(change, settings.out_of_order_window_ms),
            };
            tracing::info!(index, ?change, ?outcome, "aggregation rule change applied");
            outcomes.push(ApplyOutcome { catalog_change: Some(outcome), ..ApplyOutcome::default() });
        }
        if let Some(change) = &cmd.sql_table {
            let outcome = match &change.change {
                Some(v1::sql_table_change::Change::Create(t))
                    if writer.aggs.rule_named(&t.name).is_some() =>
                {
                    RuleOutcome::Refused(format!(
                        "{} is an aggregation rule's table; choose another name",
                        t.name
                    ))
                }
                _ => writer.sql_tables.change(change),
            };
            tracing::info!(index, ?change, ?outcome, "SQL table change applied");
            outcomes.push(ApplyOutcome { catalog_change: Some(outcome), ..ApplyOutcome::default() });
        }
        for name in writer.aggs.take_dropped_rows() {
            crate::agg_rows::drop_rule(&mut batch, &self.db, &name);
        }
        self.write_outputs(&mut writer, &settings, emitted, &mut batch)?;
        // Refreshed once a second (the leader's tick), not per entry: it allocates, and apply is
        // the hot path. `/metrics` trails by at most that second.
        if cmd.tick || cmd.settings.is_some() || cmd.rule_change.is_some() {
            *self.agg_stats.lock() = writer.aggs.stats();
        }
        // The meetings pack (a settings entry), a rule or an external table changes the tables.
        if cmd.settings.is_some() || cmd.rule_change.is_some() || cmd.sql_table.is_some() {
            self.publish_sql_view(&writer);
        }
        #[cfg(any(test, feature = "failpoints"))]
        if self.fail_apply.swap(false, Ordering::AcqRel) {
            return Err(Error::Injected("the apply's write failed"));
        }
        self.write("applying a log entry", &batch, &no_wal())?;
        if let Some(meta) = sm_meta {
            writer.sm_meta = meta;
            writer.sm_meta_dirty = true;
        }
        self.applied.store(index, Ordering::Release);
        // Window panes changed since the last checkpoint must stay in memory until it writes
        // them: past twice the bound (over all rules), take one now, so that the older panes
        // can go.
        // (Unless a checkpoint is under way: it lets panes go when its write is done.)
        if writer.aggs.hot_keys() > 2 * self.config.aggregation_keys_in_memory
            && let Some(_one) = self.checkpointing.try_lock()
        {
            self.checkpoint_locked(&mut writer)?;
        }
        Ok(outcomes)
    }

    /// The series applied so far, for a proposer that names series by id in the entries it
    /// builds (`LogSeries` in `log.proto`). Every replica that applies a later entry has
    /// applied these too, and gave them the same ids. Holds the index's read lock: look up a
    /// request's series and drop it.
    pub fn known_series(&self) -> KnownSeries<'_> {
        KnownSeries(self.index.read())
    }

    /// Records the replication layer's state for an entry that changes no data (a Raft
    /// membership or blank entry) and counts it as applied.
    pub fn apply_meta(&self, index: u64, sm_meta: Vec<u8>) -> Result<()> {
        self.check_running()?;
        let mut writer = self.writer.lock();
        let applied = self.applied.load(Ordering::Acquire);
        if index <= applied && applied != 0 {
            return Err(Error::OutOfOrderApply { index, applied });
        }
        writer.sm_meta = sm_meta;
        writer.sm_meta_dirty = true;
        self.applied.store(index.max(applied), Ordering::Release);
        Ok(())
    }

    /// A settings entry: from here on apply uses these (see [`Settings`]).
    fn apply_settings(&self, index: u64, p: &v1::ApplySettings, writer: &mut WriterState) {
        // Whether a series had been created before this entry, from the replicated state: the
        // index itself may hold series from after the checkpoint during a replay (RocksDB
        // flushes the WAL-less memtables when it closes), which once made a replay refuse the
        // block duration the first run had taken, and cut chunks elsewhere.
        let empty = writer.next_series <= 1;
        let mut settings = self.settings.write();
        let new = settings.updated(p, empty);
        if new.block_ms != p.block_ms && p.block_ms != 0 && !empty {
            tracing::warn!(
                index,
                block_ms = new.block_ms,
                proposed = p.block_ms,
                "store.block_duration is fixed once the store holds data; the proposed one is ignored"
            );
        }
        tracing::info!(index, settings = ?new, "store settings set by the log");
        writer.aggs.set_meetings_pack(new.meetings_pack);
        *settings = new;
    }

    #[allow(clippy::too_many_arguments)]
    fn apply_write(
        &self,
        writer: &mut WriterState,
        settings: &Settings,
        at: EntryAt,
        req: &WriteView<'_>,
        batch: &mut WriteBatch,
        outcome: &mut ApplyOutcome,
        emitted: &mut Emitted,
    ) -> Result<()> {
        let EntryAt { index, write, clock, event_base } = at;
        if let Err(reason) = writer.sources.check(&req.sources) {
            outcome.refused = Some(reason);
            return Ok(());
        }
        writer.sources.advance(&req.sources);
        if !req.batch_id.is_empty() {
            if writer.dedup.contains(req.batch_id) {
                outcome.duplicate = true;
                return Ok(());
            }
            writer.dedup.insert(req.batch_id.to_string(), settings.dedup_capacity);
        }
        // Rules over samples take them first: a series whose samples a rule keeps no input of
        // is then neither created nor stored.
        let mut aggregated_only = Vec::new();
        if writer.aggs.takes_samples() {
            for s in &req.series {
                let samples = req.samples(s);
                let pairs = utf8_pairs(req.labels(s)).and_then(|p| check_sorted_labels(&p).map(|()| p));
                // A bad label set is refused by `resolve_series`, and taken by no rule.
                let keep = match pairs {
                    Ok(pairs) => writer.aggs.observe_samples(&self.db, clock, &pairs, samples, emitted)?,
                    Err(_) => true,
                };
                if !keep {
                    outcome.samples_accepted += samples.len() as u64;
                }
                aggregated_only.push(!keep);
            }
        }
        let entries = self.resolve_series(writer, settings, req, &aggregated_only, batch, outcome);
        for (i, (series, entry)) in req.series.iter().zip(entries).enumerate() {
            let Some(entry) = entry.filter(|_| aggregated_only.get(i) != Some(&true)) else { continue };
            self.append_samples(settings, &entry, i as u32, req.samples(series).iter().copied(), outcome)?;
        }
        // The series the proposer named by id, numbered after those with labels.
        let index_lock = self.index.read();
        let mut known = req.known();
        let mut i = req.series.len() as u32;
        while let Some(mut s) = known.next_series().expect("WriteView::parse checked the known series whole")
        {
            match index_lock.get(SeriesId(s.id)) {
                Some(entry) if writer.aggs.takes_samples() => {
                    let samples: Vec<(i64, f64)> =
                        std::iter::from_fn(|| s.next_sample().ok().flatten()).collect();
                    let pairs: Vec<(&str, &str)> =
                        entry.labels.iter().map(|l| (l.name.as_str(), l.value.as_str())).collect();
                    if writer.aggs.observe_samples(&self.db, clock, &pairs, &samples, emitted)? {
                        self.append_samples(settings, entry, i, samples.into_iter(), outcome)?;
                    } else {
                        outcome.samples_accepted += samples.len() as u64;
                    }
                }
                Some(entry) => {
                    let samples = std::iter::from_fn(|| s.next_sample().ok().flatten());
                    self.append_samples(settings, entry, i, samples, outcome)?;
                }
                // Not expected (ids are never reused, and the proposer had applied the entry
                // that created the series); refused the same way on every replica.
                None => outcome.rejected.push(Rejection {
                    kind: ItemKind::Series as i32,
                    index: i,
                    reason: format!(
                        "series id {} is unknown to the state machine; send the series with its labels",
                        s.id
                    ),
                    ..Default::default()
                }),
            }
            i += 1;
        }
        drop(index_lock);
        let mut block = EventBlock::default();
        let sealed_before = writer.manifest.events_sealed_before();
        // Taken by the rules together once every event is sorted out (see
        // `Aggregations::observe_events`).
        let mut taken = Vec::with_capacity(req.events.len());
        for (pos, raw) in req.events.iter().enumerate() {
            let event = v1::Event::decode(*raw).ok();
            let timestamp = event.as_ref().and_then(collabstream_proto::events::timestamp_ms);
            match timestamp {
                // As for samples: the block is exported as it stood at the seal. Refused
                // before any rule sees it, so a refused event counts nowhere.
                Some(ts) if ts < sealed_before => {
                    self.events_cold_refused.fetch_add(1, Ordering::Relaxed);
                    outcome.rejected.push(Rejection {
                        kind: ItemKind::Event as i32,
                        index: pos as u32,
                        reason: format!(
                            "event at {ts} is older than {sealed_before}, before which blocks are sealed for the \
                             cold tier ([tiering] hot_retention); late events for a cold block are refused"
                        ),
                        ..Default::default()
                    });
                }
                Some(ts) => {
                    taken.extend(event.map(|e| (e, ts)));
                    // Stored as the leader encoded it: the same bytes on every replica.
                    block.push(ts, event_base.wrapping_add(pos as u32), raw);
                    outcome.events_accepted += 1;
                }
                None => outcome.rejected.push(Rejection {
                    kind: ItemKind::Event as i32,
                    index: pos as u32,
                    reason: "event has no type, or is not a valid Event message".into(),
                    ..Default::default()
                }),
            }
        }
        writer.aggs.observe_events(&self.db, clock, &taken, self.aggregation_threads, emitted)?;
        block.write(&self.db, batch, index, write);
        Ok(())
    }

    /// Appends one series' samples (item `i` of the write) to its head, writing out the chunks
    /// this cuts.
    pub(crate) fn append_samples(
        &self,
        settings: &Settings,
        entry: &SeriesEntry,
        i: u32,
        samples: impl Iterator<Item = (i64, f64)>,
        outcome: &mut ApplyOutcome,
    ) -> Result<()> {
        let limits = settings.limits();
        let mut head = entry.head.lock();
        // Created only when a chunk is cut (every few hundred samples): a RocksDB batch is an
        // FFI allocation, too costly to make per series per request.
        let mut cut: Option<WriteBatch> = None;
        // Written by apply only, which is running here.
        let sealed_before = self.sealed_before.load(Ordering::Relaxed);
        for (j, (ts, value)) in samples.enumerate() {
            if ts < sealed_before {
                // The block is on its way to (or on) the object store, exported as it stood
                // at the seal: a sample taken now would be in neither tier's answer.
                self.cold_refused.fetch_add(1, Ordering::Relaxed);
                outcome.rejected.push(Rejection {
                    kind: ItemKind::Sample as i32,
                    index: i,
                    sample_index: j as u32,
                    reason: format!(
                        "sample at {ts} is older than {sealed_before}, before which blocks are sealed for the cold \
                         tier ([tiering] hot_retention); late samples for a cold block are refused"
                    ),
                    message_index: 0,
                });
                continue;
            }
            match head.append(ts, value, limits) {
                Appended::Stored => outcome.samples_accepted += 1,
                Appended::Cut { start, samples } => {
                    outcome.samples_accepted += 1;
                    // The column family is looked up here, not per call: most calls append
                    // a sample or two and cut nothing, and the lookup is a map search by name.
                    cut.get_or_insert_with(WriteBatch::default).put_cf(
                        cf(&self.db, CF_CHUNKS),
                        keys::chunk_key(entry.id, start),
                        chunk::encode(start, &samples),
                    );
                }
                Appended::TooOld { newest } => outcome.rejected.push(Rejection {
                    kind: ItemKind::Sample as i32,
                    index: i,
                    sample_index: j as u32,
                    reason: format!(
                        "sample at {ts} is older than the out-of-order window ({}) allows behind the series' newest sample at {newest}",
                        humantime::format_duration(std::time::Duration::from_millis(
                            settings.out_of_order_window_ms.max(0) as u64
                        )),
                    ),
                    message_index: 0,
                }),
            }
        }
        if let Some(cut) = cut {
            // Written before the head lock is released, so a reader never sees a cut chunk's
            // samples gone from the head but not yet in RocksDB.
            self.write("applying a log entry: a cut chunk", &cut, &no_wal())?;
        }
        Ok(())
    }

    /// Finds or creates the series of each wire series; `None` for a refused label set, and
    /// for one `aggregated_only` marks (whose samples only rules take; empty: none). New ids
    /// are assigned in request order, so every replica assigns the same ones.
    fn resolve_series(
        &self,
        writer: &mut WriterState,
        settings: &Settings,
        req: &WriteView<'_>,
        aggregated_only: &[bool],
        batch: &mut WriteBatch,
        outcome: &mut ApplyOutcome,
    ) -> Vec<Option<Arc<SeriesEntry>>> {
        let series = &req.series;
        let mut found: Vec<Option<Arc<SeriesEntry>>> = Vec::with_capacity(series.len());
        let mut canonical = Vec::new();
        let mut missing = false;
        {
            let index = self.index.read();
            for s in series {
                canonical.clear();
                canonical_labels(req.labels(s).iter().copied(), &mut canonical);
                let e = index.find(&canonical).cloned();
                if let Some(e) = &e {
                    // A series persisted after the checkpoint and found again during replay:
                    // it was created by this very entry the first time, so keep ids in step.
                    writer.next_series = writer.next_series.max(e.id.0 + 1);
                }
                missing |= e.is_none();
                found.push(e);
            }
        }
        if !missing {
            return found;
        }
        let mut index = self.index.write();
        for (i, s) in series.iter().enumerate() {
            if found[i].is_some() || aggregated_only.get(i) == Some(&true) {
                continue;
            }
            canonical.clear();
            canonical_labels(req.labels(s).iter().copied(), &mut canonical);
            if let Some(e) = index.find(&canonical) {
                // Created by an earlier series of this very write.
                found[i] = Some(e.clone());
                continue;
            }
            if index.len() >= settings.max_series {
                // Decided by the replicated state alone, so every replica refuses the same ones.
                self.series_refused.fetch_add(1, Ordering::Relaxed);
                outcome.rejected.push(Rejection {
                    kind: ItemKind::Series as i32,
                    index: i as u32,
                    reason: format!(
                        "the store holds {} series, its limit (store.max_series); new series are refused until \
                         the limit is raised",
                        index.len()
                    ),
                    ..Default::default()
                });
                continue;
            }
            let checked = utf8_pairs(req.labels(s)).and_then(|p| check_sorted_labels(&p).map(|()| p));
            let pairs = match checked {
                Ok(p) => p,
                Err(reason) => {
                    outcome.rejected.push(Rejection {
                        kind: ItemKind::Series as i32,
                        index: i as u32,
                        reason,
                        ..Default::default()
                    });
                    continue;
                }
            };
            found[i] = Some(self.insert_series(writer, &mut index, &pairs, batch));
        }
        found
    }

    /// Creates a series with `pairs` (valid, sorted label pairs): the next id, its labels in
    /// the batch, and the index.
    pub(crate) fn insert_series(
        &self,
        writer: &mut WriterState,
        index: &mut SeriesIndex,
        pairs: &[(&str, &str)],
        batch: &mut WriteBatch,
    ) -> Arc<SeriesEntry> {
        let id = SeriesId(writer.next_series);
        writer.next_series += 1;
        let labels = Labels::from_sorted_unchecked(
            pairs.iter().map(|(n, v)| collabstream_common::Label::new(*n, *v)).collect(),
        );
        batch.put_cf(
            cf(&self.db, CF_SERIES),
            keys::series_key(id),
            series_codec::encode(pairs.iter().copied()),
        );
        let entry = Arc::new(SeriesEntry::new(id, labels, HeadSeries::default()));
        index.insert(entry.clone());
        entry
    }
}

/// Where in the log a write is applied: its entry's index and leader clock, and the position
/// of its first event among the entry's.
#[derive(Debug, Clone, Copy)]
struct EntryAt {
    index: u64,
    /// The write's number in the entry.
    write: u32,
    clock: i64,
    event_base: u32,
}

/// The labels of a series not seen before, checked as UTF-8.
fn utf8_pairs<'a>(labels: &[(&'a [u8], &'a [u8])]) -> std::result::Result<Vec<(&'a str, &'a str)>, String> {
    labels
        .iter()
        .map(|(n, v)| match (std::str::from_utf8(n), std::str::from_utf8(v)) {
            (Ok(n), Ok(v)) => Ok((n, v)),
            _ => Err("label names and values must be UTF-8".to_string()),
        })
        .collect()
}

/// The store trusts the proposer to send normalised label sets; this cheap check keeps a bad
/// entry from corrupting the index if it ever does not.
fn check_sorted_labels(labels: &[(&str, &str)]) -> std::result::Result<(), String> {
    if labels.iter().any(|(n, v)| n.is_empty() || v.is_empty()) {
        return Err("label names and values must be non-empty".into());
    }
    if labels.windows(2).any(|w| w[0].0 >= w[1].0) {
        return Err("labels must be sorted by name without duplicates".into());
    }
    if !labels.iter().any(|(n, _)| *n == collabstream_common::METRIC_NAME) {
        return Err("missing metric name".into());
    }
    Ok(())
}
