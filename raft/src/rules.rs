//! Aggregation rule changes: checked where they arrive, committed through Raft by the leader
//! (a follower passes them on through the leader's Admin service), and answered with what
//! apply did. [`reconcile`] brings a leader's configured rules in force.
//!
//! A rule is checked here with the same function apply uses, so that a bad rule is refused
//! with `InvalidArgument` before it reaches the log; apply still decides, identically on every
//! replica, and its refusals (a race with another change) come back as `FailedPrecondition`.

use collabstream_proto::v1;
use collabstream_proto::v1::rule_change::Change;
use collabstream_store::RuleOutcome;
use collabstream_store::agg::rule_proto;
use tonic::Status;

use crate::admin::leader_admin;
use crate::node::Writer;

/// Commits `change` and answers whether it changed anything.
pub async fn change_rule(writer: &Writer, change: Change) -> Result<bool, Status> {
    check(writer, &change)?;
    if let Some(mut leader) = leader_admin(writer)? {
        let answer = match change {
            Change::Create(rule) => {
                leader.create_aggregation(v1::CreateAggregationRequest { rule: Some(rule) }).await
            }
            Change::Delete(name) => leader.delete_aggregation(v1::DeleteAggregationRequest { name }).await,
        };
        return answer.map(|r| r.into_inner().changed);
    }
    let cmd = v1::Command {
        leader_time_ms: writer.now_ms(),
        payload: Some(v1::command::Payload::Rules(v1::RuleChange { change: Some(change) })),
    };
    let outcomes = writer.commit(&cmd).await.map_err(|e| {
        Status::unavailable(format!("the rule change was not committed ({e}); retry, it applies once"))
    })?;
    match outcomes.into_iter().find_map(|o| o.catalog_change) {
        Some(RuleOutcome::Changed) => Ok(true),
        Some(RuleOutcome::Unchanged) => Ok(false),
        Some(RuleOutcome::Refused(why)) => Err(Status::failed_precondition(why)),
        None => Err(Status::internal("apply gave no answer to the rule change")),
    }
}

/// What can be told before the log: a rule that does not validate, one that conflicts with
/// a rule in force here.
fn check(writer: &Writer, change: &Change) -> Result<(), Status> {
    let store = writer.store();
    let (users, pack) = store.aggregation_rules();
    match change {
        Change::Create(def) => {
            rule_proto::rule(def, store.settings().out_of_order_window_ms)
                .map_err(|e| Status::invalid_argument(format!("rule {:?}: {e}", def.name)))?;
            if users.iter().any(|r| r.name == def.name && r != def) {
                return Err(Status::already_exists(format!(
                    "a rule named {} runs with another definition; delete it first",
                    def.name
                )));
            }
        }
        Change::Delete(name) if pack.contains(name) => {
            return Err(Status::failed_precondition(format!(
                "{name} is a rule of the meetings pack; turn the pack off with store.meetings_pack = false"
            )));
        }
        Change::Delete(_) => {}
    }
    Ok(())
}

/// Makes the rules in force match this node's configured ones: creates those missing,
/// replaces those defined otherwise (their windows start over), and deletes rules from a
/// configuration (origin `config`) that this one no longer lists. Rules created through the
/// API are left alone. Run by a leader ([`crate::configuration`]); with nodes configured
/// differently, the leader's configuration is the one in force while it leads.
pub(crate) async fn reconcile(writer: &Writer, configured: &[v1::AggregationRule]) -> Result<(), Status> {
    let (in_force, _) = writer.store().aggregation_rules();
    for stale in in_force.iter().filter(|r| r.origin == "config") {
        match configured.iter().find(|c| c.name == stale.name) {
            Some(c) if c == stale => {}
            Some(_) => {
                tracing::warn!(rule = %stale.name, "the configured rule changed: it is replaced and its windows start over");
                change_rule(writer, Change::Delete(stale.name.clone())).await?;
            }
            None => {
                tracing::info!(rule = %stale.name, "the rule is no longer configured: deleted");
                change_rule(writer, Change::Delete(stale.name.clone())).await?;
            }
        }
    }
    for c in configured {
        if in_force.iter().any(|r| r.name == c.name && r.origin != "config") {
            tracing::warn!(rule = %c.name, "a rule created through the API has the configured rule's name; the configured one is not created");
            continue;
        }
        match change_rule(writer, Change::Create(c.clone())).await {
            Ok(true) => tracing::info!(rule = %c.name, "configured aggregation rule created"),
            Ok(false) => {}
            // Refused by apply or by its checks (a meetings pack rule's name, an external SQL
            // table's): it would be refused again, and writes wait for this reconcile.
            Err(e) if e.code() != tonic::Code::Unavailable => tracing::error!(
                rule = %c.name,
                error = %e.message(),
                "the configured aggregation rule is refused and does not run; rename it in the configuration"
            ),
            Err(e) => return Err(e),
        }
    }
    Ok(())
}
