//! [`cluster_view`]: every member's status as that member reports it, gathered by one node
//! (the web UI's cluster page and `GET /api/v1/status/cluster`). A member that cannot be asked
//! within the timeout is named with the reason, never left out.

use std::time::Duration;

use collabstream_proto::v1::admin_service_client::AdminServiceClient;
use collabstream_proto::v1::{self, Member};

use crate::admin::AdminGrpc;
use crate::network::channel;
use crate::node::Writer;

/// One member: the asking node's view of it (address, role, replication progress) and, when
/// it answered, its own status.
#[derive(Debug, Clone)]
pub struct MemberView {
    pub member: Member,
    pub status: Result<v1::StatusResponse, String>,
}

/// This node's status and every member's, asked in parallel, each bounded by `timeout`.
pub async fn cluster_view(writer: &Writer, timeout: Duration) -> (v1::StatusResponse, Vec<MemberView>) {
    let own = AdminGrpc::new(writer.clone()).status();
    let mut asks = tokio::task::JoinSet::new();
    for (i, member) in own.members.iter().enumerate() {
        if member.id == own.node_id {
            continue;
        }
        let (addr, secret) = (member.addr.clone(), writer.cluster_secret().clone());
        asks.spawn(async move {
            let ask = async {
                let mut client = AdminServiceClient::new(channel(&addr, &secret).map_err(|e| e.to_string())?);
                client
                    .status(v1::StatusRequest {})
                    .await
                    .map(|r| r.into_inner())
                    .map_err(|s| s.message().to_string())
            };
            let status = match tokio::time::timeout(timeout, ask).await {
                Ok(answer) => answer,
                Err(_) => Err(format!("no answer within {timeout:?}")),
            };
            (i, status)
        });
    }
    let mut views: Vec<MemberView> = own
        .members
        .iter()
        .map(|m| {
            let status = if m.id == own.node_id { Ok(own.clone()) } else { Err("not asked".to_string()) };
            MemberView { member: m.clone(), status }
        })
        .collect();
    while let Some(done) = asks.join_next().await {
        if let Ok((i, status)) = done {
            views[i].status = status;
        }
    }
    (own, views)
}
