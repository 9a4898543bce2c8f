//! [`Objects`]: the configured object store under its prefix, with the one write the cold tier
//! trusts: upload, then read back and compare size and checksum.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use object_store::aws::AmazonS3Builder;
use object_store::local::LocalFileSystem;
use object_store::path::Path as ObjectPath;
use object_store::{BackoffConfig, ClientOptions, ObjectStore, ObjectStoreExt, PutPayload, RetryConfig};

use crate::config::{Location, ObjectStoreConfig};

/// Where a verified object is, and what it holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredObject {
    /// The path under the store's root, prefix included (what the manifest records).
    pub path: String,
    pub size: u64,
    /// xxh3-64 of the bytes.
    pub checksum: u64,
}

#[derive(Debug, Clone)]
pub struct Objects {
    store: Arc<dyn ObjectStore>,
    prefix: String,
    /// Shown in logs and errors: `file:///…` or `s3://bucket/prefix`.
    pub url: String,
}

impl Objects {
    /// The store `config` names (`data_dir` gives the default local one). The S3 client retries
    /// 5xx answers and broken connections with backoff for up to `retry_timeout`.
    pub fn open(config: &ObjectStoreConfig, data_dir: &std::path::Path) -> Result<Self, String> {
        let config = config.clone().with_env();
        match config.location(data_dir)? {
            Location::Local { root } => {
                std::fs::create_dir_all(&root)
                    .map_err(|e| format!("cannot create the object directory {}: {e}", root.display()))?;
                let store = LocalFileSystem::new_with_prefix(&root)
                    .map_err(|e| format!("object directory {}: {e}", root.display()))?;
                Ok(Self {
                    store: Arc::new(store),
                    prefix: String::new(),
                    url: format!("file://{}", root.display()),
                })
            }
            Location::S3 { bucket, prefix } => {
                let store = s3_bucket(&config, &bucket)?;
                let url = format!("s3://{bucket}/{prefix}");
                Ok(Self { store, prefix, url })
            }
        }
    }

    /// The store itself, for readers that fetch ranges (Parquet footers, row groups).
    pub fn store(&self) -> Arc<dyn ObjectStore> {
        self.store.clone()
    }

    /// `relative` under the configured prefix.
    pub fn path(&self, relative: &str) -> String {
        if self.prefix.is_empty() { relative.to_string() } else { format!("{}/{relative}", self.prefix) }
    }

    /// Uploads `bytes` to `path` (from [`Objects::path`]), then reads the object back and
    /// checks its size and checksum: only a verified object may enter the manifest.
    pub async fn put_verified(&self, path: &str, bytes: Bytes) -> Result<StoredObject, String> {
        let location = ObjectPath::from(path);
        let checksum = xxhash_rust::xxh3::xxh3_64(&bytes);
        let size = bytes.len() as u64;
        self.store
            .put(&location, PutPayload::from(bytes))
            .await
            .map_err(|e| format!("upload of {path} to {}: {e}", self.url))?;
        let back = self.get(path).await?;
        if back.len() as u64 != size || xxhash_rust::xxh3::xxh3_64(&back) != checksum {
            return Err(format!(
                "{path} on {} does not match what was uploaded ({} bytes back, {size} sent)",
                self.url,
                back.len()
            ));
        }
        Ok(StoredObject { path: path.to_string(), size, checksum })
    }

    pub async fn get(&self, path: &str) -> Result<Bytes, String> {
        let location = ObjectPath::from(path);
        let got =
            self.store.get(&location).await.map_err(|e| format!("read of {path} from {}: {e}", self.url))?;
        got.bytes().await.map_err(|e| format!("read of {path} from {}: {e}", self.url))
    }

    /// Deletes `path`; one that is already gone counts as deleted.
    pub async fn delete(&self, path: &str) -> Result<(), String> {
        match self.store.delete(&ObjectPath::from(path)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(format!("delete of {path} from {}: {e}", self.url)),
        }
    }

    /// The objects under `relative` (a directory under the prefix): path (prefix included),
    /// size and last modification in unix milliseconds.
    pub async fn list(&self, relative: &str) -> Result<Vec<(String, u64, i64)>, String> {
        use futures::TryStreamExt;
        let dir = ObjectPath::from(self.path(relative));
        let listed: Vec<object_store::ObjectMeta> = self
            .store
            .list(Some(&dir))
            .try_collect()
            .await
            .map_err(|e| format!("listing {dir} on {}: {e}", self.url))?;
        Ok(listed
            .into_iter()
            .map(|m| (m.location.to_string(), m.size, m.last_modified.timestamp_millis()))
            .collect())
    }
}

/// Bucket `bucket` of the S3-compatible store `config` names (endpoint, region, credentials,
/// path style, `allow_http`; `S3_*` from the environment already applied). The client retries
/// 5xx answers and broken connections with backoff for up to a minute. Also what SQL's
/// external tables on `s3://` read other buckets with.
pub fn s3_bucket(config: &ObjectStoreConfig, bucket: &str) -> Result<Arc<dyn ObjectStore>, String> {
    let retry = RetryConfig {
        backoff: BackoffConfig {
            init_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(5),
            base: 2.0,
        },
        max_retries: 5,
        retry_timeout: Duration::from_secs(60),
    };
    let options = ClientOptions::new()
        .with_allow_http(config.allow_http)
        .with_connect_timeout(Duration::from_secs(5))
        .with_timeout(Duration::from_secs(60));
    let mut b = AmazonS3Builder::new()
        .with_bucket_name(bucket)
        .with_region(&config.region)
        .with_allow_http(config.allow_http)
        .with_virtual_hosted_style_request(!config.path_style)
        .with_retry(retry)
        .with_client_options(options);
    if !config.endpoint.is_empty() {
        b = b.with_endpoint(&config.endpoint);
    }
    if !config.access_key.is_empty() {
        b = b.with_access_key_id(&config.access_key).with_secret_access_key(&config.secret_key);
    }
    Ok(Arc::new(b.build().map_err(|e| format!("object store s3://{bucket}: {e}"))?))
}
