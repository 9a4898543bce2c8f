//! The openraft type configuration: what a log entry carries (an encoded [`v1::Command`]) and
//! what applying it answers (one [`ApplyOutcome`] per write of the entry).

use collabstream_proto::v1;
use collabstream_store::ApplyOutcome;
use prost::Message;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

openraft::declare_raft_types!(
    /// Node ids are `--node-id`; a node's address is its gRPC `host:port`.
    pub TypeConfig:
        D = Request,
        R = Response,
        NodeId = u64,
        Node = openraft::BasicNode,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = crate::snapshot_data::SnapshotData,
        AsyncRuntime = openraft::TokioRuntime,
        Responder = openraft::impls::OneshotResponder<TypeConfig>,
);

pub type NodeId = u64;
pub type Raft = openraft::Raft<TypeConfig>;
pub type LogId = openraft::LogId<NodeId>;
pub type Vote = openraft::Vote<NodeId>;
pub type Entry = openraft::Entry<TypeConfig>;
pub type Membership = openraft::StoredMembership<NodeId, openraft::BasicNode>;
pub type StorageError = openraft::StorageError<NodeId>;

/// A log entry's payload: a protobuf-encoded [`v1::Command`], kept encoded so that the log,
/// the network and apply never re-encode it, and shared (not copied) when openraft clones
/// entries for each follower.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Request {
    #[serde(with = "shared_bytes")]
    pub command: ::bytes::Bytes,
}

impl Request {
    pub fn new(cmd: &v1::Command) -> Self {
        Self { command: cmd.encode_to_vec().into() }
    }
}

mod shared_bytes {
    use serde::{Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &::bytes::Bytes, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(v)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<::bytes::Bytes, D::Error> {
        super::bytes::deserialize(d).map(Into::into)
    }
}

/// What applying an entry did: one outcome per write of its batch (none for membership and
/// blank entries).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Response {
    pub outcomes: Vec<ApplyOutcome>,
}

fn from_wire(r: v1::WriteResponse) -> ApplyOutcome {
    ApplyOutcome {
        samples_accepted: r.samples_accepted,
        events_accepted: r.events_accepted,
        rejected: r.rejected,
        duplicate: r.duplicate_batches > 0,
        catalog_change: None,
        refused: None,
    }
}

impl Serialize for Response {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use collabstream_store::RuleOutcome;
        // The wire's `rule_change` answers any catalog change (a rule's or an SQL table's).
        let rule_change = self.outcomes.iter().find_map(|o| o.catalog_change.as_ref()).map(|r| match r {
            RuleOutcome::Changed => v1::RuleChangeResult { changed: true, refused: String::new() },
            RuleOutcome::Unchanged => v1::RuleChangeResult::default(),
            RuleOutcome::Refused(why) => v1::RuleChangeResult { changed: false, refused: why.clone() },
        });
        let refused = if self.outcomes.iter().any(|o| o.refused.is_some()) {
            self.outcomes.iter().map(|o| o.refused.clone().unwrap_or_default()).collect()
        } else {
            Vec::new()
        };
        let wire = v1::ApplyResults {
            results: self.outcomes.iter().map(v1::WriteResponse::from).collect(),
            rule_change,
            refused,
        };
        s.serialize_bytes(&wire.encode_to_vec())
    }
}

impl<'de> Deserialize<'de> for Response {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = bytes::deserialize(d)?;
        let wire = v1::ApplyResults::decode(raw.as_slice()).map_err(serde::de::Error::custom)?;
        let mut outcomes: Vec<ApplyOutcome> = wire.results.into_iter().map(from_wire).collect();
        for (o, why) in outcomes.iter_mut().zip(wire.refused) {
            o.refused = (!why.is_empty()).then_some(why);
        }
        // A catalog change's answer belongs to its entry's one outcome.
        if let (Some(r), Some(o)) = (wire.rule_change, outcomes.first_mut()) {
            use collabstream_store::RuleOutcome;
            o.catalog_change = Some(match (r.changed, r.refused) {
                (_, why) if !why.is_empty() => RuleOutcome::Refused(why),
                (true, _) => RuleOutcome::Changed,
                (false, _) => RuleOutcome::Unchanged,
            });
        }
        Ok(Self { outcomes })
    }
}

/// Reading byte strings written as bytes (not as a sequence of numbers, which bincode would
/// read one element at a time).
mod bytes {
    use serde::Deserializer;
    use serde::de::{SeqAccess, Visitor};

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Vec<u8>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("bytes")
            }
            fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<Vec<u8>, E> {
                Ok(v.to_vec())
            }
            fn visit_byte_buf<E: serde::de::Error>(self, v: Vec<u8>) -> Result<Vec<u8>, E> {
                Ok(v)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<u8>, A::Error> {
                let mut out = Vec::new();
                while let Some(b) = seq.next_element()? {
                    out.push(b);
                }
                Ok(out)
            }
        }
        d.deserialize_byte_buf(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_response_keeps_its_outcomes_and_refusals_through_the_wire() {
        let taken = ApplyOutcome { events_accepted: 3, ..Default::default() };
        let refused =
            ApplyOutcome { refused: Some("source span t/0 [2, 4) ...".into()), ..Default::default() };
        for outcomes in [vec![taken.clone()], vec![taken, refused]] {
            let r = Response { outcomes };
            let back: Response = crate::codec::decode(&crate::codec::encode(&r).unwrap()).unwrap();
            assert_eq!(back, r);
        }
    }
}
