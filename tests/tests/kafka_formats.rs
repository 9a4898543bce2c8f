//! The message formats and transports the consumer reads. From another producer than ours
//! (Python confluent-kafka, that is librdkafka): batches compressed with gzip, snappy, lz4 and
//! zstd; JSON that leaves `type` to its topic; Avro in the Confluent wire format with its
//! schemas from a registry or from `.avsc` files. From ours: protobuf. Brokers behind TLS. And
//! what the consumer leaves for Kafka's own tools: poison copied to the dead-letter topic
//! saying where it came from, and the applied offsets in the consumer group.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use collabstream_proto::events_json;
use collabstream_tests::{KafkaBroker, Node, SaslRelay, TlsRelay, certificates, wait_until};
use prost::Message;
use rskafka::client::ClientBuilder;
use rskafka::client::partition::{Compression, UnknownTopicHandling};
use rskafka::record::Record;

const TOPICS: [&str; 3] = ["user_events", "chat_events", "meeting_events"];

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(path)
}

/// Runs `tests/python/kafka_producer.py` against `brokers`; the events it produced, encoded
/// and sorted.
async fn python_produce(brokers: &str, extra: &[&str]) -> Vec<Vec<u8>> {
    let script = repo("tests/python/kafka_producer.py");
    let mut args = vec![script.display().to_string(), "--brokers".into(), brokers.to_string()];
    args.extend(extra.iter().map(|a| a.to_string()));
    let out = tokio::task::spawn_blocking(move || Command::new("python3").args(&args).output())
        .await
        .expect("join")
        .expect("python3 runs (scripts/install-deps.sh installs confluent-kafka and fastavro)");
    assert!(out.status.success(), "the Python producer failed: {}", String::from_utf8_lossy(&out.stderr));
    let mut events: Vec<Vec<u8>> = String::from_utf8(out.stdout)
        .expect("utf-8")
        .lines()
        .map(|l| events_json::parse_event(l, None).expect("the producer's event").encode_to_vec())
        .collect();
    events.sort();
    events
}

/// One message of `value` into `topic`'s `partition`, by rskafka; its offset.
async fn produce_one(broker: &KafkaBroker, topic: &str, partition: i32, value: &[u8]) -> i64 {
    let client = ClientBuilder::new(vec![broker.addr()]).build().await.expect("connect");
    let pc = client.partition_client(topic, partition, UnknownTopicHandling::Error).await.expect("partition");
    let record = Record {
        key: Some(b"m-poison".to_vec()),
        value: Some(value.to_vec()),
        headers: Default::default(),
        timestamp: rskafka::chrono::DateTime::from_timestamp_millis(1_732_780_800_000).expect("a time"),
    };
    pc.produce(vec![record], Compression::NoCompression).await.expect("produced")[0]
}

/// A node consuming from `brokers` with `kafka` (TOML lines of `[kafka]`).
fn start_node(dir: &Path, name: &str, brokers: &str, kafka: &str) -> Node {
    let config = dir.join(format!("{name}.toml"));
    let text = format!("[kafka]\nbrokers = [\"{brokers}\"]\nmax_wait = \"50ms\"\n{kafka}");
    std::fs::write(&config, text).expect("config");
    Node::start(&dir.join(name), &["--config", config.to_str().expect("utf-8")]).expect("node starts")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compressed_json_dead_letters_and_the_groups_offsets() {
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = KafkaBroker::start(dir.path()).expect("tansu starts");
    for t in &TOPICS[..2] {
        broker.create_topic(t, 3).await;
    }
    let kafka = "dead_letter_topic = \"dead_letters\"\ngroup = \"lag-tools\"\n";
    let node = start_node(dir.path(), "node", &broker.addr(), kafka);
    // A topic made after the consumer started is found and read too.
    broker.create_topic(TOPICS[2], 3).await;
    let want = python_produce(&broker.addr(), &["--count", "400"]).await;
    let poison_at = produce_one(&broker, "chat_events", 1, b"not json").await;
    node.wait_for_events(&want, Duration::from_secs(90)).await;

    // The poison: counted, and copied with where it came from and why.
    let letters = wait_until(Duration::from_secs(30), || async {
        broker.messages().await.remove("dead_letters").filter(|(_, m)| !m.is_empty())
    })
    .await;
    let (_, letters) = letters.expect("the dead-letter topic has the poison");
    assert_eq!(letters.len(), 1, "{letters:?}");
    let h = |k: &str| String::from_utf8_lossy(&letters[0].headers[k]).into_owned();
    assert_eq!(letters[0].value, b"not json");
    assert_eq!(letters[0].key, b"m-poison");
    assert_eq!((h("collabstream.topic"), h("collabstream.partition")), ("chat_events".into(), "1".into()));
    assert_eq!(h("collabstream.offset"), poison_at.to_string());
    assert!(h("collabstream.error").contains("invalid JSON"), "{}", h("collabstream.error"));
    assert_eq!(node.metric("collabstream_kafka_poison_messages_total").await, 1.0);
    assert_eq!(node.metric("collabstream_kafka_dead_lettered_total").await, 1.0);

    // The group's committed offsets, as Kafka's tools read them (librdkafka), reach each
    // partition's end.
    let mut ends = BTreeMap::new();
    for (topic, (_, messages)) in broker.messages().await {
        for m in messages.iter().filter(|_| TOPICS.contains(&topic.as_str())) {
            let end = ends.entry(format!("{topic}/{}", m.partition)).or_insert(0);
            *end = (*end).max(m.offset + 1);
        }
    }
    let committed = wait_until(Duration::from_secs(30), || async {
        let got = group_offsets(&broker.addr(), "lag-tools", &[]).await;
        (got == ends).then_some(got)
    })
    .await;
    assert!(
        committed.is_some(),
        "group offsets {:?}, partition ends {ends:?}",
        group_offsets(&broker.addr(), "lag-tools", &[]).await
    );
    assert_eq!(node.metric("collabstream_kafka_group_commit_failures_total").await, 0.0);
    drop(node);
    drop(broker);
}

/// `topic/partition` → the offset committed for `group`, read with confluent-kafka (with
/// `options`, librdkafka settings).
async fn group_offsets(brokers: &str, group: &str, options: &[(&str, &str)]) -> BTreeMap<String, i64> {
    let options: String = options.iter().map(|(k, v)| format!(", '{k}': '{v}'")).collect();
    let script = format!(
        "from confluent_kafka import Consumer, TopicPartition\n\
         c = Consumer({{'bootstrap.servers': '{brokers}', 'group.id': '{group}', 'enable.auto.commit': False{options}}})\n\
         tps = [TopicPartition(t, p) for t in {TOPICS:?} for p in range(3)]\n\
         for tp in c.committed(tps, timeout=10):\n    if tp.offset >= 0: print(f'{{tp.topic}}/{{tp.partition}} {{tp.offset}}')\n\
         c.close()\n"
    );
    let out = tokio::task::spawn_blocking(move || Command::new("python3").args(["-c", &script]).output())
        .await
        .expect("join")
        .expect("python3 runs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_once(' ').map(|(k, v)| (k.to_string(), v.parse().expect("an offset"))))
        .collect()
}

/// A Confluent-compatible schema registry's one read call, `GET /schemas/ids/{id}`, serving
/// `deploy/avro`'s schemas as ids 11, 12 and 13; its address.
async fn schema_registry() -> String {
    use axum::extract::Path as UrlPath;
    use axum::http::StatusCode;
    let app = axum::Router::new().route(
        "/schemas/ids/{id}",
        axum::routing::get(|UrlPath(id): UrlPath<u32>| async move {
            let name = match id {
                11 => "user_event",
                12 => "chat_event",
                13 => "meeting_event",
                _ => {
                    let body = serde_json::json!({"error_code": 40403, "message": "Schema not found"});
                    return (StatusCode::NOT_FOUND, axum::Json(body));
                }
            };
            let schema =
                std::fs::read_to_string(repo(&format!("deploy/avro/{name}.avsc"))).expect("schema file");
            (StatusCode::OK, axum::Json(serde_json::json!({ "schema": schema })))
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn avro_with_a_schema_registry_and_with_schema_files() {
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = KafkaBroker::start(dir.path()).expect("tansu starts");
    for t in TOPICS {
        broker.create_topic(t, 3).await;
    }
    let schemas = repo("deploy/avro");
    let schemas = schemas.to_str().expect("utf-8");
    let args = ["--count", "300", "--format", "avro", "--schema-dir", schemas, "--schema-ids", "11,12,13"];
    let want = python_produce(&broker.addr(), &args).await;
    // Schema 12 (chat), but not a datum of it.
    produce_one(&broker, "chat_events", 0, &[0, 0, 0, 0, 12, 0xff]).await;

    let registry = schema_registry().await;
    let by_registry = start_node(
        dir.path(),
        "registry",
        &broker.addr(),
        &format!("format = \"avro\"\nschema_registry = \"{registry}\"\n"),
    );
    let by_files = start_node(
        dir.path(),
        "files",
        &broker.addr(),
        &format!("format = \"avro\"\navro_schema_dir = \"{schemas}\"\n"),
    );
    by_registry.wait_for_events(&want, Duration::from_secs(90)).await;
    by_files.wait_for_events(&want, Duration::from_secs(90)).await;
    for node in [&by_registry, &by_files] {
        assert_eq!(node.metric("collabstream_kafka_poison_messages_total").await, 1.0);
    }
    drop((by_registry, by_files));
    drop(broker);
}

/// Brokers reached over TLS (`[kafka.tls]` with a private CA): a relay terminating TLS in front
/// of the broker, which advertises the relay, so every connection (the fetches, the group's
/// commits, the Python producer's) goes through it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn brokers_behind_tls() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_, cert, key) = certificates(dir.path());
    let relay = TlsRelay::bind(&cert, &key, None).await;
    let tls_addr = relay.addr.to_string();
    let broker = KafkaBroker::start_advertising(dir.path(), &tls_addr).expect("tansu starts");
    relay.relay_to(format!("127.0.0.1:{}", broker.port).parse().expect("an address"));
    let ca = dir.path().join("ca.pem");
    let ca = ca.to_str().expect("utf-8");
    let ssl = [("security.protocol", "SSL"), ("ssl.ca.location", ca)];
    let options: Vec<String> =
        ssl.iter().flat_map(|(k, v)| ["--option".into(), format!("{k}={v}")]).collect();
    let mut args = vec!["--count", "300", "--create-topics", "3"];
    args.extend(options.iter().map(String::as_str));
    let want = python_produce(&tls_addr, &args).await;

    // Without the CA the brokers' certificate is refused, and the log says so.
    let untrusting = start_node(dir.path(), "untrusting", &tls_addr, "group = \"tls\"\n[kafka.tls]\n");
    let refused = wait_until(Duration::from_secs(30), || async {
        untrusting.log().contains("invalid peer certificate").then_some(())
    })
    .await;
    assert!(refused.is_some(), "{}", untrusting.log());
    assert!(untrusting.stored_events().await.is_empty());
    drop(untrusting);

    let node = start_node(
        dir.path(),
        "node",
        &tls_addr,
        &format!("group = \"tls\"\n[kafka.tls]\nca_file = \"{ca}\"\n"),
    );
    node.wait_for_events(&want, Duration::from_secs(90)).await;
    let mut ends = BTreeMap::new();
    for (topic, (_, messages)) in broker.messages_via(&tls_addr, Some(ca)).await {
        for m in messages {
            let end = ends.entry(format!("{topic}/{}", m.partition)).or_insert(0);
            *end = (*end).max(m.offset + 1);
        }
    }
    let committed = wait_until(Duration::from_secs(30), || async {
        let got = group_offsets(&tls_addr, "tls", &ssl).await;
        (got == ends).then_some(got)
    })
    .await;
    assert!(
        committed.is_some(),
        "group offsets over TLS {:?}, partition ends {ends:?}",
        group_offsets(&tls_addr, "tls", &ssl).await
    );
    let failures: Vec<String> =
        node.log().lines().filter(|l| l.contains("not committed")).map(String::from).collect();
    assert_eq!(node.metric("collabstream_kafka_group_commit_failures_total").await, 0.0, "{failures:?}");
    drop(node);
    drop(broker);
}

/// `format = "protobuf"`: `collabstream.v1.Event` messages, as `collabstream produce
/// --kafka-format protobuf` writes them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn protobuf_messages_from_our_producer() {
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = KafkaBroker::start(dir.path()).expect("tansu starts");
    let target = format!("kafka://{}", broker.addr());
    let args =
        ["--target", &target, "--kafka-format", "protobuf", "--workload", "meetings", "--count", "500"];
    let out =
        collabstream_tests::produce(&[&args[..], &["--speed", "60", "--size", "10"]].concat(), &[]).await;
    assert!(collabstream_tests::sent(&out) >= 500);
    let topics = collabstream_proto::kafka_message::KafkaTopics::default();
    let mut want: Vec<Vec<u8>> = Vec::new();
    for (topic, (_, messages)) in broker.messages().await {
        for m in messages {
            let e = collabstream_proto::kafka_message::decode(
                &topics,
                &topic,
                &m.value,
                collabstream_proto::kafka_message::KafkaFormat::Protobuf,
            )
            .expect("a protobuf event");
            want.push(e.encode_to_vec());
        }
    }
    want.sort();
    let node = start_node(dir.path(), "node", &broker.addr(), "format = \"protobuf\"\n");
    node.wait_for_events(&want, Duration::from_secs(90)).await;
    assert_eq!(node.metric("collabstream_kafka_poison_messages_total").await, 0.0);
    drop(node);
    drop(broker);
}

/// `[kafka.sasl]` with PLAIN, against a relay that demands it in front of the broker (which
/// advertises the relay): the wrong password gets nothing in, the right one consumes, and the
/// group's offsets are committed over the same authentication.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sasl_plain_credentials() {
    sasl_credentials("PLAIN", "PLAIN").await;
}

/// The same with SCRAM: librdkafka produces and reads the group's offsets with SCRAM-SHA-256,
/// the node fetches (rskafka) and commits offsets (our group committer) with SCRAM-SHA-512,
/// all checked by the relay's own SCRAM server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sasl_scram_credentials() {
    sasl_credentials("SCRAM-SHA-256", "SCRAM-SHA-512").await;
}

async fn sasl_credentials(producer_mechanism: &str, node_mechanism: &str) {
    let dir = tempfile::tempdir().expect("tempdir");
    let port = collabstream_tests::free_port().expect("a port");
    let broker_addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");
    // The relay first (the broker must know its address), then the broker on `port`.
    let relay = SaslRelay::start(broker_addr, "ingest", "s3cret").await;
    let sasl_addr = relay.addr.to_string();
    let broker = KafkaBroker::start_advertising_on(dir.path(), port, &sasl_addr).expect("tansu starts");
    assert_eq!(broker.port, port);
    let sasl = [
        ("security.protocol", "SASL_PLAINTEXT"),
        ("sasl.mechanisms", producer_mechanism),
        ("sasl.username", "ingest"),
        ("sasl.password", "s3cret"),
    ];
    let options: Vec<String> =
        sasl.iter().flat_map(|(k, v)| ["--option".into(), format!("{k}={v}")]).collect();
    let mut args = vec!["--count", "300", "--create-topics", "3"];
    args.extend(options.iter().map(String::as_str));
    let want = python_produce(&sasl_addr, &args).await;
    assert!(relay.accepted_with(producer_mechanism) > 0);

    let sasl_config = |password: &str| {
        format!(
            "group = \"sasl\"\n[kafka.sasl]\nmechanism = \"{node_mechanism}\"\nusername = \"ingest\"\npassword = \"{password}\"\n"
        )
    };
    let refused_before = relay.refused.load(std::sync::atomic::Ordering::Relaxed);
    let wrong = start_node(dir.path(), "wrong", &sasl_addr, &sasl_config("guess"));
    let kept_out = wait_until(Duration::from_secs(30), || async {
        (relay.refused.load(std::sync::atomic::Ordering::Relaxed) > refused_before).then_some(())
    })
    .await;
    assert!(kept_out.is_some(), "{}", wrong.log());
    assert!(wrong.stored_events().await.is_empty());
    drop(wrong);

    let node = start_node(dir.path(), "node", &sasl_addr, &sasl_config("s3cret"));
    node.wait_for_events(&want, Duration::from_secs(90)).await;
    // Offsets start at 0 and have no gaps here: the committed ones add up to the messages.
    let committed = wait_until(Duration::from_secs(30), || async {
        let got = group_offsets(&sasl_addr, "sasl", &sasl).await;
        (got.values().sum::<i64>() == want.len() as i64).then_some(got)
    })
    .await;
    assert!(
        committed.is_some(),
        "group offsets over SASL: {:?}\n{}",
        group_offsets(&sasl_addr, "sasl", &sasl).await,
        node.log()
    );
    assert!(relay.accepted_with(node_mechanism) > 0);
    assert_eq!(node.metric("collabstream_kafka_group_commit_failures_total").await, 0.0);
    drop(node);
    drop(broker);
}
