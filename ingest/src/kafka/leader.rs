//! [`run`]: consumes while this node leads. Each term connects anew, and keeps looking for
//! the topics' partitions (a topic created later, partitions added while consuming), starting
//! one [`PartitionConsumer`] for each partition it finds.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use collabstream_raft::Writer;
use rskafka::BackoffConfig;
use rskafka::client::Client;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::alignment::Alignment;
use super::config::KafkaConfig;
use super::dead_letter::DeadLetters;
use super::decode::Decoder;
use super::group::GroupCommitter;
use super::metrics::KafkaMetrics;
use super::partition::PartitionConsumer;

/// How often a leader looks for topics and partitions it does not consume yet.
const DISCOVERY: Duration = Duration::from_secs(5);

/// Consumes while this node leads, until `stop`. `config` was validated.
pub async fn run(writer: Writer, config: KafkaConfig, metrics: Arc<KafkaMetrics>, stop: CancellationToken) {
    let decoder = match Decoder::new(&config) {
        Ok(d) => Arc::new(d),
        Err(e) => {
            tracing::error!(error = e, "kafka consumer not started");
            return;
        }
    };
    let config = Arc::new(config);
    while !stop.is_cancelled() {
        // Not before the configuration is in force, so that the configured rules see every
        // message.
        if !writer.configuration_in_force() {
            if pause(&stop, Duration::from_millis(200)).await {
                return;
            }
            continue;
        }
        // This term's consumers, stopped as soon as the node no longer leads.
        let term = stop.child_token();
        let mut tasks = JoinSet::new();
        let lead = Term {
            writer: writer.clone(),
            config: config.clone(),
            decoder: decoder.clone(),
            metrics: metrics.clone(),
        };
        tasks.spawn(lead.run(term.clone()));
        // A partition that finds it no longer leads ends the term itself.
        while writer.is_leader() && !stop.is_cancelled() && !term.is_cancelled() {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        term.cancel();
        while tasks.join_next().await.is_some() {}
        metrics.clear_lags();
        tracing::info!("kafka consumer stopped: this node no longer leads");
    }
}

struct Term {
    writer: Writer,
    config: Arc<KafkaConfig>,
    decoder: Arc<Decoder>,
    metrics: Arc<KafkaMetrics>,
}

impl Term {
    async fn run(self, stop: CancellationToken) {
        let Some(client) = self.connect(&stop).await else { return };
        let dead_letters = (!self.config.dead_letter_topic.is_empty())
            .then(|| Arc::new(DeadLetters::new(client.clone(), self.config.dead_letter_topic.clone())));
        let mut tasks = JoinSet::new();
        if !self.config.group.is_empty() {
            match GroupCommitter::new(&self.config, self.writer.clone(), self.metrics.clone()) {
                Ok(committer) => {
                    tasks.spawn(committer.run(stop.clone()));
                }
                Err(e) => tracing::error!(error = e, "kafka: offsets not committed to the group"),
            }
        }
        let alignment = Arc::new(Alignment::new(self.config.align_within));
        let mut consuming = BTreeSet::new();
        loop {
            match or_stop(&stop, client.list_topics()).await {
                None => break,
                Some(Err(e)) => tracing::warn!(error = %e, "kafka: listing topics failed; retrying"),
                Some(Ok(listed)) => {
                    for t in
                        listed.into_iter().filter(|t| self.config.topics.all().contains(&t.name.as_str()))
                    {
                        for p in t.partitions {
                            if !consuming.insert((t.name.clone(), p)) {
                                continue;
                            }
                            tracing::info!(topic = t.name, partition = p, "kafka: consuming");
                            let c = PartitionConsumer {
                                writer: self.writer.clone(),
                                client: client.clone(),
                                topic: t.name.clone(),
                                partition: p,
                                config: self.config.clone(),
                                decoder: self.decoder.clone(),
                                dead_letters: dead_letters.clone(),
                                alignment: alignment.clone(),
                                metrics: self.metrics.clone(),
                            };
                            tasks.spawn(c.run(stop.clone()));
                        }
                    }
                }
            }
            let waiting: Vec<_> = self
                .config
                .topics
                .all()
                .into_iter()
                .filter(|t| !consuming.iter().any(|(c, _)| c == t))
                .collect();
            if !waiting.is_empty() {
                tracing::debug!(?waiting, "kafka: topics not there yet");
            }
            if pause(&stop, DISCOVERY).await {
                break;
            }
        }
        while tasks.join_next().await.is_some() {}
    }

    async fn connect(&self, stop: &CancellationToken) -> Option<Arc<Client>> {
        // The client's own retries end after a while, so that the log says why nothing comes
        // (by default they go on for ever, backing off up to 500 s).
        let retries = BackoffConfig {
            init_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(2),
            base: 2.0,
            deadline: Some(Duration::from_secs(10)),
        };
        loop {
            let builder = match self.config.client_builder() {
                Ok(b) => b.backoff_config(retries.clone()),
                Err(e) => {
                    tracing::error!(error = e, "kafka: bad settings");
                    return None;
                }
            };
            match or_stop(stop, builder.build()).await? {
                Ok(c) => return Some(Arc::new(c)),
                Err(e) => {
                    tracing::warn!(error = %e, brokers = ?self.config.brokers_or_env(), "kafka: cannot connect; retrying");
                    if pause(stop, Duration::from_secs(1)).await {
                        return None;
                    }
                }
            }
        }
    }
}

/// `f`'s output, or `None` once stopped: the client's calls retry on their own for as long as
/// the brokers are unreachable, and a node that no longer leads (or shuts down) must not wait.
pub(crate) async fn or_stop<T>(
    stop: &CancellationToken,
    f: impl std::future::Future<Output = T>,
) -> Option<T> {
    tokio::select! {
        out = f => Some(out),
        _ = stop.cancelled() => None,
    }
}

/// Sleeps `d`; true if stopped meanwhile.
pub(crate) async fn pause(stop: &CancellationToken, d: Duration) -> bool {
    or_stop(stop, tokio::time::sleep(d)).await.is_none()
}
