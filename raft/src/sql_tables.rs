//! External SQL tables (`CREATE EXTERNAL TABLE`, `DROP TABLE`): committed through Raft by the
//! leader (a follower passes the change on through the leader's Admin service), so that every
//! node plans SQL with the same catalog, and answered with what apply did.

use collabstream_proto::v1;
use collabstream_store::RuleOutcome;
use tonic::Status;

use crate::admin::leader_admin;
use crate::node::Writer;

/// Commits `change` and answers whether it changed the catalog.
pub async fn change_sql_table(writer: &Writer, change: v1::SqlTableChange) -> Result<bool, Status> {
    if let Some(mut leader) = leader_admin(writer)? {
        return leader.change_sql_table(change).await.map(|r| r.into_inner().changed);
    }
    let cmd = v1::Command {
        leader_time_ms: writer.now_ms(),
        payload: Some(v1::command::Payload::SqlTable(change)),
    };
    let outcomes = writer.commit(&cmd).await.map_err(|e| {
        Status::unavailable(format!("the table change was not committed ({e}); retry, it applies once"))
    })?;
    match outcomes.into_iter().find_map(|o| o.catalog_change) {
        Some(RuleOutcome::Changed) => Ok(true),
        Some(RuleOutcome::Unchanged) => Ok(false),
        Some(RuleOutcome::Refused(why)) => Err(Status::invalid_argument(why)),
        None => Err(Status::internal("apply gave no answer to the table change")),
    }
}
