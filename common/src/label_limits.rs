//! [`LabelLimits`]: how large a new series' label set may be.
//!
//! Every series lives in memory on every node (and is loaded again at each start), so label
//! sets without bounds are memory without bounds. Limits apply where a series is created;
//! series that already exist are not checked again.

use serde::{Deserialize, Serialize};

/// Bounds on one label set. Zero means no bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct LabelLimits {
    pub max_labels: usize,
    pub max_name_bytes: usize,
    pub max_value_bytes: usize,
}

impl LabelLimits {
    /// No bounds: for label sets read back from our own storage.
    pub const NONE: LabelLimits = LabelLimits { max_labels: 0, max_name_bytes: 0, max_value_bytes: 0 };

    /// The defaults of `[ingest]`: above any real exporter's label sets, below what would let
    /// a few bad senders exhaust memory.
    pub const DEFAULT: LabelLimits =
        LabelLimits { max_labels: 64, max_name_bytes: 256, max_value_bytes: 4096 };

    pub(crate) fn check<'a>(
        &self,
        count: usize,
        mut pairs: impl Iterator<Item = (&'a str, &'a str)>,
    ) -> Result<(), crate::LabelError> {
        use crate::LabelError;
        if self.max_labels > 0 && count > self.max_labels {
            return Err(LabelError::TooMany { count, limit: self.max_labels });
        }
        let too_long = pairs.find(|(n, v)| {
            (self.max_name_bytes > 0 && n.len() > self.max_name_bytes)
                || (self.max_value_bytes > 0 && v.len() > self.max_value_bytes)
        });
        match too_long {
            Some((n, _)) if self.max_name_bytes > 0 && n.len() > self.max_name_bytes => {
                Err(LabelError::NameTooLong { prefix: prefix(n), len: n.len(), limit: self.max_name_bytes })
            }
            Some((n, v)) => {
                Err(LabelError::ValueTooLong { name: prefix(n), len: v.len(), limit: self.max_value_bytes })
            }
            None => Ok(()),
        }
    }
}

impl Default for LabelLimits {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// The start of a long name, for a message that names it without repeating all of it.
fn prefix(s: &str) -> String {
    match s.char_indices().nth(64) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_string(),
    }
}
