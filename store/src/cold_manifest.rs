//! The cold tier's manifest as apply keeps it (DESIGN §5): the seal (samples and events older
//! than it are refused), where each table's cold tier ends, and the object of each cold block.
//!
//! It is replicated state: changed only by the `seal`, `tier` and `expire_cold` log entries,
//! written at checkpoints (meta column family) with the rest of what apply keeps in memory, and
//! carried by snapshots, so every replica agrees on which data is cold and where it is. The
//! objects themselves are not here: a node that joins later reads them from the object store.
//!
//! Each table's cold tier grows without gaps: a block is taken only if it starts where that
//! table's cold tier ends and ends at or before the seal. The tables move apart (a pass moves a
//! span's samples, then its events), so each has its own boundary. A leader that proposes a block again (after a leader
//! change mid-upload) is refused, so the manifest never lists a span twice.

use std::sync::Arc;

use collabstream_proto::v1;
use prost::Message;

/// What readers see of the manifest: a copy taken by apply whenever it changes.
#[derive(Debug, Clone, PartialEq)]
pub struct ColdView {
    /// Samples before this are refused (`i64::MIN`: nothing sealed).
    pub sealed_before: i64,
    /// Events before this are refused (`i64::MIN`: nothing sealed).
    pub events_sealed_before: i64,
    /// The cold tier holds every sample before this, the hot store those at or after it
    /// (`i64::MIN`: nothing is cold).
    pub cold_until: i64,
    /// The same for events.
    pub events_cold_until: i64,
    /// The blocks with an object, of both tables, each table's oldest first.
    pub blocks: Vec<v1::ColdBlock>,
    /// The mark this cluster puts in its objects' names (see `ColdManifest.object_token`);
    /// empty before the first seal.
    pub object_token: String,
}

impl Default for ColdView {
    fn default() -> Self {
        Self {
            sealed_before: i64::MIN,
            events_sealed_before: i64::MIN,
            cold_until: i64::MIN,
            events_cold_until: i64::MIN,
            blocks: Vec::new(),
            object_token: String::new(),
        }
    }
}

impl ColdView {
    /// Where `table`'s cold tier ends (`None`: no such table).
    pub fn until(&self, table: &str) -> Option<i64> {
        match table {
            SAMPLES_TABLE => Some(self.cold_until),
            EVENTS_TABLE => Some(self.events_cold_until),
            _ => None,
        }
    }

    /// The blocks of `table`, oldest first.
    pub fn blocks_of<'a>(&'a self, table: &'a str) -> impl Iterator<Item = &'a v1::ColdBlock> + 'a {
        self.blocks.iter().filter(move |b| b.table == table)
    }
}

/// The tables the cold tier knows: samples (aggregation outputs are samples too) and raw events.
pub const SAMPLES_TABLE: &str = "samples";
pub const EVENTS_TABLE: &str = "events";
pub const TABLES: [&str; 2] = [SAMPLES_TABLE, EVENTS_TABLE];

/// The manifest in apply's hands.
#[derive(Debug, Default)]
pub(crate) struct Manifest {
    view: Arc<ColdView>,
    /// Changed since the last checkpoint wrote it.
    pub(crate) dirty: bool,
}

impl Manifest {
    pub(crate) fn decode(bytes: &[u8]) -> Option<Self> {
        let m = v1::ColdManifest::decode(bytes).ok()?;
        // Written before events moved: none are cold.
        let events_cold_until = if m.events_started { m.events_cold_until_ms } else { i64::MIN };
        let events_sealed_before = if m.events_sealed { m.events_sealed_before_ms } else { i64::MIN };
        let view = ColdView {
            sealed_before: m.sealed_before_ms,
            events_sealed_before,
            cold_until: m.cold_until_ms,
            events_cold_until,
            blocks: m.blocks,
            object_token: m.object_token,
        };
        Some(Self { view: Arc::new(view), dirty: false })
    }

    pub(crate) fn encode(&self) -> Vec<u8> {
        v1::ColdManifest {
            sealed_before_ms: self.view.sealed_before,
            cold_until_ms: self.view.cold_until,
            blocks: self.view.blocks.clone(),
            started: self.view.cold_until != i64::MIN,
            events_cold_until_ms: self.view.events_cold_until,
            events_started: self.view.events_cold_until != i64::MIN,
            events_sealed_before_ms: self.view.events_sealed_before,
            events_sealed: self.view.events_sealed_before != i64::MIN,
            object_token: self.view.object_token.clone(),
        }
        .encode_to_vec()
    }

    pub(crate) fn view(&self) -> Arc<ColdView> {
        self.view.clone()
    }

    /// At a `seal` entry: the cluster's object token, if it has none yet, from the entry's log
    /// index and leader clock: the same on every replica; another cluster's differs unless its
    /// first seal is the same entry in the same millisecond, or the 32 bits collide. Eight hex
    /// digits.
    pub(crate) fn adopt_token(&mut self, index: u64, clock_ms: i64) -> bool {
        if !self.view.object_token.is_empty() {
            return false;
        }
        let mixed = splitmix(splitmix(index) ^ clock_ms as u64);
        Arc::make_mut(&mut self.view).object_token = format!("{:08x}", mixed >> 32);
        self.dirty = true;
        true
    }

    /// A `seal` (of events too when `events`): a seal only moves forward (a stale one changes
    /// nothing). Whether it moved.
    pub(crate) fn seal(&mut self, before_ms: i64, events: bool) -> bool {
        let samples_move = before_ms > self.view.sealed_before;
        let events_move = events && before_ms > self.view.events_sealed_before;
        if !samples_move && !events_move {
            return false;
        }
        let view = Arc::make_mut(&mut self.view);
        if samples_move {
            view.sealed_before = before_ms;
        }
        if events_move {
            view.events_sealed_before = before_ms;
        }
        self.dirty = true;
        true
    }

    /// Events before this are refused.
    pub(crate) fn events_sealed_before(&self) -> i64 {
        self.view.events_sealed_before
    }

    /// A `tier`: the block is recorded if it continues the cold tier; otherwise why not.
    pub(crate) fn tier(&mut self, block: &v1::ColdBlock) -> Result<(), String> {
        let view = &self.view;
        let Some(until) = view.until(&block.table) else {
            return Err(format!("the cold tier has no table {:?}", block.table));
        };
        if block.from_ms != until {
            return Err(format!(
                "the {} block [{}, {}) does not start where its cold tier ends ({until}): it was tiered \
                 already, or another block is missing before it",
                block.table, block.from_ms, block.to_ms
            ));
        }
        let sealed = if block.table == EVENTS_TABLE { view.events_sealed_before } else { view.sealed_before };
        if block.to_ms <= block.from_ms || block.to_ms > sealed {
            return Err(format!(
                "the {} block [{}, {}) is empty or not sealed ({} are sealed before {sealed})",
                block.table, block.from_ms, block.to_ms, block.table
            ));
        }
        if !block.path.is_empty() && (block.min_time_ms < block.from_ms || block.max_time_ms >= block.to_ms) {
            return Err(format!(
                "the object {} holds rows from {} to {}, outside its block [{}, {})",
                block.path, block.min_time_ms, block.max_time_ms, block.from_ms, block.to_ms
            ));
        }
        let view = Arc::make_mut(&mut self.view);
        if block.table == EVENTS_TABLE {
            view.events_cold_until = block.to_ms;
        } else {
            view.cold_until = block.to_ms;
        }
        if !block.path.is_empty() {
            view.blocks.push(block.clone());
        }
        self.dirty = true;
        Ok(())
    }

    /// An `expire_cold`: the blocks ending at or before `before_ms` leave the manifest; gives
    /// how many.
    pub(crate) fn expire(&mut self, before_ms: i64) -> usize {
        let gone = self.view.blocks.iter().filter(|b| b.to_ms <= before_ms).count();
        if gone > 0 {
            Arc::make_mut(&mut self.view).blocks.retain(|b| b.to_ms > before_ms);
            self.dirty = true;
        }
        gone
    }
}

/// SplitMix64's finaliser: every input bit moves every output bit.
fn splitmix(x: u64) -> u64 {
    let x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    let x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_object_token_is_fixed_by_the_first_seal() {
        let mut m = Manifest::default();
        assert!(m.view().object_token.is_empty());
        assert!(m.adopt_token(7, 1_700_000_000_000));
        let token = m.view().object_token.clone();
        assert_eq!(token.len(), 8);
        assert!(!m.adopt_token(9, 1_700_000_000_001), "kept");
        assert_eq!(m.view().object_token, token);
        assert_eq!(Manifest::decode(&m.encode()).unwrap().view().object_token, token);
        // Another cluster's first seal, a millisecond or an entry apart.
        for (index, clock) in [(7, 1_700_000_000_001), (8, 1_700_000_000_000)] {
            let mut other = Manifest::default();
            other.adopt_token(index, clock);
            assert_ne!(other.view().object_token, token);
        }
    }

    fn block(from: i64, to: i64, path: &str) -> v1::ColdBlock {
        v1::ColdBlock {
            table: SAMPLES_TABLE.into(),
            from_ms: from,
            to_ms: to,
            path: path.into(),
            min_time_ms: from.max(0),
            max_time_ms: to - 1,
            ..Default::default()
        }
    }

    #[test]
    fn the_cold_tier_grows_without_gaps_or_repeats() {
        let mut m = Manifest::default();
        assert!(m.tier(&block(i64::MIN, 100, "a")).unwrap_err().contains("not sealed"));
        assert!(m.seal(200, true));
        assert!(!m.seal(150, true), "a seal never moves back");
        m.tier(&block(i64::MIN, 100, "a")).unwrap();
        assert!(m.tier(&block(i64::MIN, 100, "a2")).unwrap_err().contains("tiered already"));
        assert!(m.tier(&block(150, 200, "c")).is_err(), "a gap");
        assert!(m.tier(&block(100, 300, "c")).unwrap_err().contains("not sealed"));
        m.tier(&block(100, 150, "")).unwrap();
        m.tier(&block(150, 200, "c")).unwrap();
        let v = m.view();
        assert_eq!((v.sealed_before, v.cold_until), (200, 200));
        assert_eq!(v.blocks.iter().map(|b| b.path.as_str()).collect::<Vec<_>>(), ["a", "c"]);
        let mut bad = block(200, 250, "d");
        bad.max_time_ms = 260;
        m.seal(300, true);
        assert!(m.tier(&bad).unwrap_err().contains("outside its block"));

        let back = Manifest::decode(&m.encode()).unwrap();
        assert_eq!(back.view(), m.view());
        assert_eq!(m.expire(100), 1);
        assert_eq!(m.expire(100), 0);
        assert_eq!(m.view().blocks.len(), 1);
    }

    #[test]
    fn events_have_a_cold_tier_of_their_own() {
        let mut m = Manifest::default();
        let events =
            |from, to, path: &str| v1::ColdBlock { table: EVENTS_TABLE.into(), ..block(from, to, path) };
        // A seal logged before events moved seals the samples alone, on every replay too.
        assert!(m.seal(300, false));
        assert_eq!((m.view().sealed_before, m.events_sealed_before()), (300, i64::MIN));
        assert!(m.tier(&events(i64::MIN, 100, "e1")).unwrap_err().contains("not sealed"));
        assert!(m.seal(300, true), "the same seal for events moves theirs");
        m.tier(&block(i64::MIN, 100, "s1")).unwrap();
        m.tier(&block(100, 200, "s2")).unwrap();
        assert!(
            m.tier(&events(100, 200, "e")).unwrap_err().contains("events block"),
            "events start at their own end"
        );
        m.tier(&events(i64::MIN, 100, "e1")).unwrap();
        assert!(m.tier(&events(i64::MIN, 100, "e1")).unwrap_err().contains("tiered already"));
        let mut other = block(200, 300, "x");
        other.table = "meetings".into();
        assert!(m.tier(&other).unwrap_err().contains("no table"));
        let v = m.view();
        assert_eq!((v.cold_until, v.events_cold_until), (200, 100));
        assert_eq!(v.blocks_of(EVENTS_TABLE).map(|b| b.path.as_str()).collect::<Vec<_>>(), ["e1"]);
        assert_eq!(v.blocks_of(SAMPLES_TABLE).count(), 2);
        assert_eq!(Manifest::decode(&m.encode()).unwrap().view(), v);

        // A manifest written before events moved has no events cold.
        let old =
            v1::ColdManifest { sealed_before_ms: 5, cold_until_ms: 0, started: true, ..Default::default() };
        let back = Manifest::decode(&old.encode_to_vec()).unwrap().view();
        assert_eq!(
            (back.cold_until, back.events_cold_until, back.events_sealed_before),
            (0, i64::MIN, i64::MIN)
        );
        assert_eq!(m.expire(100), 2, "retention takes both tables' blocks");
    }
}
