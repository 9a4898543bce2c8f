//! `[tiering]` and `[object_store]`: when blocks move, and where to.

use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// `[tiering]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TieringConfig {
    /// Blocks whose end is older than this move to the object store. Zero: nothing moves
    /// (everything stays hot, as before the cold tier).
    #[serde(with = "humantime_serde")]
    pub hot_retention: Duration,
    /// Objects whose block ended longer ago than this are deleted. Zero: kept for ever.
    #[serde(with = "humantime_serde")]
    pub cold_retention: Duration,
    /// How often the leader looks for blocks to move.
    #[serde(with = "humantime_serde")]
    pub interval: Duration,
    /// The store's block length (`[store] block_duration`, which this sets when given).
    #[serde(with = "humantime_serde", skip_serializing_if = "Option::is_none")]
    pub block_duration: Option<Duration>,
    /// Objects no manifest entry names are deleted once this old: longer than an upload and
    /// its commit take, so that a block being tiered is never taken for an orphan.
    #[serde(with = "humantime_serde")]
    pub orphan_age: Duration,
}

impl Default for TieringConfig {
    fn default() -> Self {
        Self {
            hot_retention: Duration::ZERO,
            cold_retention: Duration::ZERO,
            interval: Duration::from_secs(60),
            block_duration: None,
            orphan_age: Duration::from_secs(3600),
        }
    }
}

impl TieringConfig {
    pub fn validate(&self) -> Result<(), String> {
        if !self.cold_retention.is_zero() && self.cold_retention <= self.hot_retention {
            return Err(
                "tiering.cold_retention must be longer than tiering.hot_retention (or 0: keep)".into()
            );
        }
        if self.interval < Duration::from_secs(1) {
            return Err("tiering.interval must be at least 1s".into());
        }
        Ok(())
    }
}

/// `[object_store]`. The origin project's `S3_ENDPOINT`, `S3_ACCESS_KEY` and `S3_SECRET_KEY`
/// fill in what is not set here.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ObjectStoreConfig {
    /// `file:///path` or `s3://bucket/prefix`. Empty: `<data-dir>/objects` on the local disk.
    pub url: String,
    /// An S3-compatible endpoint (`http://127.0.0.1:9000`); empty: AWS for `region`.
    pub endpoint: String,
    pub region: String,
    pub access_key: String,
    pub secret_key: String,
    /// Plain HTTP to the endpoint (a local MinIO or moto); off, only HTTPS is used.
    pub allow_http: bool,
    /// Path-style requests (`endpoint/bucket/key`), as most S3-compatible stores want; off,
    /// virtual-hosted style (`bucket.endpoint/key`).
    pub path_style: bool,
}

impl Default for ObjectStoreConfig {
    fn default() -> Self {
        Self {
            url: String::new(),
            endpoint: String::new(),
            region: "us-east-1".into(),
            access_key: String::new(),
            secret_key: String::new(),
            allow_http: false,
            path_style: true,
        }
    }
}

/// Where objects go, resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    Local { root: std::path::PathBuf },
    S3 { bucket: String, prefix: String },
}

impl ObjectStoreConfig {
    /// This config with the `S3_*` environment filling what it leaves empty.
    pub fn with_env(mut self) -> Self {
        let fill = |field: &mut String, var: &str| {
            if field.is_empty()
                && let Ok(v) = std::env::var(var)
            {
                *field = v;
            }
        };
        let had_endpoint = !self.endpoint.is_empty();
        fill(&mut self.endpoint, "S3_ENDPOINT");
        fill(&mut self.access_key, "S3_ACCESS_KEY");
        fill(&mut self.secret_key, "S3_SECRET_KEY");
        // The origin project's S3_ENDPOINT is a plain-HTTP MinIO: taken from there, an
        // http:// endpoint is meant as written.
        if !had_endpoint && self.endpoint.starts_with("http://") {
            self.allow_http = true;
        }
        self
    }

    /// Where the objects live; `data_dir` gives the default.
    pub fn location(&self, data_dir: &Path) -> Result<Location, String> {
        let url = self.url.trim();
        if url.is_empty() {
            return Ok(Location::Local { root: data_dir.join("objects") });
        }
        if let Some(path) = url.strip_prefix("file://") {
            if !path.starts_with('/') {
                return Err(format!(
                    "object_store.url {url:?}: a file URL needs an absolute path (file:///…)"
                ));
            }
            return Ok(Location::Local { root: path.into() });
        }
        if let Some(rest) = url.strip_prefix("s3://") {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            if bucket.is_empty() {
                return Err(format!("object_store.url {url:?} names no bucket (s3://bucket/prefix)"));
            }
            return Ok(Location::S3 { bucket: bucket.into(), prefix: prefix.trim_matches('/').into() });
        }
        Err(format!("object_store.url {url:?} is neither file:///… nor s3://bucket/prefix"))
    }

    pub fn validate(&self, data_dir: &Path) -> Result<(), String> {
        let with_env = self.clone().with_env();
        let location = with_env.location(data_dir)?;
        if let Location::S3 { .. } = location {
            let endpoint = with_env.endpoint.trim();
            if endpoint.starts_with("http://") && !with_env.allow_http {
                return Err(format!(
                    "object_store.endpoint {endpoint:?} is plain HTTP: set object_store.allow_http = true to use it"
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_resolve_or_say_what_is_wrong() {
        let c = |url: &str| ObjectStoreConfig { url: url.into(), ..Default::default() };
        let dir = Path::new("/data");
        assert_eq!(c("").location(dir), Ok(Location::Local { root: "/data/objects".into() }));
        assert_eq!(c("file:///srv/cold").location(dir), Ok(Location::Local { root: "/srv/cold".into() }));
        assert_eq!(
            c("s3://metrics/cs/prod/").location(dir),
            Ok(Location::S3 { bucket: "metrics".into(), prefix: "cs/prod".into() })
        );
        assert_eq!(
            c("s3://metrics").location(dir),
            Ok(Location::S3 { bucket: "metrics".into(), prefix: "".into() })
        );
        assert!(c("s3:///x").location(dir).unwrap_err().contains("no bucket"));
        assert!(c("gs://b").location(dir).unwrap_err().contains("neither"));
        assert!(c("file://relative").location(dir).unwrap_err().contains("absolute"));
        let http = ObjectStoreConfig { endpoint: "http://127.0.0.1:9000".into(), ..c("s3://b") };
        assert!(http.validate(dir).unwrap_err().contains("allow_http"));
        assert!(ObjectStoreConfig { allow_http: true, ..http }.validate(dir).is_ok());
    }

    #[test]
    fn retention_must_leave_room_for_the_hot_tier() {
        let t = TieringConfig {
            hot_retention: Duration::from_secs(7200),
            cold_retention: Duration::from_secs(3600),
            ..Default::default()
        };
        assert!(t.validate().unwrap_err().contains("cold_retention"));
        assert!(TieringConfig::default().validate().is_ok());
    }
}
