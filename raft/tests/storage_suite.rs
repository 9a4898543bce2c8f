//! openraft's storage conformance suite over our log storage and state machine, each test on
//! a fresh store in a temporary directory.

use std::sync::Arc;

use collabstream_raft::{LogStorage, StateMachine, TypeConfig};
use collabstream_store::{Store, StoreConfig};
use openraft::StorageError;
use openraft::testing::{StoreBuilder, Suite};

struct Builder;

impl StoreBuilder<TypeConfig, LogStorage, StateMachine, tempfile::TempDir> for Builder {
    async fn build(&self) -> Result<(tempfile::TempDir, LogStorage, StateMachine), StorageError<u64>> {
        let dir = tempfile::tempdir().expect("tempdir");
        let store =
            Arc::new(Store::open(&dir.path().join("db"), StoreConfig::default()).expect("store opens"));
        let log = LogStorage::new(store.log()).expect("log storage");
        let sm = StateMachine::new(store, dir.path().join("snapshots")).expect("state machine");
        Ok((dir, log, sm))
    }
}

/// Plain `#[test]`: the suite runs each case on its own runtime.
#[test]
fn log_storage_and_state_machine_pass_openraft_suite() {
    if let Err(e) = Suite::test_all(Builder) {
        panic!("openraft storage suite failed: {e}");
    }
}
