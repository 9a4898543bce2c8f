//! TLS for tests: [`certificates`] (a private CA and a server certificate it signed, made with
//! openssl) and [`TlsRelay`] (terminates TLS on a loopback port and relays to a plain one, as a
//! load balancer in front of a node or a broker would).

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::sync::{Arc, OnceLock};

use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::{self, ServerConfig};

/// A CA, and a certificate for `localhost`/127.0.0.1 signed by it, written into `dir` as
/// `ca.pem`, `node.pem` and `node.key`; their PEM bytes in that order.
pub fn certificates(dir: &Path) -> (Vec<u8>, Vec<u8>, Vec<u8>) {
    let run = |args: &[&str]| {
        let out = Command::new("openssl").args(args).current_dir(dir).output().expect("openssl runs");
        assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    };
    let subject = "/CN=collabstream-test-ca";
    run(&["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem"]
        .into_iter()
        .chain(["-days", "2", "-subj", subject])
        .collect::<Vec<_>>());
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
    run(&["x509", "-req", "-in", "node.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial"]
        .into_iter()
        .chain(["-out", "node.pem", "-days", "1", "-extfile", "node.ext"])
        .collect::<Vec<_>>());
    let read = |f: &str| std::fs::read(dir.join(f)).expect("pem");
    (read("ca.pem"), read("node.pem"), read("node.key"))
}

/// Terminates TLS on a loopback port and relays each connection to a target set once known
/// (a broker must be told the relay's address before it starts). Stops when dropped.
#[derive(Debug)]
pub struct TlsRelay {
    pub addr: SocketAddr,
    target: Arc<OnceLock<SocketAddr>>,
    task: JoinHandle<()>,
}

impl TlsRelay {
    /// Binds with `cert` and `key` (PEM), offering `alpn` if given; connections wait for
    /// [`relay_to`](Self::relay_to).
    pub async fn bind(cert: &[u8], key: &[u8], alpn: Option<&[u8]>) -> TlsRelay {
        let certs: Vec<CertificateDer<'static>> =
            CertificateDer::pem_slice_iter(cert).collect::<Result<_, _>>().expect("certificate");
        let key = PrivateKeyDer::from_pem_slice(key).expect("key");
        let mut config =
            ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                .with_safe_default_protocol_versions()
                .expect("protocols")
                .with_no_client_auth()
                .with_single_cert(certs, key)
                .expect("server config");
        config.alpn_protocols = alpn.into_iter().map(<[u8]>::to_vec).collect();
        let acceptor = TlsAcceptor::from(Arc::new(config));
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let target = Arc::new(OnceLock::new());
        let to = target.clone();
        let task = tokio::spawn(async move {
            while let Ok((inbound, _)) = listener.accept().await {
                let (acceptor, to) = (acceptor.clone(), to.clone());
                tokio::spawn(async move {
                    let Some(target) = to.get().copied() else { return };
                    let Ok(mut tls) = acceptor.accept(inbound).await else { return };
                    let Ok(mut outbound) = TcpStream::connect(target).await else { return };
                    let _ = tokio::io::copy_bidirectional(&mut tls, &mut outbound).await;
                });
            }
        });
        TlsRelay { addr, target, task }
    }

    pub fn relay_to(&self, target: SocketAddr) {
        let _ = self.target.set(target);
    }
}

impl Drop for TlsRelay {
    fn drop(&mut self) {
        self.task.abort();
    }
}
