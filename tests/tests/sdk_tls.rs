//! The SDK over TLS: a node behind a TLS-terminating proxy (as behind a load balancer), its
//! certificate issued by a private CA. With the CA the write lands; without it the client
//! refuses the server, with a reason.

use std::time::Duration;

use collabstream_proto::v1;
use collabstream_sdk::{Client, ClientConfig, TlsOptions};
use collabstream_tests::{Node, TlsRelay, certificates};

fn write() -> v1::WriteRequest {
    v1::WriteRequest {
        series: vec![v1::TimeSeries {
            labels: vec![v1::Label { name: "__name__".into(), value: "tls_writes_total".into() }],
            samples: vec![v1::Sample { timestamp_ms: 1_732_780_800_000, value: 1.0 }],
        }],
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sdk_writes_over_tls_and_refuses_an_untrusted_server() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (ca, cert, key) = certificates(dir.path());
    let node = Node::start(&dir.path().join("node"), &[]).expect("node starts");
    let relay = TlsRelay::bind(&cert, &key, Some(b"h2")).await;
    relay.relay_to(node.grpc);
    let proxy = relay.addr;
    let endpoint = format!("https://localhost:{}", proxy.port());

    let mut config = ClientConfig::new([endpoint.clone()]);
    config.tls = Some(TlsOptions { ca_pem: Some(ca), ..Default::default() });
    let client = Client::connect(config).expect("client");
    let resp = client.write(write()).await.expect("a write over TLS");
    assert_eq!(resp.samples_accepted, 1);
    assert_eq!(node.export("tls_writes_total").await.len(), 1);

    // Without the private CA only the public roots are trusted: the server is refused.
    let mut config = ClientConfig::new([endpoint]);
    config.max_attempts = 2;
    config.initial_backoff = Duration::from_millis(10);
    let untrusting = Client::connect(config).expect("client");
    let err = untrusting.write(write()).await.expect_err("an untrusted certificate is refused");
    let text = format!("{err} {err:?}");
    assert!(text.contains("certificate") || text.contains("Certificate"), "{text}");
}
