//! `collabstream cluster status|add-learner|promote|remove`: the AdminService from the
//! command line. Membership changes sent to a follower are passed on to the leader.

use collabstream_proto::v1::admin_service_client::AdminServiceClient;
use collabstream_proto::v1::{AddLearnerRequest, MembershipRequest, StatusRequest, StatusResponse};

use collabstream_raft::ClusterSecret;

use crate::error::Error;

/// What to do.
#[derive(Debug, Clone)]
pub enum ClusterAction {
    Status,
    AddLearner { node_id: u64, addr: String },
    Promote { node_id: u64 },
    Remove { node_id: u64 },
}

/// Runs `action` against the node at `endpoint` (its gRPC address) and renders the cluster
/// status that results.
/// Calls carry `secret` (see `[cluster]`).
pub async fn cluster_command(
    endpoint: &str,
    action: ClusterAction,
    secret: ClusterSecret,
) -> Result<String, Error> {
    let endpoint = if endpoint.contains("://") { endpoint.to_string() } else { format!("http://{endpoint}") };
    let channel = tonic::transport::Endpoint::from_shared(endpoint.clone())
        .map_err(|source| Error::Connect { target: endpoint.clone(), source })?
        .connect()
        .await
        .map_err(|source| Error::Connect { target: endpoint.clone(), source })?;
    let mut client = AdminServiceClient::with_interceptor(channel, secret);
    let refused = |s: tonic::Status| Error::Cluster(s.message().to_string());
    let status = match action {
        ClusterAction::Status => client.status(StatusRequest {}).await.map_err(refused)?.into_inner(),
        ClusterAction::AddLearner { node_id, addr } => client
            .add_learner(AddLearnerRequest { node_id, addr })
            .await
            .map_err(refused)?
            .into_inner()
            .status
            .unwrap_or_default(),
        ClusterAction::Promote { node_id } => client
            .promote(MembershipRequest { node_id })
            .await
            .map_err(refused)?
            .into_inner()
            .status
            .unwrap_or_default(),
        ClusterAction::Remove { node_id } => client
            .remove(MembershipRequest { node_id })
            .await
            .map_err(refused)?
            .into_inner()
            .status
            .unwrap_or_default(),
    };
    Ok(render(&status))
}

fn opt(v: Option<u64>) -> String {
    v.map(|v| v.to_string()).unwrap_or_else(|| "-".into())
}

/// The status as a short report: this node's Raft state, then one line per member.
pub fn render(s: &StatusResponse) -> String {
    let mut out = format!(
        "node {} is {}; leader: {}; term {}\nlog: last {}  committed {}  applied {}  snapshot {}  purged {}\n\n",
        s.node_id,
        s.state,
        s.leader_id.map(|l| format!("node {l}")).unwrap_or_else(|| "none known".into()),
        s.term,
        opt(s.last_log_index),
        opt(s.committed_index),
        opt(s.applied_index),
        opt(s.snapshot_index),
        opt(s.purged_index),
    );
    out.push_str(&format!("{:>4}  {:<8} {:<24} {:>10} {:>8}\n", "id", "role", "address", "matched", "lag"));
    for m in &s.members {
        out.push_str(&format!(
            "{:>4}  {:<8} {:<24} {:>10} {:>8}\n",
            m.id,
            m.role,
            m.addr,
            opt(m.matched_index),
            opt(m.lag)
        ));
    }
    if s.state != "leader" {
        out.push_str("(matched and lag are known on the leader; ask it for them)\n");
    }
    out
}
