//! [`Writer`]: how a node turns writes into committed, applied log entries. Any node accepts
//! writes; a follower forwards them to the leader. On the leader, concurrent writes are
//! grouped into one Raft entry (group commit), so a fsync and a replication round trip are
//! shared by many clients. A write is acknowledged only once its entry is committed by a
//! majority and applied here.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use collabstream_common::Clock;
use collabstream_proto::v1;
use collabstream_proto::v1::raft_service_client::RaftServiceClient;
use collabstream_store::{ApplyOutcome, Store};
use openraft::BasicNode;
use openraft::error::{ClientWriteError, InitializeError, RaftError};
use parking_lot::Mutex;
use tokio::sync::{Semaphore, mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::core_runtime::CoreRuntime;
use crate::error::Error;
use crate::log_storage::LogStorage;
use crate::network::{Network, channel};
use crate::options::RaftOptions;
use crate::raft_stats::{RaftStats, run_leader_watch};
use crate::secret::{ClusterSecret, PeerChannel};
use crate::state_machine::StateMachine;
use crate::types::{NodeId, Raft, Request};
use crate::write_queue::WriteQueue;

/// A proposal's answer. The caller keeps a shared copy of the write, to send it on to the
/// leader if this node turns out not to be it.
type Answer = Result<ApplyOutcome, Error>;
type Reply = oneshot::Sender<Answer>;

/// A write waiting for the proposer: an encoded `v1::LogWrite`, which becomes part of a log
/// entry by concatenation (see [`command_bytes`]).
#[derive(Debug)]
struct Proposal {
    write: Bytes,
    reply: Reply,
}

struct Inner {
    id: NodeId,
    raft: Raft,
    store: Arc<Store>,
    clock: Arc<dyn Clock>,
    tx: mpsc::Sender<Proposal>,
    options: RaftOptions,
    forward_clients: Mutex<HashMap<(NodeId, String), RaftServiceClient<PeerChannel>>>,
    /// Bounds the bytes of writes queued or in flight here (`max_queued_bytes`).
    queue: WriteQueue,
    /// The term in which this node, leading, brought its configuration in force (0: none
    /// yet); see [`Writer::configuration_in_force`].
    config_term: tokio::sync::watch::Sender<u64>,
    /// What the replication layer measures of itself (shared with the state machine).
    stats: Arc<RaftStats>,
    /// Where `raft`'s tasks run; stops when the last writer is gone.
    _core: CoreRuntime,
}

/// Proposes writes; cheap to clone.
#[derive(Clone)]
pub struct Writer {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Writer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Writer").field("node_id", &self.inner.id).finish_non_exhaustive()
    }
}

/// Stops the node's Raft and background tasks; see [`WriterHandle::shutdown`].
#[derive(Debug)]
pub struct WriterHandle {
    writer: Writer,
    stop: CancellationToken,
    tasks: Vec<JoinHandle<()>>,
}

impl Writer {
    /// Starts Raft over `store`: recovers the log and state machine, joins or forms the cluster
    /// (`options.members`; forming is idempotent), and starts the proposer.
    pub async fn start(
        store: Arc<Store>,
        clock: Arc<dyn Clock>,
        options: RaftOptions,
    ) -> Result<(Writer, WriterHandle), Error> {
        if !options.members.contains_key(&options.node_id) {
            return Err(Error::Config(format!(
                "node {} is not among the members {:?}; --peers must include this node",
                options.node_id,
                options.members.keys().collect::<Vec<_>>()
            )));
        }
        let config = Arc::new(options.config()?);
        let last_log = store.log().last_index()?;
        let applied = store.applied_index();
        tracing::info!(applied, last_log, to_replay = last_log.saturating_sub(applied), "recovering");
        let log = LogStorage::new(store.log())?.purging_behind(store.clone());
        let log_handle = log.clone();
        let stats = Arc::new(RaftStats::default());
        let sm = StateMachine::new(store.clone(), options.snapshot_dir.clone())?
            .releasing_purges_of(log.clone())
            .counting_in(stats.clone());
        let network =
            Network { addresses: Arc::new(options.members.clone()), secret: options.cluster_secret.clone() };
        let core = CoreRuntime::start()
            .map_err(|e| Error::Raft(format!("cannot start the raft-core thread: {e}")))?;
        let node_id = options.node_id;
        let raft = core
            .run(async move { Raft::new(node_id, config, network, log, sm).await })
            .await
            .map_err(|e| Error::Raft(e.to_string()))?
            .map_err(|e| Error::Raft(e.to_string()))?;
        // The member with the lowest id forms the cluster; the others wait to hear from it. A
        // node started later with a longer --peers list (to be added as a learner) therefore
        // never forms a cluster of its own. Forming twice is refused, which is fine.
        let former = options.members.keys().next() == Some(&options.node_id);
        if former && !raft.is_initialized().await.map_err(|e| Error::Raft(e.to_string()))? {
            let members: BTreeMap<NodeId, BasicNode> =
                options.members.iter().map(|(id, addr)| (*id, BasicNode::new(addr))).collect();
            match raft.initialize(members).await {
                Ok(()) | Err(RaftError::APIError(InitializeError::NotAllowed(_))) => {}
                Err(e) => return Err(Error::Raft(e.to_string())),
            }
        }
        let (tx, rx) = mpsc::channel(4096);
        let inner = Arc::new(Inner {
            id: options.node_id,
            raft,
            store: store.clone(),
            clock,
            tx,
            options: options.clone(),
            forward_clients: Mutex::new(HashMap::new()),
            queue: WriteQueue::new(options.max_queued_bytes),
            config_term: tokio::sync::watch::Sender::new(0),
            stats: stats.clone(),
            _core: core,
        });
        let writer = Writer { inner };
        let stop = CancellationToken::new();
        let proposer = tokio::spawn(run_proposer(writer.clone(), rx, stop.clone()));
        let checkpointer = tokio::spawn(run_checkpoints(store, options.checkpoint_interval, stop.clone()));
        let releaser = tokio::spawn(crate::cache_release::run_cache_release(
            writer.inner.raft.clone(),
            log_handle.clone(),
            stop.clone(),
        ));
        let bounder = tokio::spawn(crate::log_bounds::run_log_bounds(
            writer.inner.raft.clone(),
            options.clone(),
            log_handle,
            stop.clone(),
        ));
        let configuration = tokio::spawn(crate::configuration::run_configuration_proposer(
            writer.clone(),
            options.aggregation_rules.clone(),
            stop.clone(),
        ));
        let ticks = tokio::spawn(crate::tick_proposer::run_tick_proposer(writer.clone(), stop.clone()));
        let leaders = tokio::spawn(run_leader_watch(writer.inner.raft.clone(), stats, stop.clone()));
        tracing::info!(node_id = options.node_id, members = ?options.members, "raft started");
        Ok((
            writer.clone(),
            WriterHandle {
                writer,
                stop,
                tasks: vec![proposer, checkpointer, releaser, bounder, configuration, ticks, leaders],
            },
        ))
    }

    pub fn raft(&self) -> &Raft {
        &self.inner.raft
    }

    /// What the replication layer measures of itself, for `/metrics`.
    pub fn stats(&self) -> &RaftStats {
        &self.inner.stats
    }

    pub fn node_id(&self) -> NodeId {
        self.inner.id
    }

    /// The leader's clock as this node reads it, for the entries it proposes (and the batch
    /// ids ingest gives writes that have none).
    pub fn now_ms(&self) -> i64 {
        self.inner.clock.now_ms()
    }

    pub fn store(&self) -> &Arc<Store> {
        &self.inner.store
    }

    pub fn cluster_secret(&self) -> &ClusterSecret {
        &self.inner.options.cluster_secret
    }

    /// Bytes of writes waiting for the proposer or in flight on this node.
    pub fn queued_bytes(&self) -> usize {
        self.inner.queue.queued_bytes()
    }

    /// The current leader and its address, if known.
    pub fn leader(&self) -> Option<(NodeId, String)> {
        let m = self.inner.raft.metrics().borrow().clone();
        let id = m.current_leader?;
        let addr = match self.inner.options.members.get(&id) {
            Some(a) => a.clone(),
            None => {
                m.membership_config.membership().get_node(&id).map(|n| n.addr.clone()).unwrap_or_default()
            }
        };
        Some((id, addr))
    }

    /// Waits (until `deadline`) for a leader to be known.
    async fn wait_leader(&self, deadline: Instant) -> Result<(NodeId, String), Error> {
        let mut rx = self.inner.raft.metrics();
        let started = Instant::now();
        loop {
            if let Some(l) = self.leader() {
                return Ok(l);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() || tokio::time::timeout(left, rx.changed()).await.is_err() {
                return Err(Error::NoLeader { waited_ms: started.elapsed().as_millis() as u64 });
            }
        }
    }

    /// Proposes a write and waits until it is committed and applied (here, when this node
    /// leads; on the leader, when it forwards), answering as the client is answered. The write
    /// is an encoded `v1::LogWrite` whose label sets are normalised and whose series ids, if
    /// any, come from this node's store; it carries a batch id if it carries events (ingest
    /// makes it so). Rejections are numbered as apply numbers the write's items.
    pub async fn propose(&self, write: Bytes) -> Result<v1::WriteResponse, Error> {
        let deadline = Instant::now() + self.inner.options.leader_wait;
        loop {
            let (leader, addr) = self.wait_leader(deadline).await?;
            // `Bytes` clones share the buffer: a refused attempt leaves the write for the retry.
            let attempt = if leader == self.inner.id {
                self.propose_here(write.clone()).await
            } else {
                self.forward(leader, &addr, write.clone()).await
            };
            match attempt {
                Err(Error::NotLeader | Error::Forward { .. }) if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                other => return other,
            }
        }
    }

    /// Waits until this node has applied everything committed before the call: on the leader,
    /// after confirming with a majority that it still leads; on a follower, up to the index
    /// the leader reports. Queries with `consistency=strong` wait for this.
    pub async fn read_barrier(&self) -> Result<u64, Error> {
        let deadline = Instant::now() + self.inner.options.leader_wait;
        let (leader, addr) = self.wait_leader(deadline).await?;
        let index = if leader == self.inner.id {
            let read = self.inner.raft.ensure_linearizable().await.map_err(|e| Error::Raft(e.to_string()))?;
            return Ok(read.map(|l| l.index).unwrap_or(0));
        } else {
            let err = |reason: String| Error::Forward { leader, reason };
            let secret = &self.inner.options.cluster_secret;
            let mut client = RaftServiceClient::new(channel(&addr, secret).map_err(|e| err(e.to_string()))?);
            client
                .read_index(v1::ReadIndexRequest {})
                .await
                .map_err(|s| err(s.message().to_string()))?
                .into_inner()
                .index
        };
        let left = deadline.saturating_duration_since(Instant::now());
        self.inner
            .raft
            .wait(Some(left))
            .applied_index_at_least(Some(index), "read barrier")
            .await
            .map_err(|_| Error::NoLeader { waited_ms: self.inner.options.leader_wait.as_millis() as u64 })?;
        Ok(index)
    }

    /// Whether this node is the leader (as far as it knows).
    pub fn is_leader(&self) -> bool {
        self.inner.raft.metrics().borrow().current_leader == Some(self.inner.id)
    }

    /// Whether this node leads and has brought its configuration (store settings, then
    /// configured aggregation rules) in force in its term: a source of events it reads itself
    /// (Kafka) waits for this before it starts, as every write proposed here does.
    pub fn configuration_in_force(&self) -> bool {
        let m = self.inner.raft.metrics();
        let m = m.borrow();
        m.current_leader == Some(self.inner.id) && *self.inner.config_term.borrow() == m.current_term
    }

    /// Records that the configuration is in force in `term` (the configuration proposer).
    pub(crate) fn set_configuration_in_force(&self, term: u64) {
        self.inner.config_term.send_replace(term);
    }

    /// While this node leads, waits (up to `leader_wait`) until its configuration is in force
    /// in its term, so that the writes it is sent are applied under it. A node that does not
    /// lead goes on: the proposal is answered "not leader" and sent on.
    async fn wait_for_configuration(&self) -> Result<(), Error> {
        let mut metrics = self.inner.raft.metrics();
        let mut config_term = self.inner.config_term.subscribe();
        let wait = self.inner.options.leader_wait;
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            {
                let m = metrics.borrow_and_update();
                if m.current_leader != Some(self.inner.id)
                    || *config_term.borrow_and_update() == m.current_term
                {
                    return Ok(());
                }
            }
            tokio::select! {
                _ = metrics.changed() => {}
                _ = config_term.changed() => {}
                _ = tokio::time::sleep_until(deadline) => {
                    return Err(Error::NotConfigured { waited_ms: wait.as_millis() as u64 });
                }
            }
        }
    }

    /// Proposes a write of this node's own making, only while it leads, and answers with the
    /// whole outcome (a refusal of its Kafka spans included): the Kafka consumer, which must
    /// stop rather than hand its batches to another leader.
    pub async fn propose_as_leader(&self, write: Bytes) -> Answer {
        if !self.is_leader() {
            return Err(Error::NotLeader);
        }
        self.propose_local(write).await
    }

    /// Proposes on this node, which must be the leader (a write of its own, or one forwarded
    /// by a follower).
    pub(crate) async fn propose_here(&self, write: Bytes) -> Result<v1::WriteResponse, Error> {
        self.propose_local(write).await.map(|o| v1::WriteResponse::from(&o))
    }

    /// Commits a command of this node's own making (store settings, a rule or table change,
    /// a tick, a manifest change) and answers with what apply returned.
    pub async fn commit(&self, cmd: &v1::Command) -> Result<Vec<ApplyOutcome>, Error> {
        self.commit_request(Request::new(cmd)).await
    }

    /// Proposes `request` and waits for its outcomes, up to `leader_wait`. Without the bound a
    /// proposing task could wait for ever: a leader cut off from its majority never commits,
    /// and openraft 0.9 never answers a proposal whose entry a snapshot install passed over (a
    /// node that led at start from its stored vote, proposed, stepped down, then caught up
    /// from a snapshot beyond its log's end; its configuration proposer waited so, and every
    /// write with it; fixed upstream after 0.9.25 by openraft PR #1762). Unanswered is not
    /// undone: the entry may still commit, as one may after a leader change (writes carry
    /// batch ids; a settings or rule change applied twice changes nothing the second time).
    async fn commit_request(&self, request: Request) -> Result<Vec<ApplyOutcome>, Error> {
        let wait = self.inner.options.leader_wait;
        match tokio::time::timeout(wait, self.inner.raft.client_write(request)).await {
            Err(_) => Err(Error::NotCommitted { waited_ms: wait.as_millis() as u64 }),
            Ok(Ok(resp)) => Ok(resp.data.outcomes),
            Ok(Err(RaftError::APIError(ClientWriteError::ForwardToLeader(_)))) => Err(Error::NotLeader),
            Ok(Err(RaftError::Fatal(openraft::error::Fatal::Stopped))) => Err(Error::ShuttingDown),
            Ok(Err(e)) => Err(Error::Raft(e.to_string())),
        }
    }

    async fn propose_local(&self, write: Bytes) -> Answer {
        // Held until the write is answered (while it waits for the configuration too, which
        // bounds what waits).
        let _room = self.inner.queue.admit(write.len(), self.inner.options.leader_wait).await?;
        self.wait_for_configuration().await?;
        let (reply, rx) = oneshot::channel();
        self.inner.tx.send(Proposal { write, reply }).await.map_err(|_| Error::ShuttingDown)?;
        rx.await.map_err(|_| Error::ShuttingDown)?
    }

    async fn forward(&self, leader: NodeId, addr: &str, write: Bytes) -> Result<v1::WriteResponse, Error> {
        let err = |reason: String| Error::Forward { leader, reason };
        let mut client = {
            let mut clients = self.inner.forward_clients.lock();
            match clients.get(&(leader, addr.to_string())) {
                Some(c) => c.clone(),
                None => {
                    let secret = &self.inner.options.cluster_secret;
                    let c = RaftServiceClient::new(channel(addr, secret).map_err(|e| err(e.to_string()))?)
                        .max_decoding_message_size(256 << 20)
                        .max_encoding_message_size(256 << 20);
                    clients.insert((leader, addr.to_string()), c.clone());
                    c
                }
            }
        };
        match client.forward(v1::ForwardRequest { write }).await {
            Ok(r) => Ok(r.into_inner()),
            Err(status) if status.code() == tonic::Code::Unavailable => {
                Err(err(status.message().to_string()))
            }
            Err(status) => Err(Error::Raft(format!("the leader refused the write: {}", status.message()))),
        }
    }
}

/// Groups waiting proposals into entries and proposes them, several entries in flight.
async fn run_proposer(writer: Writer, mut rx: mpsc::Receiver<Proposal>, stop: CancellationToken) {
    // Two entries in flight: one being appended and applied while the next one gathers the
    // writes that arrive meanwhile. More would send small groups, each with its own fsync.
    let inflight = Arc::new(Semaphore::new(2));
    let (max_group, max_bytes) =
        (writer.inner.options.max_group.max(1), writer.inner.options.max_group_bytes);
    loop {
        // A free slot first, then the group: everything that queued while both entries were
        // in flight goes into the next one, instead of whatever had arrived when the previous
        // group was cut.
        let permit = tokio::select! {
            p = inflight.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => break },
            _ = stop.cancelled() => break,
        };
        let first = tokio::select! {
            p = rx.recv() => match p { Some(p) => p, None => break },
            _ = stop.cancelled() => break,
        };
        let mut bytes = first.write.len();
        let mut group = vec![first];
        while group.len() < max_group && bytes < max_bytes {
            match rx.try_recv() {
                Ok(p) => {
                    bytes += p.write.len();
                    group.push(p);
                }
                Err(_) => break,
            }
        }
        let writer = writer.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let (writes, replies): (Vec<_>, Vec<_>) = group.into_iter().map(|p| (p.write, p.reply)).unzip();
            let request = Request { command: command_bytes(writer.inner.clock.now_ms(), &writes) };
            // Answered within leader_wait even if never committed (the entry may still commit
            // later, or be dropped by the next leader): clients retry with the same batch id.
            let proposed = Instant::now();
            match writer.commit_request(request).await {
                Ok(outcomes) => {
                    writer.inner.stats.commit.observe(proposed.elapsed().as_secs_f64());
                    let mut outcomes = outcomes.into_iter();
                    for reply in replies {
                        let _ = reply
                            .send(outcomes.next().ok_or_else(|| Error::Raft("an outcome is missing".into())));
                    }
                }
                // NotLeader among them: the caller still holds each write and sends it to the
                // leader.
                Err(e) => {
                    for reply in replies {
                        let _ = reply.send(Err(e.for_another_caller()));
                    }
                }
            }
        });
    }
    // Refuse what is still queued.
    rx.close();
    while let Ok(p) = rx.try_recv() {
        let _ = p.reply.send(Err(Error::ShuttingDown));
    }
}

async fn run_checkpoints(store: Arc<Store>, every: Duration, stop: CancellationToken) {
    let mut tick = tokio::time::interval(every.max(Duration::from_millis(100)));
    tick.tick().await;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.cancelled() => break,
        }
        let store = store.clone();
        match tokio::task::spawn_blocking(move || store.checkpoint()).await {
            Ok(Ok(index)) => tracing::debug!(index, "checkpoint"),
            Ok(Err(e)) => tracing::error!(error = %e, "checkpoint failed; will retry"),
            Err(e) => tracing::error!(error = %e, "checkpoint task failed"),
        }
    }
}

impl WriterHandle {
    /// Stops taking proposals, waits for those in flight, shuts Raft down and checkpoints the
    /// store, so the next start replays nothing.
    pub async fn shutdown(mut self) {
        self.stop.cancel();
        for t in self.tasks.drain(..) {
            let _ = t.await;
        }
        // Let entries proposed just before finish (bounded).
        let _ = tokio::time::timeout(Duration::from_secs(5), async {
            let raft = self.writer.raft();
            let last = raft.metrics().borrow().last_log_index;
            let _ = raft.wait(Some(Duration::from_secs(5))).applied_index_at_least(last, "drain").await;
        })
        .await;
        if let Err(e) = self.writer.inner.raft.shutdown().await {
            tracing::error!(error = %e, "raft shutdown");
        }
        let store = self.writer.inner.store.clone();
        match tokio::task::spawn_blocking(move || store.checkpoint()).await {
            Ok(Ok(index)) => tracing::info!(index, "final checkpoint"),
            Ok(Err(e)) => {
                tracing::error!(error = %e, "final checkpoint failed; the log will be replayed at start")
            }
            Err(e) => tracing::error!(error = %e, "final checkpoint task failed"),
        }
    }
}

/// A log entry's command (`v1::Command` with a `batch` payload) built from encoded writes by
/// concatenation: a message's encoding is its fields' encodings one after another, and a
/// repeated message field is each element as a length-delimited field.
pub(crate) fn command_bytes(leader_time_ms: i64, writes: &[Bytes]) -> Bytes {
    use prost::encoding::{WireType, encode_key, encode_varint, encoded_len_varint};
    let batch_len: usize = writes.iter().map(|w| 1 + encoded_len_varint(w.len() as u64) + w.len()).sum();
    let mut out = Vec::with_capacity(batch_len + 24);
    encode_key(1, WireType::Varint, &mut out);
    encode_varint(leader_time_ms as u64, &mut out);
    encode_key(3, WireType::LengthDelimited, &mut out);
    encode_varint(batch_len as u64, &mut out);
    for w in writes {
        encode_key(1, WireType::LengthDelimited, &mut out);
        encode_varint(w.len() as u64, &mut out);
        out.extend_from_slice(w);
    }
    out.into()
}

#[cfg(test)]
mod tests {
    use collabstream_proto::v1::command::Payload;
    use prost::Message;

    use super::*;

    #[test]
    fn a_command_built_by_concatenation_is_the_command_prost_decodes() {
        let writes = [
            v1::WriteRequest { batch_id: "a".into(), ..Default::default() },
            v1::WriteRequest {
                series: vec![v1::TimeSeries {
                    labels: vec![v1::Label { name: "__name__".into(), value: "x".repeat(300) }],
                    samples: vec![v1::Sample { timestamp_ms: -3, value: 2.5 }],
                }],
                ..Default::default()
            },
        ];
        let encoded: Vec<Bytes> = writes.iter().map(|w| w.encode_to_vec().into()).collect();
        for time in [0, -1, 1_732_780_800_000] {
            let cmd = v1::Command::decode(command_bytes(time, &encoded)).unwrap();
            let expected = v1::Command {
                leader_time_ms: time,
                payload: Some(Payload::Batch(v1::WriteBatch {
                    writes: writes.iter().cloned().map(Into::into).collect(),
                })),
            };
            assert_eq!(cmd, expected);
        }
    }
}
