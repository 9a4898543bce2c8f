//! `collabstream-server`: wires the crates into a node and provides the `collabstream` binary
//! (layer L5).
//!
//! - [`ServerConfig`]: TOML < `COLLABSTREAM_*` environment < flags.
//! - [`Listeners`] and [`serve`]: listeners are bound first (so tests can use port 0 and learn
//!   the address), then `serve` runs the node until the cancellation token fires, and shuts
//!   down in order: stop accepting, finish in-flight writes, drain the writer, checkpoint,
//!   close RocksDB.
//!
//! - [`cluster_command`]: `collabstream cluster status|add-learner|promote|remove` over the
//!   AdminService.
//! - [`produce`]: the synthetic workloads sent to a node over gRPC or remote write, or to Kafka
//!   (`collabstream produce`, `collabstream demo`).
//!
//! - [`bench`]: `collabstream bench`, the same workload against us, VictoriaMetrics and
//!   Prometheus; [`RemoteWriteClient`] sends remote write to any of them.
//!
//! Libraries below never build runtimes; only `main` does.

pub mod bench;
mod cluster_cli;
pub mod cluster_config;
mod cluster_http;
mod config;
mod error;
mod http_metrics;
mod kafka_producer;
mod ops;
mod produce;
mod progress;
mod remote_write;
mod self_metrics;
mod self_scrape;
mod serve;
pub mod sql_shell;
mod tiering;
mod web_ui;

pub use cluster_cli::{ClusterAction, cluster_command};
pub use cluster_config::ClusterConfig;
pub use config::{Peer, RaftConfig, ServerConfig};
pub use error::Error;
pub use produce::{ProduceOptions, Workload, produce};
pub use remote_write::RemoteWriteClient;
pub use serve::{Listeners, serve};
