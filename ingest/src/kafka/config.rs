//! `[kafka]`: where the events come from, how they are encoded, and how to reach the brokers.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use collabstream_proto::kafka_message::{KafkaFormat, KafkaTopics};
use rskafka::client::{ClientBuilder, Credentials, SaslConfig};
use serde::{Deserialize, Serialize};

/// How a message's value is encoded.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MessageFormat {
    /// One event object, as `POST /api/v1/events` takes it.
    #[default]
    Json,
    /// A `collabstream.v1.Event` message.
    Protobuf,
    /// Avro in the Confluent wire format (a zero byte, the schema id, the datum); the schema
    /// comes from `schema_registry` when set, else from `avro_schema_dir`.
    Avro,
}

impl MessageFormat {
    /// The format our own producer shares, if it is one of those.
    pub fn shared(self) -> Option<KafkaFormat> {
        match self {
            MessageFormat::Json => Some(KafkaFormat::Json),
            MessageFormat::Protobuf => Some(KafkaFormat::Protobuf),
            MessageFormat::Avro => None,
        }
    }
}

/// `[kafka.tls]`: present, the brokers are reached over TLS.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM certificates of the authorities the brokers' certificates chain to; unset, the
    /// public web authorities (webpki-roots).
    pub ca_file: Option<PathBuf>,
    /// PEM certificate chain and private key, when the brokers ask for client certificates.
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
}

/// `[kafka.sasl]`: present, the client authenticates.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SaslSettings {
    /// `PLAIN`, `SCRAM-SHA-256` or `SCRAM-SHA-512`.
    pub mechanism: String,
    pub username: String,
    /// Unset here: `KAFKA_SASL_PASSWORD`.
    #[serde(default)]
    pub password: Option<String>,
}

/// `[kafka]`. No brokers (here or in `KAFKA_BOOTSTRAP_SERVERS`): no consumer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct KafkaConfig {
    /// `host:port` of the bootstrap brokers.
    pub brokers: Vec<String>,
    pub topics: KafkaTopics,
    pub format: MessageFormat,
    /// At most this many bytes of messages a fetch (and so a log entry) from one partition.
    pub max_batch_bytes: usize,
    /// How long a fetch waits for messages when a partition has none.
    #[serde(with = "humantime_serde")]
    pub max_wait: Duration,
    /// How far in event time one partition may run ahead of the earliest event another
    /// partition has waiting. Keep it under the rules' `max_out_of_orderness`, or one
    /// partition's events arrive after another partition's have closed their windows.
    #[serde(with = "humantime_serde")]
    pub align_within: Duration,
    /// The consumer group our progress is committed to, only so that Kafka's own lag tools
    /// see it (we resume from the replicated offsets, never from the group's). Empty: none.
    pub group: String,
    /// Where poison messages are copied, with headers naming where they came from and why
    /// they were refused. Empty: they are only logged and counted.
    pub dead_letter_topic: String,
    /// A Confluent-compatible schema registry (`http://host:8081`) for `format = "avro"`.
    pub schema_registry: String,
    /// Without a registry: `<topic>.avsc` files, the writer schema of each topic's messages.
    pub avro_schema_dir: Option<PathBuf>,
    pub tls: Option<TlsConfig>,
    pub sasl: Option<SaslSettings>,
}

impl Default for KafkaConfig {
    fn default() -> Self {
        Self {
            brokers: Vec::new(),
            topics: KafkaTopics::default(),
            format: MessageFormat::Json,
            max_batch_bytes: 4 << 20,
            max_wait: Duration::from_millis(500),
            align_within: Duration::from_secs(2),
            group: "collabstream".into(),
            dead_letter_topic: String::new(),
            schema_registry: String::new(),
            avro_schema_dir: None,
            tls: None,
            sasl: None,
        }
    }
}

impl KafkaConfig {
    /// The brokers configured, else those in `KAFKA_BOOTSTRAP_SERVERS` (comma-separated).
    pub fn brokers_or_env(&self) -> Vec<String> {
        if !self.brokers.is_empty() {
            return self.brokers.clone();
        }
        std::env::var("KAFKA_BOOTSTRAP_SERVERS")
            .unwrap_or_default()
            .split(',')
            .map(str::trim)
            .filter(|b| !b.is_empty())
            .map(String::from)
            .collect()
    }

    pub fn validate(&self) -> Result<(), String> {
        if !(1024..=(256 << 20)).contains(&self.max_batch_bytes) {
            return Err("kafka.max_batch_bytes must be between 1 KiB and 256 MiB".into());
        }
        if self.max_wait < Duration::from_millis(1) || self.max_wait > Duration::from_secs(60) {
            return Err("kafka.max_wait must be between 1ms and 60s".into());
        }
        if self.format == MessageFormat::Avro
            && self.schema_registry.is_empty()
            && self.avro_schema_dir.is_none()
        {
            return Err("kafka.format = \"avro\" needs kafka.schema_registry (a registry URL) or \
                        kafka.avro_schema_dir (a folder of <topic>.avsc files)"
                .into());
        }
        if self.topics.all().contains(&self.dead_letter_topic.as_str()) {
            return Err("kafka.dead_letter_topic must not be one of the topics consumed".into());
        }
        // Built once here so that a bad file or mechanism stops the start, not a later term.
        super::decode::Decoder::new(self)?;
        self.client_builder().map(|_| ())
    }

    /// A client builder for the brokers, with the TLS and SASL settings.
    pub(crate) fn client_builder(&self) -> Result<ClientBuilder, String> {
        let mut b = ClientBuilder::new(self.brokers_or_env());
        if let Some(tls) = &self.tls {
            b = b.tls_config(Arc::new(client_tls(tls)?));
        }
        if let Some(sasl) = &self.sasl {
            b = b.sasl_config(sasl_config(sasl)?);
        }
        Ok(b)
    }
}

impl SaslSettings {
    /// `password`, else `KAFKA_SASL_PASSWORD`.
    pub(crate) fn password(&self) -> Result<String, String> {
        match &self.password {
            Some(p) => Ok(p.clone()),
            None => std::env::var("KAFKA_SASL_PASSWORD").map_err(|_| {
                "kafka.sasl needs a password (kafka.sasl.password or KAFKA_SASL_PASSWORD)".into()
            }),
        }
    }

    /// The mechanism's name as brokers spell it.
    pub(crate) fn mechanism_name(&self) -> String {
        self.mechanism.to_ascii_uppercase()
    }
}

fn sasl_config(s: &SaslSettings) -> Result<SaslConfig, String> {
    let credentials = Credentials::new(s.username.clone(), s.password()?);
    match s.mechanism_name().as_str() {
        "PLAIN" => Ok(SaslConfig::Plain(credentials)),
        "SCRAM-SHA-256" => Ok(SaslConfig::ScramSha256(credentials)),
        "SCRAM-SHA-512" => Ok(SaslConfig::ScramSha512(credentials)),
        other => Err(format!(
            "kafka.sasl.mechanism {other:?} is not supported: use PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512"
        )),
    }
}

pub(crate) fn client_tls(t: &TlsConfig) -> Result<rustls::ClientConfig, String> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};

    let mut roots = rustls::RootCertStore::empty();
    match &t.ca_file {
        Some(path) => {
            let certs = CertificateDer::pem_file_iter(path)
                .and_then(|i| i.collect::<Result<Vec<_>, _>>())
                .map_err(|e| format!("kafka.tls.ca_file {}: {e}", path.display()))?;
            if certs.is_empty() {
                return Err(format!("kafka.tls.ca_file {} holds no PEM certificate", path.display()));
            }
            for c in certs {
                roots.add(c).map_err(|e| format!("kafka.tls.ca_file {}: {e}", path.display()))?;
            }
        }
        None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("kafka.tls: {e}"))?
        .with_root_certificates(roots);
    match (&t.cert_file, &t.key_file) {
        (None, None) => Ok(builder.with_no_client_auth()),
        (Some(cert), Some(key)) => {
            let chain = CertificateDer::pem_file_iter(cert)
                .and_then(|i| i.collect::<Result<Vec<_>, _>>())
                .map_err(|e| format!("kafka.tls.cert_file {}: {e}", cert.display()))?;
            let key = PrivateKeyDer::from_pem_file(key)
                .map_err(|e| format!("kafka.tls.key_file {}: {e}", key.display()))?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| format!("kafka.tls client certificate: {e}"))
        }
        _ => Err("kafka.tls needs both cert_file and key_file, or neither".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_settings_are_refused_with_the_key_to_fix() {
        let avro = KafkaConfig { format: MessageFormat::Avro, ..Default::default() };
        assert!(avro.validate().unwrap_err().contains("kafka.schema_registry"));
        let sasl = KafkaConfig {
            sasl: Some(SaslSettings {
                mechanism: "GSSAPI".into(),
                username: "u".into(),
                password: Some("p".into()),
            }),
            ..Default::default()
        };
        assert!(sasl.validate().unwrap_err().contains("GSSAPI"));
        let tls = KafkaConfig {
            tls: Some(TlsConfig { ca_file: Some("/nonexistent/ca.pem".into()), ..Default::default() }),
            ..Default::default()
        };
        assert!(tls.validate().unwrap_err().contains("kafka.tls.ca_file /nonexistent/ca.pem"));
        let dlq = KafkaConfig { dead_letter_topic: "chat_events".into(), ..Default::default() };
        assert!(dlq.validate().is_err());
        assert_eq!(KafkaConfig::default().validate(), Ok(()));
    }

    #[test]
    fn the_toml_keys_read_as_documented() {
        let c: KafkaConfig = toml::from_str(
            "brokers = [\"b:9092\"]\nformat = \"avro\"\nschema_registry = \"http://127.0.0.1:8081\"\ngroup = \"g\"\n\
             dead_letter_topic = \"dlq\"\n[tls]\n[sasl]\nmechanism = \"PLAIN\"\nusername = \"u\"\npassword = \"p\"\n",
        )
        .expect("parses");
        assert_eq!(c.format, MessageFormat::Avro);
        assert_eq!(c.tls, Some(TlsConfig::default()));
        assert_eq!(c.sasl.as_ref().map(|s| s.username.as_str()), Some("u"));
        assert_eq!(c.validate(), Ok(()));
    }
}
