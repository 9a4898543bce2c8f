//! [`CommandView`]: a log entry ([`crate::v1::Command`]) read in place, without decoding it into owned
//! messages.
//!
//! Every replica applies every entry, so apply is the hottest path of a cluster: decoding an
//! entry with prost allocates two strings per label of every series, which cost more than the
//! apply itself. The view borrows label names and values from the entry's bytes and keeps all
//! labels and samples of a write in two flat vectors; events stay encoded until apply needs
//! them. It reads what prost would (last value wins for scalars and oneofs), which the tests
//! check against prost's own decoding, except that a field it does not know is an error, not
//! skipped: an entry written by a newer version must stop a replica that cannot apply it
//! whole, rather than be applied in part and leave the replicas different without a sign.

use std::ops::Range;

pub use crate::known_series::{KnownFormat, KnownReader};
pub use crate::wire::ViewError;
use crate::wire::{Reader, WIRE_FIXED64, WIRE_LEN, WIRE_VARINT, read_label, utf8};

/// A borrowed [`crate::v1::Command`].
#[derive(Debug, Default)]
pub struct CommandView<'a> {
    pub leader_time_ms: i64,
    /// One write for a `write` payload, several for a `batch`, none without a payload.
    pub writes: Vec<WriteView<'a>>,
    /// A `settings` payload (small: decoded, not borrowed).
    pub settings: Option<crate::v1::ApplySettings>,
    /// A `tick` payload.
    pub tick: bool,
    /// A `rules` payload (small: decoded, not borrowed).
    pub rule_change: Option<crate::v1::RuleChange>,
    /// A `seal`, `tier` or `expire_cold` payload (small: decoded).
    pub tiering: Option<TierCommand>,
    /// A `sql_table` payload (small: decoded).
    pub sql_table: Option<crate::v1::SqlTableChange>,
}

/// The cold tier's commands (see `log.proto`).
#[derive(Debug, Clone, PartialEq)]
pub enum TierCommand {
    Seal(crate::v1::Seal),
    Tier(crate::v1::ColdBlock),
    ExpireCold(crate::v1::ExpireCold),
}

/// A borrowed [`crate::v1::LogWrite`] (an encoded `v1::WriteRequest` is one too).
#[derive(Debug, Default)]
pub struct WriteView<'a> {
    pub batch_id: &'a str,
    pub series: Vec<SeriesView>,
    /// The labels of every series, in order; a series owns `labels[series.labels]`. Not
    /// checked as UTF-8 here: apply finds most series by these bytes in its index, where they
    /// were checked when the series was created, and checks the others.
    labels: Vec<(&'a [u8], &'a [u8])>,
    samples: Vec<(i64, f64)>,
    /// Each event still encoded as a `v1::Event`.
    pub events: Vec<&'a [u8]>,
    /// The series the proposer named by id, packed in `known_format`; checked whole by
    /// [`WriteView::parse`].
    known: &'a [u8],
    known_format: KnownFormat,
    /// The Kafka spans the write holds (see `LogWrite.sources`).
    pub sources: Vec<crate::v1::SourceSpan>,
}

/// Checks that `write` is an encoded `v1::WriteRequest` that apply can read whole, events
/// included: what a leader checks before proposing a write it did not encode itself (one
/// forwarded by a follower), so that no entry it logs can fail on every replica.
pub fn check_write(write: &[u8]) -> Result<(), ViewError> {
    use prost::Message;
    let view = WriteView::parse(write)?;
    for e in &view.events {
        crate::v1::Event::decode(*e).map_err(|_| ViewError("an event is not a valid Event message"))?;
    }
    Ok(())
}

/// One series of a [`WriteView`] sent with its labels: where its labels and samples are.
#[derive(Debug, Clone)]
pub struct SeriesView {
    labels: Range<usize>,
    samples: Range<usize>,
}

impl<'a> WriteView<'a> {
    /// The series' labels as (name, value) byte pairs, in wire order.
    pub fn labels(&self, s: &SeriesView) -> &[(&'a [u8], &'a [u8])] {
        &self.labels[s.labels.clone()]
    }

    /// The series' samples as (timestamp ms, value).
    pub fn samples(&self, s: &SeriesView) -> &[(i64, f64)] {
        &self.samples[s.samples.clone()]
    }

    /// The series named by id, in order (they come after [`WriteView::series`]). The bytes
    /// were checked by [`WriteView::parse`], so reading them does not fail.
    pub fn known(&self) -> KnownReader<'a> {
        KnownReader::new(self.known, self.known_format)
    }
}

impl<'a> CommandView<'a> {
    /// Reads an encoded `v1::Command`.
    pub fn parse(buf: &'a [u8]) -> Result<Self, ViewError> {
        let mut cmd = CommandView::default();
        let mut r = Reader(buf);
        while let Some((field, wire)) = r.key()? {
            match (field, wire) {
                (1, WIRE_VARINT) => cmd.leader_time_ms = r.varint()? as i64,
                (2, WIRE_LEN) => {
                    let write = WriteView::parse(r.bytes()?)?;
                    cmd.clear_payload();
                    cmd.writes = vec![write];
                }
                (5, WIRE_LEN) => {
                    if !r.bytes()?.is_empty() {
                        return Err(ViewError("a Tick field this version does not know"));
                    }
                    cmd.clear_payload();
                    cmd.tick = true;
                }
                (4, WIRE_LEN) => {
                    let settings = decode_whole(
                        r.bytes()?,
                        "the settings payload is not an ApplySettings message",
                        "an ApplySettings field this version does not know",
                    )?;
                    cmd.clear_payload();
                    cmd.settings = Some(settings);
                }
                (6, WIRE_LEN) => {
                    let change = decode_whole(
                        r.bytes()?,
                        "the rules payload is not a RuleChange message",
                        "a RuleChange or AggregationRule field this version does not know",
                    )?;
                    cmd.clear_payload();
                    cmd.rule_change = Some(change);
                }
                (7, WIRE_LEN) => {
                    let seal = decode_whole(
                        r.bytes()?,
                        "the seal payload is not a Seal message",
                        "a Seal field this version does not know",
                    )?;
                    cmd.clear_payload();
                    cmd.tiering = Some(TierCommand::Seal(seal));
                }
                (8, WIRE_LEN) => {
                    let block = decode_whole(
                        r.bytes()?,
                        "the tier payload is not a ColdBlock message",
                        "a ColdBlock field this version does not know",
                    )?;
                    cmd.clear_payload();
                    cmd.tiering = Some(TierCommand::Tier(block));
                }
                (9, WIRE_LEN) => {
                    let expire = decode_whole(
                        r.bytes()?,
                        "the expire_cold payload is not an ExpireCold message",
                        "an ExpireCold field this version does not know",
                    )?;
                    cmd.clear_payload();
                    cmd.tiering = Some(TierCommand::ExpireCold(expire));
                }
                (10, WIRE_LEN) => {
                    let change = decode_whole(
                        r.bytes()?,
                        "the sql_table payload is not an SqlTableChange message",
                        "an SqlTableChange or SqlTable field this version does not know",
                    )?;
                    cmd.clear_payload();
                    cmd.sql_table = Some(change);
                }
                (3, WIRE_LEN) => {
                    let mut writes = Vec::new();
                    let mut batch = Reader(r.bytes()?);
                    while let Some((f, w)) = batch.key()? {
                        match (f, w) {
                            (1, WIRE_LEN) => writes.push(WriteView::parse(batch.bytes()?)?),
                            _ => return Err(ViewError("a WriteBatch field this version does not know")),
                        }
                    }
                    cmd.clear_payload();
                    cmd.writes = writes;
                }
                _ => return Err(ViewError("a Command field or payload this version does not know")),
            }
        }
        Ok(cmd)
    }

    /// A oneof: the last payload seen wins, as in prost.
    fn clear_payload(&mut self) {
        self.writes.clear();
        self.settings = None;
        self.tick = false;
        self.rule_change = None;
        self.tiering = None;
        self.sql_table = None;
    }
}

/// Decodes a small payload whole: prost skips unknown fields, and what it read then re-encodes
/// to fewer bytes (our encodings are prost's own, so the lengths match otherwise).
fn decode_whole<M: prost::Message + Default>(
    bytes: &[u8],
    invalid: &'static str,
    unknown: &'static str,
) -> Result<M, ViewError> {
    let m = M::decode(bytes).map_err(|_| ViewError(invalid))?;
    if m.encoded_len() != bytes.len() {
        return Err(ViewError(unknown));
    }
    Ok(m)
}

impl<'a> WriteView<'a> {
    /// Reads an encoded `v1::LogWrite` (or `v1::WriteRequest`).
    pub fn parse(buf: &'a [u8]) -> Result<Self, ViewError> {
        let mut w = WriteView::default();
        let mut r = Reader(buf);
        while let Some((field, wire)) = r.key()? {
            match (field, wire) {
                (1, WIRE_LEN) => w.batch_id = utf8(r.bytes()?)?,
                (2, WIRE_LEN) => {
                    let series = r.bytes()?;
                    w.parse_series(series)?;
                }
                (3, WIRE_LEN) => w.events.push(r.bytes()?),
                (4 | 6, WIRE_LEN) => {
                    let format = if field == 4 { KnownFormat::Raw } else { KnownFormat::Compact };
                    if !w.known.is_empty() && w.known_format != format {
                        return Err(ViewError("a LogWrite with both known and known_compact"));
                    }
                    // Last one wins, as prost does for a bytes field.
                    w.known = r.bytes()?;
                    w.known_format = format;
                    KnownReader::validate(w.known, format)?;
                }
                (5, WIRE_LEN) => w.sources.push(decode_whole(
                    r.bytes()?,
                    "a SourceSpan that is not a valid message",
                    "a SourceSpan field this version does not know",
                )?),
                _ => return Err(ViewError("a LogWrite field this version does not know")),
            }
        }
        Ok(w)
    }

    fn parse_series(&mut self, buf: &'a [u8]) -> Result<(), ViewError> {
        let (l0, s0) = (self.labels.len(), self.samples.len());
        let mut r = Reader(buf);
        while let Some((field, wire)) = r.key()? {
            match (field, wire) {
                (1, WIRE_LEN) => {
                    self.labels.push(read_label_strict(r.bytes()?)?);
                }
                (2, WIRE_LEN) => {
                    let (mut ts, mut value) = (0i64, 0f64);
                    let mut s = Reader(r.bytes()?);
                    while let Some((f, w)) = s.key()? {
                        match (f, w) {
                            (1, WIRE_VARINT) => ts = s.varint()? as i64,
                            (2, WIRE_FIXED64) => value = f64::from_bits(s.fixed64()?),
                            _ => return Err(ViewError("a Sample field this version does not know")),
                        }
                    }
                    self.samples.push((ts, value));
                }
                _ => return Err(ViewError("a TimeSeries field this version does not know")),
            }
        }
        self.series.push(SeriesView { labels: l0..self.labels.len(), samples: s0..self.samples.len() });
        Ok(())
    }
}

/// A `Label` of a log entry: as [`read_label`], but an unknown field is an error.
fn read_label_strict(buf: &[u8]) -> Result<(&[u8], &[u8]), ViewError> {
    let mut l = Reader(buf);
    while let Some((f, w)) = l.key()? {
        match (f, w) {
            (1 | 2, WIRE_LEN) => {
                l.bytes()?;
            }
            _ => return Err(ViewError("a Label field this version does not know")),
        }
    }
    read_label(buf)
}

#[cfg(test)]
mod tests {
    use prost::Message;

    use crate::known_series::{Known, KnownWriter, read_all};
    use crate::v1;

    use super::*;

    /// What prost decoding yields, as comparable pairs: each series with labels as (labels,
    /// (timestamp, value bits)), and the known series as (id, (timestamp, value bits)).
    type Labelled = (Vec<(String, String)>, Vec<(i64, u64)>);
    type Pairs = (Vec<Labelled>, Vec<Known>);

    fn owned_pairs(req: &v1::LogWrite) -> Pairs {
        let labelled = req
            .series
            .iter()
            .map(|s| {
                (
                    s.labels.iter().map(|l| (l.name.clone(), l.value.clone())).collect(),
                    s.samples.iter().map(|x| (x.timestamp_ms, x.value.to_bits())).collect(),
                )
            })
            .collect();
        let known = if req.known_compact.is_empty() {
            read_all(&req.known, KnownFormat::Raw)
        } else {
            read_all(&req.known_compact, KnownFormat::Compact)
        };
        (labelled, known.unwrap())
    }

    fn view_pairs(w: &WriteView<'_>) -> Pairs {
        let labelled = w
            .series
            .iter()
            .map(|s| {
                (
                    w.labels(s)
                        .iter()
                        .map(|(n, v)| {
                            (String::from_utf8(n.to_vec()).unwrap(), String::from_utf8(v.to_vec()).unwrap())
                        })
                        .collect(),
                    w.samples(s).iter().map(|(t, v)| (*t, v.to_bits())).collect(),
                )
            })
            .collect();
        (labelled, read_all(w.known, w.known_format).unwrap())
    }

    fn decoded_write(bytes: &[u8]) -> v1::LogWrite {
        match v1::Command::decode(bytes).unwrap().payload {
            Some(v1::command::Payload::Write(w)) => w,
            other => panic!("a single write, got {other:?}"),
        }
    }

    /// `n` series; every third one named by id instead of labels, in the compact form.
    fn write(batch: &str, n: usize) -> v1::LogWrite {
        write_in(KnownFormat::Compact, batch, n)
    }

    fn write_in(format: KnownFormat, batch: &str, n: usize) -> v1::LogWrite {
        let samples = |i: usize| {
            vec![
                (-5 + i as i64, f64::NAN.to_bits()),
                (i64::MAX, (-0.0f64).to_bits()),
                (7, (i as f64 / 4.0).to_bits()),
            ]
        };
        let mut known = KnownWriter::of(format);
        let mut series = Vec::new();
        for i in 0..n {
            if i % 3 == 2 {
                known.push(1 << (7 * i), &samples(i));
                continue;
            }
            series.push(v1::TimeSeries {
                labels: vec![
                    v1::Label { name: "__name__".into(), value: "m".into() },
                    v1::Label { name: "ünïcode".into(), value: format!("v{i}") },
                ],
                samples: samples(i)
                    .into_iter()
                    .map(|(t, bits)| v1::Sample { timestamp_ms: t, value: f64::from_bits(bits) })
                    .collect(),
            });
        }
        let mut bytes = Vec::new();
        known.finish_into(&mut bytes);
        let decoded = v1::LogWrite::decode(bytes.as_slice()).unwrap();
        v1::LogWrite {
            batch_id: batch.into(),
            series,
            events: vec![v1::Event::default(), v1::Event::default()],
            known: decoded.known,
            known_compact: decoded.known_compact,
            sources: (0..n as i32)
                .map(|p| v1::SourceSpan {
                    topic: "chat_events".into(),
                    partition: p,
                    from_offset: 0,
                    to_offset: 9,
                })
                .collect(),
        }
    }

    #[test]
    fn reads_what_prost_decodes() {
        // Both forms of known series: entries logged before the compact one still read.
        let writes = vec![
            write("a", 6),
            write("", 0),
            write("c", 1),
            write_in(KnownFormat::Raw, "d", 6),
            write("e", 3),
        ];
        let cmd = v1::Command {
            leader_time_ms: 1_700_000_000_000,
            payload: Some(v1::command::Payload::Batch(v1::WriteBatch { writes: writes.clone() })),
        };
        let bytes = cmd.encode_to_vec();
        let view = CommandView::parse(&bytes).unwrap();
        assert_eq!(view.leader_time_ms, cmd.leader_time_ms);
        assert_eq!(view.writes.len(), writes.len());
        // Compared with prost's decoding of the same bytes (prost drops -0.0 as a default).
        let Some(v1::command::Payload::Batch(decoded)) =
            v1::Command::decode(bytes.as_slice()).unwrap().payload
        else {
            panic!("a batch")
        };
        for (v, w) in view.writes.iter().zip(&decoded.writes) {
            assert_eq!(v.batch_id, w.batch_id);
            assert_eq!(view_pairs(v), owned_pairs(w));
            assert_eq!(v.sources, w.sources);
            assert_eq!(v.events.len(), w.events.len());
            for (raw, e) in v.events.iter().zip(&w.events) {
                assert_eq!(&v1::Event::decode(*raw).unwrap(), e);
            }
        }
        let single =
            v1::Command { leader_time_ms: -1, payload: Some(v1::command::Payload::Write(write("s", 3))) };
        let bytes = single.encode_to_vec();
        let view = CommandView::parse(&bytes).unwrap();
        assert_eq!((view.leader_time_ms, view.writes.len()), (-1, 1));
        assert_eq!(view_pairs(&view.writes[0]), owned_pairs(&decoded_write(&bytes)));
        assert!(CommandView::parse(&[]).unwrap().writes.is_empty());
    }

    #[test]
    fn a_forwarded_write_is_checked_whole() {
        let good = write("w", 2).encode_to_vec();
        assert!(check_write(&good).is_ok());
        assert!(check_write(&good[..good.len() - 1]).is_err(), "truncated");
        // An event field whose bytes are not an Event message (a length past its end inside).
        let bad_event = [(3 << 3) | 2, 2, 0x0a, 0x05];
        assert!(WriteView::parse(&bad_event).is_ok(), "the view keeps events encoded");
        assert!(check_write(&bad_event).is_err());
        // Known series are checked whole when the view is made: id 1, two samples, one given.
        let bad_known = [(4 << 3) | 2, 11, 0x02, 0x02, 0x02, 0, 0, 0, 0, 0, 0, 0, 0];
        assert!(WriteView::parse(&bad_known).is_err());
        let mixed = write("m", 6).encode_to_vec();
        let view = WriteView::parse(&mixed).unwrap();
        assert_eq!((view.series.len(), read_all(view.known, view.known_format).unwrap().len()), (4, 2));
        // Known series in both forms at once: refused, whichever comes first.
        let raw = write_in(KnownFormat::Raw, "r", 3).known;
        let both = v1::LogWrite { known: raw, ..write("b", 3) }.encode_to_vec();
        assert!(WriteView::parse(&both).is_err());
        let mut reversed = write("b", 3).encode_to_vec();
        crate::wire::put_bytes(&mut reversed, 4, &write_in(KnownFormat::Raw, "r", 3).known);
        assert!(WriteView::parse(&reversed).is_err());
    }

    #[test]
    fn refuses_unknown_fields_at_every_level_and_garbage() {
        // A length-delimited field (every length here is under 128: one byte).
        fn field(n: u8, body: &[u8]) -> Vec<u8> {
            let mut out = vec![(n << 3) | 2, body.len() as u8];
            out.extend_from_slice(body);
            out
        }
        let unknown = [(9 << 3), 1]; // field 9, a varint
        let with = |mut body: Vec<u8>| {
            body.extend_from_slice(&unknown);
            body
        };
        let label = [field(1, b"__name__"), field(2, b"up")].concat();
        let sample = [vec![1 << 3, 5], vec![(2 << 3) | 1], 1.5f64.to_bits().to_le_bytes().to_vec()].concat();
        let series = |label: &[u8], sample: &[u8]| [field(1, label), field(2, sample)].concat();
        let command = |write: &[u8]| field(2, write);
        let good = command(&field(2, &series(&label, &sample)));
        assert_eq!(CommandView::parse(&good).unwrap().writes[0].series.len(), 1);
        let cmd =
            v1::Command { leader_time_ms: 7, payload: Some(v1::command::Payload::Write(write("b", 1))) };
        let settings = v1::ApplySettings { dedup_capacity: 5, ..Default::default() }.encode_to_vec();
        let rule = v1::AggregationRule { name: "r".into(), ..Default::default() }.encode_to_vec();
        let change = |rule: &[u8]| field(6, &field(1, rule));
        for (entry, what) in [
            (with(cmd.encode_to_vec()), "Command"),
            (field(3, &with(field(1, &write("b", 1).encode_to_vec()))), "WriteBatch"),
            (command(&with(field(2, &series(&label, &sample)))), "LogWrite"),
            (command(&field(2, &with(series(&label, &sample)))), "TimeSeries"),
            (command(&field(2, &series(&with(label.clone()), &sample))), "Label"),
            (command(&field(2, &series(&label, &with(sample.clone())))), "Sample"),
            (command(&field(5, &with(field(1, b"chat_events")))), "SourceSpan"),
            (field(4, &with(settings.clone())), "ApplySettings"),
            (field(5, &with(Vec::new())), "Tick"),
            (field(7, &with(v1::Seal { before_ms: 5, events: true }.encode_to_vec())), "Seal"),
            // Field 9 is a ColdBlock's min time: field 30 instead.
            (field(8, &[field(1, b"samples"), vec![0xf0, 0x01, 1]].concat()), "ColdBlock"),
            (field(9, &with(Vec::new())), "ExpireCold"),
            // Which of the two levels is not told apart (see `decode_whole`).
            (field(6, &with(field(1, &rule))), "RuleChange or AggregationRule"),
            // Field 9 is the rule's hop: field 30 instead (its key takes two bytes).
            (change(&[rule.clone(), vec![0xf0, 0x01, 1]].concat()), "RuleChange or AggregationRule"),
            (field(10, &with(field(2, b"history"))), "SqlTableChange or SqlTable"),
        ] {
            let err = CommandView::parse(&entry).unwrap_err();
            assert!(
                err.0.contains(&format!("{what} field")) && err.0.contains("this version does not know"),
                "{err}"
            );
        }
        assert_eq!(CommandView::parse(&field(4, &settings)).unwrap().settings.unwrap().dedup_capacity, 5);
        let tick = v1::Command { leader_time_ms: 9, payload: Some(v1::command::Payload::Tick(v1::Tick {})) };
        let tick = tick.encode_to_vec();
        let view = CommandView::parse(&tick).unwrap();
        assert!(view.tick && view.writes.is_empty() && view.leader_time_ms == 9);
        let block = v1::ColdBlock { table: "samples".into(), from_ms: -3, to_ms: 7, ..Default::default() };
        let tier =
            v1::Command { leader_time_ms: 1, payload: Some(v1::command::Payload::Tier(block.clone())) };
        assert_eq!(
            CommandView::parse(&tier.encode_to_vec()).unwrap().tiering,
            Some(TierCommand::Tier(block))
        );
        let seal = v1::Command {
            leader_time_ms: 1,
            payload: Some(v1::command::Payload::Seal(v1::Seal { before_ms: 5, events: true })),
        };
        assert_eq!(
            CommandView::parse(&seal.encode_to_vec()).unwrap().tiering,
            Some(TierCommand::Seal(v1::Seal { before_ms: 5, events: true }))
        );
        let created = CommandView::parse(&change(&rule)).unwrap().rule_change.unwrap().change;
        assert!(matches!(created, Some(v1::rule_change::Change::Create(r)) if r.name == "r"));
        let table = v1::SqlTableChange {
            change: Some(v1::sql_table_change::Change::Create(v1::SqlTable {
                name: "history".into(),
                statement: "CREATE EXTERNAL TABLE history STORED AS CSV LOCATION '/h.csv'".into(),
            })),
        };
        let entry =
            v1::Command { leader_time_ms: 1, payload: Some(v1::command::Payload::SqlTable(table.clone())) };
        assert_eq!(CommandView::parse(&entry.encode_to_vec()).unwrap().sql_table, Some(table));

        // Field 1 takes bytes 0..2; the payload (field 2) runs to the end, so every cut but the
        // one between the two fields ends inside a field and is refused, never misread.
        let good = cmd.encode_to_vec();
        for cut in 1..good.len() {
            assert_eq!(CommandView::parse(&good[..cut]).is_ok(), cut == 2, "cut at {cut}");
        }
        assert!(CommandView::parse(&[0x12, 0x05, 0x0a]).is_err(), "length past the end");
        assert!(CommandView::parse(&[0xff; 11]).is_err(), "overlong varint");
        assert!(CommandView::parse(&[(1 << 3) | 3]).is_err(), "group wire type");
        // The batch id is checked as UTF-8 here (labels are checked by apply).
        let entry = [(2 << 3) | 2, 3, (1 << 3) | 2, 1, 0xff];
        assert_eq!(CommandView::parse(&entry).unwrap_err(), ViewError("a string field is not UTF-8"));
    }
}
