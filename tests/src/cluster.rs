//! [`TestCluster`]: several real nodes on loopback forming one Raft cluster, each with its own
//! data directory and ports. Node-to-node traffic goes through one [`Proxy`] per direction, so
//! a test can cut a node off and heal it. Waits poll the nodes' Raft status (bounded), never
//! sleep for a guessed time.
//!
//! No port is guessed: every relay is bound before any node starts, and each node binds its
//! own listeners on port 0 before it serves (the relays learn where it listens from its
//! start-up line). A node is known to the others, and to itself in `--peers`, by relay
//! addresses, which stay the same when it restarts on new ports.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use collabstream_proto::v1::admin_service_client::AdminServiceClient;
use collabstream_proto::v1::{StatusRequest, StatusResponse};

use crate::node::Node;

/// The header the cluster secret travels in (`collabstream_raft::SECRET_HEADER`).
pub const SECRET_HEADER: &str = "x-collabstream-cluster-secret";
use crate::prom::wait_until;
use crate::proxy::Proxy;

#[derive(Debug)]
pub struct TestCluster {
    dir: PathBuf,
    /// Node `i`'s own entry in its `--peers`: a relay that is never cut.
    front: Vec<Proxy>,
    nodes: Vec<Option<Node>>,
    /// (from, to) → the relay `from` uses to reach `to`.
    proxies: BTreeMap<(usize, usize), Proxy>,
    extra: Vec<String>,
    /// The cluster secret, carried by the harness's own Admin calls.
    secret: Option<String>,
}

impl TestCluster {
    /// Starts `n` nodes (ids 1..=n) under `dir`, each with `extra` flags.
    pub async fn start(dir: &Path, n: usize, extra: &[&str]) -> anyhow::Result<TestCluster> {
        Self::start_with(dir, n, extra, None).await
    }

    /// [`TestCluster::start`] for nodes given `secret` in `extra` (which the harness's own
    /// status calls then carry).
    pub async fn start_with(
        dir: &Path,
        n: usize,
        extra: &[&str],
        secret: Option<String>,
    ) -> anyhow::Result<TestCluster> {
        let mut front = Vec::with_capacity(n);
        for _ in 0..n {
            front.push(Proxy::bind().await?);
        }
        let mut proxies = BTreeMap::new();
        for from in 0..n {
            for to in 0..n {
                if from != to {
                    proxies.insert((from, to), Proxy::bind().await?);
                }
            }
        }
        let mut cluster = TestCluster {
            dir: dir.to_path_buf(),
            front,
            nodes: (0..n).map(|_| None).collect(),
            proxies,
            extra: extra.iter().map(|s| s.to_string()).collect(),
            secret,
        };
        for i in 0..n {
            cluster.restart(i)?;
        }
        Ok(cluster)
    }

    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// How node `i` reaches every member: itself directly, the others through its relays.
    fn peers(&self, i: usize) -> String {
        (0..self.len())
            .map(|j| {
                let addr = if i == j { self.front[j].addr } else { self.proxies[&(i, j)].addr };
                format!("{}={addr}", j + 1)
            })
            .collect::<Vec<_>>()
            .join(",")
    }

    fn node_dir(&self, i: usize) -> PathBuf {
        self.dir.join(format!("node-{}", i + 1))
    }

    /// (Re)starts node `i` (0-based) with the same data directory, on new ports.
    pub fn restart(&mut self, i: usize) -> anyhow::Result<()> {
        let id = (i + 1).to_string();
        let peers = self.peers(i);
        let mut args: Vec<&str> = vec!["--node-id", &id, "--peers", &peers];
        args.extend(self.extra.iter().map(String::as_str));
        let node = Node::start(&self.node_dir(i), &args).with_context(|| format!("node {} starts", i + 1))?;
        self.front[i].set_target(node.grpc);
        for ((_, to), p) in &self.proxies {
            if *to == i {
                p.set_target(node.grpc);
            }
        }
        self.nodes[i] = Some(node);
        Ok(())
    }

    /// The address the other members know node `i` by (stable across restarts).
    pub fn member_addr(&self, i: usize) -> SocketAddr {
        self.front[i].addr
    }

    /// Node `i` (0-based); panics if it is stopped.
    pub fn node(&self, i: usize) -> &Node {
        self.nodes[i].as_ref().expect("the node is running")
    }

    pub fn is_running(&self, i: usize) -> bool {
        self.nodes[i].is_some()
    }

    /// SIGKILL.
    pub fn kill(&mut self, i: usize) {
        if let Some(mut n) = self.nodes[i].take() {
            n.kill9();
        }
    }

    /// Cuts node `i` off from every other node, both ways.
    pub fn isolate(&self, i: usize) {
        for ((from, to), p) in &self.proxies {
            if *from == i || *to == i {
                p.cut();
            }
        }
    }

    pub fn heal(&self, i: usize) {
        for ((from, to), p) in &self.proxies {
            if *from == i || *to == i {
                p.heal();
            }
        }
    }

    /// Node `i`'s Raft status.
    pub async fn status(&self, i: usize) -> anyhow::Result<StatusResponse> {
        let channel = tonic::transport::Endpoint::from_shared(self.node(i).grpc_url())?.connect().await?;
        let secret = self.secret.clone();
        let mut client = AdminServiceClient::with_interceptor(channel, move |mut req: tonic::Request<()>| {
            if let Some(s) = &secret {
                let value = s.parse().map_err(|_| tonic::Status::internal("the secret is not ASCII"))?;
                req.metadata_mut().insert(SECRET_HEADER, value);
            }
            Ok(req)
        });
        Ok(client.status(StatusRequest {}).await?.into_inner())
    }

    /// Waits until a leader is elected that every running node among `among` recognises;
    /// returns its index.
    pub async fn wait_leader(&self, among: &[usize], timeout: Duration) -> anyhow::Result<usize> {
        let found = wait_until(timeout, || async {
            let mut leader = None;
            for &i in among {
                let s = self.status(i).await.ok()?;
                let l = s.leader_id?;
                if leader.is_some_and(|x| x != l) {
                    return None;
                }
                leader = Some(l);
            }
            let l = (leader? - 1) as usize;
            // Members may still name a leader just killed.
            if !self.is_running(l) {
                return None;
            }
            let s = self.status(l).await.ok()?;
            (s.state == "leader").then_some(l)
        })
        .await;
        match found {
            Some(l) => Ok(l),
            None => bail!(
                "no leader agreed on by nodes {among:?} within {timeout:?}:\n{}",
                self.describe(among).await
            ),
        }
    }

    /// Each of `among`'s Raft status and last log lines of its own (openraft's, a peer's
    /// failed replication hundreds of times a second, would hide them), for a failing test to
    /// show.
    pub async fn describe(&self, among: &[usize]) -> String {
        let mut seen = Vec::new();
        for &i in among {
            let log = self.node(i).log();
            let own = log.lines().filter(|l| !l.contains(" openraft::"));
            let tail: Vec<&str> = own.rev().take(15).collect::<Vec<_>>().into_iter().rev().collect();
            seen.push(format!(
                "node {}: {:?}\nlast log lines:\n{}",
                i + 1,
                self.status(i).await,
                tail.join("\n")
            ));
        }
        seen.join("\n")
    }

    /// Waits until node `i` has applied at least `index`.
    pub async fn wait_applied(
        &self,
        i: usize,
        index: u64,
        timeout: Duration,
    ) -> anyhow::Result<StatusResponse> {
        match wait_until(timeout, || async {
            let s = self.status(i).await.ok()?;
            (s.applied_index.unwrap_or(0) >= index).then_some(s)
        })
        .await
        {
            Some(s) => Ok(s),
            None => bail!("node {} did not apply index {index} within {timeout:?}", i + 1),
        }
    }
}
