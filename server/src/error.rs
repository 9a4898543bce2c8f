//! The server's error type: what stopped a node from starting or serving.

use std::net::SocketAddr;
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid configuration: {0}")]
    Config(String),
    #[error("cannot listen on {addr} for {what}; is another process using it?")]
    Bind { addr: SocketAddr, what: &'static str, source: std::io::Error },
    #[error("cannot create data directory {}", path.display())]
    DataDir { path: PathBuf, source: std::io::Error },
    #[error("cannot open the store")]
    Store(#[from] collabstream_store::Error),
    #[error("cannot start the write path")]
    Writer(#[from] collabstream_raft::Error),
    #[error("{what} failed")]
    Serve { what: &'static str, source: Box<dyn std::error::Error + Send + Sync> },
    #[error("a node task failed")]
    Task(#[from] tokio::task::JoinError),
    #[error("cannot connect to {target}; is a node running there?")]
    Connect { target: String, source: tonic::transport::Error },
    #[error("{0}")]
    Cluster(String),
    #[error("write refused: {0}")]
    Write(tonic::Status),
    #[error("remote write to {url} failed: {reason}")]
    RemoteWrite { url: String, reason: String },
    #[error("produce: {0}")]
    Produce(String),
    #[error("benchmark: {0}")]
    Bench(String),
    #[error("socket setup")]
    Io(#[from] std::io::Error),
}
