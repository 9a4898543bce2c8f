//! [`Tierer`]: the leader's tiering pass (DESIGN §5), run every `[tiering] interval` and on
//! `POST /api/v1/admin/tiering/run`.
//!
//! A pass, in the only order that loses nothing:
//! 1. seal: samples older than the hot retention's block boundary are refused from the entry
//!    on, so the blocks before it are final;
//! 2. for each table (samples, then raw events) and each of its blocks before the seal, oldest
//!    first: export it from the hot store, upload it, read it back and compare size and
//!    checksum, and only then commit its manifest entry; every replica stops reading the block
//!    from its hot store at that entry and drops it afterwards;
//! 3. orphans: objects no manifest entry names, older than `[tiering] orphan_age` (an upload whose
//!    leader died before its commit, a delete that failed, a block retention expired by an
//!    earlier pass), are deleted, if they carry this cluster's object token: the objects of
//!    another cluster under the same prefix (or of an earlier one, whose data directories are
//!    gone) are counted and left alone;
//! 4. cold retention: blocks past `[tiering] cold_retention` leave the manifest through the
//!    log; their objects go at the next pass (step 3), when no replica reads them any more.
//!
//! A failure (the object store unreachable, answering errors, too slow) ends the pass with the
//! block still hot; the next pass tries again. A leader change mid-pass is harmless: apply takes
//! a block only where the cold tier ends, so a block committed twice is refused the second time,
//! and the object of a refused or never committed upload becomes an orphan.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use bytes::Bytes;
use collabstream_common::TimeRange;
use collabstream_proto::v1::{self, command::Payload};
use collabstream_store::{ApplyOutcome, SAMPLES_TABLE, SeriesRead, Store, TABLES};
use futures::future::BoxFuture;
use serde::Serialize;

use crate::config::TieringConfig;
use crate::export::{export_events, export_samples, index_name, object_name, object_token};
use crate::objects::Objects;

/// Blocks moved in one pass at most, so that a pass (and the HTTP call that runs one) ends in
/// bounded time after tiering is first turned on over a long history; the next pass goes on.
const BLOCKS_PER_PASS: usize = 24;

/// What [`ManifestLog::commit`] answers.
pub type CommitFuture<'a> = BoxFuture<'a, Result<ApplyOutcome, String>>;

/// How the pass reaches the replicated log (the server implements it over Raft; this crate
/// does not depend on the replication layer).
pub trait ManifestLog: Send + Sync {
    /// Whether this node leads: only the leader tiers.
    fn leads(&self) -> bool;
    /// The clock the leader stamps entries with.
    fn now_ms(&self) -> i64;
    /// Commits `payload` and answers what applying it did here.
    fn commit(&self, payload: Payload) -> CommitFuture<'_>;
    /// Waits until this node has applied everything committed so far.
    fn applied_all(&self) -> BoxFuture<'_, Result<(), String>>;
}

/// Figures for `/metrics`, since start.
#[derive(Debug, Default)]
pub struct TieringStats {
    pub passes: AtomicU64,
    pub failures: AtomicU64,
    pub objects_tiered: AtomicU64,
    pub bytes_tiered: AtomicU64,
    pub samples_tiered: AtomicU64,
    pub events_tiered: AtomicU64,
    /// Objects taken out of the manifest by cold retention.
    pub objects_expired: AtomicU64,
    pub orphans_deleted: AtomicU64,
    /// Objects under the prefix that no manifest entry names and that carry no token of this
    /// cluster, as of the last pass: left alone (another cluster's, or an earlier one's).
    pub foreign_objects: AtomicU64,
    /// Start of the oldest block of samples the hot store holds, as of the last pass
    /// (`i64::MIN`: none).
    pub oldest_hot_block_ms: AtomicI64,
}

/// What one pass did, as `POST /api/v1/admin/tiering/run` answers it.
#[derive(Debug, Default, Clone, Serialize, PartialEq)]
pub struct PassReport {
    /// Samples before this are sealed (refused from now on).
    pub sealed_before_ms: Option<i64>,
    pub tiered: Vec<TieredBlock>,
    /// Objects of blocks cold retention took out of the manifest (the next pass deletes them).
    pub expired: Vec<String>,
    /// Objects no manifest entry named, deleted.
    pub orphans_deleted: Vec<String>,
    /// Why the pass did nothing, or stopped early.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct TieredBlock {
    /// `samples` or `events`.
    pub table: String,
    pub from_ms: i64,
    pub to_ms: i64,
    /// Empty when the span held no rows.
    pub path: String,
    /// Of the file and its series index.
    pub bytes: u64,
    /// Samples or events.
    pub rows: u64,
    /// Series (samples only).
    pub series: u64,
}

pub struct Tierer {
    store: Arc<Store>,
    objects: Objects,
    config: TieringConfig,
    log: Arc<dyn ManifestLog>,
    pub stats: Arc<TieringStats>,
    /// One pass at a time (the timer's and an operator's).
    running: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for Tierer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tierer").field("objects", &self.objects.url).field("config", &self.config).finish()
    }
}

impl Tierer {
    pub fn new(
        store: Arc<Store>,
        objects: Objects,
        config: TieringConfig,
        log: Arc<dyn ManifestLog>,
    ) -> Self {
        let stats = TieringStats { oldest_hot_block_ms: AtomicI64::new(i64::MIN), ..Default::default() };
        Self { store, objects, config, log, stats: Arc::new(stats), running: tokio::sync::Mutex::new(()) }
    }

    /// Runs passes every `[tiering] interval` while this node leads, until `stop` resolves.
    pub async fn run(self: Arc<Self>, stop: impl std::future::Future<Output = ()>) {
        if self.config.hot_retention.is_zero() {
            return;
        }
        // Not at once: a node starting with tiering on gets its writes (a backfill) before the
        // first seal refuses what is older than the hot retention.
        let first = tokio::time::Instant::now() + self.config.interval;
        let mut every = tokio::time::interval_at(first, self.config.interval);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tokio::pin!(stop);
        loop {
            tokio::select! {
                _ = every.tick() => {}
                () = &mut stop => return,
            }
            if !self.log.leads() {
                continue;
            }
            match self.run_once().await {
                Ok(r) if !r.tiered.is_empty() || !r.expired.is_empty() || !r.orphans_deleted.is_empty() => {
                    tracing::info!(report = ?r, "tiering pass")
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "tiering pass failed; the blocks stay hot, the next pass retries")
                }
            }
        }
    }

    /// One pass (see the module's doc). An error means the pass stopped there: what it
    /// reports before is done, nothing after it is lost.
    pub async fn run_once(&self) -> Result<PassReport, String> {
        let _one = self.running.lock().await;
        self.stats.passes.fetch_add(1, Ordering::Relaxed);
        let done = self.pass().await;
        if done.is_err() {
            self.stats.failures.fetch_add(1, Ordering::Relaxed);
        }
        done
    }

    async fn pass(&self) -> Result<PassReport, String> {
        let mut report = PassReport::default();
        if self.config.hot_retention.is_zero() {
            report.note = Some("tiering is off ([tiering] hot_retention = 0)".into());
            return Ok(report);
        }
        if !self.log.leads() {
            return Err("this node does not lead; the leader runs tiering passes".into());
        }
        let block_ms = self.store.settings().block_ms.max(1);
        let now = self.log.now_ms();
        let hot_ms = self.config.hot_retention.as_millis() as i64;
        let horizon = now.saturating_sub(hot_ms).div_euclid(block_ms) * block_ms;
        let view = self.store.cold_view();
        // A seal that moves nothing still fixes the object token of a cluster that has none
        // (one whose manifest was written before tokens existed).
        if view.sealed_before < horizon || view.events_sealed_before < horizon || view.object_token.is_empty()
        {
            self.commit(Payload::Seal(v1::Seal { before_ms: horizon, events: true })).await?;
        }
        report.sealed_before_ms = Some(self.store.cold_view().sealed_before);
        for table in TABLES {
            let until = |store: &Store| store.cold_view().until(table).expect("a table the manifest knows");
            let mut oldest = self.oldest_hot(table).await?;
            for _ in 0..BLOCKS_PER_PASS {
                let from = until(&self.store);
                if from >= horizon {
                    break;
                }
                let block = self.tier_next(table, from, oldest, horizon, block_ms).await?;
                report.tiered.push(block);
                oldest = self.oldest_hot(table).await?;
            }
            if until(&self.store) < horizon {
                report.note =
                    Some(format!("more than {BLOCKS_PER_PASS} blocks to move: the next pass goes on"));
            }
            if table == SAMPLES_TABLE {
                self.stats
                    .oldest_hot_block_ms
                    .store(oldest.map_or(i64::MIN, |t| t.div_euclid(block_ms) * block_ms), Ordering::Relaxed);
            }
        }
        // Orphans first: the objects of blocks this pass expires are deleted by the next one,
        // a pass later, so that replicas and queries still reading them have moved on.
        report.orphans_deleted = self.collect_orphans().await?;
        report.expired = self.expire(now).await?;
        Ok(report)
    }

    /// Moves `table`'s span from its cold boundary `from` to the end of the block holding its
    /// oldest hot row (or to the seal, when nothing is older than it) to the cold tier.
    async fn tier_next(
        &self,
        table: &'static str,
        from: i64,
        oldest: Option<i64>,
        horizon: i64,
        block_ms: i64,
    ) -> Result<TieredBlock, String> {
        let mut entry = v1::ColdBlock { table: table.into(), from_ms: from, ..Default::default() };
        let file = match oldest.filter(|t| *t < horizon) {
            None => {
                entry.to_ms = horizon;
                None
            }
            Some(t) => {
                let start = t.div_euclid(block_ms) * block_ms;
                entry.to_ms = start + block_ms;
                let store = self.store.clone();
                let range = TimeRange { start, end: entry.to_ms - 1 };
                tokio::task::spawn_blocking(move || match table {
                    SAMPLES_TABLE => Ok::<_, String>(
                        export_samples(store.as_ref() as &dyn SeriesRead, range)?
                            .map(|(bytes, summary, index)| (bytes, summary, Some(index))),
                    ),
                    _ => Ok(export_events(&store, range)?.map(|(bytes, summary)| (bytes, summary, None))),
                })
                .await
                .map_err(|e| format!("exporting {table} [{start}, {}): {e}", entry.to_ms))??
                .map(|file| (start, file))
            }
        };
        if let Some((start, (bytes, summary, index))) = file {
            let token = self.store.cold_view().object_token.clone();
            let name = object_name(table, start, &token, xxhash_rust::xxh3::xxh3_64(&bytes));
            // The index first: a block is committed with both or neither.
            if let Some(index) = index {
                let stored = self
                    .objects
                    .put_verified(&self.objects.path(&index_name(&name)), index.encode().into())
                    .await?;
                entry.index_path = stored.path;
                entry.index_size = stored.size;
                entry.index_checksum = stored.checksum;
            }
            let stored = self.objects.put_verified(&self.objects.path(&name), Bytes::from(bytes)).await?;
            entry.path = stored.path;
            entry.size = stored.size;
            entry.checksum = stored.checksum;
            entry.rows = summary.rows;
            entry.series = summary.series;
            entry.min_time_ms = summary.min_time;
            entry.max_time_ms = summary.max_time;
            entry.metrics = summary.metrics;
        }
        let block = TieredBlock {
            table: table.into(),
            from_ms: entry.from_ms,
            to_ms: entry.to_ms,
            path: entry.path.clone(),
            bytes: entry.size + entry.index_size,
            rows: entry.rows,
            series: entry.series,
        };
        self.commit(Payload::Tier(entry)).await?;
        if !block.path.is_empty() {
            self.stats.objects_tiered.fetch_add(1, Ordering::Relaxed);
            self.stats.bytes_tiered.fetch_add(block.bytes, Ordering::Relaxed);
            let rows =
                if table == SAMPLES_TABLE { &self.stats.samples_tiered } else { &self.stats.events_tiered };
            rows.fetch_add(block.rows, Ordering::Relaxed);
        }
        Ok(block)
    }

    /// Cold retention: the blocks ended before it leave the manifest (their objects, named by
    /// no entry from then on, are deleted as orphans by the next pass).
    async fn expire(&self, now: i64) -> Result<Vec<String>, String> {
        if self.config.cold_retention.is_zero() {
            return Ok(Vec::new());
        }
        let before = now.saturating_sub(self.config.cold_retention.as_millis() as i64);
        let gone: Vec<String> = self
            .store
            .cold_view()
            .blocks
            .iter()
            .filter(|b| b.to_ms <= before)
            .flat_map(|b| [b.path.clone(), b.index_path.clone()])
            .filter(|p| !p.is_empty())
            .collect();
        if gone.is_empty() {
            return Ok(gone);
        }
        self.commit(Payload::ExpireCold(v1::ExpireCold { before_ms: before })).await?;
        self.stats.objects_expired.fetch_add(gone.len() as u64, Ordering::Relaxed);
        Ok(gone)
    }

    /// Deletes the objects no manifest entry names that are older than `orphan_age` and carry
    /// this cluster's object token; counts the others (`foreign_objects`).
    async fn collect_orphans(&self) -> Result<Vec<String>, String> {
        // The manifest as committed, not only as applied here: an entry committed but not yet
        // applied must not make its object look orphaned.
        self.log.applied_all().await?;
        // Objects are stamped by the object store's clock, which is the wall clock, as the
        // leader's entries are; read here rather than from the log, which tests may drive.
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
        let mut listed = Vec::new();
        for table in TABLES {
            listed.extend(self.objects.list(table).await?);
        }
        listed.extend(self.objects.list("index").await?);
        let view = self.store.cold_view();
        let named = Named::new(view.blocks.iter().flat_map(|b| [&b.path, &b.index_path]));
        let mut deleted = Vec::new();
        let mut foreign = 0u64;
        for (path, _, modified) in listed {
            if named.holds(&path) || now.saturating_sub(modified) < self.config.orphan_age.as_millis() as i64
            {
                continue;
            }
            if view.object_token.is_empty() || object_token(&path) != Some(view.object_token.as_str()) {
                foreign += 1;
                continue;
            }
            self.objects.delete(&path).await?;
            self.stats.orphans_deleted.fetch_add(1, Ordering::Relaxed);
            tracing::info!(%path, "orphaned object deleted");
            deleted.push(path);
        }
        // Said when the count changes, not at every pass.
        let before = self.stats.foreign_objects.swap(foreign, Ordering::Relaxed);
        if foreign > 0 && before != foreign {
            tracing::warn!(
                objects = foreign,
                token = %view.object_token,
                "objects under the cold tier's prefix were not written by this cluster (their names lack its \
                 token): left alone; if another cluster shares this [object_store] url, give each its own prefix"
            );
        }
        Ok(deleted)
    }

    async fn oldest_hot(&self, table: &'static str) -> Result<Option<i64>, String> {
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || match table {
            SAMPLES_TABLE => store.oldest_hot_sample(),
            _ => store.oldest_hot_event(),
        })
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())
    }

    async fn commit(&self, payload: Payload) -> Result<(), String> {
        let outcome = self.log.commit(payload).await?;
        match outcome.refused {
            Some(why) => Err(format!("the manifest change was not applied: {why}")),
            None => Ok(()),
        }
    }
}

/// The objects a manifest names, as orphan collection asks: a block's series index goes with
/// its file, kept while the file is named whatever the manifest says of the index itself (one
/// written by a version without indexes names none).
struct Named {
    paths: std::collections::HashSet<String>,
    /// The stem (`<block start>-<token>-<checksum>`) of every file named.
    files: std::collections::HashSet<String>,
}

impl Named {
    fn new<'a>(paths: impl Iterator<Item = &'a String>) -> Self {
        let paths: std::collections::HashSet<String> = paths.filter(|p| !p.is_empty()).cloned().collect();
        let files = paths.iter().filter(|p| p.ends_with(".parquet")).filter_map(|p| stem(p)).collect();
        Self { paths, files }
    }

    fn holds(&self, path: &str) -> bool {
        self.paths.contains(path)
            || (path.ends_with(".idx") && stem(path).is_some_and(|s| self.files.contains(&s)))
    }
}

/// An object name's last part without its extension.
fn stem(path: &str) -> Option<String> {
    path.rsplit('/').next().and_then(|n| n.rsplit_once('.')).map(|(s, _)| s.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_index_is_named_with_its_file() {
        let file = "p/samples/date=2024-11-28/hour=08/1-00ab.parquet".to_string();
        let empty = String::new();
        let named = Named::new([&file, &empty].into_iter());
        assert!(named.holds(&file));
        assert!(
            named.holds("p/index/samples/date=2024-11-28/hour=08/1-00ab.idx"),
            "the index of a named file"
        );
        assert!(!named.holds("p/index/samples/date=2024-11-28/hour=08/1-00ac.idx"));
        assert!(!named.holds("p/samples/date=2024-11-28/hour=08/1-00ac.parquet"));
        assert!(!named.holds(""));
    }
}
