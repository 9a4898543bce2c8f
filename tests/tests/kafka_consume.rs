//! The node consumes the event topics from a real Kafka-protocol broker (tansu on loopback):
//! every message produced becomes one stored event, across a SIGKILL mid-stream and a restart
//! (the offsets are applied with the events); messages that are not events are counted and
//! skipped without stalling their partition.

use std::time::Duration;

use collabstream_proto::kafka_message::{self, KafkaFormat, KafkaTopics};
use collabstream_proto::v1;
use collabstream_tests::{KafkaBroker, Moto, Node, TestCluster, produce, sent, series_key, wait_until};
use prost::Message;
use rskafka::client::ClientBuilder;
use rskafka::client::partition::{Compression, UnknownTopicHandling};
use rskafka::record::Record;

/// Every message of the event topics that is an event (poison left out), encoded.
async fn in_kafka(broker: &KafkaBroker) -> Vec<Vec<u8>> {
    let topics = KafkaTopics::default();
    let mut out = Vec::new();
    for (topic, (_, messages)) in broker.messages().await {
        for m in messages {
            if let Ok(e) = kafka_message::decode(&topics, &topic, &m.value, KafkaFormat::Json) {
                out.push(e.encode_to_vec());
            }
        }
    }
    out.sort();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_message_becomes_one_event_across_a_sigkill() {
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = KafkaBroker::start(dir.path()).expect("tansu starts");
    let target = format!("kafka://{}", broker.addr());
    let args =
        ["--target", &target, "--workload", "meetings", "--size", "20", "--count", "3000", "--speed", "60"];
    let produced = sent(&produce(&args, &[]).await);
    // Poison in the middle of a partition: the consumer must read past it.
    let client = ClientBuilder::new(vec![broker.addr()]).build().await.expect("connect");
    let pc = client.partition_client("chat_events", 0, UnknownTopicHandling::Error).await.expect("partition");
    let poison = |v: &[u8]| Record {
        key: Some(b"m".to_vec()),
        value: Some(v.to_vec()),
        headers: Default::default(),
        timestamp: rskafka::chrono::DateTime::from_timestamp_millis(1_732_780_800_000).expect("a time"),
    };
    pc.produce(vec![poison(b"not json"), poison(b"{\"type\":\"chat\"}")], Compression::NoCompression)
        .await
        .expect("produce poison");
    let more = sent(&produce(&args, &[]).await);
    let want = in_kafka(&broker).await;
    assert_eq!(want.len() as u64, produced + more, "what the broker holds");

    // Small fetches, so that the stream spans many log entries and the kill lands inside it.
    let config = dir.path().join("node.toml");
    std::fs::write(
        &config,
        format!("[kafka]\nbrokers = [\"{}\"]\nmax_batch_bytes = 4096\nmax_wait = \"50ms\"\n", broker.addr()),
    )
    .expect("config");
    let config = config.to_str().expect("utf-8").to_string();
    let data = dir.path().join("node");
    let mut node = Node::start(&data, &["--config", &config]).expect("node");
    let started = wait_until(Duration::from_secs(60), || async {
        let n = node.stored_events().await.len();
        (n > 0).then_some(n)
    })
    .await;
    assert!(started.is_some(), "the node consumes");
    let poison_before = node.metric("collabstream_kafka_poison_messages_total").await;
    node.kill9();
    let node = Node::start(&data, &["--config", &config]).expect("node restarts");
    let done = wait_until(Duration::from_secs(120), || async {
        let got = node.stored_events().await;
        (got.len() >= want.len()).then_some(got)
    })
    .await;
    let Some(got) = done else { panic!("not all of {} messages consumed in time", want.len()) };
    assert_eq!(got.len(), want.len(), "each message once, none twice");
    assert_eq!(got, want, "the same events");
    // Counted by whichever node read them (both, if the first was killed before its batch
    // with them was committed); either way the partition went on past them.
    let poison_after = node.metric("collabstream_kafka_poison_messages_total").await;
    assert!(poison_before + poison_after >= 2.0, "{poison_before} + {poison_after}");
    // Every partition's lag is 0 once all is applied.
    let body = reqwest::get(node.url("/metrics")).await.expect("metrics").text().await.expect("body");
    let lags: Vec<&str> =
        body.lines().filter(|l| l.starts_with("collabstream_kafka_lag_messages{")).collect();
    assert_eq!(lags.len(), 9, "three topics of three partitions: {lags:?}");
    assert!(lags.iter().all(|l| l.ends_with(" 0")), "{lags:?}");
    // Nothing more arrives later (a duplicate batch would be refused, not stored).
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(node.stored_events().await.len(), want.len());
    drop(node);
    drop(broker);
}

/// A broker killed and restarted (its data on an S3-compatible store) with messages not yet
/// consumed: the node, connected and fetching when the broker goes, retries, resumes where
/// apply left off, and stores every message once, those produced before and after.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_restart_mid_stream_loses_and_duplicates_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let moto = Moto::start(dir.path()).expect("moto starts");
    moto.create_bucket("tansu").await.expect("bucket");
    let mut broker = KafkaBroker::start_on_s3(dir.path(), &moto.endpoint(), "tansu").expect("tansu starts");
    let target = format!("kafka://{}", broker.addr());
    let args =
        ["--target", &target, "--workload", "meetings", "--size", "20", "--count", "3000", "--speed", "60"];
    let config = dir.path().join("node.toml");
    std::fs::write(
        &config,
        format!("[kafka]\nbrokers = [\"{}\"]\nmax_batch_bytes = 2048\nmax_wait = \"50ms\"\n", broker.addr()),
    )
    .expect("config");
    // The first messages, consumed: the node is connected and fetching.
    sent(&produce(&args, &[]).await);
    let node =
        Node::start(&dir.path().join("node"), &["--config", config.to_str().expect("utf-8")]).expect("node");
    let first = in_kafka(&broker).await;
    node.wait_for_events(&first, Duration::from_secs(120)).await;
    // A backlog the node has not read when the broker dies: it is frozen meanwhile.
    let pid = node.pid().expect("running").to_string();
    let signal = |s: &str| {
        assert!(std::process::Command::new("kill").args([s, &pid]).status().expect("kill").success())
    };
    signal("-STOP");
    sent(&produce(&args, &[]).await);
    let backlog = in_kafka(&broker).await;
    assert!(backlog.len() > first.len());
    broker.restart(Duration::from_secs(3)).expect("tansu restarts");
    assert_eq!(in_kafka(&broker).await, backlog, "the broker kept what it had");
    // Woken, with the backlog ahead of it, and the broker killed again under it for 3 s: its
    // fetches fail and are retried (by rskafka within a fetch, by the consumer after).
    signal("-CONT");
    broker.restart(Duration::from_secs(3)).expect("tansu restarts again");
    let retried = wait_until(Duration::from_secs(30), || async {
        node.log().contains("Failed to connect to broker").then_some(())
    })
    .await;
    assert!(retried.is_some(), "the consumer saw the broker go:\n{}", node.log());
    sent(&produce(&args, &[]).await);
    let want = in_kafka(&broker).await;
    node.wait_for_events(&want, Duration::from_secs(120)).await;
    drop(node);
    drop(broker);
    drop(moto);
}

fn now_ms() -> i64 {
    let since = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
    since.expect("a clock after 1970").as_millis() as i64
}

/// Issue 14's acceptance: the leader of a three-node cluster SIGKILLed twice while it
/// consumes; every node ends with exactly the broker's events, a rule's aggregates equal to
/// the values computed here from what was produced, and the same meeting series.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_consumes_once_through_two_leader_kills() {
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = KafkaBroker::start(dir.path()).expect("tansu starts");
    for t in KafkaTopics::default().all() {
        broker.create_topic(t, 3).await;
    }
    // Two minutes of chat messages from ten minutes ago, by meeting; the rule counts and sums
    // their lengths per meeting and minute. Partitions consumed unevenly, or a stream idle
    // through a failover, may close a window early: its late events correct it (lateness 50
    // minutes), so the final values must be exact.
    let base = (now_ms() - 600_000).div_euclid(60_000) * 60_000;
    let events: Vec<v1::Event> = (0..24_000i64)
        .map(|i| {
            let chat = v1::ChatEvent {
                meeting_id: format!("m{}", i % 8),
                user_id: format!("u{}", i % 13),
                message_id: format!("x{i}"),
                length: (i % 97) as u32,
                timestamp_ms: base + i * 5,
                ..Default::default()
            };
            v1::Event { event: Some(v1::event::Event::Chat(chat)) }
        })
        .collect();
    broker.produce_events(&events, 3).await;
    let want = in_kafka(&broker).await;
    assert_eq!(want.len(), events.len());
    let mut expected = collabstream_tests::Exported::new();
    for e in &events {
        let Some(v1::event::Event::Chat(c)) = &e.event else { unreachable!() };
        let end = c.timestamp_ms.div_euclid(60_000) * 60_000 + 60_000;
        for (output, add) in [("count", 1.0), ("sum", f64::from(c.length))] {
            let name = format!("kafka_chat_{output}");
            let key =
                series_key([("__name__", name.as_str()), ("meeting_id", c.meeting_id.as_str())].into_iter());
            *expected.entry(key).or_default().entry(end).or_default() += add;
        }
    }
    let config = dir.path().join("node.toml");
    std::fs::write(
        &config,
        format!(
            "[kafka]\nbrokers = [\"{}\"]\nmax_batch_bytes = 1024\nmax_wait = \"50ms\"\n\n\
             [raft]\nheartbeat_interval = \"100ms\"\nelection_timeout = \"600ms\"\nleader_wait = \"3s\"\n\n\
             [[aggregations]]\nname = \"kafka_chat\"\nevents = \"chat\"\nvalue = \"length\"\n\
             group_by = [\"meeting_id\"]\nwindow = \"1m\"\noutputs = [\"count\", \"sum\"]\n\
             max_out_of_orderness = \"2m\"\nallowed_lateness = \"50m\"\nidle_timeout = \"5s\"\n",
            broker.addr()
        ),
    )
    .expect("config");
    let config = config.to_str().expect("utf-8").to_string();
    let mut cluster =
        TestCluster::start(&dir.path().join("cluster"), 3, &["--config", &config]).await.expect("cluster");
    let wait = Duration::from_secs(30);
    for round in 0..2 {
        let leader = cluster.wait_leader(&[0, 1, 2], wait).await.expect("a leader");
        // Killed as soon as it has applied a batch of its own, with messages still to read.
        let lag = wait_until(Duration::from_secs(60), || async {
            let node = cluster.node(leader);
            let body = reqwest::get(node.url("/metrics")).await.ok()?.text().await.ok()?;
            let lag: f64 = body
                .lines()
                .filter(|l| l.starts_with("collabstream_kafka_lag_messages{"))
                .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
                .sum();
            (node.metric("collabstream_kafka_messages_total").await > 0.0).then_some(lag)
        })
        .await;
        let Some(lag) = lag else {
            panic!("round {round}: the leader consumes:\n{}", cluster.describe(&[leader]).await)
        };
        cluster.kill(leader);
        assert!(lag > 0.0, "round {round}: killed before the end of the stream");
        let others: Vec<usize> = (0..3).filter(|i| *i != leader).collect();
        cluster.wait_leader(&others, wait).await.expect("a new leader");
        cluster.restart(leader).expect("the old leader restarts");
    }
    for i in 0..3 {
        let got = wait_until(Duration::from_secs(120), || async {
            let got = cluster.node(i).stored_events().await;
            (got.len() >= want.len()).then_some(got)
        })
        .await;
        let Some(got) = got else {
            let n = cluster.node(i).stored_events().await.len();
            let kafka: Vec<String> = (0..3)
                .flat_map(|j| {
                    let log = cluster.node(j).log();
                    let lines: Vec<String> = log
                        .lines()
                        .filter(|l| l.contains("kafka"))
                        .map(|l| format!("node {}: {l}", j + 1))
                        .collect();
                    lines.into_iter().rev().take(30).rev().collect::<Vec<_>>()
                })
                .collect();
            panic!(
                "node {}: {n} of {} messages in time\n{}\n{}",
                i + 1,
                want.len(),
                kafka.join("\n"),
                cluster.describe(&[0, 1, 2]).await
            )
        };
        assert_eq!(got, want, "node {}: each message once", i + 1);
    }
    // The rule's outputs, exactly as computed from the events, on every node (polled: the
    // windows close once the stream has been idle for 5 s of the leader's clock).
    for i in 0..3 {
        let got = wait_until(Duration::from_secs(60), || async {
            let got = cluster.node(i).export("{__name__=~\"kafka_chat_.*\"}").await;
            (got == expected).then_some(())
        })
        .await;
        if got.is_none() {
            let node = cluster.node(i);
            let rules = reqwest::get(node.url("/api/v1/aggregations")).await.expect("rules").text().await;
            let metrics =
                reqwest::get(node.url("/metrics")).await.expect("metrics").text().await.unwrap_or_default();
            let metrics: Vec<&str> = metrics.lines().filter(|l| l.contains("kafka_chat")).collect();
            let got = node.export("{__name__=~\"kafka_chat_.*\"}").await;
            assert_eq!(got, expected, "node {}: the rule's aggregates\n{rules:?}\n{metrics:?}", i + 1);
        }
    }
    // The meetings pack's series alike everywhere (polled: the leader's ticks go on closing
    // windows until every meeting has been idle long enough).
    let series = |i: usize| cluster.node(i).export("{__name__=~\"meeting_.*\"}");
    let alike = wait_until(Duration::from_secs(90), || async {
        let (a, b, c) = (series(0).await, series(1).await, series(2).await);
        (!a.is_empty() && a == b && b == c).then_some(a.len())
    })
    .await;
    assert!(alike.is_some(), "the three nodes end with the same meeting series");
    drop(cluster);
    drop(broker);
}

/// The client retries unreachable brokers on its own, for as long as they stay away: a node
/// must still answer, and stop on SIGTERM, without waiting for them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_brokers_neither_block_writes_nor_shutdown() {
    let dir = tempfile::tempdir().expect("tempdir");
    // A port nothing listens on: bound, then closed.
    let port = std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port();
    let config = dir.path().join("node.toml");
    std::fs::write(&config, format!("[kafka]\nbrokers = [\"127.0.0.1:{port}\"]\n")).expect("config");
    let mut node = Node::start(&dir.path().join("node"), &["--config", config.to_str().expect("utf-8")])
        .expect("node starts");
    // Writes go on while the consumer waits for its brokers.
    let line = r#"{"type":"chat","meeting_id":"m1","user_id":"u1","message_id":"x","length":1,"timestamp":1732780800000}"#;
    let answer = reqwest::Client::new()
        .post(node.url("/api/v1/events"))
        .body(line)
        .send()
        .await
        .expect("events request");
    assert!(answer.status().is_success(), "{:?}", answer.text().await);
    let said = wait_until(Duration::from_secs(30), || async {
        node.log().contains("kafka: cannot connect").then_some(())
    })
    .await;
    assert!(said.is_some(), "the consumer says why it waits");
    let stopped =
        tokio::task::spawn_blocking(move || node.terminate(Duration::from_secs(10))).await.expect("join");
    assert!(stopped.expect("the node stops within 10 s of SIGTERM"), "and exits 0");
}
