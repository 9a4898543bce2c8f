//! `collabstream-tests`: end-to-end tests and the harness that runs real `collabstream`
//! processes (and reference systems such as Prometheus and a Kafka broker) on loopback.
//!
//! Every process a test starts is stopped by its pid when its handle drops, and every wait is
//! bounded. Not published; depends on nothing but the wire formats, like a real client.

pub mod cluster;
mod demo;
mod kafka;
mod moto;
mod node;
mod produce;
mod prom;
mod prometheus;
pub mod promql_suite;
mod proxy;
mod sasl_relay;
mod tls;

pub use cluster::TestCluster;
pub use demo::Demo;
pub use kafka::{KafkaBroker, KafkaMessage};
pub use moto::Moto;
pub use node::{Exported, Node, binary, series_key};
pub use produce::{produce, sent};
pub use prom::{remote_write_body, wait_until};
pub use prometheus::{Prometheus, free_port, free_ports};
pub use proxy::Proxy;
pub use sasl_relay::SaslRelay;
pub use tls::{TlsRelay, certificates};
