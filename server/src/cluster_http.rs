//! `GET /api/v1/status/cluster`: the cluster as every member reports it (the web UI's cluster
//! page; `collabstream cluster status` shows one node's view over gRPC).

use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::routing::get;
use collabstream_proto::v1;
use collabstream_raft::{MemberView, Writer};
use serde_json::{Value, json};

/// How long one member may take to answer before it is shown as unreachable. A stopped
/// member refuses the connection at once; this bounds only a member that is up but slow
/// (1 s was missed by a live member on a loaded two-core machine).
const ASK_TIMEOUT: Duration = Duration::from_secs(3);

pub(crate) fn router(writer: Writer) -> Router {
    Router::new().route("/api/v1/status/cluster", get(status)).with_state(writer)
}

async fn status(State(writer): State<Writer>) -> Json<Value> {
    let (own, members) = collabstream_raft::cluster_view(&writer, ASK_TIMEOUT).await;
    Json(json!({"status": "success", "data": view_json(&own, &members)}))
}

fn view_json(own: &v1::StatusResponse, members: &[MemberView]) -> Value {
    let members: Vec<Value> = members
        .iter()
        .map(|m| {
            let mut o = json!({
                "id": m.member.id,
                "addr": m.member.addr,
                "role": m.member.role,
                "matched_index": m.member.matched_index,
                "lag": m.member.lag,
                "reachable": m.status.is_ok(),
            });
            match &m.status {
                Ok(s) => {
                    let own = status_json(s);
                    o.as_object_mut().expect("an object").extend(own.as_object().expect("an object").clone());
                }
                Err(e) => o["error"] = json!(e),
            }
            o
        })
        .collect();
    let mut data = status_json(own);
    data["members"] = json!(members);
    data
}

/// The fields of one node's status, as that node reports them.
fn status_json(s: &v1::StatusResponse) -> Value {
    json!({
        "node_id": s.node_id,
        "state": s.state,
        "leader_id": s.leader_id,
        "term": s.term,
        "last_log_index": s.last_log_index,
        "committed_index": s.committed_index,
        "applied_index": s.applied_index,
        "snapshot_index": s.snapshot_index,
        "purged_index": s.purged_index,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn members_carry_their_own_status_or_the_reason_they_have_none() {
        let own = v1::StatusResponse {
            node_id: 1,
            state: "leader".into(),
            leader_id: Some(1),
            term: 3,
            last_log_index: Some(10),
            committed_index: Some(10),
            applied_index: Some(10),
            ..Default::default()
        };
        let member = |id: u64| v1::Member {
            id,
            addr: format!("127.0.0.1:{id}"),
            role: "voter".into(),
            ..Default::default()
        };
        let views = [
            MemberView { member: member(1), status: Ok(own.clone()) },
            MemberView { member: member(2), status: Err("no answer within 1s".into()) },
        ];
        let v = view_json(&own, &views);
        assert_eq!(v["leader_id"], 1);
        assert_eq!(v["members"][0]["state"], "leader");
        assert_eq!(v["members"][0]["reachable"], true);
        assert_eq!(v["members"][1]["reachable"], false);
        assert_eq!(v["members"][1]["error"], "no answer within 1s");
        assert_eq!(v["members"][1]["id"], 2);
        assert!(v["members"][1].get("state").is_none());
    }
}
