//! Turning a request into a write the log accepts: valid items only, label sets normalised,
//! and a rejection with a reason for every item left out.

use collabstream_common::LabelLimits;
use collabstream_proto::log_view::ViewError;
use collabstream_proto::prompb_view::reencode;
use collabstream_proto::series::normalize_v1;
use collabstream_proto::{events, v1};
use collabstream_store::Store;
use v1::{ItemKind, Rejection};

/// A validated write and what validation refused. Indexes in rejections refer to the request
/// as the client sent it.
#[derive(Debug, Default)]
pub struct Prepared {
    pub(crate) request: v1::WriteRequest,
    /// The write already encoded (remote write); `request` is then unused.
    pub(crate) encoded: Option<bytes::Bytes>,
    /// `request.series[i]` is item `series_map[i]` of the client's request; once encoded,
    /// apply's series `i` is.
    series_map: Vec<u32>,
    event_map: Vec<u32>,
    pub(crate) rejected: Vec<Rejection>,
    pub(crate) rejected_samples: u64,
    pub(crate) rejected_events: u64,
}

impl Prepared {
    /// Validates our own gRPC write; every label set within `limits`.
    pub fn from_v1(req: v1::WriteRequest, limits: &LabelLimits) -> Self {
        let mut p = Prepared {
            request: v1::WriteRequest { batch_id: req.batch_id, ..Default::default() },
            ..Default::default()
        };
        for (i, mut s) in req.series.into_iter().enumerate() {
            // Normalised in place: the strings move on into the log entry uncopied.
            let checked = normalize_v1(&mut s.labels, limits).map_err(|e| e.to_string()).and_then(|()| {
                if s.samples.is_empty() { Err("series has no samples".to_string()) } else { Ok(()) }
            });
            match checked {
                Ok(()) => p.push_series(i, s),
                Err(reason) => p.reject_series(i, s.samples.len(), reason),
            }
        }
        for (i, e) in req.events.into_iter().enumerate() {
            p.push_event(i, events::validate(&e).map(|_| e).map_err(|e| e.to_string()));
        }
        p
    }

    /// Validates a decompressed Prometheus remote-write body and encodes its valid series as
    /// our write in one pass, without decoding it into owned messages; the series `store`
    /// already has are named by id. An error means the body is not a remote-write message at
    /// all.
    pub fn from_remote_write(body: &[u8], store: &Store, limits: &LabelLimits) -> Result<Self, ViewError> {
        let known = store.known_series();
        let out = reencode(body, limits, &mut |keys, out| known.find_raw(keys, out))?;
        drop(known);
        let mut p = Prepared { series_map: out.accepted, ..Default::default() };
        if !p.series_map.is_empty() {
            p.encoded = Some(out.write.into());
        }
        for (index, samples, reason) in out.rejected {
            p.reject_series(index as usize, samples as usize, reason.to_string());
        }
        Ok(p)
    }

    /// Events parsed by a front end (`/api/v1/events`, Kafka), each with its position.
    pub fn from_events(batch_id: String, parsed: Vec<Result<v1::Event, String>>) -> Self {
        let mut p =
            Prepared { request: v1::WriteRequest { batch_id, ..Default::default() }, ..Default::default() };
        for (i, e) in parsed.into_iter().enumerate() {
            p.push_event(i, e.and_then(|e| events::validate(&e).map(|_| e).map_err(|e| e.to_string())));
        }
        p
    }

    fn push_series(&mut self, index: usize, s: v1::TimeSeries) {
        self.series_map.push(index as u32);
        self.request.series.push(s);
    }

    fn reject_series(&mut self, index: usize, samples: usize, reason: String) {
        self.rejected_samples += samples as u64;
        self.rejected.push(Rejection {
            kind: ItemKind::Series as i32,
            index: index as u32,
            reason,
            ..Default::default()
        });
    }

    fn push_event(&mut self, index: usize, e: Result<v1::Event, String>) {
        match e {
            Ok(e) => {
                self.event_map.push(index as u32);
                self.request.events.push(e);
            }
            Err(reason) => {
                self.rejected_events += 1;
                self.rejected.push(Rejection {
                    kind: ItemKind::Event as i32,
                    index: index as u32,
                    reason,
                    ..Default::default()
                });
            }
        }
    }

    /// The write as the log carries it (a `v1::LogWrite`), unless already encoded: a write
    /// with events and no batch id gets `auto_id()`, so that a retry after an ambiguous
    /// failure (a leader change mid-commit) cannot store its events twice (samples are
    /// idempotent, events are not); the series `store` knows are named by id, and the index
    /// maps follow apply's numbering (those come after the others).
    pub(crate) fn encode(&mut self, store: &Store, auto_id: impl FnOnce() -> String) -> Option<bytes::Bytes> {
        if let Some(encoded) = self.encoded.take() {
            return Some(encoded);
        }
        if self.request.series.is_empty() && self.request.events.is_empty() {
            return None;
        }
        if self.request.batch_id.is_empty() && !self.request.events.is_empty() {
            self.request.batch_id = auto_id();
        }
        let (encoded, at) = {
            let known = store.known_series();
            collabstream_proto::log_write::encode(&self.request, &mut |keys, out| known.find_raw(keys, out))
        };
        // Apply's item `k` is `request.series[at[k]]`, which is the client's `series_map[..]`.
        self.series_map = at.iter().map(|&i| self.series_map.get(i as usize).copied().unwrap_or(i)).collect();
        self.request = v1::WriteRequest::default();
        Some(encoded.into())
    }

    /// Nothing valid to write.
    pub fn is_empty(&self) -> bool {
        self.encoded.is_none() && self.request.series.is_empty() && self.request.events.is_empty()
    }

    /// Maps a rejection from apply's numbering back to the client's indexes.
    pub(crate) fn map_back(&self, mut r: Rejection) -> Rejection {
        let map = if r.kind == ItemKind::Event as i32 { &self.event_map } else { &self.series_map };
        if let Some(orig) = map.get(r.index as usize) {
            r.index = *orig;
        }
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn label(n: &str, v: &str) -> v1::Label {
        v1::Label { name: n.into(), value: v.into() }
    }

    #[test]
    fn keeps_good_series_and_maps_indexes() {
        let sample = vec![v1::Sample { timestamp_ms: 1, value: 1.0 }];
        let req = v1::WriteRequest {
            series: vec![
                v1::TimeSeries {
                    labels: vec![label("", "x"), label("__name__", "a")],
                    samples: sample.clone(),
                },
                v1::TimeSeries {
                    labels: vec![label("job", "j"), label("__name__", "b")],
                    samples: sample.clone(),
                },
                v1::TimeSeries { labels: vec![label("job", "j")], samples: sample.clone() },
            ],
            ..Default::default()
        };
        let p = Prepared::from_v1(req, &LabelLimits::DEFAULT);
        assert_eq!(p.request.series.len(), 1);
        assert_eq!(p.request.series[0].labels[0].name, "__name__", "labels are sorted");
        assert_eq!(p.rejected.iter().map(|r| r.index).collect::<Vec<_>>(), [0, 2]);
        assert!(p.rejected[1].reason.contains("missing metric name"));
        let back = p.map_back(Rejection { kind: ItemKind::Sample as i32, index: 0, ..Default::default() });
        assert_eq!(back.index, 1);
    }

    #[test]
    fn label_sets_over_the_limits_are_refused_with_the_setting_to_change() {
        let sample = vec![v1::Sample { timestamp_ms: 1, value: 1.0 }];
        let many: Vec<_> =
            (0..70).map(|i| label(&format!("l{i:02}"), "v")).chain([label("__name__", "m")]).collect();
        let series = |labels: Vec<v1::Label>| v1::TimeSeries { labels, samples: sample.clone() };
        let req = v1::WriteRequest {
            series: vec![
                series(many),
                series(vec![label("__name__", "m"), label(&"n".repeat(300), "v")]),
                series(vec![label("__name__", "m"), label("job", &"v".repeat(5000))]),
                series(vec![label("__name__", "m"), label("job", "ok")]),
            ],
            ..Default::default()
        };
        let p = Prepared::from_v1(req, &LabelLimits::DEFAULT);
        assert_eq!(p.request.series.len(), 1);
        let reasons: Vec<_> = p.rejected.iter().map(|r| r.reason.as_str()).collect();
        assert!(
            reasons[0].contains("71 labels, over the limit of 64 (ingest.max_labels_per_series)"),
            "{reasons:?}"
        );
        assert!(
            reasons[1].contains("300 bytes, over the limit of 256 (ingest.max_label_name_bytes)"),
            "{reasons:?}"
        );
        assert!(
            reasons[2].contains("5000 bytes, over the limit of 4096 (ingest.max_label_value_bytes)"),
            "{reasons:?}"
        );
    }

    #[test]
    fn encoding_gives_events_a_batch_id_and_follows_apply_numbering() {
        use collabstream_proto::log_view::WriteView;
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), collabstream_store::StoreConfig::default()).unwrap();
        let sample = vec![v1::Sample { timestamp_ms: 1, value: 1.0 }];
        let series =
            |name: &str| v1::TimeSeries { labels: vec![label("__name__", name)], samples: sample.clone() };
        let event = v1::Event {
            event: Some(v1::event::Event::User(v1::UserEvent {
                meeting_id: "m".into(),
                user_id: "u".into(),
                action: v1::UserAction::Join as i32,
                timestamp_ms: 1,
                ..Default::default()
            })),
        };
        // Samples only: no id (they are idempotent), and the client's indexes kept.
        let mut p = Prepared::from_v1(
            v1::WriteRequest { series: vec![v1::TimeSeries::default(), series("a")], ..Default::default() },
            &LabelLimits::DEFAULT,
        );
        let bytes = p.encode(&store, || unreachable!("samples need no id")).unwrap();
        assert_eq!(WriteView::parse(&bytes).unwrap().batch_id, "");
        let back = p.map_back(Rejection { kind: ItemKind::Sample as i32, index: 0, ..Default::default() });
        assert_eq!(back.index, 1);
        // With events and no id: the one given; with an id of its own: that one.
        let mut p = Prepared::from_events(String::new(), vec![Ok(event.clone())]);
        let bytes = p.encode(&store, || "auto-1-2-3".into()).unwrap();
        assert_eq!(WriteView::parse(&bytes).unwrap().batch_id, "auto-1-2-3");
        let mut p = Prepared::from_events("mine".into(), vec![Ok(event)]);
        let bytes = p.encode(&store, || unreachable!("it has one")).unwrap();
        assert_eq!(WriteView::parse(&bytes).unwrap().batch_id, "mine");
        assert!(Prepared::default().encode(&store, String::new).is_none(), "nothing to write");
    }
}
