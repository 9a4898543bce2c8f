//! What the raft crate's tests and benches share: a store with its state machine, and log
//! entries carrying writes. (Benches include it with `#[path]`.)

use std::path::Path;
use std::sync::Arc;

use collabstream_proto::v1;
use collabstream_raft::{Request, StateMachine, TypeConfig};
use collabstream_store::{Store, StoreConfig};
use openraft::{CommittedLeaderId, Entry, EntryPayload, LogId};

/// Entry `index` of term 1 writing `series`; index 0 is a blank entry, as openraft's first.
pub fn write_entry(index: u64, series: Vec<v1::TimeSeries>) -> Entry<TypeConfig> {
    let cmd = v1::Command {
        leader_time_ms: 0,
        payload: Some(v1::command::Payload::Write(
            v1::WriteRequest { batch_id: String::new(), series, events: vec![] }.into(),
        )),
    };
    let log_id = LogId::new(CommittedLeaderId::new(1, 1), index);
    let payload = if index == 0 { EntryPayload::Blank } else { EntryPayload::Normal(Request::new(&cmd)) };
    Entry { log_id, payload }
}

/// A store in `dir/db` and its state machine, snapshots in `dir/snapshots`.
pub fn open(dir: &Path) -> (Arc<Store>, StateMachine) {
    let store = Arc::new(Store::open(&dir.join("db"), StoreConfig::default()).expect("store opens"));
    let sm = StateMachine::new(store.clone(), dir.join("snapshots")).expect("state machine");
    (store, sm)
}
