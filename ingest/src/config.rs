//! The ingest configuration (`[ingest]` in the server's TOML).

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct IngestConfig {
    /// Largest request body accepted, as sent (compressed for remote write).
    pub max_request_bytes: usize,
    /// Largest remote-write body once decompressed; checked against the length snappy
    /// declares, before decompressing.
    pub max_decoded_bytes: usize,
}

impl Default for IngestConfig {
    fn default() -> Self {
        Self { max_request_bytes: 32 << 20, max_decoded_bytes: 128 << 20 }
    }
}

impl IngestConfig {
    pub fn validate(&self) -> Result<(), String> {
        if self.max_request_bytes < 1024 {
            return Err("ingest.max_request_bytes must be at least 1024".into());
        }
        if self.max_decoded_bytes < self.max_request_bytes {
            return Err("ingest.max_decoded_bytes must be at least ingest.max_request_bytes".into());
        }
        Ok(())
    }
}
