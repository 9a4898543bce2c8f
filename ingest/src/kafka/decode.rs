//! [`Decoder`]: a Kafka message's value → an event, in the configured format.
//!
//! Avro comes in the Confluent wire format: a zero byte, the schema id (4 bytes, big-endian),
//! then the datum. The writer schema is the registry's for that id when a registry is
//! configured (fetched once per id), else the topic's `.avsc` file. The record's fields are
//! read as the JSON format's (`type` implied by the topic, `timestamp` in milliseconds; Avro's
//! `timestamp-micros` and `-nanos` are converted), so one schema serves both.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use apache_avro::Schema;
use apache_avro::types::Value as Avro;
use collabstream_proto::kafka_message::{self, KafkaTopics};
use collabstream_proto::v1;

use super::config::{KafkaConfig, MessageFormat};

/// Why a message gave no event.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Undecoded {
    /// The message is not an event (or not one we can read): skipped, never retried.
    Poison(String),
    /// Something outside the message failed (the schema registry): try the batch again later,
    /// so that no good message is skipped because of it.
    Retry(String),
}

pub(crate) struct Decoder {
    topics: KafkaTopics,
    format: MessageFormat,
    /// `<topic>` → its writer schema, from `avro_schema_dir`.
    avro_files: HashMap<String, Arc<Schema>>,
    registry: Option<Registry>,
}

struct Registry {
    url: String,
    http: reqwest::Client,
    by_id: Mutex<HashMap<u32, Arc<Schema>>>,
}

impl Decoder {
    /// Reads the `.avsc` files now, so that a missing or bad one stops the start.
    pub(crate) fn new(config: &KafkaConfig) -> Result<Self, String> {
        let mut avro_files = HashMap::new();
        if config.format == MessageFormat::Avro
            && let Some(dir) = &config.avro_schema_dir
        {
            for topic in config.topics.all() {
                if let Some(schema) = schema_file(dir, topic)? {
                    avro_files.insert(topic.to_string(), Arc::new(schema));
                } else if config.schema_registry.is_empty() {
                    return Err(format!(
                        "kafka.avro_schema_dir {}: no {topic}.avsc (nor {}.avsc) for topic {topic}",
                        dir.display(),
                        topic.strip_suffix('s').unwrap_or(topic)
                    ));
                }
            }
        }
        let registry =
            (config.format == MessageFormat::Avro && !config.schema_registry.is_empty()).then(|| Registry {
                url: config.schema_registry.trim_end_matches('/').to_string(),
                http: reqwest::Client::builder().timeout(Duration::from_secs(10)).build().unwrap_or_default(),
                by_id: Mutex::new(HashMap::new()),
            });
        Ok(Self { topics: config.topics.clone(), format: config.format, avro_files, registry })
    }

    /// The event in a message of `topic`, checked as `POST /api/v1/events` checks it.
    pub(crate) async fn decode(&self, topic: &str, value: &[u8]) -> Result<v1::Event, Undecoded> {
        let event = match self.format.shared() {
            Some(f) => kafka_message::decode(&self.topics, topic, value, f).map_err(Undecoded::Poison)?,
            None => self.avro(topic, value).await?,
        };
        collabstream_proto::events::validate(&event).map_err(|e| Undecoded::Poison(e.to_string()))?;
        Ok(event)
    }

    async fn avro(&self, topic: &str, value: &[u8]) -> Result<v1::Event, Undecoded> {
        let poison = |why: String| Undecoded::Poison(why);
        let (id, mut datum) = match value {
            [0, a, b, c, d, rest @ ..] => (u32::from_be_bytes([*a, *b, *c, *d]), rest),
            _ => {
                return Err(poison(
                    "not Avro in the Confluent wire format (a zero byte, then the schema id)".into(),
                ));
            }
        };
        let schema = match &self.registry {
            Some(r) => r.schema(id).await?,
            None => self
                .avro_files
                .get(topic)
                .cloned()
                .ok_or_else(|| poison(format!("no schema for topic {topic}")))?,
        };
        let record = apache_avro::from_avro_datum(&schema, &mut datum, None)
            .map_err(|e| poison(format!("not an Avro datum of schema {id}: {e}")))?;
        let json = record_to_json(record).map_err(poison)?;
        collabstream_proto::events_json::parse_event(&json.to_string(), self.topics.type_of(topic))
            .map_err(poison)
    }
}

impl Registry {
    /// The schema of `id`: `GET /schemas/ids/{id}`, once.
    async fn schema(&self, id: u32) -> Result<Arc<Schema>, Undecoded> {
        if let Some(s) = self.by_id.lock().unwrap_or_else(std::sync::PoisonError::into_inner).get(&id) {
            return Ok(s.clone());
        }
        let url = format!("{}/schemas/ids/{id}", self.url);
        let retry = |e: String| Undecoded::Retry(format!("schema registry {url}: {e}"));
        let answer = self.http.get(&url).send().await.map_err(|e| retry(e.to_string()))?;
        let status = answer.status();
        if !status.is_success() {
            // Only the registry's own "schema not found" condemns the message: a 404 from a
            // wrong URL or a proxy would otherwise dead-letter every message.
            let body: serde_json::Value = answer.json().await.unwrap_or_default();
            if status == reqwest::StatusCode::NOT_FOUND && body["error_code"] == 40403 {
                return Err(Undecoded::Poison(format!("schema {id} is not in the registry")));
            }
            return Err(retry(format!("answered {status}: {body}")));
        }
        #[derive(serde::Deserialize)]
        struct Answer {
            schema: String,
            #[serde(rename = "schemaType", default)]
            schema_type: Option<String>,
        }
        let a: Answer = answer.json().await.map_err(|e| retry(format!("unreadable answer: {e}")))?;
        if a.schema_type.as_deref().is_some_and(|t| t != "AVRO") {
            return Err(Undecoded::Poison(format!("schema {id} is {:?}, not Avro", a.schema_type)));
        }
        let schema = Arc::new(
            Schema::parse_str(&a.schema)
                .map_err(|e| Undecoded::Poison(format!("schema {id} does not parse: {e}")))?,
        );
        self.by_id.lock().unwrap_or_else(std::sync::PoisonError::into_inner).insert(id, schema.clone());
        Ok(schema)
    }
}

/// `<dir>/<topic>.avsc`, else the origin project's name for it (`user_events` → `user_event.avsc`).
fn schema_file(dir: &Path, topic: &str) -> Result<Option<Schema>, String> {
    let names = [Some(topic), topic.strip_suffix('s')];
    for path in names.into_iter().flatten().map(|n| dir.join(format!("{n}.avsc"))) {
        match std::fs::read_to_string(&path) {
            Ok(text) => {
                return Schema::parse_str(&text)
                    .map(Some)
                    .map_err(|e| format!("{} is not an Avro schema: {e}", path.display()));
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
        }
    }
    Ok(None)
}

/// A record's fields as a JSON object, timestamps in milliseconds.
fn record_to_json(record: Avro) -> Result<serde_json::Value, String> {
    let Avro::Record(fields) = record else { return Err("the Avro datum is not a record".into()) };
    let mut out = serde_json::Map::new();
    for (name, mut v) in fields {
        while let Avro::Union(_, inner) = v {
            v = *inner;
        }
        // A null reads as a field left out (the JSON format's defaults), not as JSON null.
        if matches!(v, Avro::Null) {
            continue;
        }
        let v = match v {
            Avro::TimestampMicros(t) | Avro::LocalTimestampMicros(t) => Avro::Long(t.div_euclid(1000)),
            Avro::TimestampNanos(t) | Avro::LocalTimestampNanos(t) => Avro::Long(t.div_euclid(1_000_000)),
            other => other,
        };
        let json = serde_json::Value::try_from(v).map_err(|e| format!("field {name}: {e}"))?;
        out.insert(name, json);
    }
    Ok(serde_json::Value::Object(out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use apache_avro::types::Record;

    const CHAT: &str = r#"{"type":"record","name":"ChatEvent","fields":[
        {"name":"meeting_id","type":"string"},{"name":"user_id","type":"string"},
        {"name":"message_id","type":["null","string"],"default":null},
        {"name":"length","type":"int"},
        {"name":"timestamp","type":{"type":"long","logicalType":"timestamp-micros"}}]}"#;

    fn wire(schema: &Schema, id: u32, fill: impl FnOnce(&mut Record)) -> Vec<u8> {
        let mut r = Record::new(schema).expect("a record schema");
        fill(&mut r);
        let mut out = vec![0];
        out.extend(id.to_be_bytes());
        out.extend(apache_avro::to_avro_datum(schema, r).expect("encodes"));
        out
    }

    #[tokio::test]
    async fn avro_from_schema_files_reads_as_the_json_format() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("chat_event.avsc"), CHAT).expect("write");
        let config = KafkaConfig {
            format: MessageFormat::Avro,
            avro_schema_dir: Some(dir.path().to_path_buf()),
            topics: KafkaTopics { user: "u".into(), chat: "chat_events".into(), meeting: "m".into() },
            ..Default::default()
        };
        assert!(Decoder::new(&config).err().expect("a topic has no schema").contains("no u.avsc"));
        for t in ["u", "m"] {
            std::fs::write(dir.path().join(format!("{t}.avsc")), CHAT).expect("write");
        }
        let d = Decoder::new(&config).expect("schemas read");
        let schema = Schema::parse_str(CHAT).expect("parses");
        let msg = wire(&schema, 7, |r| {
            r.put("meeting_id", "m1");
            r.put("user_id", "u1");
            r.put("message_id", Avro::Union(1, Box::new(Avro::String("x".into()))));
            r.put("length", 42);
            r.put("timestamp", Avro::TimestampMicros(1_732_780_800_123_456));
        });
        let without_id = wire(&schema, 7, |r| {
            r.put("meeting_id", "m1");
            r.put("user_id", "u1");
            r.put("message_id", Avro::Union(0, Box::new(Avro::Null)));
            r.put("length", 1);
            r.put("timestamp", Avro::TimestampMicros(1_732_780_800_000_000));
        });
        let e = d.decode("chat_events", &without_id).await.expect("a null field is a field left out");
        assert_eq!(collabstream_proto::events_json::to_json(&e)["message_id"], "");
        let e = d.decode("chat_events", &msg).await.expect("an event");
        let json = collabstream_proto::events_json::to_json(&e);
        assert_eq!(json["type"], "chat");
        assert_eq!(json["message_id"], "x");
        assert_eq!(json["length"], 42);
        assert_eq!(json["timestamp"], 1_732_780_800_123_i64);
        assert!(matches!(d.decode("chat_events", &msg[1..]).await, Err(Undecoded::Poison(_))));
        assert!(matches!(d.decode("chat_events", &msg[..msg.len() - 3]).await, Err(Undecoded::Poison(_))));
    }
}
