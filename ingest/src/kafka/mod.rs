//! The Kafka consumer: on the Raft leader only, each partition of the event topics is read from
//! where its applied messages end, and each fetched batch goes into one log entry with the
//! span of offsets it covers (`LogWrite.sources`), so the events and the offsets they advance
//! are applied together, once (see `collabstream_store`'s `source_offsets`).
//!
//! Offsets live in the replicated state, not in a consumer group: a new leader resumes from
//! what the cluster applied, and a deposed leader's late batch is refused by apply on every
//! replica alike. The group only gets a copy of the applied offsets, for Kafka's lag tools
//! ([`group`]). A message that is not an event (poison) is logged with its topic, partition
//! and offset, counted, copied to the dead-letter topic when there is one, and skipped: its
//! offset is still covered by the batch's span, so the partition moves on.
//!
//! - [`run`] (`leader`): one term of leadership after another; finds topics and partitions.
//! - `partition`: one partition's propose loop, fed by its `fetcher` reading ahead; `alignment` keeps the partitions
//!   close in event time, so that a sparse topic does not push the rules' watermarks past a
//!   busy one's events.
//! - `decode`: JSON, protobuf, or Avro (Confluent wire format, registry or `.avsc` files).
//! - `dead_letter`, `group`: the copies of poison messages, the group's offsets.

mod alignment;
mod config;
mod dead_letter;
mod decode;
mod fetcher;
mod group;
mod leader;
mod metrics;
mod partition;

pub use config::{KafkaConfig, MessageFormat, SaslSettings, TlsConfig};
pub use leader::run;
pub use metrics::KafkaMetrics;
