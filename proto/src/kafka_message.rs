//! Events as Kafka messages: which topic an event goes to, its key, and its value in the JSON
//! format of `/api/v1/events` ([`crate::events_json`]) or as a protobuf `v1.Event`.
//!
//! The producer (`collabstream produce --target kafka://…`) writes with [`KafkaTopics::topic_for`]
//! and [`encode`]; a consumer reads with [`decode`], where a JSON message may leave out `type`
//! when its topic implies it. Keys are the meeting id, so a meeting's events stay in one
//! partition, in order.

use serde::{Deserialize, Serialize};

use crate::v1::{self, event::Event as Kind};

/// How a message's value is encoded.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KafkaFormat {
    /// One event object, as `POST /api/v1/events` takes it.
    #[default]
    Json,
    /// A `collabstream.v1.Event` message.
    Protobuf,
}

impl std::str::FromStr for KafkaFormat {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "json" => Ok(KafkaFormat::Json),
            "protobuf" => Ok(KafkaFormat::Protobuf),
            other => Err(format!("unknown Kafka format {other:?}: use json or protobuf")),
        }
    }
}

/// The topic of each event type.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct KafkaTopics {
    pub user: String,
    pub chat: String,
    pub meeting: String,
}

impl Default for KafkaTopics {
    fn default() -> Self {
        Self { user: "user_events".into(), chat: "chat_events".into(), meeting: "meeting_events".into() }
    }
}

impl KafkaTopics {
    /// The topic `e` is produced to; `None` for an event without a type.
    pub fn topic_for(&self, e: &v1::Event) -> Option<&str> {
        Some(match e.event.as_ref()? {
            Kind::User(_) => &self.user,
            Kind::Chat(_) => &self.chat,
            Kind::Meeting(_) => &self.meeting,
        })
    }

    /// The event type a topic implies (for JSON messages without `type`).
    pub fn type_of(&self, topic: &str) -> Option<&'static str> {
        if topic == self.user {
            Some("user")
        } else if topic == self.chat {
            Some("chat")
        } else if topic == self.meeting {
            Some("meeting")
        } else {
            None
        }
    }

    /// Every topic, in a fixed order.
    pub fn all(&self) -> [&str; 3] {
        [&self.user, &self.chat, &self.meeting]
    }
}

/// The message key: the meeting id, so that a meeting's events share a partition.
pub fn key(e: &v1::Event) -> Vec<u8> {
    crate::events::meeting_id(e).unwrap_or_default().as_bytes().to_vec()
}

/// The message value.
pub fn encode(e: &v1::Event, format: KafkaFormat) -> Vec<u8> {
    match format {
        KafkaFormat::Json => crate::events_json::to_json(e).to_string().into_bytes(),
        KafkaFormat::Protobuf => prost::Message::encode_to_vec(e),
    }
}

/// Reads a message value from `topic`. Errors say what is wrong with the message.
pub fn decode(
    topics: &KafkaTopics,
    topic: &str,
    value: &[u8],
    format: KafkaFormat,
) -> Result<v1::Event, String> {
    match format {
        KafkaFormat::Json => {
            let text = std::str::from_utf8(value).map_err(|_| "the message is not UTF-8 JSON".to_string())?;
            crate::events_json::parse_event(text, topics.type_of(topic))
        }
        KafkaFormat::Protobuf => <v1::Event as prost::Message>::decode(value)
            .map_err(|e| format!("the message is not a collabstream.v1.Event: {e}")),
    }
}

/// The partition of `key` among `partitions`, as Kafka's default partitioner picks it
/// (murmur2 of the key, sign bit cleared), so that our producer and others agree.
pub fn partition_for(key: &[u8], partitions: i32) -> i32 {
    if partitions <= 1 {
        return 0;
    }
    ((murmur2(key) & 0x7fff_ffff) % partitions as u32) as i32
}

/// Murmur2 with Kafka's seed (`org.apache.kafka.common.utils.Utils.murmur2`).
fn murmur2(data: &[u8]) -> u32 {
    const SEED: u32 = 0x9747_b28c;
    const M: u32 = 0x5bd1_e995;
    const R: u32 = 24;
    let mut h = SEED ^ data.len() as u32;
    let mut chunks = data.chunks_exact(4);
    for c in &mut chunks {
        let mut k = u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }
    let rest = chunks.remainder();
    if rest.len() >= 3 {
        h ^= u32::from(rest[2]) << 16;
    }
    if rest.len() >= 2 {
        h ^= u32::from(rest[1]) << 8;
    }
    if !rest.is_empty() {
        h ^= u32::from(rest[0]);
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chat() -> v1::Event {
        v1::Event {
            event: Some(Kind::Chat(v1::ChatEvent {
                meeting_id: "m1".into(),
                user_id: "u1".into(),
                message_id: "x".into(),
                length: 42,
                timestamp_ms: 1_732_780_800_000,
                ..Default::default()
            })),
        }
    }

    #[test]
    fn events_go_to_their_topic_and_back_in_either_format() {
        let topics = KafkaTopics::default();
        let e = chat();
        assert_eq!(topics.topic_for(&e), Some("chat_events"));
        assert_eq!(key(&e), b"m1");
        for format in [KafkaFormat::Json, KafkaFormat::Protobuf] {
            assert_eq!(decode(&topics, "chat_events", &encode(&e, format), format).unwrap(), e);
        }
        assert_eq!(topics.topic_for(&v1::Event::default()), None);
    }

    #[test]
    fn a_json_message_may_leave_its_type_to_the_topic() {
        let topics = KafkaTopics::default();
        let msg = br#"{"meeting_id":"m1","user_id":"u1","action":"join","timestamp":1732780800000}"#;
        let e = decode(&topics, "user_events", msg, KafkaFormat::Json).unwrap();
        assert!(matches!(e.event, Some(Kind::User(_))));
        let err = decode(&topics, "elsewhere", msg, KafkaFormat::Json).unwrap_err();
        assert!(err.contains("type is required"), "{err}");
        assert!(decode(&topics, "user_events", b"\xff", KafkaFormat::Json).unwrap_err().contains("UTF-8"));
        assert!(decode(&topics, "user_events", b"\xff", KafkaFormat::Protobuf).is_err());
        assert_eq!("protobuf".parse::<KafkaFormat>(), Ok(KafkaFormat::Protobuf));
        assert!("avro".parse::<KafkaFormat>().unwrap_err().contains("json or protobuf"));
    }

    #[test]
    fn partitions_match_kafkas_default_partitioner() {
        // Utils.murmur2 values from Kafka's own tests (UtilsTest.testMurmur2).
        assert_eq!(murmur2(b"21") as i32, -973_932_308);
        assert_eq!(murmur2(b"foobar") as i32, -790_332_482);
        assert_eq!(murmur2(b"a-little-bit-long-string") as i32, -985_981_536);
        assert_eq!(murmur2(b"a-little-bit-longer-string") as i32, -1_486_304_829);
        assert_eq!(murmur2(b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8") as i32, -58_897_971);
        assert_eq!(murmur2(b"abc") as i32, 479_470_107);
        assert_eq!(partition_for(b"m1", 1), 0);
        assert!((0..100).all(|i| (0..3).contains(&partition_for(format!("m{i}").as_bytes(), 3))));
    }
}
