//! The node configuration.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use collabstream_ingest::kafka::KafkaConfig;
use collabstream_ingest::{IngestConfig, RuleSpec};
use collabstream_proto::v1;
use collabstream_query::QueryConfig;
use collabstream_query::sql::SqlConfig;
use collabstream_store::StoreConfig;
use collabstream_tiering::{ObjectStoreConfig, TieringConfig};
use serde::{Deserialize, Serialize};

use crate::cluster_config::ClusterConfig;

/// Everything `collabstream server` needs. Each layer owns its section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    pub data_dir: PathBuf,
    pub http_listen: SocketAddr,
    pub grpc_listen: SocketAddr,
    pub node_id: u64,
    /// `1=HOST:GRPC_PORT,2=…`, this node included. Empty: a single-node cluster.
    pub peers: String,
    /// On SIGTERM or SIGINT, how long requests in flight may take to finish before the node
    /// checkpoints and exits without them, unanswered (a client that never finishes sending
    /// its body, or a query deep in a scan, must not keep a node from stopping). Keep it below
    /// the orchestrator's grace period, leaving time for the checkpoint: Kubernetes sends
    /// SIGKILL after `terminationGracePeriodSeconds`.
    #[serde(with = "humantime_serde")]
    pub shutdown_timeout: std::time::Duration,
    pub store: StoreConfig,
    pub ingest: IngestConfig,
    pub query: QueryConfig,
    /// `[sql]`: SQL over HTTP and the PostgreSQL wire protocol.
    pub sql: SqlConfig,
    pub raft: RaftConfig,
    pub cluster: ClusterConfig,
    /// `[[aggregations]]`: aggregation rules the leader keeps in force (see `RuleSpec`).
    pub aggregations: Vec<RuleSpec>,
    /// `[kafka]`: the event topics the leader consumes (none without brokers).
    pub kafka: KafkaConfig,
    /// `[tiering]`: when blocks move to the object store (DESIGN §5).
    pub tiering: TieringConfig,
    /// `[object_store]`: where cold blocks live. Every node reads the leader's objects, so
    /// every node needs the same one.
    pub object_store: ObjectStoreConfig,
    /// `[metrics]`: the node's own metrics.
    pub metrics: MetricsConfig,
}

/// The node's own metrics (`[metrics]`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MetricsConfig {
    /// Scrape this node's `/metrics` into itself this often, labelled `job="collabstream"`,
    /// `instance="<http address>"` (0, the default: never; a Prometheus scraping the nodes
    /// does it instead).
    #[serde(with = "humantime_serde")]
    pub self_scrape_interval: std::time::Duration,
}

/// Replication timing and log retention (`[raft]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RaftConfig {
    /// How often the leader sends heartbeats.
    #[serde(with = "humantime_serde")]
    pub heartbeat_interval: std::time::Duration,
    /// A follower that hears nothing from a leader it knows for between 2.5 and 3 times this
    /// starts an election (openraft adds a leader lease of 1.5 times this to the timeout).
    #[serde(with = "humantime_serde")]
    pub election_timeout: std::time::Duration,
    /// Take a snapshot, and drop the log behind it, after this many entries.
    pub snapshot_after_entries: u64,
    /// Entries kept behind a snapshot for followers that lag a little.
    pub keep_entries: u64,
    /// Also take a snapshot once the log holds this many bytes and this many were written
    /// since the last such snapshot (and three times as long as it took has passed, unless the
    /// log holds 16 times this)...
    pub snapshot_after_bytes: u64,
    /// ...and keep at most this many bytes of log behind it.
    pub keep_bytes: u64,
    /// How long a write waits for a leader during an election before it fails (503).
    #[serde(with = "humantime_serde")]
    pub leader_wait: std::time::Duration,
    /// Bytes of writes that may wait to be logged on a node; past it a write fails with 503
    /// (retryable) instead of growing memory.
    pub max_queued_bytes: usize,
}

impl Default for RaftConfig {
    fn default() -> Self {
        Self {
            heartbeat_interval: std::time::Duration::from_millis(50),
            election_timeout: std::time::Duration::from_millis(250),
            snapshot_after_entries: 50_000,
            keep_entries: 5_000,
            snapshot_after_bytes: 4 << 20,
            keep_bytes: 4 << 20,
            leader_wait: std::time::Duration::from_secs(10),
            max_queued_bytes: 256 << 20,
        }
    }
}

impl RaftConfig {
    pub fn validate(&self) -> Result<(), String> {
        if self.election_timeout <= self.heartbeat_interval * 2 {
            return Err("raft.election_timeout must be more than twice raft.heartbeat_interval".into());
        }
        if self.max_queued_bytes < 1 << 20 {
            return Err("raft.max_queued_bytes must be at least 1 MiB".into());
        }
        if self.snapshot_after_entries == 0 {
            return Err("raft.snapshot_after_entries must be at least 1".into());
        }
        Ok(())
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("data"),
            http_listen: SocketAddr::from(([127, 0, 0, 1], 9201)),
            grpc_listen: SocketAddr::from(([127, 0, 0, 1], 9202)),
            node_id: 1,
            peers: String::new(),
            shutdown_timeout: std::time::Duration::from_secs(20),
            store: StoreConfig::default(),
            ingest: IngestConfig::default(),
            query: QueryConfig::default(),
            sql: SqlConfig::default(),
            raft: RaftConfig::default(),
            cluster: ClusterConfig::default(),
            aggregations: Vec::new(),
            kafka: KafkaConfig::default(),
            tiering: TieringConfig::default(),
            object_store: ObjectStoreConfig::default(),
            metrics: MetricsConfig::default(),
        }
    }
}

/// One member from `--peers`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peer {
    pub id: u64,
    pub addr: String,
}

impl ServerConfig {
    /// Reads a TOML file; unknown keys are errors, so a typo does not silently do nothing.
    pub fn from_toml_file(path: &Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read config {}: {e}", path.display()))?;
        Self::from_toml(&text).map_err(|e| format!("config {}: {e}", path.display()))
    }

    pub fn from_toml(text: &str) -> Result<Self, String> {
        toml::from_str(text).map_err(|e| e.to_string())
    }

    /// The parsed `peers` list.
    pub fn peer_list(&self) -> Result<Vec<Peer>, String> {
        let mut peers = Vec::new();
        for part in self.peers.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (id, addr) = part
                .split_once('=')
                .ok_or_else(|| format!("peer {part:?} is not ID=HOST:PORT, e.g. 1=127.0.0.1:9202"))?;
            let id: u64 = id.trim().parse().map_err(|_| format!("peer id {id:?} is not a number"))?;
            let addr = addr.trim();
            if addr.rsplit_once(':').and_then(|(_, p)| p.parse::<u16>().ok()).is_none() {
                return Err(format!("peer {id} address {addr:?} needs HOST:PORT"));
            }
            if peers.iter().any(|p: &Peer| p.id == id) {
                return Err(format!("peer id {id} is listed twice"));
            }
            peers.push(Peer { id, addr: addr.to_string() });
        }
        Ok(peers)
    }

    /// Checks every section; messages name the setting to change.
    pub fn validate(&self) -> Result<(), String> {
        self.store.validate()?;
        self.ingest.validate()?;
        if self.node_id == 0 {
            return Err("node_id must be at least 1".into());
        }
        let peers = self.peer_list()?;
        if !peers.is_empty() && !peers.iter().any(|p| p.id == self.node_id) {
            return Err(format!("--peers must include this node (--node-id {})", self.node_id));
        }
        self.raft.validate()?;
        self.kafka.validate()?;
        self.cluster.secret()?;
        self.aggregation_rules()?;
        self.tiering.validate()?;
        self.object_store.validate(&self.data_dir)?;
        if !self.tiering.hot_retention.is_zero() && peers.len() > 1 && self.object_store.url.trim().is_empty()
        {
            return Err(
                "tiering.hot_retention is set on a cluster, but the object store is each node's own \
                        <data_dir>/objects: followers could not read the leader's cold blocks. Set \
                        object_store.url to s3://bucket/prefix (or a file:/// path every node mounts)"
                    .into(),
            );
        }
        if let Some(b) = self.tiering.block_duration
            && b != self.store.block_duration
            && self.store.block_duration != StoreConfig::default().block_duration
        {
            return Err("tiering.block_duration and store.block_duration differ: set one of them".into());
        }
        Ok(())
    }

    /// The store's section with `[tiering] block_duration` (DESIGN §7's name) applied.
    pub fn store_config(&self) -> StoreConfig {
        let mut store = self.store.clone();
        if let Some(b) = self.tiering.block_duration {
            store.block_duration = b;
        }
        store
    }

    /// The configured aggregation rules as the log carries them, each checked as apply
    /// checks it (against this node's out-of-order window).
    ///
    /// `window_ms` is the store section's own; what is in force may differ (the leader's).
    pub fn aggregation_rules(&self) -> Result<Vec<v1::AggregationRule>, String> {
        let mut rules: Vec<v1::AggregationRule> = Vec::with_capacity(self.aggregations.len());
        for (i, spec) in self.aggregations.iter().enumerate() {
            let at = |e: String| format!("aggregations[{i}] ({:?}): {e}", spec.name);
            let rule = spec.to_proto("config").map_err(at)?;
            collabstream_store::agg::rule_proto::rule(&rule, self.store.window_ms()).map_err(at)?;
            if rules.iter().any(|r| r.name == rule.name) {
                return Err(at("another configured rule has this name".into()));
            }
            rules.push(rule);
        }
        Ok(rules)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_example_config_parses_and_validates() {
        // When the test runs: a binary built in another checkout sharing the target directory
        // would otherwise read that checkout's file.
        let manifest = std::env::var_os("CARGO_MANIFEST_DIR")
            .map_or_else(|| env!("CARGO_MANIFEST_DIR").into(), std::path::PathBuf::from);
        let path = manifest.join("../deploy/collabstream.toml");
        let c = ServerConfig::from_toml_file(&path).unwrap();
        c.validate().unwrap();
        assert_eq!(c.store.block_duration, std::time::Duration::from_secs(7200));
        let rules = c.aggregation_rules().unwrap();
        assert_eq!(rules[0].name, "chat_message_length");
        assert_eq!(rules[0].origin, "config");
        assert_eq!(c.kafka, collabstream_ingest::kafka::KafkaConfig::default(), "the defaults, spelled out");
        assert_eq!(c.tiering, TieringConfig::default(), "the defaults, spelled out");
        assert_eq!(c.object_store, ObjectStoreConfig::default(), "the defaults, spelled out");
        assert_eq!(c.sql, SqlConfig::default(), "the defaults, spelled out");
        assert_eq!(c.metrics, MetricsConfig::default(), "the defaults, spelled out");
        assert_eq!(c.shutdown_timeout, ServerConfig::default().shutdown_timeout, "the default, spelled out");
    }

    #[test]
    fn tiering_settings_are_checked() {
        let both =
            ServerConfig::from_toml("[store]\nblock_duration = \"1h\"\n[tiering]\nblock_duration = \"2h\"\n");
        assert!(both.unwrap().validate().unwrap_err().contains("tiering.block_duration"));
        let c = ServerConfig::from_toml("[tiering]\nblock_duration = \"30m\"\n").unwrap();
        c.validate().unwrap();
        assert_eq!(c.store_config().block_duration, std::time::Duration::from_secs(1800));
        let http = ServerConfig::from_toml(
            "[object_store]\nurl = \"s3://b/p\"\nendpoint = \"http://127.0.0.1:9\"\n",
        );
        assert!(http.unwrap().validate().unwrap_err().contains("object_store.allow_http"));
        let retention =
            ServerConfig::from_toml("[tiering]\nhot_retention = \"2d\"\ncold_retention = \"1d\"\n");
        assert!(retention.unwrap().validate().unwrap_err().contains("tiering.cold_retention"));
        let peers = "peers = \"1=a:1,2=b:1,3=c:1\"\n[tiering]\nhot_retention = \"2d\"\n";
        let local = ServerConfig::from_toml(peers).unwrap();
        assert!(local.validate().unwrap_err().contains("object_store.url"), "each node's own directory");
        let shared =
            ServerConfig::from_toml(&format!("{peers}[object_store]\nurl = \"s3://b/p\"\n")).unwrap();
        shared.validate().unwrap();
    }

    #[test]
    fn kafka_settings_are_checked() {
        let c = ServerConfig::from_toml("[kafka]\nbrokers = [\"b:9092\"]\nmax_batch_bytes = 10\n").unwrap();
        assert!(c.validate().unwrap_err().contains("kafka.max_batch_bytes"));
        let avro = ServerConfig::from_toml("[kafka]\nformat = \"avro\"\n").unwrap();
        assert!(avro.validate().unwrap_err().contains("kafka.schema_registry"));
    }

    #[test]
    fn unknown_keys_are_errors() {
        let e = ServerConfig::from_toml("[store]\nblock_duraton = \"2h\"\n").unwrap_err();
        assert!(e.contains("block_duraton"), "{e}");
    }

    #[test]
    fn peers_are_parsed_and_checked() {
        let c = ServerConfig { peers: "1=127.0.0.1:9202, 2=node2:9202".into(), ..Default::default() };
        assert_eq!(c.peer_list().unwrap()[1], Peer { id: 2, addr: "node2:9202".into() });
        let bad = ServerConfig { peers: "1=nohost".into(), ..Default::default() };
        assert!(bad.peer_list().unwrap_err().contains("HOST:PORT"));
        let other = ServerConfig { peers: "2=127.0.0.1:1".into(), ..Default::default() };
        assert!(other.validate().unwrap_err().contains("must include this node"));
        let single = ServerConfig { peers: "1=127.0.0.1:1".into(), ..Default::default() };
        single.validate().unwrap();
    }

    #[test]
    fn bad_configured_rules_are_named_at_start() {
        let rule = |extra: &str| {
            format!(
                "[[aggregations]]\nname = \"r\"\nevents = \"chat\"\nwindow = \"1m\"\noutputs = [\"count\"]\n{extra}"
            )
        };
        let c = ServerConfig::from_toml(&rule("")).unwrap();
        assert_eq!(c.aggregation_rules().unwrap()[0].size_ms, 60_000);
        let e = ServerConfig::from_toml(&rule("group_by = [\"room\"]")).unwrap().validate().unwrap_err();
        assert!(e.starts_with("aggregations[0] (\"r\"): group_by: unknown text field"), "{e}");
        let e = ServerConfig::from_toml(&rule("allowed_lateness = \"2h\"")).unwrap().validate().unwrap_err();
        assert!(e.contains("store.out_of_order_window"), "{e}");
        let twice = format!("{}\n{}", rule(""), rule(""));
        let e = ServerConfig::from_toml(&twice).unwrap().validate().unwrap_err();
        assert!(e.contains("aggregations[1]") && e.contains("another configured rule"), "{e}");
    }
}
