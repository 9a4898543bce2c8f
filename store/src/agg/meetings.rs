//! The meetings rule pack (DESIGN §3): the origin project's metrics per `meeting_id`, as
//! [`EventRule`]s. Each output series is labelled `meeting_id` and stamped at its window's end.

use collabstream_proto::v1::{ChatKind, MeetingKind, UserAction};

use crate::agg::acc::Output;
use crate::agg::event_rule::{EventField, EventFilter, EventRule, MeasureSpec, OutputSeries};
use crate::agg::formula::{Formula, Health, MeasureId};
use crate::agg::rule::WindowRule;
use crate::agg::window::WindowKind;

/// The pack's defaults (DESIGN §3).
pub const MAX_OUT_OF_ORDERNESS_MS: i64 = 5_000;
pub const ALLOWED_LATENESS_MS: i64 = 5 * 60_000;
pub const IDLE_TIMEOUT_MS: i64 = 30_000;
/// Distinct users counted exactly up to this many per meeting and window.
pub const DISTINCT_THRESHOLD: usize = 1_000;

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

fn series(metric: &str) -> OutputSeries {
    OutputSeries { metric: metric.to_string(), labels: Vec::new() }
}

fn of(measure: MeasureId, output: Output) -> Formula {
    Formula::Of { measure, output }
}

fn users(events: EventFilter) -> MeasureSpec {
    MeasureSpec { events, value: None, distinct: Some(EventField::UserId) }
}

fn counted(events: EventFilter) -> MeasureSpec {
    MeasureSpec { events, value: None, distinct: None }
}

fn quality(field: EventField) -> MeasureSpec {
    MeasureSpec {
        events: EventFilter::Meeting(vec![MeetingKind::Quality]),
        value: Some(field),
        distinct: None,
    }
}

fn pack_rule(
    name: &str,
    window: WindowKind,
    measures: Vec<MeasureSpec>,
    outputs: Vec<(Formula, OutputSeries)>,
) -> EventRule {
    let (formulas, series) = outputs.into_iter().unzip();
    EventRule {
        name: name.to_string(),
        filter: Vec::new(),
        group_by: vec![EventField::MeetingId],
        measures,
        window: rule(window, formulas),
        series,
    }
}

/// The pack's rules, in a fixed order.
pub fn rules() -> Vec<EventRule> {
    let tumbling = |s: i64| WindowKind::Tumbling { size_ms: s * 1000 };
    let messages = || EventFilter::Chat(vec![ChatKind::Message]);
    let health = |is| Formula::HealthIs { latency: 0, loss: 1, jitter: 2, is };
    let status = |s: Health| OutputSeries {
        metric: "meeting_health".to_string(),
        labels: vec![("status".to_string(), s.name().to_string())],
    };
    vec![
        pack_rule(
            "meeting_active_users",
            tumbling(30),
            vec![users(EventFilter::Any)],
            vec![(of(0, Output::Distinct), series("meeting_active_users"))],
        ),
        // Messages / 30: the rate of a 30 s window.
        pack_rule(
            "meeting_message_rate",
            WindowKind::Sliding { size_ms: 30_000, hop_ms: 10_000 },
            vec![counted(messages())],
            vec![(of(0, Output::Rate), series("meeting_message_rate"))],
        ),
        pack_rule(
            "meeting_latency",
            tumbling(60),
            vec![quality(EventField::LatencyMs)],
            vec![
                (of(0, Output::Avg), series("meeting_avg_latency_ms")),
                (of(0, Output::Quantile(0.95)), series("meeting_p95_latency_ms")),
            ],
        ),
        pack_rule(
            "meeting_churn_rate",
            tumbling(300),
            vec![
                counted(EventFilter::User(vec![UserAction::Join])),
                counted(EventFilter::User(vec![UserAction::Leave])),
            ],
            vec![(Formula::PerAtLeastOne { numerator: 1, denominator: 0 }, series("meeting_churn_rate"))],
        ),
        pack_rule(
            "meeting_engagement_score",
            tumbling(60),
            vec![
                users(EventFilter::Any),
                users(messages()),
                counted(messages()),
                users(EventFilter::User(vec![
                    UserAction::Unmute,
                    UserAction::CameraOn,
                    UserAction::ScreenShareStart,
                ])),
            ],
            vec![(
                Formula::Engagement { active: 0, chatters: 1, messages: 2, actors: 3 },
                series("meeting_engagement_score"),
            )],
        ),
        pack_rule(
            "meeting_health",
            tumbling(30),
            vec![
                quality(EventField::LatencyMs),
                quality(EventField::PacketLossPct),
                quality(EventField::JitterMs),
            ],
            vec![
                (health(Health::Good), status(Health::Good)),
                (health(Health::Fair), status(Health::Fair)),
                (health(Health::Poor), status(Health::Poor)),
                (Formula::HealthScore { latency: 0, loss: 1, jitter: 2 }, series("meeting_health_score")),
            ],
        ),
    ]
}
