//! With a cluster secret, the Raft and Admin services refuse every call that lacks it: an
//! ingest client can no longer append entries or change the membership. Without one the
//! cluster forms on `--peers` alone and each node warns.

use std::time::Duration;

use collabstream_proto::v1::admin_service_client::AdminServiceClient;
use collabstream_proto::v1::raft_service_client::RaftServiceClient;
use collabstream_proto::v1::{self, MembershipRequest, RaftPayload, StatusRequest};
use collabstream_tests::{Node, TestCluster, binary};

const SECRET: &str = "a-cluster-secret-for-the-test-0123";

async fn write_once(node: &Node) {
    let mut client =
        v1::ingest_service_client::IngestServiceClient::connect(node.grpc_url()).await.expect("connect");
    let series = v1::TimeSeries {
        labels: vec![v1::Label { name: "__name__".into(), value: "secret_test".into() }],
        samples: vec![v1::Sample { timestamp_ms: 1_000, value: 1.0 }],
    };
    let req = v1::WriteRequest { batch_id: "s-1".into(), series: vec![series], events: vec![] };
    let resp = client.write(req).await.expect("ingest needs no cluster secret").into_inner();
    assert_eq!(resp.samples_accepted, 1);
}

fn cli_status(node: &Node, secret: Option<&str>) -> std::process::Output {
    let mut cmd = std::process::Command::new(binary());
    cmd.args(["cluster", "status", "--endpoint", &node.grpc.to_string()]);
    cmd.env_remove("COLLABSTREAM_CLUSTER_SECRET");
    if let Some(s) = secret {
        cmd.env("COLLABSTREAM_CLUSTER_SECRET", s);
    }
    cmd.output().expect("the binary runs")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raft_and_admin_calls_need_the_secret() {
    let dir = tempfile::tempdir().unwrap();
    let secret_file = dir.path().join("secret");
    std::fs::write(&secret_file, format!("{SECRET}\n")).unwrap();
    let config = dir.path().join("cluster.toml");
    std::fs::write(&config, format!("[cluster]\nsecret_file = {:?}\n", secret_file.display().to_string()))
        .unwrap();
    let config = config.display().to_string();
    let cluster =
        TestCluster::start_with(dir.path(), 3, &["--config", &config], Some(SECRET.into())).await.unwrap();
    // The nodes reach each other with the secret: a leader, and writes commit.
    let leader = cluster.wait_leader(&[0, 1, 2], Duration::from_secs(30)).await.unwrap();
    write_once(cluster.node(0)).await;
    assert!(!cluster.node(0).log().contains("no cluster secret"), "a node with a secret does not warn");

    // An ingest client without the secret (or with a wrong one) is refused everything else.
    let target = cluster.node(leader).grpc_url();
    let mut admin = AdminServiceClient::connect(target.clone()).await.unwrap();
    let denied = admin.status(StatusRequest {}).await.unwrap_err();
    assert_eq!(denied.code(), tonic::Code::PermissionDenied, "{denied:?}");
    assert!(denied.message().contains("COLLABSTREAM_CLUSTER_SECRET"), "{denied:?}");
    let removed = admin.remove(MembershipRequest { node_id: 2 }).await.unwrap_err();
    assert_eq!(removed.code(), tonic::Code::PermissionDenied);
    let mut raft = RaftServiceClient::connect(target.clone()).await.unwrap();
    let append = raft.append_entries(RaftPayload { data: vec![1, 2, 3].into(), commands: vec![] }).await;
    assert_eq!(append.unwrap_err().code(), tonic::Code::PermissionDenied, "refused before it is read");
    let channel = tonic::transport::Endpoint::from_shared(target).unwrap().connect().await.unwrap();
    let mut wrong = AdminServiceClient::with_interceptor(channel, |mut r: tonic::Request<()>| {
        r.metadata_mut()
            .insert(collabstream_tests::cluster::SECRET_HEADER, "not-the-secret-0123456789".parse().unwrap());
        Ok(r)
    });
    assert_eq!(wrong.status(StatusRequest {}).await.unwrap_err().code(), tonic::Code::PermissionDenied);

    // Nothing changed: three voters still.
    let status = cluster.status(leader).await.unwrap();
    assert_eq!(status.members.iter().filter(|m| m.role == "voter").count(), 3, "{status:?}");

    // `collabstream cluster` with the secret works, without it says what is missing.
    let ok = cli_status(cluster.node(1), Some(SECRET));
    assert!(ok.status.success(), "{}", String::from_utf8_lossy(&ok.stderr));
    assert!(String::from_utf8_lossy(&ok.stdout).contains("leader: node"));
    let refused = cli_status(cluster.node(1), None);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("cluster secret"), "{refused:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_secret_a_node_warns_and_serves() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(dir.path(), &[]).unwrap();
    write_once(&node).await;
    assert!(node.log().contains("no cluster secret"), "{}", node.log());
}
