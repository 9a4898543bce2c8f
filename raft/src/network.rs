//! Raft between nodes over gRPC: [`Network`] is openraft's client side (one lazily connected
//! channel per peer), [`RaftGrpc`] the `RaftService` server that hands requests to openraft and
//! takes writes forwarded by followers.

use std::time::Duration;

use collabstream_proto::v1::raft_service_client::RaftServiceClient;
use collabstream_proto::v1::raft_service_server::{RaftService, RaftServiceServer};
use collabstream_proto::v1::{self, RaftPayload};
use openraft::error::{
    InstallSnapshotError, NetworkError, PayloadTooLarge, RPCError, RaftError, RemoteError, Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::{AnyError, BasicNode};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Endpoint;
use tonic::{Request, Status};

use crate::codec::{decode, encode};
use crate::node::Writer;
use crate::secret::{ClusterSecret, PeerChannel, RequireSecret};
use crate::types::{Entry, NodeId, TypeConfig};

/// A channel to `addr` (`host:port`) that connects on first use and reconnects after failures.
pub(crate) fn channel(addr: &str, secret: &ClusterSecret) -> Result<PeerChannel, tonic::transport::Error> {
    let channel = Endpoint::from_shared(format!("http://{addr}"))?
        .connect_timeout(Duration::from_secs(2))
        .tcp_nodelay(true)
        // A few MiB per AppendEntries: with HTTP/2's default windows the sender stalls every
        // 64 KiB–1 MiB until the receiver's task runs to open the window again.
        .initial_stream_window_size(HTTP2_WINDOW)
        .initial_connection_window_size(HTTP2_WINDOW)
        .http2_keep_alive_interval(Duration::from_secs(10))
        .connect_lazy();
    Ok(InterceptedService::new(channel, secret.clone()))
}

/// HTTP/2 flow-control window of node-to-node connections, both ways (the server side is set
/// where the node builds its gRPC server).
pub const HTTP2_WINDOW: u32 = 16 << 20;

/// Entries sent in one AppendEntries request, at most (a single larger entry goes alone).
const MAX_APPEND_BYTES: usize = 4 << 20;
/// The deadline of an AppendEntries request that carries entries.
const APPEND_DEADLINE: Duration = Duration::from_secs(2);

/// openraft's network factory. A member listed in this node's `--peers` is reached at the
/// address listed there; other members (learners added later) at the address in the
/// membership. So each node may see its peers at addresses of its own (a proxy, a NAT), and a
/// restart with a corrected `--peers` takes effect without a membership change.
#[derive(Debug, Clone, Default)]
pub struct Network {
    pub(crate) addresses: std::sync::Arc<std::collections::BTreeMap<NodeId, String>>,
    pub(crate) secret: ClusterSecret,
}

/// The connection to one peer.
#[derive(Debug)]
pub struct Peer {
    target: NodeId,
    client: Option<RaftServiceClient<PeerChannel>>,
    addr: String,
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = Peer;

    async fn new_client(&mut self, target: NodeId, node: &BasicNode) -> Self::Network {
        let addr = self.addresses.get(&target).cloned().unwrap_or_else(|| node.addr.clone());
        let client = channel(&addr, &self.secret).ok().map(|c| {
            RaftServiceClient::new(c)
                .max_decoding_message_size(256 << 20)
                .max_encoding_message_size(256 << 20)
        });
        Peer { target, client, addr }
    }
}

type RpcErr<E> = RPCError<NodeId, BasicNode, RaftError<NodeId, E>>;

fn unreachable<E: std::error::Error>(msg: impl std::fmt::Display) -> RpcErr<E> {
    RPCError::Unreachable(Unreachable::from(AnyError::error(msg.to_string())))
}

impl Peer {
    /// One call: encode, send with the RPC's deadline, decode the remote `Result`. `commands`
    /// travel beside the encoded request (see [`take_commands`]).
    async fn call<Req, Resp, E>(
        &mut self,
        req: &Req,
        commands: Vec<bytes::Bytes>,
        deadline: Duration,
        method: &'static str,
    ) -> Result<Resp, RpcErr<E>>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
    {
        let Some(client) = self.client.as_mut() else {
            return Err(unreachable(format!("bad peer address {:?}", self.addr)));
        };
        let data =
            encode(req).map_err(|e| RPCError::Network(NetworkError::from(AnyError::error(e.to_string()))))?;
        let mut request = Request::new(RaftPayload { data: data.into(), commands });
        request.set_timeout(deadline);
        let answer = match method {
            "append_entries" => client.append_entries(request).await,
            "vote" => client.vote(request).await,
            _ => client.install_snapshot(request).await,
        };
        let payload = match answer {
            Ok(r) => r.into_inner(),
            Err(status) if status.code() == tonic::Code::Unavailable => {
                return Err(unreachable(format!(
                    "node {} at {}: {}",
                    self.target,
                    self.addr,
                    status.message()
                )));
            }
            Err(status) => {
                return Err(RPCError::Network(NetworkError::from(AnyError::error(format!(
                    "node {} at {}: {status}",
                    self.target, self.addr
                )))));
            }
        };
        let result: Result<Resp, RaftError<NodeId, E>> = decode(&payload.data)
            .map_err(|e| RPCError::Network(NetworkError::from(AnyError::error(e.to_string()))))?;
        result.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
    }
}

impl RaftNetwork<TypeConfig> for Peer {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RpcErr<openraft::error::Infallible>> {
        // Keep one request to a few MiB: a leader catching a follower up would otherwise send
        // hundreds of MiB at once, which the follower cannot append within any deadline.
        let (fits, bytes) = entries_that_fit(rpc.entries.iter().map(entry_bytes));
        if fits < rpc.entries.len() {
            return Err(RPCError::PayloadTooLarge(PayloadTooLarge::new_entries_hint(fits as u64)));
        }
        // openraft's deadline is the heartbeat interval; appending a batch of entries on a busy
        // follower (fsync included) can take longer, and timing it out would only resend it.
        let deadline = if rpc.entries.is_empty() {
            option.hard_ttl()
        } else {
            option.hard_ttl().max(append_deadline(bytes))
        };
        let mut rpc = rpc;
        let commands = take_commands(&mut rpc.entries);
        self.call(&rpc, commands, deadline, "append_entries").await
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<InstallSnapshotResponse<NodeId>, RpcErr<InstallSnapshotError>> {
        self.call(&rpc, Vec::new(), option.hard_ttl(), "install_snapshot").await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RpcErr<openraft::error::Infallible>> {
        self.call(&rpc, Vec::new(), option.hard_ttl(), "vote").await
    }
}

/// The bytes an entry adds to an AppendEntries request.
fn entry_bytes(e: &Entry) -> usize {
    match &e.payload {
        openraft::EntryPayload::Normal(r) => r.command.len(),
        _ => 64,
    }
}

/// How many of the leading entries (of these sizes) one request carries, and their bytes: as
/// many as fit in [`MAX_APPEND_BYTES`], and always the first, however large (an entry can
/// only travel whole; refusing it alone would never replicate it, nor anything after it).
fn entries_that_fit(sizes: impl IntoIterator<Item = usize>) -> (usize, usize) {
    let (mut n, mut bytes) = (0, 0);
    for size in sizes {
        if n > 0 && bytes + size > MAX_APPEND_BYTES {
            break;
        }
        n += 1;
        bytes += size;
    }
    (n, bytes)
}

/// The deadline of a request carrying `bytes` of entries: [`APPEND_DEADLINE`] for each
/// [`MAX_APPEND_BYTES`] begun, so that a single large entry is not timed out (and resent) at
/// the pace of a small request.
fn append_deadline(bytes: usize) -> Duration {
    APPEND_DEADLINE * bytes.div_ceil(MAX_APPEND_BYTES).max(1) as u32
}

/// Moves the commands out of `entries`' normal entries (left empty), in order: they are sent
/// as protobuf bytes fields, which the receiver slices out of its buffer, rather than inside the
/// bincode, which it would copy.
fn take_commands(entries: &mut [Entry]) -> Vec<bytes::Bytes> {
    entries
        .iter_mut()
        .filter_map(|e| match &mut e.payload {
            openraft::EntryPayload::Normal(r) => Some(std::mem::take(&mut r.command)),
            _ => None,
        })
        .collect()
}

/// Puts received commands back into the normal entries they were taken from.
fn put_commands(entries: &mut [Entry], commands: Vec<bytes::Bytes>) -> Result<(), String> {
    let mut commands = commands.into_iter();
    for e in entries.iter_mut() {
        if let openraft::EntryPayload::Normal(r) = &mut e.payload {
            r.command = commands.next().ok_or("fewer commands than normal entries")?;
        }
    }
    match commands.next() {
        Some(_) => Err("more commands than normal entries".into()),
        None => Ok(()),
    }
}

/// The `RaftService` server.
#[derive(Debug, Clone)]
pub struct RaftGrpc {
    writer: Writer,
}

impl RaftGrpc {
    pub fn new(writer: Writer) -> Self {
        Self { writer }
    }

    /// The service, refusing calls without the cluster secret when the node has one.
    pub fn into_service(self) -> InterceptedService<RaftServiceServer<Self>, RequireSecret> {
        let secret = RequireSecret(self.writer.cluster_secret().clone());
        let server = RaftServiceServer::new(self)
            .max_decoding_message_size(256 << 20)
            .max_encoding_message_size(256 << 20);
        InterceptedService::new(server, secret)
    }
}

fn bad_request(e: impl std::fmt::Display) -> Status {
    Status::invalid_argument(format!("undecodable Raft message: {e}"))
}

fn reply<T: Serialize>(value: &T) -> Result<tonic::Response<RaftPayload>, Status> {
    let data = encode(value).map_err(|e| Status::internal(e.to_string()))?;
    Ok(tonic::Response::new(RaftPayload { data: data.into(), commands: Vec::new() }))
}

#[tonic::async_trait]
impl RaftService for RaftGrpc {
    async fn append_entries(
        &self,
        req: Request<RaftPayload>,
    ) -> Result<tonic::Response<RaftPayload>, Status> {
        let payload = req.into_inner();
        let mut rpc: AppendEntriesRequest<TypeConfig> = decode(&payload.data).map_err(bad_request)?;
        put_commands(&mut rpc.entries, payload.commands).map_err(bad_request)?;
        reply(&self.writer.raft().append_entries(rpc).await)
    }

    async fn vote(&self, req: Request<RaftPayload>) -> Result<tonic::Response<RaftPayload>, Status> {
        let rpc: VoteRequest<NodeId> = decode(&req.into_inner().data).map_err(bad_request)?;
        reply(&self.writer.raft().vote(rpc).await)
    }

    async fn install_snapshot(
        &self,
        req: Request<RaftPayload>,
    ) -> Result<tonic::Response<RaftPayload>, Status> {
        let rpc: InstallSnapshotRequest<TypeConfig> = decode(&req.into_inner().data).map_err(bad_request)?;
        reply(&self.writer.raft().install_snapshot(rpc).await)
    }

    async fn forward(
        &self,
        req: Request<v1::ForwardRequest>,
    ) -> Result<tonic::Response<v1::WriteResponse>, Status> {
        let write = req.into_inner().write;
        collabstream_proto::log_view::check_write(&write)
            .map_err(|e| Status::invalid_argument(format!("forwarded write refused: {e}")))?;
        match self.writer.propose_here(write).await {
            Ok(answer) => Ok(tonic::Response::new(answer)),
            Err(e) => Err(e.to_status()),
        }
    }

    async fn read_index(
        &self,
        _req: Request<v1::ReadIndexRequest>,
    ) -> Result<tonic::Response<v1::ReadIndexResponse>, Status> {
        match self.writer.raft().ensure_linearizable().await {
            Ok(log_id) => Ok(tonic::Response::new(v1::ReadIndexResponse {
                index: log_id.map(|l| l.index).unwrap_or(0),
            })),
            Err(e) => Err(Status::unavailable(format!("not the leader: {e}"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use openraft::{EntryPayload, LogId};

    use super::*;
    use crate::types::Request as Command;

    fn entry(index: u64, command: Option<&'static [u8]>) -> Entry {
        let payload = match command {
            Some(c) => EntryPayload::Normal(Command { command: bytes::Bytes::from_static(c) }),
            None => EntryPayload::Blank,
        };
        Entry { log_id: LogId::new(openraft::CommittedLeaderId::new(1, 1), index), payload }
    }

    #[test]
    fn a_request_takes_what_fits_and_always_the_first_entry() {
        let m = MAX_APPEND_BYTES;
        assert_eq!(entries_that_fit([1, 2, 3]), (3, 6));
        assert_eq!(entries_that_fit([m / 2, m / 2, 1]), (2, m));
        assert_eq!(entries_that_fit([3 * m, 1]), (1, 3 * m), "a large entry goes alone");
        assert_eq!(entries_that_fit([1, 3 * m]), (1, 1), "and after the others");
        assert_eq!(entries_that_fit([]), (0, 0));
        assert_eq!(append_deadline(0), APPEND_DEADLINE);
        assert_eq!(append_deadline(m), APPEND_DEADLINE);
        assert_eq!(append_deadline(3 * m + 1), APPEND_DEADLINE * 4);
    }

    #[test]
    fn commands_travel_beside_the_entries_and_come_back_in_place() {
        let mut entries = vec![entry(1, Some(b"a")), entry(2, None), entry(3, Some(b"bc"))];
        let commands = take_commands(&mut entries);
        assert_eq!(commands, [&b"a"[..], &b"bc"[..]]);
        let empty = |e: &Entry| matches!(&e.payload, EntryPayload::Normal(r) if r.command.is_empty());
        assert!(empty(&entries[0]) && empty(&entries[2]));
        put_commands(&mut entries, commands.clone()).unwrap();
        assert_eq!(entries, vec![entry(1, Some(b"a")), entry(2, None), entry(3, Some(b"bc"))]);
        assert!(put_commands(&mut entries, commands[..1].to_vec()).is_err(), "one missing");
        assert!(put_commands(&mut entries, [commands.clone(), commands].concat()).is_err(), "too many");
    }
}
