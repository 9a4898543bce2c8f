//! Running a node: bind, serve, shut down in order.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use collabstream_common::SystemClock;
use collabstream_ingest::Ingest;
use collabstream_ingest::grpc::IngestGrpc;
use collabstream_ingest::kafka::{self, KafkaMetrics};
use collabstream_raft::{AdminGrpc, RaftGrpc, RaftOptions, Writer};
use collabstream_store::{EventRead, SeriesRead, Store};
use tokio_util::sync::CancellationToken;

use crate::config::ServerConfig;
use crate::error::Error;
use crate::ops::{self, Ops};
use crate::tiering::NodeTiering;

/// The node's listening sockets, bound before the node starts so that callers (tests, the
/// cluster harness) can pass port 0 and read the real address.
#[derive(Debug)]
pub struct Listeners {
    pub http: std::net::TcpListener,
    pub grpc: std::net::TcpListener,
    /// SQL over the PostgreSQL wire protocol.
    pub pg: std::net::TcpListener,
}

impl Listeners {
    pub fn bind(config: &ServerConfig) -> Result<Self, Error> {
        let bind = |addr: SocketAddr, what: &'static str| {
            let l = std::net::TcpListener::bind(addr).map_err(|source| Error::Bind { addr, what, source })?;
            l.set_nonblocking(true)?;
            Ok::<_, Error>(l)
        };
        Ok(Self {
            http: bind(config.http_listen, "HTTP")?,
            grpc: bind(config.grpc_listen, "gRPC")?,
            pg: bind(config.sql.pg_listen, "PostgreSQL")?,
        })
    }

    pub fn http_addr(&self) -> SocketAddr {
        self.http.local_addr().expect("a bound listener has an address")
    }

    pub fn grpc_addr(&self) -> SocketAddr {
        self.grpc.local_addr().expect("a bound listener has an address")
    }

    pub fn pg_addr(&self) -> SocketAddr {
        self.pg.local_addr().expect("a bound listener has an address")
    }
}

/// Runs the node until `shutdown` is cancelled, then stops accepting, lets in-flight requests
/// finish for up to `shutdown_timeout` (their writes are acknowledged or refused; after it,
/// the rest get a closed connection, never an acknowledgement), drains the writer,
/// checkpoints the store and closes RocksDB.
pub async fn serve(
    config: ServerConfig,
    listeners: Listeners,
    shutdown: CancellationToken,
) -> Result<(), Error> {
    config.validate().map_err(Error::Config)?;
    let db_path = config.data_dir.join("db");
    std::fs::create_dir_all(&db_path).map_err(|source| Error::DataDir { path: db_path.clone(), source })?;
    let store_config = config.store_config();
    let store = tokio::task::spawn_blocking(move || Store::open(&db_path, store_config)).await??;
    let store = Arc::new(store);
    let peers = config.peer_list().map_err(Error::Config)?;
    let members = if peers.is_empty() {
        std::collections::BTreeMap::from([(config.node_id, listeners.grpc_addr().to_string())])
    } else {
        peers.into_iter().map(|p| (p.id, p.addr)).collect()
    };
    let options = RaftOptions {
        members,
        heartbeat_interval: config.raft.heartbeat_interval,
        election_timeout: config.raft.election_timeout,
        snapshot_after_entries: config.raft.snapshot_after_entries,
        keep_entries: config.raft.keep_entries,
        snapshot_after_bytes: config.raft.snapshot_after_bytes,
        keep_bytes: config.raft.keep_bytes,
        leader_wait: config.raft.leader_wait,
        checkpoint_interval: config.store.checkpoint_interval,
        cluster_secret: config.cluster.secret().map_err(Error::Config)?,
        max_queued_bytes: config.raft.max_queued_bytes,
        aggregation_rules: config.aggregation_rules().map_err(Error::Config)?,
        ..RaftOptions::single(config.node_id, String::new(), config.data_dir.join("snapshots"))
    };
    if !options.cluster_secret.is_set() {
        tracing::warn!(
            "no cluster secret: any client that reaches the gRPC port can send Raft and Admin calls \
             (change membership, append entries); set [cluster] secret_file or COLLABSTREAM_CLUSTER_SECRET \
             to the same value on every node"
        );
    }
    let (writer, writer_handle) = Writer::start(store.clone(), Arc::new(SystemClock), options).await?;
    let ingest = Ingest::new(writer.clone(), config.ingest.clone());
    let (tiering, tiering_tasks) =
        NodeTiering::start(&config, store.clone(), writer.clone(), shutdown.child_token())?;
    let ready = Arc::new(AtomicBool::new(true));
    let kafka_metrics = Arc::new(KafkaMetrics::default());
    let brokers = config.kafka.brokers_or_env();
    let kafka = if brokers.is_empty() {
        None
    } else {
        tracing::info!(?brokers, "kafka consumer on (while this node leads)");
        let run =
            kafka::run(writer.clone(), config.kafka.clone(), kafka_metrics.clone(), shutdown.child_token());
        Some(tokio::spawn(run))
    };
    let s3 = config.object_store.clone().with_env();
    let sources = collabstream_query::sql::SqlSources {
        store: store.clone(),
        cold: Some(tiering.objects()),
        catalog: Some(Arc::new(RaftCatalog(writer.clone()))),
        s3: Some(Arc::new(move |bucket: &str| collabstream_tiering::s3_bucket(&s3, bucket))),
    };
    let sql = collabstream_query::sql::SqlEngine::new(sources, &config.sql).map_err(Error::Config)?;
    let http_metrics = Arc::new(crate::http_metrics::HttpMetrics::default());
    let query_metrics = Arc::new(collabstream_query::QueryMetrics::default());
    let ops = Ops {
        store: store.clone(),
        ingest: ingest.metrics().clone(),
        ready: ready.clone(),
        writer: writer.clone(),
        kafka: kafka.is_some().then(|| kafka_metrics.clone()),
        tiering: tiering.clone(),
        http: http_metrics.clone(),
        query: query_metrics.clone(),
    };

    let http_app = collabstream_ingest::http::router(ingest.clone())
        .merge(collabstream_query::router(
            tiering.read.clone() as Arc<dyn SeriesRead>,
            tiering.read.clone() as Arc<dyn EventRead>,
            &config.query,
            Some(Arc::new(Barrier(writer.clone()))),
            query_metrics,
        ))
        .merge(collabstream_query::sql::router(sql.clone()))
        .merge(tiering.clone().router())
        .merge(ops::router(ops))
        .merge(crate::cluster_http::router(writer.clone()))
        .merge(crate::web_ui::router())
        .route_layer(axum::middleware::from_fn_with_state(http_metrics, crate::http_metrics::track));
    let http_listener = tokio::net::TcpListener::from_std(listeners.http)?;
    let grpc_listener = tokio::net::TcpListener::from_std(listeners.grpc)?;
    let pg_listener = tokio::net::TcpListener::from_std(listeners.pg)?;
    tracing::info!(
        http = %http_listener.local_addr()?,
        grpc = %grpc_listener.local_addr()?,
        pg = %pg_listener.local_addr()?,
        data_dir = %config.data_dir.display(),
        "collabstream node serving"
    );

    let self_scrape = config.metrics.self_scrape_interval;
    if !self_scrape.is_zero() {
        let at = http_listener.local_addr()?;
        tokio::spawn(crate::self_scrape::run(at, self_scrape, shutdown.child_token()));
    }
    let http = {
        let token = shutdown.clone();
        tokio::spawn(async move {
            axum::serve(http_listener, http_app).with_graceful_shutdown(token.cancelled_owned()).await
        })
    };
    let grpc = {
        let token = shutdown.clone();
        let service = IngestGrpc::new(ingest.clone()).into_service();
        let raft_service = RaftGrpc::new(writer.clone()).into_service();
        let admin_service = AdminGrpc::new(writer.clone())
            .with_tiering(tiering.clone() as Arc<dyn collabstream_raft::TieringPass>)
            .into_service();
        tokio::spawn(async move {
            tonic::transport::Server::builder()
                .initial_stream_window_size(collabstream_raft::HTTP2_WINDOW)
                .initial_connection_window_size(collabstream_raft::HTTP2_WINDOW)
                .add_service(service)
                .add_service(raft_service)
                .add_service(admin_service)
                .serve_with_incoming_shutdown(
                    tokio_stream::wrappers::TcpListenerStream::new(grpc_listener),
                    token.cancelled_owned(),
                )
                .await
        })
    };
    let pg =
        tokio::spawn(collabstream_query::sql::serve_pg(pg_listener, sql, shutdown.clone().cancelled_owned()));
    shutdown.cancelled().await;
    tracing::info!(
        timeout = ?config.shutdown_timeout,
        "shutting down: no new requests; finishing the ones in flight"
    );
    ready.store(false, Ordering::SeqCst);
    let _ = pg.await;
    let (mut http, mut grpc) = (http, grpc);
    let drained =
        tokio::time::timeout(config.shutdown_timeout, async { tokio::join!(&mut http, &mut grpc) }).await;
    match drained {
        Ok((h, g)) => {
            h?.map_err(|e| Error::Serve { what: "HTTP server", source: Box::new(e) })?;
            g?.map_err(|e| Error::Serve { what: "gRPC server", source: Box::new(e) })?;
        }
        Err(_) => {
            // What is cut off here was never acknowledged: a write answered before now is
            // committed; one not yet answered is not, and its client sees the connection close
            // (when this process ends) and retries it like any failed request. The servers'
            // connection tasks outlive this abort until the runtime goes; the writer they would
            // write through is shut down first, and the store checkpointed, all the same.
            tracing::warn!(
                timeout = ?config.shutdown_timeout,
                "requests still in flight after shutdown_timeout; stopping without them"
            );
            http.abort();
            grpc.abort();
        }
    }
    // Its batch in flight is answered (applied or not) before the writer goes.
    if let Some(k) = kafka {
        let _ = k.await;
    }
    // A pass stopped mid-upload leaves at most an object no manifest entry names (collected
    // by a later pass); one stopped after its commit has nothing left to do.
    for t in tiering_tasks {
        t.abort();
        let _ = t.await;
    }
    drop(tiering);
    drop(ingest);
    drop(writer);
    writer_handle.shutdown().await;
    tracing::info!(checkpointed = store.checkpointed_index(), "store checkpointed; bye");
    drop(store);
    Ok(())
}

/// Strong reads wait for the Raft read index.
struct Barrier(Writer);

impl collabstream_query::ReadBarrier for Barrier {
    fn wait(&self) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), String>> + Send + '_>> {
        Box::pin(async move { self.0.read_barrier().await.map(|_| ()).map_err(|e| e.to_string()) })
    }
}

/// External SQL tables are committed through Raft.
struct RaftCatalog(Writer);

impl collabstream_query::sql::TableCatalog for RaftCatalog {
    fn change(
        &self,
        change: collabstream_proto::v1::SqlTableChange,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<bool, String>> + Send + '_>> {
        Box::pin(async move {
            collabstream_raft::change_sql_table(&self.0, change).await.map_err(|s| s.message().to_string())
        })
    }
}
