//! [`AdminGrpc`]: the `AdminService`: cluster status, membership changes and tiering passes. A
//! membership change or a tiering pass asked of a follower is passed on to the leader.

use std::collections::BTreeSet;
use std::time::Duration;

use collabstream_proto::v1::admin_service_client::AdminServiceClient;
use collabstream_proto::v1::admin_service_server::{AdminService, AdminServiceServer};
use collabstream_proto::v1::rule_change::Change;
use collabstream_proto::v1::{self, Member};
use openraft::{BasicNode, ChangeMembers, ServerState};
use tonic::service::interceptor::InterceptedService;
use tonic::{Request, Response, Status};

use crate::network::channel;
use crate::node::Writer;
use crate::secret::{PeerChannel, RequireSecret};

/// The leader's admin client, when this node is not the leader.
pub(crate) fn leader_admin(writer: &Writer) -> Result<Option<AdminServiceClient<PeerChannel>>, Status> {
    match writer.leader() {
        Some((id, _)) if id == writer.node_id() => Ok(None),
        Some((_, addr)) => Ok(Some(AdminServiceClient::new(
            channel(&addr, writer.cluster_secret())
                .map_err(|e| Status::unavailable(format!("leader address {addr}: {e}")))?,
        ))),
        None => Err(Status::unavailable("no leader is known; retry when the cluster has elected one")),
    }
}

/// A tiering pass as the node runs it (the server's; this crate does not know tiering).
pub trait TieringPass: Send + Sync {
    /// Runs one pass on this node, the leader: its report as JSON, or why it failed.
    fn run(&self)
    -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<String, String>> + Send + '_>>;
}

/// Runs a tiering pass on the leader: here when this node leads, else through the leader's
/// Admin service.
pub async fn run_tiering(writer: &Writer, pass: Option<&dyn TieringPass>) -> Result<String, Status> {
    if let Some(mut leader) = leader_admin(writer)? {
        let answer = leader.run_tiering(v1::RunTieringRequest {}).await?;
        return Ok(answer.into_inner().report_json);
    }
    let pass = pass.ok_or_else(|| Status::unimplemented("this node runs no tiering"))?;
    pass.run().await.map_err(Status::unavailable)
}

#[derive(Clone)]
pub struct AdminGrpc {
    writer: Writer,
    tiering: Option<std::sync::Arc<dyn TieringPass>>,
}

impl std::fmt::Debug for AdminGrpc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminGrpc").field("writer", &self.writer).finish_non_exhaustive()
    }
}

impl AdminGrpc {
    pub fn new(writer: Writer) -> Self {
        Self { writer, tiering: None }
    }

    /// Runs tiering passes asked of this node (`RunTiering`) with `pass` while it leads.
    pub fn with_tiering(mut self, pass: std::sync::Arc<dyn TieringPass>) -> Self {
        self.tiering = Some(pass);
        self
    }

    /// The service, refusing calls without the cluster secret when the node has one.
    pub fn into_service(self) -> InterceptedService<AdminServiceServer<Self>, RequireSecret> {
        let secret = RequireSecret(self.writer.cluster_secret().clone());
        InterceptedService::new(AdminServiceServer::new(self), secret)
    }

    /// This node's view of the cluster.
    pub fn status(&self) -> v1::StatusResponse {
        let m = self.writer.raft().metrics().borrow().clone();
        let membership = m.membership_config.membership();
        let voters: BTreeSet<u64> = membership.voter_ids().collect();
        let last = m.last_log_index;
        let members = membership
            .nodes()
            .map(|(id, node)| {
                let matched = m.replication.as_ref().and_then(|r| r.get(id)).and_then(|l| l.map(|l| l.index));
                let matched = if *id == m.id { last } else { matched };
                Member {
                    id: *id,
                    addr: node.addr.clone(),
                    role: if voters.contains(id) { "voter" } else { "learner" }.into(),
                    matched_index: matched,
                    lag: match (last, matched, m.state) {
                        (Some(l), Some(mi), ServerState::Leader) => Some(l.saturating_sub(mi)),
                        _ => None,
                    },
                }
            })
            .collect();
        // The commit index as the leader knows it: the highest index a majority of voters has.
        let committed = if m.state == ServerState::Leader {
            let mut matched: Vec<u64> = voters
                .iter()
                .map(|id| {
                    if *id == m.id {
                        last.unwrap_or(0)
                    } else {
                        m.replication
                            .as_ref()
                            .and_then(|r| r.get(id))
                            .and_then(|l| l.map(|l| l.index))
                            .unwrap_or(0)
                    }
                })
                .collect();
            matched.sort_unstable();
            matched.get((matched.len().saturating_sub(1)) / 2).copied()
        } else {
            None
        };
        v1::StatusResponse {
            node_id: m.id,
            state: format!("{:?}", m.state).to_lowercase(),
            leader_id: m.current_leader,
            term: m.current_term,
            last_log_index: last,
            committed_index: committed.or_else(|| m.last_applied.map(|l| l.index)),
            applied_index: m.last_applied.map(|l| l.index),
            members,
            snapshot_index: m.snapshot.map(|l| l.index),
            purged_index: m.purged.map(|l| l.index),
        }
    }

    fn leader_client(&self) -> Result<Option<AdminServiceClient<PeerChannel>>, Status> {
        leader_admin(&self.writer)
    }

    async fn change(
        &self,
        change: ChangeMembers<u64, BasicNode>,
    ) -> Result<Response<v1::MembershipResponse>, Status> {
        self.writer
            .raft()
            .change_membership(change, false)
            .await
            .map_err(|e| Status::failed_precondition(format!("membership change refused: {e}")))?;
        Ok(Response::new(v1::MembershipResponse { status: Some(self.status()) }))
    }
}

#[tonic::async_trait]
impl AdminService for AdminGrpc {
    async fn status(&self, _req: Request<v1::StatusRequest>) -> Result<Response<v1::StatusResponse>, Status> {
        Ok(Response::new(self.status()))
    }

    async fn add_learner(
        &self,
        req: Request<v1::AddLearnerRequest>,
    ) -> Result<Response<v1::MembershipResponse>, Status> {
        if let Some(mut leader) = self.leader_client()? {
            return leader.add_learner(req.into_inner()).await;
        }
        let r = req.into_inner();
        if r.addr.is_empty() || r.node_id == 0 {
            return Err(Status::invalid_argument(
                "add-learner needs a node id > 0 and its gRPC address host:port",
            ));
        }
        // Not blocking: the learner catches up in the background; `status` shows its lag.
        let added = tokio::time::timeout(
            Duration::from_secs(30),
            self.writer.raft().add_learner(r.node_id, BasicNode::new(&r.addr), false),
        )
        .await
        .map_err(|_| Status::deadline_exceeded("adding the learner took longer than 30 s"))?;
        added.map_err(|e| Status::failed_precondition(format!("cannot add learner {}: {e}", r.node_id)))?;
        Ok(Response::new(v1::MembershipResponse { status: Some(self.status()) }))
    }

    async fn promote(
        &self,
        req: Request<v1::MembershipRequest>,
    ) -> Result<Response<v1::MembershipResponse>, Status> {
        if let Some(mut leader) = self.leader_client()? {
            return leader.promote(req.into_inner()).await;
        }
        let id = req.into_inner().node_id;
        self.change(ChangeMembers::AddVoterIds(BTreeSet::from([id]))).await
    }

    async fn remove(
        &self,
        req: Request<v1::MembershipRequest>,
    ) -> Result<Response<v1::MembershipResponse>, Status> {
        if let Some(mut leader) = self.leader_client()? {
            return leader.remove(req.into_inner()).await;
        }
        let id = req.into_inner().node_id;
        let m = self.writer.raft().metrics().borrow().clone();
        let membership = m.membership_config.membership();
        if membership.get_node(&id).is_none() {
            return Err(Status::not_found(format!("node {id} is not a member")));
        }
        if membership.voter_ids().any(|v| v == id) {
            self.change(ChangeMembers::RemoveVoters(BTreeSet::from([id]))).await?;
        }
        self.change(ChangeMembers::RemoveNodes(BTreeSet::from([id]))).await
    }

    async fn list_aggregations(
        &self,
        _req: Request<v1::ListAggregationsRequest>,
    ) -> Result<Response<v1::ListAggregationsResponse>, Status> {
        let (rules, pack_rules) = self.writer.store().aggregation_rules();
        Ok(Response::new(v1::ListAggregationsResponse { rules, pack_rules }))
    }

    async fn create_aggregation(
        &self,
        req: Request<v1::CreateAggregationRequest>,
    ) -> Result<Response<v1::AggregationChangeResponse>, Status> {
        let rule = req.into_inner().rule.ok_or_else(|| Status::invalid_argument("rule: missing"))?;
        let changed = crate::rules::change_rule(&self.writer, Change::Create(rule)).await?;
        Ok(Response::new(v1::AggregationChangeResponse { changed }))
    }

    async fn delete_aggregation(
        &self,
        req: Request<v1::DeleteAggregationRequest>,
    ) -> Result<Response<v1::AggregationChangeResponse>, Status> {
        let name = req.into_inner().name;
        let changed = crate::rules::change_rule(&self.writer, Change::Delete(name)).await?;
        Ok(Response::new(v1::AggregationChangeResponse { changed }))
    }

    async fn change_sql_table(
        &self,
        req: Request<v1::SqlTableChange>,
    ) -> Result<Response<v1::AggregationChangeResponse>, Status> {
        let changed = crate::sql_tables::change_sql_table(&self.writer, req.into_inner()).await?;
        Ok(Response::new(v1::AggregationChangeResponse { changed }))
    }

    async fn run_tiering(
        &self,
        _req: Request<v1::RunTieringRequest>,
    ) -> Result<Response<v1::RunTieringResponse>, Status> {
        let report_json = run_tiering(&self.writer, self.tiering.as_deref()).await?;
        Ok(Response::new(v1::RunTieringResponse { report_json }))
    }
}
