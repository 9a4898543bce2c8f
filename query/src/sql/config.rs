//! The `[sql]` section of the server configuration.

use std::net::SocketAddr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SqlConfig {
    /// Where the PostgreSQL wire protocol listens (DESIGN §7; `--pg-listen`).
    pub pg_listen: SocketAddr,
    /// How long one statement may run, planning included.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// Bytes all SQL statements running at once may hold for their joins, sorts and
    /// aggregations together (a statement needing more gets an error saying so).
    pub memory_limit_bytes: usize,
    /// Rows one answer may have: more is refused with an error (add a `LIMIT`).
    pub max_rows: usize,
    /// Statements answered at once; more wait (within their timeout).
    pub max_concurrency: usize,
    /// Local directories external tables (`CREATE EXTERNAL TABLE … LOCATION '/…'`) may read
    /// files under; none by default, so that SQL clients read no file of the node's machine.
    /// `s3://` locations are always allowed (with the `[object_store]` credentials).
    pub external_paths: Vec<std::path::PathBuf>,
}

impl Default for SqlConfig {
    fn default() -> Self {
        Self {
            pg_listen: SocketAddr::from(([127, 0, 0, 1], 9203)),
            timeout: Duration::from_secs(120),
            memory_limit_bytes: 1 << 30,
            max_rows: 1_000_000,
            max_concurrency: 8,
            external_paths: Vec::new(),
        }
    }
}
