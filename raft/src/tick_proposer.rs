//! Proposes a tick with the leader's clock every second (DESIGN §3).
//!
//! Aggregation rules close their windows when the watermark passes them; the watermark moves
//! with event time, so a stream that goes quiet would leave its last windows open. A rule idle
//! for its `idle_timeout` of this clock moves its watermark by the tick instead. The clock is
//! in the entry, so every replica closes the same windows at the same entry.

use std::time::Duration;

use collabstream_proto::v1;
use tokio_util::sync::CancellationToken;

use crate::node::Writer;

/// How often the leader ticks.
pub const TICK_EVERY: Duration = Duration::from_secs(1);

pub(crate) async fn run_tick_proposer(writer: Writer, stop: CancellationToken) {
    let mut every = tokio::time::interval(TICK_EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = every.tick() => {}
            _ = stop.cancelled() => return,
        }
        let leads = {
            let m = writer.raft().metrics();
            let m = m.borrow();
            m.current_leader == Some(writer.node_id()) && m.state.is_leader()
        };
        // Nothing to close without rules running.
        if !leads || !writer.store().aggregating() {
            continue;
        }
        let cmd = v1::Command {
            leader_time_ms: writer.now_ms(),
            payload: Some(v1::command::Payload::Tick(v1::Tick {})),
        };
        if let Err(e) = writer.commit(&cmd).await {
            tracing::debug!(error = %e, "a tick was not committed; the next one follows");
        }
    }
}
