//! External tables (`CREATE EXTERNAL TABLE … STORED AS CSV|PARQUET LOCATION …`): history in
//! files to join with the live tables. A definition is checked here (the files are found and
//! their schema read), then committed through Raft by the [`TableCatalog`] the node gives, so
//! every node has the table and it survives restarts; each node builds its table from the
//! statement the first time a query names it (`external`), checking its locations against its
//! own configuration (`location`).

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use collabstream_proto::v1;
use datafusion::execution::object_store::{DefaultObjectStoreRegistry, ObjectStoreRegistry};
use datafusion::logical_expr::CreateExternalTable;
use object_store::ObjectStore;
use parking_lot::Mutex;
use url::Url;

use crate::sql::SqlError;

/// Commits a change of the external tables (through Raft in a node): whether it changed them.
pub trait TableCatalog: Send + Sync {
    fn change(
        &self,
        change: v1::SqlTableChange,
    ) -> Pin<Box<dyn Future<Output = Result<bool, String>> + Send + '_>>;
}

/// Opens bucket `bucket` of the node's S3-compatible store.
pub type S3Opener = Arc<dyn Fn(&str) -> Result<Arc<dyn ObjectStore>, String> + Send + Sync>;

/// DataFusion's registry (the local file system, the cold tier's store) plus S3 buckets
/// opened when a table first names them.
pub(crate) struct Registry {
    inner: DefaultObjectStoreRegistry,
    s3: Option<S3Opener>,
    /// The buckets opened so far, by `s3://bucket`.
    opened: Mutex<HashMap<String, Arc<dyn ObjectStore>>>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry").field("inner", &self.inner).finish_non_exhaustive()
    }
}

impl Registry {
    pub(crate) fn new(s3: Option<S3Opener>) -> Self {
        Self { inner: DefaultObjectStoreRegistry::new(), s3, opened: Mutex::new(HashMap::new()) }
    }
}

impl ObjectStoreRegistry for Registry {
    fn register_store(&self, url: &Url, store: Arc<dyn ObjectStore>) -> Option<Arc<dyn ObjectStore>> {
        self.inner.register_store(url, store)
    }

    fn get_store(&self, url: &Url) -> datafusion::common::Result<Arc<dyn ObjectStore>> {
        if let Ok(store) = self.inner.get_store(url) {
            return Ok(store);
        }
        let (Some(open), "s3", Some(bucket)) = (&self.s3, url.scheme(), url.host_str()) else {
            return self.inner.get_store(url);
        };
        let key = format!("s3://{bucket}");
        if let Some(store) = self.opened.lock().get(&key) {
            return Ok(store.clone());
        }
        let store = open(bucket).map_err(datafusion::common::DataFusionError::Execution)?;
        self.opened.lock().insert(key, store.clone());
        Ok(store)
    }
}

/// A plain table name for a definition (no schema or catalog part).
pub(crate) fn bare_name(cmd: &CreateExternalTable) -> Result<String, SqlError> {
    match &cmd.name {
        datafusion::common::TableReference::Bare { table } => Ok(table.to_string()),
        other => {
            Err(SqlError::Invalid(format!("name the table without a schema: {other} is not a plain name")))
        }
    }
}
