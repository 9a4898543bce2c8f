//! `[cluster]`: what the nodes of one cluster share beyond `--peers`.

use std::path::{Path, PathBuf};

use collabstream_raft::ClusterSecret;
use serde::{Deserialize, Serialize};

/// The environment variable that holds the cluster secret itself (it overrides the file).
pub const SECRET_ENV: &str = "COLLABSTREAM_CLUSTER_SECRET";

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClusterConfig {
    /// A file holding the secret every Raft and Admin call must carry (at least 16 printable
    /// characters; a final newline is ignored). The same on every node.
    pub secret_file: Option<PathBuf>,
}

impl ClusterConfig {
    /// The secret from `COLLABSTREAM_CLUSTER_SECRET`, else from `secret_file`, else none.
    pub fn secret(&self) -> Result<ClusterSecret, String> {
        secret_from(std::env::var(SECRET_ENV).ok().as_deref(), self.secret_file.as_deref())
    }
}

/// The secret from an environment value or a file, for the server and `collabstream cluster`.
pub fn secret_from(env: Option<&str>, file: Option<&Path>) -> Result<ClusterSecret, String> {
    if let Some(text) = env.filter(|t| !t.trim().is_empty()) {
        return ClusterSecret::new(text).map_err(|e| format!("{SECRET_ENV}: {e}"));
    }
    match file {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| format!("cannot read cluster.secret_file {}: {e}", path.display()))?;
            ClusterSecret::new(&text).map_err(|e| format!("cluster.secret_file {}: {e}", path.display()))
        }
        None => Ok(ClusterSecret::none()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_environment_overrides_the_file_and_bad_secrets_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("secret");
        std::fs::write(&file, "from-the-file-0123456789\n").unwrap();
        assert!(secret_from(None, Some(&file)).unwrap().is_set());
        assert!(secret_from(Some("from-the-env-0123456789"), Some(&file)).unwrap().is_set());
        assert!(!secret_from(None, None).unwrap().is_set());
        assert!(secret_from(Some("short"), None).unwrap_err().contains(SECRET_ENV));
        let missing = dir.path().join("missing");
        assert!(secret_from(None, Some(&missing)).unwrap_err().contains("cannot read cluster.secret_file"));
    }
}
