//! What the tiering tests share: a hot store holding three hours of nine series.

#![allow(dead_code)] // Each test binary uses part of it.

use std::collections::BTreeMap;

use collabstream_common::{STALE_NAN_BITS, TimeRange};
use collabstream_proto::v1;
use collabstream_store::{Store, StoreConfig};
use prost::Message;

/// 2024-11-28T08:00:00Z, a block boundary for 2 h blocks.
pub const BLOCK: i64 = 1_732_780_800_000;
pub const HOUR: i64 = 3_600_000;

/// (metric, labels without the name, samples) of every row, in file order.
pub type Rows = Vec<(String, BTreeMap<String, String>, u64, i64, u64)>;

pub fn store_with_three_hours(dir: &std::path::Path) -> Store {
    let store = Store::open(dir, StoreConfig::default()).expect("open");
    let mut series = Vec::new();
    // Created in an order that differs from the file's (metric, then id).
    for (metric, hosts) in [("node_load1", 3), ("http_requests_total", 4), ("up", 2)] {
        for h in 0..hosts {
            let samples = (0..3 * 240)
                .map(|i| {
                    let t = BLOCK - HOUR / 2 + i * 15_000;
                    let v = if metric == "up" && i == 100 {
                        f64::from_bits(STALE_NAN_BITS)
                    } else {
                        (i * h) as f64 / 7.0
                    };
                    v1::Sample { timestamp_ms: t, value: v }
                })
                .collect();
            series.push(v1::TimeSeries {
                labels: vec![
                    v1::Label { name: "__name__".into(), value: metric.into() },
                    v1::Label { name: "instance".into(), value: format!("host-{h}:9100") },
                    v1::Label { name: "job".into(), value: "node".into() },
                ],
                samples,
            });
        }
    }
    series.reverse();
    let cmd = v1::Command {
        leader_time_ms: 0,
        payload: Some(v1::command::Payload::Write(v1::WriteRequest { series, ..Default::default() }.into())),
    };
    store.log().append([(1, cmd.encode_to_vec().as_slice())]).expect("log");
    store.apply(1, &cmd).expect("apply");
    store
}

/// What the store holds in `range`, in the file's order.
pub fn expected(store: &Store, range: TimeRange) -> Rows {
    let mut rows = Rows::new();
    for s in store.select(&[], range).expect("select") {
        let metric = s.labels.metric_name().to_string();
        let labels: BTreeMap<_, _> = s
            .labels
            .iter()
            .filter(|l| l.name != "__name__")
            .map(|l| (l.name.clone(), l.value.clone()))
            .collect();
        for x in &s.samples {
            rows.push((metric.clone(), labels.clone(), s.id.0, x.timestamp_ms, x.value.to_bits()));
        }
    }
    rows.sort_by(|a, b| (&a.0, a.2, a.3).cmp(&(&b.0, b.2, b.3)));
    rows
}

/// Exports every 2 h block of `store` that overlaps `range` to `objects`, as the tiering pass
/// does, with each file's series index when `with_index` (as files written before indexes
/// were, without): the files a manifest would list.
pub async fn tier_blocks(
    store: &Store,
    objects: &collabstream_tiering::Objects,
    range: TimeRange,
    with_index: bool,
) -> Vec<collabstream_tiering::ColdFile> {
    let mut files = Vec::new();
    let mut start = range.start.div_euclid(2 * HOUR) * 2 * HOUR;
    while start <= range.end {
        let block = TimeRange::new(start, start + 2 * HOUR - 1);
        if let Some((bytes, summary, index)) =
            collabstream_tiering::export_samples(store, block).expect("export")
        {
            files.push(upload(objects, start, bytes, summary, with_index.then_some(index)).await);
        }
        start += 2 * HOUR;
    }
    files
}

/// Uploads a samples file of the block starting at `start` (and its index, if given) where the
/// tiering pass puts them, and gives it as a manifest would list it.
pub async fn upload(
    objects: &collabstream_tiering::Objects,
    start: i64,
    bytes: Vec<u8>,
    summary: collabstream_tiering::FileSummary,
    index: Option<collabstream_tiering::SeriesIndex>,
) -> collabstream_tiering::ColdFile {
    let name =
        collabstream_tiering::object_name("samples", start, "0badcafe", xxhash_rust::xxh3::xxh3_64(&bytes));
    let index = match index {
        Some(index) => {
            let path = objects.path(&collabstream_tiering::index_name(&name));
            let stored = objects.put_verified(&path, index.encode().into()).await.expect("upload");
            Some(collabstream_tiering::IndexObject {
                path: stored.path,
                size: stored.size,
                checksum: stored.checksum,
            })
        }
        None => None,
    };
    let stored = objects.put_verified(&objects.path(&name), bytes.into()).await.expect("upload");
    collabstream_tiering::ColdFile { path: stored.path, size: stored.size, summary, index }
}

/// Three meetings' events from `BLOCK - 30 min` to `BLOCK + 2 h 30 min`, one every 7 s, of
/// every kind, in writes of 500 whose events come shuffled in time (each write spans blocks),
/// applied after `store`'s last entry. Gives them in the order reads give them.
pub fn add_events(store: &Store) -> Vec<v1::Event> {
    use v1::event::Event as Kind;
    let mut all = Vec::new();
    for i in 0..(3 * HOUR / 7_000) {
        let ts = BLOCK - HOUR / 2 + i * 7_000;
        let (meeting_id, user_id) = (format!("m{}", i % 3), format!("u{}", i % 11));
        let event = match i % 5 {
            0 => Kind::User(v1::UserEvent {
                meeting_id,
                user_id,
                action: [v1::UserAction::Join, v1::UserAction::Leave, v1::UserAction::Mute][(i % 3) as usize]
                    as i32,
                timestamp_ms: ts,
                ..Default::default()
            }),
            1 | 2 => Kind::Chat(v1::ChatEvent {
                tenant: "acme".into(),
                meeting_id,
                user_id,
                message_id: format!("msg-{i}"),
                length: (i % 200) as u32,
                kind: (i % 2) as i32,
                timestamp_ms: ts,
            }),
            3 => Kind::Meeting(v1::MeetingEvent {
                meeting_id,
                user_id,
                kind: v1::MeetingKind::Quality as i32,
                latency_ms: (i % 300) as f64 + 0.25,
                jitter_ms: (i % 17) as f64,
                packet_loss_pct: (i % 9) as f64 / 10.0,
                timestamp_ms: ts,
                ..Default::default()
            }),
            _ => Kind::Meeting(v1::MeetingEvent {
                meeting_id,
                kind: if i % 2 == 0 { v1::MeetingKind::Start } else { v1::MeetingKind::End } as i32,
                timestamp_ms: ts,
                ..Default::default()
            }),
        };
        all.push(v1::Event { event: Some(event) });
    }
    let mut index = store.applied_index();
    for (w, chunk) in all.chunks(500).enumerate() {
        // Shuffled by a fixed stride: later events of a write may come first.
        let n = chunk.len();
        let events: Vec<v1::Event> = (0..n).map(|k| chunk[(k * 7 + w) % n].clone()).collect();
        let events = if n % 7 == 0 { chunk.to_vec() } else { events };
        let cmd = v1::Command {
            leader_time_ms: 0,
            payload: Some(v1::command::Payload::Write(
                v1::WriteRequest { events, ..Default::default() }.into(),
            )),
        };
        index += 1;
        store.log().append([(index, cmd.encode_to_vec().as_slice())]).expect("log");
        store.apply(index, &cmd).expect("apply");
    }
    all
}

/// A log that commits on the spot, as a single node's does; its clock is set by the test.
pub struct LocalLog {
    pub store: std::sync::Arc<Store>,
    pub now: std::sync::atomic::AtomicI64,
}

impl collabstream_tiering::ManifestLog for LocalLog {
    fn leads(&self) -> bool {
        true
    }

    fn now_ms(&self) -> i64 {
        self.now.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn applied_all(&self) -> futures::future::BoxFuture<'_, Result<(), String>> {
        Box::pin(async { Ok(()) })
    }

    fn commit(&self, payload: v1::command::Payload) -> collabstream_tiering::CommitFuture<'_> {
        let cmd = v1::Command { leader_time_ms: self.now_ms(), payload: Some(payload) };
        Box::pin(async move { Ok(commit(&self.store, &cmd)) })
    }
}

/// Appends `cmd` to `store`'s log after its last entry and applies it.
pub fn commit(store: &Store, cmd: &v1::Command) -> collabstream_store::ApplyOutcome {
    let index = store.applied_index() + 1;
    let bytes = cmd.encode_to_vec();
    store.log().append([(index, bytes.as_slice())]).expect("log");
    store.apply_batch(index, &bytes, None).expect("apply").pop().unwrap_or_default()
}

/// The local object store under `dir/objects`.
pub fn local_objects(dir: &std::path::Path) -> collabstream_tiering::Objects {
    let config = collabstream_tiering::ObjectStoreConfig {
        url: format!("file://{}", dir.join("objects").display()),
        ..Default::default()
    };
    collabstream_tiering::Objects::open(&config, dir).expect("objects")
}

/// 2,000 series `metric(i){instance="i<i>"}` of 120 samples a minute apart from `BLOCK`, in a
/// store under `dir`.
pub fn store_of_2000(dir: &std::path::Path, metric: impl Fn(usize) -> &'static str) -> Store {
    let store = Store::open(dir, StoreConfig::default()).expect("open");
    let series = (0..2000)
        .map(|i| v1::TimeSeries {
            labels: vec![
                v1::Label { name: "__name__".into(), value: metric(i).into() },
                v1::Label { name: "instance".into(), value: format!("i{i}") },
            ],
            samples: (0..120)
                .map(|k| v1::Sample { timestamp_ms: BLOCK + k * 60_000, value: (i as i64 * k) as f64 })
                .collect(),
        })
        .collect();
    let cmd = v1::Command {
        leader_time_ms: 0,
        payload: Some(v1::command::Payload::Write(v1::WriteRequest { series, ..Default::default() }.into())),
    };
    commit(&store, &cmd);
    store
}
