//! The ingest configuration (`[ingest]` in the server's TOML).

use collabstream_common::LabelLimits;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct IngestConfig {
    /// Largest request body accepted, as sent (compressed for remote write).
    pub max_request_bytes: usize,
    /// Largest remote-write body once decompressed; checked against the length snappy
    /// declares, before decompressing.
    pub max_decoded_bytes: usize,
    /// A new series with more labels than this is refused (every series is held in memory
    /// on every node); remote write checks series not seen before, gRPC every series.
    pub max_labels_per_series: usize,
    /// Likewise for a label name's length in bytes...
    pub max_label_name_bytes: usize,
    /// ...and a label value's.
    pub max_label_value_bytes: usize,
}

impl Default for IngestConfig {
    fn default() -> Self {
        let limits = LabelLimits::DEFAULT;
        Self {
            max_request_bytes: 32 << 20,
            max_decoded_bytes: 128 << 20,
            max_labels_per_series: limits.max_labels,
            max_label_name_bytes: limits.max_name_bytes,
            max_label_value_bytes: limits.max_value_bytes,
        }
    }
}

impl IngestConfig {
    pub fn label_limits(&self) -> LabelLimits {
        LabelLimits {
            max_labels: self.max_labels_per_series,
            max_name_bytes: self.max_label_name_bytes,
            max_value_bytes: self.max_label_value_bytes,
        }
    }

    pub fn validate(&self) -> Result<(), String> {
        if self.max_labels_per_series < 2 || self.max_label_name_bytes < 16 || self.max_label_value_bytes < 16
        {
            return Err("ingest.max_labels_per_series must be at least 2, ingest.max_label_name_bytes and \
                        ingest.max_label_value_bytes at least 16"
                .into());
        }
        if self.max_request_bytes < 1024 {
            return Err("ingest.max_request_bytes must be at least 1024".into());
        }
        if self.max_decoded_bytes < self.max_request_bytes {
            return Err("ingest.max_decoded_bytes must be at least ingest.max_request_bytes".into());
        }
        Ok(())
    }
}
