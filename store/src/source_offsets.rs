//! [`SourceOffsets`]: where the applied messages of each Kafka partition end, so that apply
//! takes a consumed batch once, on every replica alike.
//!
//! A leader's consumer puts the spans of messages a write holds into the write
//! (`LogWrite.sources`). A leader deposed while its consumer was mid-batch may still get that
//! batch logged after the new leader has logged the same messages again: apply refuses every
//! write whose spans do not start where their partitions' last applied spans ended. The map
//! changes only with the log, and a checkpoint writes it whole with the rest of the state, so
//! a replay rebuilds it exactly.

use std::collections::BTreeMap;

use collabstream_proto::v1;

use crate::error::{Error, Result};
use crate::varint::{Reader, put_i64, put_u64};

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct SourceOffsets {
    /// (topic, partition) → the offset after the last applied message.
    next: BTreeMap<(String, i32), i64>,
}

impl SourceOffsets {
    /// Whether a write holding `spans` may be applied: each span non-empty, one per partition,
    /// and starting where its partition's applied messages end (anywhere for a partition
    /// never applied). The reason names the first span that fails.
    pub(crate) fn check(&self, spans: &[v1::SourceSpan]) -> std::result::Result<(), String> {
        for (i, s) in spans.iter().enumerate() {
            let name = || format!("{}/{} [{}, {})", s.topic, s.partition, s.from_offset, s.to_offset);
            if s.from_offset < 0 || s.to_offset <= s.from_offset {
                return Err(format!("source span {} is empty or negative", name()));
            }
            if spans[..i].iter().any(|o| o.topic == s.topic && o.partition == s.partition) {
                return Err(format!("source span {} is the second of its partition in the write", name()));
            }
            if let Some(&next) = self.next.get(&(s.topic.clone(), s.partition))
                && next != s.from_offset
            {
                return Err(format!(
                    "source span {} does not start at the partition's applied offset {next}: consumed twice \
                     (by a deposed leader) or with a gap; the write is refused whole",
                    name()
                ));
            }
        }
        Ok(())
    }

    /// Records the spans of an applied write ([`SourceOffsets::check`]ed).
    pub(crate) fn advance(&mut self, spans: &[v1::SourceSpan]) {
        for s in spans {
            self.next.insert((s.topic.clone(), s.partition), s.to_offset);
        }
    }

    /// Each partition's next offset to consume.
    pub(crate) fn get(&self) -> BTreeMap<(String, i32), i64> {
        self.next.clone()
    }

    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        put_u64(&mut out, self.next.len() as u64);
        for ((topic, partition), next) in &self.next {
            put_u64(&mut out, topic.len() as u64);
            out.extend_from_slice(topic.as_bytes());
            put_i64(&mut out, i64::from(*partition));
            put_i64(&mut out, *next);
        }
        out
    }

    pub(crate) fn decode(bytes: &[u8]) -> Result<Self> {
        let corrupt = || Error::Corrupt { what: "source offsets" };
        let mut r = Reader::new(bytes);
        let mut next = BTreeMap::new();
        for _ in 0..r.u64().ok_or_else(corrupt)? {
            let len = usize::try_from(r.u64().ok_or_else(corrupt)?).map_err(|_| corrupt())?;
            let topic = std::str::from_utf8(r.bytes(len).ok_or_else(corrupt)?).map_err(|_| corrupt())?;
            let partition = i32::try_from(r.i64().ok_or_else(corrupt)?).map_err(|_| corrupt())?;
            next.insert((topic.to_string(), partition), r.i64().ok_or_else(corrupt)?);
        }
        if !r.is_empty() {
            return Err(corrupt());
        }
        Ok(Self { next })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn span(topic: &str, partition: i32, from: i64, to: i64) -> v1::SourceSpan {
        v1::SourceSpan { topic: topic.into(), partition, from_offset: from, to_offset: to }
    }

    #[test]
    fn a_span_must_continue_its_partition() {
        let mut o = SourceOffsets::default();
        let first = [span("chat_events", 0, 40, 50), span("chat_events", 1, 0, 3)];
        assert_eq!(o.check(&first), Ok(()), "partitions never applied start anywhere");
        o.advance(&first);
        assert_eq!(o.check(&[span("chat_events", 0, 50, 60), span("user_events", 0, 7, 8)]), Ok(()));
        let again = o.check(&[span("chat_events", 1, 3, 4), span("chat_events", 0, 45, 55)]).unwrap_err();
        assert!(again.contains("chat_events/0 [45, 55)") && again.contains("applied offset 50"), "{again}");
        assert!(o.check(&[span("chat_events", 0, 51, 60)]).is_err(), "a gap");
        assert!(o.check(&[span("chat_events", 0, 50, 50)]).unwrap_err().contains("empty"));
        assert!(o.check(&[span("t", 0, 0, 1), span("t", 0, 1, 2)]).unwrap_err().contains("second"));
        assert_eq!(SourceOffsets::decode(&o.encode()).unwrap(), o);
        assert_eq!(o.get()[&("chat_events".to_string(), 1)], 3);
        let bytes = o.encode();
        assert!(SourceOffsets::decode(&bytes[..bytes.len() - 1]).is_err());
        assert!(SourceOffsets::decode(&[bytes.as_slice(), &[0]].concat()).is_err());
    }
}
