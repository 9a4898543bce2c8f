//! The `collabstream` binary.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use collabstream_proto::kafka_message::KafkaFormat;
use collabstream_server::{
    ClusterAction, Listeners, ProduceOptions, ServerConfig, Workload, cluster_command, produce, serve,
};
use tokio_util::sync::CancellationToken;

/// mimalloc instead of glibc's malloc: ingest and apply allocate and free millions of small
/// label strings a second, and glibc spent a third of the CPU on them (profile in
/// docs/benchmarks.md). Built without transparent huge pages (`no_thp`): with them, partly used
/// 2 MiB pages stayed resident, 74 of 154 MiB of its memory after `collabstream bench`'s
/// ingestion.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// `mi_option_purge_delay` in mimalloc's `mi_option_t` (the same number as the older
/// `reset_delay` in v1 and v2; v3's default of 1000 ms is checked by a test below).
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// Returns freed memory to the system after 10 ms instead of mimalloc v3's 1 s. mimalloc
/// purges only while it is being called, so after a burst of writes the memory freed in its
/// last second stayed resident for as long as the node was quiet: 7.1 against 5.5 KiB a series
/// in `collabstream bench` (docs/benchmarks.md). `MIMALLOC_PURGE_DELAY` in the environment
/// still wins.
#[allow(unsafe_code)]
fn tune_allocator() {
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
        // SAFETY: mi_option_set stores a long in mimalloc's static option table (plain stores,
        // checked against the table's bounds: options.c in libmimalloc-sys 0.1.49) and takes no
        // pointers. It runs first in main, before any other thread exists, so nothing reads the
        // option while it is written. The value is a valid purge delay in milliseconds.
        unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, 10) };
    }
}

/// RocksDB's C++ allocates from glibc's malloc, not mimalloc. glibc raises its mmap threshold
/// each time a block it mapped is freed (up to 32 MiB: mallopt(3)), so once a memtable's arena
/// blocks were freed, the next memtables' blocks came from the heap, and stayed resident after
/// those were flushed and freed too. A fixed threshold of 128 KiB (glibc's starting value)
/// keeps large blocks mapped and returned when freed: after `collabstream bench`'s ingestion
/// the node's anonymous memory was 54 MiB against 78-92 without it (docs/benchmarks.md, session
/// 23). `MALLOC_MMAP_THRESHOLD_` in the environment still wins.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
fn tune_c_allocator() {
    if std::env::var_os("MALLOC_MMAP_THRESHOLD_").is_none() {
        // SAFETY: mallopt takes two integers and sets a field of glibc's malloc parameters
        // under its own lock; M_MMAP_THRESHOLD accepts any value up to 32 MiB. It runs first in
        // main, before RocksDB or any other thread allocates from glibc.
        let set = unsafe { libc::mallopt(libc::M_MMAP_THRESHOLD, 128 << 10) };
        if set != 1 {
            eprintln!("warning: glibc refused mallopt(M_MMAP_THRESHOLD); memory may stay resident");
        }
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn tune_c_allocator() {}

#[derive(Debug, Parser)]
#[command(
    name = "collabstream",
    version,
    about = "A Raft-replicated time-series metrics store with stream aggregation"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a node.
    Server(ServerArgs),
    /// Send a synthetic workload to a node over gRPC or Prometheus remote write, or to Kafka.
    Produce(ProduceArgs),
    /// Run a node with the embedded defaults and feed it the meetings and node-exporter
    /// workloads until Ctrl-C.
    Demo(ServerArgs),
    /// Show or change the cluster's membership through any node.
    Cluster(ClusterArgs),
    /// SQL against a node: an interactive shell, or the statements of `-c` or stdin.
    Sql(SqlArgs),
    /// Run the same remote-write workload and queries against this store, VictoriaMetrics and
    /// Prometheus (Debian's packages) on loopback, and print a table with ratios.
    Bench(BenchArgs),
}

#[derive(Debug, Args)]
struct SqlArgs {
    /// The node's HTTP address.
    #[arg(long, default_value = "http://127.0.0.1:9201", env = "COLLABSTREAM_SQL_ENDPOINT")]
    endpoint: String,
    /// Statements to run instead of the interactive shell (may be given more than once).
    #[arg(short = 'c', long = "command")]
    command: Vec<String>,
}

#[derive(Debug, Args)]
struct BenchArgs {
    /// Hosts of 500 node-exporter series each.
    #[arg(long, default_value_t = 40)]
    hosts: usize,
    /// Samples per series, 15 s apart.
    #[arg(long, default_value_t = 480)]
    scrapes: usize,
    /// Concurrent remote-write senders.
    #[arg(long, default_value_t = 8)]
    senders: usize,
    /// Series per remote-write request.
    #[arg(long, default_value_t = 2000)]
    batch: usize,
    /// Runs of each query (the median is reported).
    #[arg(long, default_value_t = 5)]
    query_runs: usize,
    /// Keep the systems' data here instead of a temporary directory.
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Replace the generated section of this Markdown file (e.g. docs/benchmarks.md).
    #[arg(long)]
    update_doc: Option<PathBuf>,
    /// The systems to run, comma-separated.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "collabstream,victoria-metrics,prometheus"
    )]
    systems: Vec<collabstream_server::bench::Kind>,
}

#[derive(Debug, Args)]
struct ClusterArgs {
    /// Any node's gRPC address.
    #[arg(long, global = true, default_value = "127.0.0.1:9202", env = "COLLABSTREAM_ENDPOINT")]
    endpoint: String,
    /// A file with the cluster secret, when the nodes have one (or set
    /// COLLABSTREAM_CLUSTER_SECRET, which takes precedence).
    #[arg(long, global = true)]
    secret_file: Option<PathBuf>,
    #[command(subcommand)]
    action: ClusterCommand,
}

#[derive(Debug, Subcommand)]
enum ClusterCommand {
    /// Leader, term, commit and applied index, and every member's replication lag.
    Status,
    /// Add a node as a non-voting learner; it catches up in the background.
    #[command(visible_alias = "add")]
    AddLearner {
        #[arg(long)]
        node_id: u64,
        /// The new node's gRPC address, host:port.
        #[arg(long)]
        addr: String,
    },
    /// Make a caught-up learner a voter.
    Promote {
        #[arg(long)]
        node_id: u64,
    },
    /// Remove a member (voter or learner).
    Remove {
        #[arg(long)]
        node_id: u64,
    },
}

#[derive(Debug, Args)]
struct ProduceArgs {
    /// Where to send: gRPC endpoints, comma-separated (any node of a cluster; retries move on
    /// to the next); a Prometheus remote-write URL ending in /api/v1/write (samples only); or
    /// Kafka brokers as kafka://HOST:PORT,… (events only; `kafka` alone takes the brokers in
    /// KAFKA_BOOTSTRAP_SERVERS), each event type to its topic (user_events, chat_events,
    /// meeting_events).
    #[arg(long, default_value = "http://127.0.0.1:9202")]
    target: String,
    /// How events are encoded in Kafka messages: json (one event object, as POST
    /// /api/v1/events takes it) or protobuf (a collabstream.v1.Event).
    #[arg(long, default_value = "json")]
    kafka_format: KafkaFormat,
    #[arg(long, value_enum, default_value = "meetings")]
    workload: Workload,
    /// Concurrent meetings, or series for node-exporter.
    #[arg(long, default_value_t = 100)]
    size: usize,
    /// Simulated seconds per wall-clock second.
    #[arg(long, default_value_t = 1.0)]
    speed: f64,
    /// Stop after this long (e.g. 30s, 5m).
    #[arg(long, value_parser = humantime::parse_duration)]
    duration: Option<std::time::Duration>,
    /// Stop once this many events or samples are sent (the last request may go over).
    #[arg(long)]
    count: Option<u64>,
    /// Start this far in the past (e.g. 10m): the history is sent as fast as the target takes
    /// it, then production goes on live.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "0s")]
    backfill: std::time::Duration,
}

/// Flags override `COLLABSTREAM_*` environment variables, which override the TOML file.
#[derive(Debug, Args)]
struct ServerArgs {
    /// Where RocksDB and the node's files live.
    #[arg(long, env = "COLLABSTREAM_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// HTTP address: Prometheus API, remote write, events, /metrics.
    #[arg(long, env = "COLLABSTREAM_HTTP_LISTEN")]
    http_listen: Option<std::net::SocketAddr>,
    /// gRPC address: IngestService.
    #[arg(long, env = "COLLABSTREAM_GRPC_LISTEN")]
    grpc_listen: Option<std::net::SocketAddr>,
    /// PostgreSQL wire protocol address for SQL (default 127.0.0.1:9203; `[sql] pg_listen`).
    #[arg(long, env = "COLLABSTREAM_PG_LISTEN")]
    pg_listen: Option<std::net::SocketAddr>,
    /// This node's id in the cluster.
    #[arg(long, env = "COLLABSTREAM_NODE_ID")]
    node_id: Option<u64>,
    /// Cluster members, this node included: 1=HOST:GRPC_PORT,2=HOST:GRPC_PORT,…
    #[arg(long, env = "COLLABSTREAM_PEERS")]
    peers: Option<String>,
    /// TOML configuration file (see deploy/collabstream.toml).
    #[arg(long, env = "COLLABSTREAM_CONFIG")]
    config: Option<PathBuf>,
}

impl ServerArgs {
    fn into_config(self) -> anyhow::Result<ServerConfig> {
        let mut c = match &self.config {
            Some(path) => ServerConfig::from_toml_file(path).map_err(anyhow::Error::msg)?,
            None => ServerConfig::default(),
        };
        if let Some(v) = self.data_dir {
            c.data_dir = v;
        }
        if let Some(v) = self.http_listen {
            c.http_listen = v;
        }
        if let Some(v) = self.grpc_listen {
            c.grpc_listen = v;
        }
        if let Some(v) = self.pg_listen {
            c.sql.pg_listen = v;
        }
        if let Some(v) = self.node_id {
            c.node_id = v;
        }
        if let Some(v) = self.peers {
            c.peers = v;
        }
        c.validate().map_err(anyhow::Error::msg)?;
        Ok(c)
    }
}

/// The log filter without `RUST_LOG`.
const DEFAULT_LOG_FILTER: &str = "info,openraft=warn";

fn main() -> anyhow::Result<()> {
    // First, while this is the only thread (see their SAFETY notes).
    tune_allocator();
    tune_c_allocator();
    // Logs go to stderr (stdout is for command output), coloured only on a terminal. Ours at
    // INFO; openraft's INFO narrates every election and snapshot step and would drown the
    // demo's banner, so it speaks at WARN unless RUST_LOG asks (e.g. RUST_LOG=info).
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| DEFAULT_LOG_FILTER.into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(
            std::io::IsTerminal::is_terminal(&std::io::stderr()) && std::env::var_os("NO_COLOR").is_none(),
        )
        .init();
    let cli = Cli::parse();
    let name = match &cli.command {
        Command::Server(_) => "server",
        Command::Produce(_) => "produce",
        Command::Demo(_) => "demo",
        Command::Bench(_) => "bench",
        Command::Cluster(_) => "cluster",
        Command::Sql(_) => "sql",
    };
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    match cli.command {
        Command::Server(args) => {
            let config = args.into_config()?;
            let served = runtime.block_on(async move {
                let listeners = Listeners::bind(&config)?;
                let shutdown = CancellationToken::new();
                tokio::spawn(signal_shutdown(shutdown.clone()));
                serve(config, listeners, shutdown).await?;
                anyhow::Ok(())
            });
            // Requests that shutdown_timeout cut off can leave tasks behind (a query deep in a
            // scan may not yield), and dropping the runtime would wait for them without end. The
            // store is checkpointed by now.
            runtime.shutdown_timeout(std::time::Duration::from_secs(5));
            served
        }
        Command::Produce(a) => runtime.block_on(async move {
            let stop = CancellationToken::new();
            tokio::spawn(signal_shutdown(stop.clone()));
            let opts = ProduceOptions {
                target: a.target,
                kafka_format: a.kafka_format,
                workload: a.workload,
                size: a.size,
                speed: a.speed,
                duration: a.duration,
                count: a.count,
                backfill: a.backfill,
                quiet: false,
            };
            let sent = produce(opts, stop).await?;
            println!("sent {sent}");
            anyhow::Ok(())
        }),
        Command::Demo(args) => {
            let config = args.into_config()?;
            runtime.block_on(demo(config))
        }
        Command::Bench(b) => runtime.block_on(async move {
            // The command as typed, with the program's path reduced to its name.
            let mut args: Vec<String> = std::env::args().collect();
            if let Some(name) = args.first().and_then(|p| std::path::Path::new(p).file_name()) {
                args[0] = name.to_string_lossy().into_owned();
            }
            let command = args.join(" ");
            let opts = collabstream_server::bench::BenchOptions {
                hosts: b.hosts,
                scrapes: b.scrapes,
                senders: b.senders,
                batch: b.batch,
                query_runs: b.query_runs,
                dir: b.dir,
                update_doc: b.update_doc,
                systems: b.systems,
                command,
                ..Default::default()
            };
            let report = collabstream_server::bench::bench(opts).await?;
            println!("{}", report.markdown());
            anyhow::Ok(())
        }),
        Command::Sql(s) => runtime.block_on(collabstream_server::sql_shell::main(&s.endpoint, &s.command)),
        Command::Cluster(c) => runtime.block_on(async move {
            let action = match c.action {
                ClusterCommand::Status => ClusterAction::Status,
                ClusterCommand::AddLearner { node_id, addr } => ClusterAction::AddLearner { node_id, addr },
                ClusterCommand::Promote { node_id } => ClusterAction::Promote { node_id },
                ClusterCommand::Remove { node_id } => ClusterAction::Remove { node_id },
            };
            let env = std::env::var(collabstream_server::cluster_config::SECRET_ENV).ok();
            let secret =
                collabstream_server::cluster_config::secret_from(env.as_deref(), c.secret_file.as_deref())
                    .map_err(anyhow::Error::msg)?;
            print!("{}", cluster_command(&c.endpoint, action, secret).await?);
            anyhow::Ok(())
        }),
    }
    .with_context(|| format!("collabstream {name} failed"))
}

/// A node plus both workloads, until Ctrl-C.
async fn demo(mut config: ServerConfig) -> anyhow::Result<()> {
    // The "Cluster" dashboard has the node's own history without a Prometheus beside it.
    if config.metrics.self_scrape_interval.is_zero() {
        config.metrics.self_scrape_interval = std::time::Duration::from_secs(5);
    }
    let listeners = Listeners::bind(&config)?;
    let (http, grpc, pg) = (listeners.http_addr(), listeners.grpc_addr(), listeners.pg_addr());
    let shutdown = CancellationToken::new();
    tokio::spawn(signal_shutdown(shutdown.clone()));
    let node = tokio::spawn(serve(config, listeners, shutdown.clone()));
    let producer = |workload, size| {
        let opts = ProduceOptions {
            target: format!("http://{grpc}"),
            kafka_format: KafkaFormat::Json,
            workload,
            size,
            speed: 1.0,
            duration: None,
            count: None,
            // Six minutes of history first, so that a window of every kind the pack has (30 s,
            // 1 min, and the 5 min of churn) has closed by the time anyone queries them,
            // whatever second the demo starts at.
            backfill: std::time::Duration::from_secs(360),
            quiet: true,
        };
        tokio::spawn(produce(opts, shutdown.clone()))
    };
    let meetings = producer(Workload::Meetings, 50);
    let samples = producer(Workload::NodeExporter, 1_000);
    let mut banner = format!(
        "collabstream demo: a node with the embedded defaults, fed 50 live meetings and 1,000 node-exporter series.\n\n\
         web UI:        http://{http}/ui/   (live meetings, a PromQL explorer, the cluster)\n\
         PromQL:        curl -s 'http://{http}/api/v1/query' --data-urlencode 'query=sum by (mode) (rate(node_cpu_seconds_total[1m]))'\n\
         meetings:      curl -s 'http://{http}/api/v1/query' --data-urlencode 'query=topk(5, meeting_active_users)'\n\
         \u{20}              curl -s 'http://{http}/api/v1/query' --data-urlencode 'query=bottomk(5, meeting_health_score)'\n\
         \u{20}              curl -s 'http://{http}/api/v1/query' --data-urlencode 'query=count by (status) (meeting_health == 1)'\n\
         \u{20}              curl -s 'http://{http}/api/v1/query' --data-urlencode 'query=avg(meeting_engagement_score)'\n\
         \u{20}              (each meeting's 30 s, 1 min and 5 min windows, from six minutes of history on)\n\
         SQL:           curl -s 'http://{http}/api/v1/sql' --data-urlencode 'query=SELECT meeting_id, avg(engagement_score) AS engagement, max(active_users) AS users FROM meeting_metrics GROUP BY 1 ORDER BY 2 DESC LIMIT 5'\n\
         \u{20}              psql -h {pg_host} -p {pg_port} -c \"SELECT meeting_id, AVG(avg_latency_ms) as avg_latency, AVG(engagement_score) as avg_engagement, meeting_health FROM meeting_metrics WHERE timestamp >= CAST(now() - INTERVAL '1' HOUR AS BIGINT) GROUP BY meeting_id, meeting_health ORDER BY avg_engagement DESC\"\n\
         \u{20}              collabstream sql --endpoint http://{http}   (tables: samples, series, events, meeting_metrics, one per rule)\n\
         Grafana:       add a Prometheus datasource with URL http://{http}\n\
         raw samples:   curl -s 'http://{http}/api/v1/export' -G --data-urlencode 'match[]=node_load1'\n\
         raw events:    curl -s 'http://{http}/api/v1/events/export?limit=20'\n\
         self-metrics:  curl -s http://{http}/metrics\n\
         remote write:  http://{http}/api/v1/write    gRPC ingest: {grpc}\n\n",
        pg_host = pg.ip(),
        pg_port = pg.port(),
    );
    if cfg!(debug_assertions) {
        // scripts/run.sh shares the tests' dev build; say so before anyone times it.
        banner.push_str(
            "(an unoptimised build, the one scripts/run.sh and the tests share: for measurements run \
             CARGO_PROFILE=release scripts/run.sh)\n",
        );
    }
    // The Ctrl-C line ends the banner (tests/src/demo.rs reads up to it). One write, and a
    // closed stdout (a reader that went away) is not a reason to stop a node that is serving:
    // println! would panic on EPIPE.
    banner.push_str("Ctrl-C stops it (nothing acknowledged is lost).\n");
    {
        use std::io::Write;
        let mut out = std::io::stdout().lock();
        if let Err(e) = out.write_all(banner.as_bytes()).and_then(|()| out.flush()) {
            tracing::warn!(error = %e, "cannot print the banner; the node keeps serving");
        }
    }
    for (name, task) in [("meetings", meetings), ("node-exporter", samples)] {
        match task.await? {
            Ok(n) => tracing::info!(workload = name, sent = n, "producer stopped"),
            Err(e) => tracing::error!(workload = name, error = %e, "producer failed"),
        }
    }
    node.await??;
    Ok(())
}

/// Cancels `token` on SIGINT or SIGTERM.
async fn signal_shutdown(token: CancellationToken) {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(error = %e, "cannot watch SIGTERM; only SIGINT stops the node gracefully");
                let _ = ctrl_c.await;
                token.cancel();
                return;
            }
        };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
    tracing::info!("signal received");
    token.cancel();
}

#[cfg(test)]
mod tests {
    /// The option number is mimalloc's purge delay: the only option whose default is 1000.
    #[test]
    #[allow(unsafe_code)]
    fn the_tuned_allocator_option_is_the_purge_delay() {
        // SAFETY: reads an integer from mimalloc's option table.
        let default = unsafe { libmimalloc_sys::mi_option_get(super::MI_OPTION_PURGE_DELAY) };
        assert_eq!(
            default,
            1000,
            "mimalloc's option {} is not the purge delay",
            super::MI_OPTION_PURGE_DELAY
        );
    }
}
