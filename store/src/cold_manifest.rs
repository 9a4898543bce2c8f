//! The cold tier's manifest as apply keeps it (DESIGN §5): the seal (samples older than it are
//! refused), where the cold tier ends, and the object of each cold block.
//!
//! It is replicated state: changed only by the `seal`, `tier` and `expire_cold` log entries,
//! written at checkpoints (meta column family) with the rest of what apply keeps in memory, and
//! carried by snapshots, so every replica agrees on which data is cold and where it is. The
//! objects themselves are not here: a node that joins later reads them from the object store.
//!
//! The cold tier grows without gaps: a block is taken only if it starts where the cold tier
//! ends and ends at or before the seal. A leader that proposes a block again (after a leader
//! change mid-upload) is refused, so the manifest never lists a span twice.

use std::sync::Arc;

use collabstream_proto::v1;
use prost::Message;

/// What readers see of the manifest: a copy taken by apply whenever it changes.
#[derive(Debug, Clone, PartialEq)]
pub struct ColdView {
    /// Samples before this are refused (`i64::MIN`: nothing sealed).
    pub sealed_before: i64,
    /// The cold tier holds everything before this, the hot store what is at or after it
    /// (`i64::MIN`: nothing is cold).
    pub cold_until: i64,
    /// The blocks with an object, oldest first.
    pub blocks: Vec<v1::ColdBlock>,
}

impl Default for ColdView {
    fn default() -> Self {
        Self { sealed_before: i64::MIN, cold_until: i64::MIN, blocks: Vec::new() }
    }
}

/// The tables the cold tier knows.
pub const SAMPLES_TABLE: &str = "samples";

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
        let view =
            ColdView { sealed_before: m.sealed_before_ms, cold_until: m.cold_until_ms, blocks: m.blocks };
        Some(Self { view: Arc::new(view), dirty: false })
    }

    pub(crate) fn encode(&self) -> Vec<u8> {
        v1::ColdManifest {
            sealed_before_ms: self.view.sealed_before,
            cold_until_ms: self.view.cold_until,
            blocks: self.view.blocks.clone(),
            started: self.view.cold_until != i64::MIN,
        }
        .encode_to_vec()
    }

    pub(crate) fn view(&self) -> Arc<ColdView> {
        self.view.clone()
    }

    /// A `seal`: the seal only moves forward (a stale one changes nothing).
    pub(crate) fn seal(&mut self, before_ms: i64) -> bool {
        if before_ms <= self.view.sealed_before {
            return false;
        }
        Arc::make_mut(&mut self.view).sealed_before = before_ms;
        self.dirty = true;
        true
    }

    /// A `tier`: the block is recorded if it continues the cold tier; otherwise why not.
    pub(crate) fn tier(&mut self, block: &v1::ColdBlock) -> Result<(), String> {
        let view = &self.view;
        if block.table != SAMPLES_TABLE {
            return Err(format!("the cold tier has no table {:?}", block.table));
        }
        if block.from_ms != view.cold_until {
            return Err(format!(
                "the block [{}, {}) does not start where the cold tier ends ({}): it was tiered already, \
                 or another block is missing before it",
                block.from_ms, block.to_ms, view.cold_until
            ));
        }
        if block.to_ms <= block.from_ms || block.to_ms > view.sealed_before {
            return Err(format!(
                "the block [{}, {}) is empty or not sealed (samples are sealed before {})",
                block.from_ms, block.to_ms, view.sealed_before
            ));
        }
        if !block.path.is_empty() && (block.min_time_ms < block.from_ms || block.max_time_ms >= block.to_ms) {
            return Err(format!(
                "the object {} holds samples from {} to {}, outside its block [{}, {})",
                block.path, block.min_time_ms, block.max_time_ms, block.from_ms, block.to_ms
            ));
        }
        let view = Arc::make_mut(&mut self.view);
        view.cold_until = block.to_ms;
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

#[cfg(test)]
mod tests {
    use super::*;

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
        assert!(m.seal(200));
        assert!(!m.seal(150), "a seal never moves back");
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
        m.seal(300);
        assert!(m.tier(&bad).unwrap_err().contains("outside its block"));

        let back = Manifest::decode(&m.encode()).unwrap();
        assert_eq!(back.view(), m.view());
        assert_eq!(m.expire(100), 1);
        assert_eq!(m.expire(100), 0);
        assert_eq!(m.view().blocks.len(), 1);
    }
}
