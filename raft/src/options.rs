//! [`RaftOptions`]: how a node takes part in the cluster and the tuning of its write path,
//! and the openraft configuration made from them.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use openraft::{Config, SnapshotPolicy};

use crate::error::Error;
use crate::secret::ClusterSecret;
use crate::types::NodeId;

/// How a node takes part in the cluster, and the tuning of its write path.
#[derive(Debug, Clone)]
pub struct RaftOptions {
    pub node_id: NodeId,
    /// Every voter's gRPC address (`host:port`), this node's included, used to form the
    /// cluster on first start. One member: a single-node cluster.
    pub members: BTreeMap<NodeId, String>,
    /// Where snapshots are kept.
    pub snapshot_dir: PathBuf,
    pub heartbeat_interval: Duration,
    pub election_timeout: Duration,
    /// Take a snapshot (and drop the log behind it) after this many entries.
    pub snapshot_after_entries: u64,
    /// Entries kept behind a snapshot, so a briefly lagging follower catches up from the log.
    pub keep_entries: u64,
    /// Also take a snapshot once the log holds this many bytes and this many were written
    /// since the last such snapshot (and three times as long as it took has passed, unless the
    /// log holds 16 times this)...
    pub snapshot_after_bytes: u64,
    /// ...and keep at most this many bytes of log behind it (whichever of this and
    /// `keep_entries` keeps less).
    pub keep_bytes: u64,
    /// At most this many writes share one entry...
    pub max_group: usize,
    /// ...and at most this many bytes.
    pub max_group_bytes: usize,
    /// Checkpoint the store this often, bounding replay after a crash.
    pub checkpoint_interval: Duration,
    /// How long a write waits for a leader to be known (during an election) before failing.
    pub leader_wait: Duration,
    /// Carried by this node's Raft and Admin calls and required of others' (none: neither).
    pub cluster_secret: ClusterSecret,
    /// Bytes of writes that may wait for the proposer and be in flight on this node (one
    /// larger write alone takes all of it); beyond, a write waits up to `leader_wait`, then
    /// fails as overloaded (503) instead of growing the queue.
    pub max_queued_bytes: usize,
    /// Aggregation rules from this node's configuration (origin `config`), kept in force while
    /// it leads.
    pub aggregation_rules: Vec<collabstream_proto::v1::AggregationRule>,
}

impl RaftOptions {
    /// A single-node cluster whose only member is `addr`.
    pub fn single(node_id: NodeId, addr: String, snapshot_dir: PathBuf) -> Self {
        Self {
            node_id,
            members: BTreeMap::from([(node_id, addr)]),
            snapshot_dir,
            heartbeat_interval: Duration::from_millis(50),
            election_timeout: Duration::from_millis(250),
            snapshot_after_entries: 50_000,
            keep_entries: 5_000,
            snapshot_after_bytes: 4 << 20,
            keep_bytes: 4 << 20,
            max_group: 512,
            max_group_bytes: 32 << 20,
            checkpoint_interval: Duration::from_secs(60),
            leader_wait: Duration::from_secs(10),
            cluster_secret: ClusterSecret::none(),
            max_queued_bytes: 256 << 20,
            aggregation_rules: Vec::new(),
        }
    }

    pub(crate) fn config(&self) -> Result<Config, Error> {
        let hb = self.heartbeat_interval.as_millis() as u64;
        let el = self.election_timeout.as_millis() as u64;
        Config {
            cluster_name: "collabstream".into(),
            heartbeat_interval: hb,
            // openraft waits its leader lease (`election_timeout_max`) on top of the random
            // timeout before a follower that knew a leader campaigns: a narrow range keeps
            // failover short (2.5–3 × `el` after the last heartbeat) and still spreads the
            // followers' elections apart.
            election_timeout_min: el,
            election_timeout_max: (el * 3 / 2).max(el + 1),
            install_snapshot_timeout: 30_000,
            max_payload_entries: 64,
            replication_lag_threshold: self.keep_entries.max(1),
            snapshot_policy: SnapshotPolicy::LogsSinceLast(self.snapshot_after_entries.max(1)),
            snapshot_max_chunk_size: 4 << 20,
            max_in_snapshot_log_to_keep: self.keep_entries,
            // Purge in batches, but never in batches larger than the snapshot interval, or a
            // small interval would never purge.
            purge_batch_size: (self.snapshot_after_entries / 4).clamp(1, 256),
            ..Default::default()
        }
        .validate()
        .map_err(|e| Error::Config(e.to_string()))
    }
}
