//! The SDK over TLS: a node behind a TLS-terminating proxy (as behind a load balancer), its
//! certificate issued by a private CA. With the CA the write lands; without it the client
//! refuses the server, with a reason.

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use collabstream_proto::v1;
use collabstream_sdk::{Client, ClientConfig, TlsOptions};
use collabstream_tests::Node;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::{self, ServerConfig};

/// A CA and a certificate for `localhost`/127.0.0.1 signed by it, made with openssl.
fn certificates(dir: &Path) -> (Vec<u8>, Vec<u8>, Vec<u8>) {
    let run = |args: &[&str]| {
        let out = Command::new("openssl").args(args).current_dir(dir).output().expect("openssl runs");
        assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    };
    run(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "2",
        "-subj",
        "/CN=collabstream-test-ca",
    ]);
    run(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "node.key",
        "-out",
        "node.csr",
        "-subj",
        "/CN=localhost",
    ]);
    std::fs::write(
        dir.join("node.ext"),
        "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
    )
    .expect("ext");
    run(&[
        "x509",
        "-req",
        "-in",
        "node.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "node.pem",
        "-days",
        "1",
        "-extfile",
        "node.ext",
    ]);
    let read = |f: &str| std::fs::read(dir.join(f)).expect("pem");
    (read("ca.pem"), read("node.pem"), read("node.key"))
}

/// Terminates TLS (HTTP/2 by ALPN) on a loopback port and relays to `target`.
async fn tls_proxy(cert: &[u8], key: &[u8], target: std::net::SocketAddr) -> std::net::SocketAddr {
    let certs: Vec<CertificateDer<'static>> =
        CertificateDer::pem_slice_iter(cert).collect::<Result<_, _>>().expect("certificate");
    let key = PrivateKeyDer::from_pem_slice(key).expect("key");
    let mut config = ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .expect("protocols")
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .expect("server config");
    config.alpn_protocols = vec![b"h2".to_vec()];
    let acceptor = TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((inbound, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(inbound).await else { return };
                let Ok(mut outbound) = TcpStream::connect(target).await else { return };
                let _ = tokio::io::copy_bidirectional(&mut tls, &mut outbound).await;
            });
        }
    });
    addr
}

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
    let proxy = tls_proxy(&cert, &key, node.grpc).await;
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
