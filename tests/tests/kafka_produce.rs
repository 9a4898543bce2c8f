//! `collabstream produce --target kafka://…` against a real Kafka-protocol broker (tansu on
//! loopback): every event lands in its type's topic, keyed by its meeting, in the partition
//! Kafka's default partitioner picks, readable in the chosen format; `kafka` alone takes the
//! brokers from `KAFKA_BOOTSTRAP_SERVERS`; samples are refused with a clear message.

use std::collections::BTreeMap;
use std::time::Duration;

use collabstream_proto::kafka_message::{self, KafkaFormat, KafkaTopics};
use collabstream_proto::v1;
use collabstream_tests::{KafkaBroker, produce, sent};

/// One message as read back: its partition, key, and the event its value decodes to.
type Message = (i32, Vec<u8>, v1::Event);

/// Every topic's partition count and messages.
async fn read_all(broker: &KafkaBroker, format: KafkaFormat) -> BTreeMap<String, (i32, Vec<Message>)> {
    let topics = KafkaTopics::default();
    let mut out = BTreeMap::new();
    for (topic, (partitions, messages)) in broker.messages().await {
        let decoded = messages
            .into_iter()
            .map(|m| {
                let e = kafka_message::decode(&topics, &topic, &m.value, format)
                    .unwrap_or_else(|err| panic!("{topic}/{}: {err}", m.partition));
                (m.partition, m.key, e)
            })
            .collect();
        out.insert(topic, (partitions, decoded));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn meetings_go_to_kafka_topics_by_event_type_in_either_format() {
    let topics = KafkaTopics::default();
    for (format, flag) in [(KafkaFormat::Json, "json"), (KafkaFormat::Protobuf, "protobuf")] {
        let dir = tempfile::tempdir().expect("tempdir");
        let broker = KafkaBroker::start(dir.path()).expect("tansu starts");
        let target = format!("kafka://{}", broker.addr());
        let out = produce(
            &[
                "--target",
                &target,
                "--workload",
                "meetings",
                "--size",
                "20",
                "--count",
                "300",
                "--speed",
                "30",
                "--kafka-format",
                flag,
            ],
            &[],
        )
        .await;
        let sent = sent(&out);
        assert!(sent >= 300, "{sent}");

        let by_topic = read_all(&broker, format).await;
        let names: Vec<&str> = by_topic.keys().map(String::as_str).collect();
        assert_eq!(names, ["chat_events", "meeting_events", "user_events"], "{by_topic:?}");
        let total: usize = by_topic.values().map(|(_, m)| m.len()).sum();
        assert_eq!(total as u64, sent, "every event produced is in the broker, once");
        for (topic, (partitions, messages)) in &by_topic {
            assert_eq!(*partitions, 3, "topics are created with three partitions");
            for (p, key, e) in messages {
                assert_eq!(topics.topic_for(e), Some(topic.as_str()), "{e:?} in {topic}");
                assert_eq!(key, &kafka_message::key(e), "keyed by meeting");
                assert_eq!(
                    *p,
                    kafka_message::partition_for(key, *partitions),
                    "the default partitioner's partition for {key:?}"
                );
            }
        }
        drop(broker);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn brokers_come_from_kafka_bootstrap_servers_and_samples_are_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = KafkaBroker::start(dir.path()).expect("tansu starts");
    let out = produce(
        &["--target", "kafka", "--workload", "meetings", "--size", "5", "--count", "50", "--speed", "30"],
        &[("KAFKA_BOOTSTRAP_SERVERS", broker.addr())],
    )
    .await;
    assert!(sent(&out) >= 50);
    let total: usize = tokio::time::timeout(Duration::from_secs(60), read_all(&broker, KafkaFormat::Json))
        .await
        .expect("read back in time")
        .values()
        .map(|(_, m)| m.len())
        .sum();
    assert!(total >= 50);

    let out = produce(&["--target", "kafka", "--workload", "meetings", "--count", "1"], &[]).await;
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("KAFKA_BOOTSTRAP_SERVERS"), "{out:?}");

    let target = format!("kafka://{}", broker.addr());
    let out = produce(&["--target", &target, "--workload", "node-exporter", "--count", "1"], &[]).await;
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("Kafka carries events"), "{out:?}");
}
