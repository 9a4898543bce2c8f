//! Proposes this node's `[store]` settings when it leads and they differ from those in force.
//!
//! Apply depends on a few settings (the out-of-order window, the dedup capacity, the chunk
//! size, the series limit, the block length). They travel in the log (`ApplySettings`), so every replica applies
//! alike; this task is how an operator's configuration gets there. With nodes configured
//! differently, the leader's configuration is the one in force while it leads.

use std::time::Duration;

use collabstream_proto::v1;
use collabstream_store::Settings;
use tokio_util::sync::CancellationToken;

use crate::node::Writer;
use crate::types::Request;

pub(crate) async fn run_settings_proposer(writer: Writer, stop: CancellationToken) {
    let store = writer.store().clone();
    let wanted = Settings::from_config(store.config());
    let mut metrics = writer.raft().metrics();
    // Checked when this node becomes leader (before the writes it is sent, as far as it can)
    // and every few seconds after (a proposal that failed is tried again). Every applied entry
    // changes the metrics, so only a change of term or leader counts as one.
    let mut retry = tokio::time::interval(Duration::from_secs(5));
    retry.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut seen = None;
    // Applied once per term at most: should apply keep something else (a value it refuses),
    // proposing again would only fill the log.
    let mut applied_in_term = None;
    loop {
        tokio::select! {
            changed = metrics.changed() => {
                if changed.is_err() {
                    return;
                }
                let m = metrics.borrow();
                if seen == Some((m.current_term, m.current_leader)) {
                    continue;
                }
                seen = Some((m.current_term, m.current_leader));
            }
            _ = retry.tick() => {}
            _ = stop.cancelled() => return,
        }
        let (leads, term) = {
            let m = metrics.borrow();
            (m.current_leader == Some(writer.node_id()) && m.state.is_leader(), m.current_term)
        };
        if !leads || applied_in_term == Some(term) {
            continue;
        }
        let current = store.settings();
        // The block length is fixed once the store holds data (apply ignores a new one).
        let wanted =
            if store.is_empty() { wanted } else { Settings { block_ms: current.block_ms, ..wanted } };
        if current == wanted {
            continue;
        }
        let cmd = v1::Command {
            leader_time_ms: writer.now_ms(),
            payload: Some(v1::command::Payload::Settings(wanted.to_proto())),
        };
        match writer.raft().client_write(Request::new(&cmd)).await {
            Ok(_) => {
                applied_in_term = Some(term);
                tracing::info!(settings = ?wanted, "proposed this node's store settings");
                if store.settings() != wanted {
                    tracing::warn!(
                        configured = ?wanted,
                        in_force = ?store.settings(),
                        "apply kept other store settings than this node's configuration asks for"
                    );
                }
            }
            Err(e) => tracing::warn!(error = %e, "could not propose the store settings; will retry"),
        }
    }
}
