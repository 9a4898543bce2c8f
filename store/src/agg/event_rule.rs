//! [`EventRule`]: a rule over events, as data: which events each measure takes and what of
//! them, how they are grouped, the windows, and the series its outputs become.
//!
//! Rules are data so that they can travel in the log and every replica interprets them alike;
//! who defines them (the built-in packs, the configuration, the API) is the concern of the
//! layers above.

use collabstream_proto::v1;
use collabstream_proto::v1::event::Event;

use crate::agg::distinct::hash;
use crate::agg::formula::MeasureId;
use crate::agg::measures::{Input, Observation};
use crate::agg::rule::WindowRule;
use crate::varint::{Reader, put_u64};

/// A field of an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventField {
    Tenant,
    MeetingId,
    UserId,
    LatencyMs,
    JitterMs,
    PacketLossPct,
    /// A chat message's length.
    Length,
}

impl EventField {
    /// The field's name, as a group label and in the JSON events.
    pub fn name(self) -> &'static str {
        match self {
            EventField::Tenant => "tenant",
            EventField::MeetingId => "meeting_id",
            EventField::UserId => "user_id",
            EventField::LatencyMs => "latency_ms",
            EventField::JitterMs => "jitter_ms",
            EventField::PacketLossPct => "packet_loss_pct",
            EventField::Length => "length",
        }
    }

    /// A text field (tenant, meeting_id, user_id) by its name.
    pub fn text_named(name: &str) -> Option<Self> {
        [EventField::Tenant, EventField::MeetingId, EventField::UserId].into_iter().find(|f| f.name() == name)
    }

    /// A numeric field by its name, with the event kind that has it.
    pub fn number_named(name: &str) -> Option<(Self, &'static str)> {
        [
            (EventField::LatencyMs, "meeting"),
            (EventField::JitterMs, "meeting"),
            (EventField::PacketLossPct, "meeting"),
            (EventField::Length, "chat"),
        ]
        .into_iter()
        .find(|(f, _)| f.name() == name)
    }

    fn text(self, e: &Event) -> Option<&str> {
        let (tenant, meeting, user) = match e {
            Event::User(u) => (&u.tenant, &u.meeting_id, &u.user_id),
            Event::Chat(c) => (&c.tenant, &c.meeting_id, &c.user_id),
            Event::Meeting(m) => (&m.tenant, &m.meeting_id, &m.user_id),
        };
        match self {
            EventField::Tenant => Some(tenant),
            EventField::MeetingId => Some(meeting),
            EventField::UserId => Some(user),
            _ => None,
        }
    }

    fn number(self, e: &Event) -> Option<f64> {
        match (self, e) {
            (EventField::LatencyMs, Event::Meeting(m)) => Some(m.latency_ms),
            (EventField::JitterMs, Event::Meeting(m)) => Some(m.jitter_ms),
            (EventField::PacketLossPct, Event::Meeting(m)) => Some(m.packet_loss_pct),
            (EventField::Length, Event::Chat(c)) => Some(f64::from(c.length)),
            _ => None,
        }
    }
}

/// Which events a measure takes: of a kind, and of the listed actions or kinds (any if none).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventFilter {
    Any,
    User(Vec<v1::UserAction>),
    Chat(Vec<v1::ChatKind>),
    Meeting(Vec<v1::MeetingKind>),
}

impl EventFilter {
    fn matches(&self, e: &Event) -> bool {
        fn any_or<T: Copy + Into<i32>>(list: &[T], v: i32) -> bool {
            list.is_empty() || list.iter().any(|x| (*x).into() == v)
        }
        match (self, e) {
            (EventFilter::Any, _) => true,
            (EventFilter::User(a), Event::User(u)) => any_or(a, u.action),
            (EventFilter::Chat(k), Event::Chat(c)) => any_or(k, c.kind),
            (EventFilter::Meeting(k), Event::Meeting(m)) => any_or(k, m.kind),
            _ => false,
        }
    }
}

/// One measure: the events it takes, the value it aggregates and the key it counts distinct.
/// An event whose distinct key is empty (a meeting's start has no user) is not taken.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MeasureSpec {
    pub events: EventFilter,
    pub value: Option<EventField>,
    pub distinct: Option<EventField>,
}

/// One output series: its metric name and the labels it has besides the group's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutputSeries {
    pub metric: String,
    pub labels: Vec<(String, String)>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct EventRule {
    pub name: String,
    /// Only events whose text fields equal these values are taken by a measure (they still
    /// move the watermark: they are part of the same stream's time).
    pub filter: Vec<(EventField, String)>,
    pub group_by: Vec<EventField>,
    pub measures: Vec<MeasureSpec>,
    pub window: WindowRule,
    /// One per formula of `window.outputs`, in order.
    pub series: Vec<OutputSeries>,
}

impl EventRule {
    /// The event as this rule's windows see it, with its group's key; `None` for an event
    /// without a time. An event no measure takes still moves the rule's watermark.
    pub fn observe(&self, e: &v1::Event) -> Option<(Vec<u8>, Observation)> {
        let event = e.event.as_ref()?;
        let ts = collabstream_proto::events::timestamp_ms(e)?;
        let mut o = Observation { ts, inputs: Vec::new() };
        self.inputs(event, &mut o.inputs);
        let mut group = Vec::new();
        group_key(&self.group_by, event, &mut group);
        Some((group, o))
    }

    /// What `event` gives each of this rule's measures, appended to `inputs` (nothing when
    /// the rule's filter or no measure takes it). Apply's path: one buffer for every rule and
    /// event, no allocation once it has grown.
    pub fn inputs(&self, event: &Event, inputs: &mut Vec<Input>) {
        if !self.filter.iter().all(|(f, v)| f.text(event) == Some(v.as_str())) {
            return;
        }
        for (i, m) in self.measures.iter().enumerate() {
            if !m.events.matches(event) {
                continue;
            }
            let distinct = match m.distinct {
                Some(f) => match f.text(event).filter(|s| !s.is_empty()) {
                    Some(s) => Some(hash(s.as_bytes())),
                    None => continue,
                },
                None => None,
            };
            let value = m.value.and_then(|f| f.number(event));
            inputs.push(Input { measure: i as MeasureId, value, distinct });
        }
    }

    /// The group's labels, from its key: one per `group_by` field.
    pub fn group_labels(&self, group: &[u8]) -> Option<Vec<(&'static str, String)>> {
        let mut r = Reader::new(group);
        let mut labels = Vec::with_capacity(self.group_by.len());
        for f in &self.group_by {
            let len = usize::try_from(r.u64()?).ok()?;
            let v = std::str::from_utf8(r.bytes(len)?).ok()?;
            labels.push((f.name(), v.to_string()));
        }
        r.is_empty().then_some(labels)
    }
}

/// The key of `event`'s group under `fields`, appended to `group`: each field's length and
/// bytes (a missing field is empty). Rules grouping by the same fields share their keys.
pub fn group_key(fields: &[EventField], event: &Event, group: &mut Vec<u8>) {
    for f in fields {
        let v = f.text(event).unwrap_or("");
        put_u64(group, v.len() as u64);
        group.extend_from_slice(v.as_bytes());
    }
}
