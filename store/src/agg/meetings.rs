//! The meetings rule pack (DESIGN §3): the origin project's metrics per `meeting_id`, as
//! rules of [`WindowRule`]s and the routing of each event to their measures.
//!
//! Each [`PackRule`] names its output series; the store writes one sample per series and
//! window, labelled `meeting_id`, at the window's end.

use collabstream_proto::v1;
use collabstream_proto::v1::event::Event;

use crate::agg::acc::Output;
use crate::agg::distinct::hash;
use crate::agg::formula::{Formula, Health, MeasureId};
use crate::agg::measures::{Input, Observation};
use crate::agg::rule::WindowRule;
use crate::agg::window::WindowKind;

/// The pack's defaults (DESIGN §3).
pub const MAX_OUT_OF_ORDERNESS_MS: i64 = 5_000;
pub const ALLOWED_LATENESS_MS: i64 = 5 * 60_000;
pub const IDLE_TIMEOUT_MS: i64 = 30_000;
/// Distinct users counted exactly up to this many per meeting and window.
pub const DISTINCT_THRESHOLD: usize = 1_000;

/// One output series of a rule: its metric name and the labels it adds to `meeting_id`.
#[derive(Debug, Clone, PartialEq)]
pub struct OutputSeries {
    pub metric: &'static str,
    pub labels: Vec<(&'static str, &'static str)>,
}

/// Which measures of a pack rule an event feeds.
type Route = fn(&Event) -> Vec<Input>;

#[derive(Debug, Clone)]
pub struct PackRule {
    pub name: &'static str,
    pub rule: WindowRule,
    /// One per formula of `rule.outputs`, in order.
    pub series: Vec<OutputSeries>,
    route: Route,
}

impl PackRule {
    /// The event as this rule's windows see it, grouped by meeting; `None` for an event of no
    /// meeting or without a time.
    pub fn observe(&self, e: &v1::Event) -> Option<(String, Observation)> {
        let event = e.event.as_ref()?;
        let meeting = collabstream_proto::events::meeting_id(e)?;
        let ts = collabstream_proto::events::timestamp_ms(e)?;
        Some((meeting.to_string(), Observation { ts, inputs: (self.route)(event) }))
    }
}

fn user_of(e: &Event) -> &str {
    match e {
        Event::User(u) => &u.user_id,
        Event::Chat(c) => &c.user_id,
        Event::Meeting(m) => &m.user_id,
    }
}

fn is_message(e: &Event) -> bool {
    matches!(e, Event::Chat(c) if c.kind == v1::ChatKind::Message as i32)
}

/// A distinct-user input for `measure`, if the event names a user.
fn user(measure: MeasureId, e: &Event) -> Option<Input> {
    let u = user_of(e);
    (!u.is_empty()).then(|| Input { measure, value: None, distinct: Some(hash(u.as_bytes())) })
}

fn counted(measure: MeasureId) -> Input {
    Input { measure, value: None, distinct: None }
}

fn valued(measure: MeasureId, value: f64) -> Input {
    Input { measure, value: Some(value), distinct: None }
}

fn quality(e: &Event) -> Option<&v1::MeetingEvent> {
    match e {
        Event::Meeting(m) if m.kind == v1::MeetingKind::Quality as i32 => Some(m),
        _ => None,
    }
}

fn action(e: &Event) -> Option<v1::UserAction> {
    match e {
        Event::User(u) => v1::UserAction::try_from(u.action).ok(),
        _ => None,
    }
}

fn rule(window: WindowKind, outputs: Vec<Formula>) -> WindowRule {
    WindowRule {
        window,
        outputs,
        max_out_of_orderness_ms: MAX_OUT_OF_ORDERNESS_MS,
        allowed_lateness_ms: ALLOWED_LATENESS_MS,
        idle_timeout_ms: IDLE_TIMEOUT_MS,
        distinct_threshold: DISTINCT_THRESHOLD,
    }
}

fn series(metric: &'static str) -> OutputSeries {
    OutputSeries { metric, labels: Vec::new() }
}

fn of(measure: MeasureId, output: Output) -> Formula {
    Formula::Of { measure, output }
}

/// The pack's rules, in a fixed order.
pub fn rules() -> Vec<PackRule> {
    let tumbling = |s: i64| WindowKind::Tumbling { size_ms: s * 1000 };
    let health = |is| Formula::HealthIs { latency: 0, loss: 1, jitter: 2, is };
    let status = |s: Health| OutputSeries { metric: "meeting_health", labels: vec![("status", s.name())] };
    vec![
        PackRule {
            name: "meeting_active_users",
            rule: rule(tumbling(30), vec![of(0, Output::Distinct)]),
            series: vec![series("meeting_active_users")],
            route: |e| user(0, e).into_iter().collect(),
        },
        PackRule {
            name: "meeting_message_rate",
            // Messages / 30: the rate of a 30 s window.
            rule: rule(WindowKind::Sliding { size_ms: 30_000, hop_ms: 10_000 }, vec![of(0, Output::Rate)]),
            series: vec![series("meeting_message_rate")],
            route: |e| if is_message(e) { vec![counted(0)] } else { Vec::new() },
        },
        PackRule {
            name: "meeting_latency",
            rule: rule(tumbling(60), vec![of(0, Output::Avg), of(0, Output::Quantile(0.95))]),
            series: vec![series("meeting_avg_latency_ms"), series("meeting_p95_latency_ms")],
            route: |e| quality(e).map(|q| valued(0, q.latency_ms)).into_iter().collect(),
        },
        PackRule {
            name: "meeting_churn_rate",
            rule: rule(tumbling(300), vec![Formula::PerAtLeastOne { numerator: 1, denominator: 0 }]),
            series: vec![series("meeting_churn_rate")],
            route: |e| match action(e) {
                Some(v1::UserAction::Join) => vec![counted(0)],
                Some(v1::UserAction::Leave) => vec![counted(1)],
                _ => Vec::new(),
            },
        },
        PackRule {
            name: "meeting_engagement_score",
            rule: rule(
                tumbling(60),
                vec![Formula::Engagement { active: 0, chatters: 1, messages: 2, actors: 3 }],
            ),
            series: vec![series("meeting_engagement_score")],
            route: |e| {
                let mut inputs: Vec<Input> = user(0, e).into_iter().collect();
                if is_message(e) {
                    inputs.extend(user(1, e));
                    inputs.push(counted(2));
                }
                let acts = matches!(
                    action(e),
                    Some(
                        v1::UserAction::Unmute | v1::UserAction::CameraOn | v1::UserAction::ScreenShareStart
                    )
                );
                if acts {
                    inputs.extend(user(3, e));
                }
                inputs
            },
        },
        PackRule {
            name: "meeting_health",
            rule: rule(
                tumbling(30),
                vec![
                    health(Health::Good),
                    health(Health::Fair),
                    health(Health::Poor),
                    Formula::HealthScore { latency: 0, loss: 1, jitter: 2 },
                ],
            ),
            series: vec![
                status(Health::Good),
                status(Health::Fair),
                status(Health::Poor),
                series("meeting_health_score"),
            ],
            route: |e| match quality(e) {
                Some(q) => {
                    vec![valued(0, q.latency_ms), valued(1, q.packet_loss_pct), valued(2, q.jitter_ms)]
                }
                None => Vec::new(),
            },
        },
    ]
}
