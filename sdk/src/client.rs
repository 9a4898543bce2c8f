//! [`Client`]: writes with batch ids, retries with backoff, any node.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use collabstream_proto::v1::{self, ingest_service_client::IngestServiceClient};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

use crate::error::{Error, retryable};

/// Where to connect and how hard to try.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// gRPC addresses of the nodes, e.g. `http://10.0.0.1:9202`; any node accepts writes.
    pub endpoints: Vec<String>,
    /// Attempts per request, the first included.
    pub max_attempts: u32,
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
    /// Deadline of one attempt.
    pub timeout: Duration,
    pub connect_timeout: Duration,
    /// TLS for every endpoint. `https://` endpoints use TLS even when this is `None`,
    /// trusting the bundled public roots.
    pub tls: Option<TlsOptions>,
}

/// How to check the nodes' (or their load balancer's) certificates, and who the client is.
#[derive(Debug, Clone, Default)]
pub struct TlsOptions {
    /// PEM certificates of a private CA to trust, beside the public roots.
    pub ca_pem: Option<Vec<u8>>,
    /// The name to expect in the server certificate, when it is not the endpoint's host.
    pub domain: Option<String>,
    /// A PEM certificate and key for mutual TLS.
    pub identity: Option<(Vec<u8>, Vec<u8>)>,
}

impl TlsOptions {
    fn client_config(&self) -> ClientTlsConfig {
        let mut c = ClientTlsConfig::new().with_webpki_roots();
        if let Some(ca) = &self.ca_pem {
            c = c.ca_certificate(Certificate::from_pem(ca));
        }
        if let Some(domain) = &self.domain {
            c = c.domain_name(domain.clone());
        }
        if let Some((cert, key)) = &self.identity {
            c = c.identity(Identity::from_pem(cert, key));
        }
        c
    }
}

impl ClientConfig {
    pub fn new<S: Into<String>>(endpoints: impl IntoIterator<Item = S>) -> Self {
        Self {
            endpoints: endpoints.into_iter().map(Into::into).collect(),
            max_attempts: 8,
            initial_backoff: Duration::from_millis(50),
            max_backoff: Duration::from_secs(5),
            timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(5),
            tls: None,
        }
    }
}

/// A connection to a cluster; cheap to clone and safe to share between tasks.
#[derive(Debug, Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    nodes: Vec<IngestServiceClient<Channel>>,
    config: ClientConfig,
    /// The node to try first; moves on after a retryable failure.
    current: AtomicUsize,
    /// Batch ids are `<client id>-<sequence>`: unique per client, stable across retries.
    client_id: String,
    sequence: AtomicU64,
}

impl Client {
    /// Prepares connections to every endpoint; they connect on first use.
    pub fn connect(config: ClientConfig) -> Result<Client, Error> {
        if config.endpoints.is_empty() {
            return Err(Error::Endpoint { endpoint: String::new(), reason: "no endpoints given".into() });
        }
        let mut nodes = Vec::with_capacity(config.endpoints.len());
        for e in &config.endpoints {
            let bad = |err: &dyn std::fmt::Display| Error::Endpoint {
                endpoint: e.clone(),
                reason: err.to_string(),
            };
            let mut endpoint = Endpoint::from_shared(e.clone())
                .map_err(|err| bad(&err))?
                .connect_timeout(config.connect_timeout)
                .timeout(config.timeout);
            let tls = match &config.tls {
                Some(t) => Some(t.clone()),
                None if e.starts_with("https://") => Some(TlsOptions::default()),
                None => None,
            };
            if let Some(t) = tls {
                endpoint = endpoint.tls_config(t.client_config()).map_err(|err| bad(&err))?;
            }
            nodes.push(IngestServiceClient::new(endpoint.connect_lazy()));
        }
        let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
        let client_id = format!("sdk-{}-{nanos:x}", std::process::id());
        Ok(Client {
            inner: Arc::new(Inner {
                nodes,
                config,
                current: AtomicUsize::new(0),
                client_id,
                sequence: AtomicU64::new(0),
            }),
        })
    }

    /// A fresh batch id from this client.
    pub fn next_batch_id(&self) -> String {
        format!("{}-{}", self.inner.client_id, self.inner.sequence.fetch_add(1, Ordering::Relaxed))
    }

    /// Writes one request, assigning a batch id if it has none, and retries retryable failures
    /// with exponential backoff on the next node each time. A request whose answer was lost
    /// and that is retried is applied once (the answer then counts it in `duplicate_batches`).
    pub async fn write(&self, mut request: v1::WriteRequest) -> Result<v1::WriteResponse, Error> {
        if request.batch_id.is_empty() {
            request.batch_id = self.next_batch_id();
        }
        let cfg = &self.inner.config;
        let mut backoff = cfg.initial_backoff;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let current = self.inner.current.load(Ordering::Relaxed);
            let i = current % self.inner.nodes.len();
            let mut node = self.inner.nodes[i].clone();
            match node.write(request.clone()).await {
                Ok(resp) => return Ok(resp.into_inner()),
                Err(status) if retryable(status.code()) && attempt < cfg.max_attempts => {
                    tracing::debug!(node = %cfg.endpoints[i], code = ?status.code(), attempt, "retrying write");
                    // Move on to the next node; a follower forwards, a dead node is skipped.
                    // (Compare the counter itself, not its remainder: once the counter wrapped
                    // past the last node they differ and the client would never move on.)
                    let _ = self.inner.current.compare_exchange(
                        current,
                        current.wrapping_add(1),
                        Ordering::Relaxed,
                        Ordering::Relaxed,
                    );
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(cfg.max_backoff);
                }
                Err(status) if retryable(status.code()) => {
                    return Err(Error::Exhausted { attempts: attempt, last: status });
                }
                Err(status) => return Err(Error::from_status(status)),
            }
        }
    }
}
