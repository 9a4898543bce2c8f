//! Brings a leader's configuration in force: its `[store]` settings, then its configured
//! aggregation rules, committed before any write it is sent in its term.
//!
//! Apply depends on a few settings (the out-of-order window, the dedup capacity, the chunk
//! size, the series limit, the block length, the meetings pack). They travel in the log
//! (`ApplySettings`), so every replica applies alike; this task is how an operator's
//! configuration gets there. With nodes configured differently, the leader's configuration is
//! the one in force while it leads.
//!
//! Writes wait for it ([`Writer::propose`] on the leader): a write applied first fixed the
//! default block length for good (apply keeps the block length once the store holds data),
//! and a configured rule missed the first events.

use std::time::Duration;

use collabstream_proto::v1;
use collabstream_store::Settings;
use tokio_util::sync::CancellationToken;

use crate::node::Writer;

pub(crate) async fn run_configuration_proposer(
    writer: Writer,
    rules: Vec<v1::AggregationRule>,
    stop: CancellationToken,
) {
    let wanted = Settings::from_config(writer.store().config());
    let mut metrics = writer.raft().metrics();
    // Checked when this node becomes leader and every second after (a proposal that failed is
    // tried again; writes wait meanwhile). Every applied entry changes the metrics, so only a
    // change of term or leader counts as one.
    let mut retry = tokio::time::interval(Duration::from_secs(1));
    retry.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut seen = None;
    // Each step once per term at most: should apply keep something else (a value it refuses),
    // proposing again would only fill the log.
    let mut settings_in_term = None;
    let mut done_in_term = None;
    loop {
        tokio::select! {
            changed = metrics.changed() => {
                if changed.is_err() {
                    return;
                }
                let m = metrics.borrow_and_update();
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
        if !leads || done_in_term == Some(term) {
            continue;
        }
        if settings_in_term != Some(term) {
            match propose_settings(&writer, wanted).await {
                Ok(()) => settings_in_term = Some(term),
                Err(e) => {
                    tracing::warn!(error = %e, "could not propose the store settings; will retry");
                    continue;
                }
            }
        }
        match crate::rules::reconcile(&writer, &rules).await {
            Ok(()) => {
                done_in_term = Some(term);
                writer.set_configuration_in_force(term);
            }
            Err(e) => tracing::warn!(
                error = %e.message(),
                "could not bring the configured aggregation rules in force; will retry"
            ),
        }
    }
}

/// Commits `wanted` unless it is in force already.
async fn propose_settings(writer: &Writer, wanted: Settings) -> Result<(), crate::Error> {
    let store = writer.store();
    let current = store.settings();
    // The block length is fixed once the store holds data (apply ignores a new one).
    let wanted = if store.is_empty() { wanted } else { Settings { block_ms: current.block_ms, ..wanted } };
    if current == wanted {
        return Ok(());
    }
    let cmd = v1::Command {
        leader_time_ms: writer.now_ms(),
        payload: Some(v1::command::Payload::Settings(wanted.to_proto())),
    };
    writer.commit(&cmd).await?;
    tracing::info!(settings = ?wanted, "proposed this node's store settings");
    if store.settings() != wanted {
        tracing::warn!(
            configured = ?wanted,
            in_force = ?store.settings(),
            "apply kept other store settings than this node's configuration asks for"
        );
    }
    Ok(())
}
