//! Hand-built meetings: the pack's rules fed events as apply will feed them.

use collabstream_proto::v1;
use collabstream_proto::v1::event::Event;

use crate::agg::event_rule::EventRule;
use crate::agg::meetings::rules;
use crate::agg::{Emission, EmissionKind, Windows};

fn user(meeting: &str, user: &str, action: v1::UserAction, ts: i64) -> v1::Event {
    let e = v1::UserEvent {
        meeting_id: meeting.into(),
        user_id: user.into(),
        action: action as i32,
        timestamp_ms: ts,
        ..Default::default()
    };
    v1::Event { event: Some(Event::User(e)) }
}

fn message(meeting: &str, user: &str, ts: i64) -> v1::Event {
    let e = v1::ChatEvent {
        meeting_id: meeting.into(),
        user_id: user.into(),
        timestamp_ms: ts,
        ..Default::default()
    };
    v1::Event { event: Some(Event::Chat(e)) }
}

fn quality(meeting: &str, latency_ms: f64, loss: f64, jitter_ms: f64, ts: i64) -> v1::Event {
    let e = v1::MeetingEvent {
        meeting_id: meeting.into(),
        user_id: "probe".into(),
        kind: v1::MeetingKind::Quality as i32,
        latency_ms,
        packet_loss_pct: loss,
        jitter_ms,
        timestamp_ms: ts,
        ..Default::default()
    };
    v1::Event { event: Some(Event::Meeting(e)) }
}

/// The pack's engines, fed in order; emissions by rule name.
struct Pack {
    rules: Vec<(EventRule, Windows)>,
    out: Vec<(String, Emission)>,
}

impl Pack {
    fn new() -> Self {
        let rules = rules().into_iter().map(|r| (r.clone(), Windows::new(r.window))).collect();
        Self { rules, out: Vec::new() }
    }

    /// The events as one log entry.
    fn feed(&mut self, events: &[v1::Event]) {
        let cold = crate::agg::NoColdRows;
        for (rule, w) in &mut self.rules {
            let mut out = Vec::new();
            for e in events {
                if let Some((group, o)) = rule.observe(e) {
                    w.observe(0, &group, &o, &cold, &mut out).unwrap();
                }
            }
            w.flush_corrections(&cold, &mut out).unwrap();
            self.out.extend(out.into_iter().map(|x| (rule.name.clone(), x)));
        }
    }

    /// The last values emitted by `rule` for meeting m1's window ending at `end`, with their kind.
    fn last(&self, rule: &str, end: i64) -> Option<(EmissionKind, Vec<Option<f64>>)> {
        let m1 = |e: &Emission| e.group == b"\x02m1";
        self.out
            .iter()
            .rev()
            .find(|(r, e)| *r == rule && e.end == end && m1(e))
            .map(|(_, e)| (e.kind, e.values.clone()))
    }
}

#[test]
fn a_meeting_with_a_bad_network_is_poor_with_score_zero() {
    let mut p = Pack::new();
    p.feed(&[quality("m1", 420.0, 1.0, 20.0, 1_000), quality("m1", 390.0, 0.5, 10.0, 12_000)]);
    // A report 5 s (max out-of-orderness) past the window's end closes it.
    p.feed(&[quality("m1", 20.0, 0.0, 1.0, 35_000)]);
    // Series: status good, fair, poor, then the score.
    let (kind, values) = p.last("meeting_health", 30_000).unwrap();
    assert_eq!((kind, values), (EmissionKind::First, vec![Some(0.0), Some(0.0), Some(1.0), Some(0.0)]));
    let series = &rules().into_iter().find(|r| r.name == "meeting_health").unwrap().series;
    assert_eq!(series[2].metric, "meeting_health");
    assert_eq!(series[2].labels, [("status".to_string(), "poor".to_string())]);
    assert_eq!(series[3].metric, "meeting_health_score");
    let health = rules().into_iter().find(|r| r.name == "meeting_health").unwrap();
    assert_eq!(health.group_labels(b"\x02m1"), Some(vec![("meeting_id", "m1".to_string())]));
}

#[test]
fn active_users_message_rate_and_a_late_join() {
    let mut p = Pack::new();
    p.feed(&[
        user("m1", "u1", v1::UserAction::Join, 1_000),
        user("m1", "u2", v1::UserAction::Join, 2_000),
        message("m1", "u1", 3_000),
        message("m1", "u3", 4_000),
        message("m2", "x", 4_000),
        message("m1", "u1", 5_000),
    ]);
    p.feed(&[user("m1", "u9", v1::UserAction::Mute, 36_000)]);
    assert_eq!(p.last("meeting_active_users", 30_000).unwrap().1, [Some(3.0)]);
    // Three messages in [0, 10 s): in the 30 s windows ending at 10, 20 and 30 s, 3 / 30 each.
    for end in [10_000, 20_000, 30_000] {
        assert_eq!(p.last("meeting_message_rate", end).unwrap().1, [Some(0.1)], "window ending {end}");
    }
    // A join 31 s late, within the 5 min allowed lateness: the window is corrected.
    p.feed(&[user("m1", "u4", v1::UserAction::Join, 5_000)]);
    assert_eq!(p.last("meeting_active_users", 30_000).unwrap(), (EmissionKind::Correction, vec![Some(4.0)]));
    // Once the watermark is 5 min past the window's end, a late event is dropped and counted.
    p.feed(&[user("m1", "u9", v1::UserAction::Mute, 30_000 + 300_000 + 5_000)]);
    p.feed(&[user("m1", "u5", v1::UserAction::Join, 6_000)]);
    assert_eq!(p.last("meeting_active_users", 30_000).unwrap().1, [Some(4.0)]);
    let (_, active) = p.rules.iter().find(|(r, _)| r.name == "meeting_active_users").unwrap();
    assert_eq!(active.late_dropped(), 1);
}

#[test]
fn churn_and_engagement_of_a_minute() {
    let mut p = Pack::new();
    p.feed(&[
        user("m1", "u1", v1::UserAction::Join, 1_000),
        user("m1", "u2", v1::UserAction::Join, 1_000),
        user("m1", "u3", v1::UserAction::Join, 1_000),
        user("m1", "u4", v1::UserAction::Join, 1_000),
        message("m1", "u1", 2_000),
        message("m1", "u1", 2_500),
        message("m1", "u2", 3_000),
        user("m1", "u3", v1::UserAction::Unmute, 4_000),
        user("m1", "u4", v1::UserAction::Leave, 50_000),
    ]);
    p.feed(&[user("m1", "u1", v1::UserAction::Mute, 305_000)]);
    // 4 active users, 2 chatters, 3 messages, 1 who unmuted:
    // 100 · (0.4 · 2/4 + 0.3 · min(1, (3/4)/3) + 0.3 · 1/4) = 100 · (0.2 + 0.075 + 0.075) = 35.
    assert_eq!(p.last("meeting_engagement_score", 60_000).unwrap().1, [Some(35.0)]);
    // One leave for four joins in the first five minutes.
    assert_eq!(p.last("meeting_churn_rate", 300_000).unwrap().1, [Some(0.25)]);
}
