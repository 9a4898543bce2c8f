//! The JSON event format shared by `POST /api/v1/events` and Kafka: one object per event.
//!
//! ```json
//! {"type":"user","meeting_id":"m1","user_id":"u1","action":"join","timestamp":1732780800000}
//! {"type":"chat","meeting_id":"m1","user_id":"u1","message_id":"x","length":42,"timestamp":"2024-11-28T08:00:00Z"}
//! {"type":"meeting","meeting_id":"m1","kind":"quality","latency_ms":120,"jitter_ms":8,"packet_loss_pct":0.2,"timestamp":1732780800000}
//! ```
//! `timestamp` is unix milliseconds or RFC 3339. Unknown fields are ignored, so producers may
//! send more than we store.

use crate::v1::{self, event::Event as Kind};
use serde::Deserialize;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

#[derive(Debug, Deserialize)]
struct Raw {
    #[serde(rename = "type")]
    kind_of_event: Option<String>,
    #[serde(default)]
    tenant: String,
    #[serde(default)]
    meeting_id: String,
    #[serde(default)]
    user_id: String,
    action: Option<String>,
    #[serde(default)]
    message_id: String,
    #[serde(default)]
    length: u32,
    kind: Option<String>,
    #[serde(default)]
    latency_ms: f64,
    #[serde(default)]
    jitter_ms: f64,
    #[serde(default)]
    packet_loss_pct: f64,
    timestamp: Option<serde_json::Value>,
}

/// Parses one event object. `default_type` applies when the object has no `type` (a Kafka
/// topic named for the event type). Errors say what to fix.
pub fn parse_event(json: &str, default_type: Option<&str>) -> Result<v1::Event, String> {
    let raw: Raw = serde_json::from_str(json).map_err(|e| format!("invalid JSON: {e}"))?;
    let ts = match &raw.timestamp {
        None => return Err("timestamp is required (unix milliseconds or RFC 3339)".into()),
        Some(v) => parse_timestamp(v)?,
    };
    let ty =
        raw.kind_of_event.as_deref().or(default_type).ok_or("type is required: user, chat or meeting")?;
    let event = match ty {
        "user" => {
            let action = raw.action.as_deref().ok_or("action is required for user events")?;
            Kind::User(v1::UserEvent {
                tenant: raw.tenant,
                meeting_id: raw.meeting_id,
                user_id: raw.user_id,
                action: user_action(action)? as i32,
                timestamp_ms: ts,
            })
        }
        "chat" => Kind::Chat(v1::ChatEvent {
            tenant: raw.tenant,
            meeting_id: raw.meeting_id,
            user_id: raw.user_id,
            message_id: raw.message_id,
            length: raw.length,
            kind: chat_kind(raw.kind.as_deref().unwrap_or("message"))? as i32,
            timestamp_ms: ts,
        }),
        "meeting" => {
            let kind = match raw.kind.as_deref() {
                Some(k) => meeting_kind(k)?,
                None => return Err("kind is required for meeting events: start, end or quality".into()),
            };
            Kind::Meeting(v1::MeetingEvent {
                tenant: raw.tenant,
                meeting_id: raw.meeting_id,
                user_id: raw.user_id,
                kind: kind as i32,
                latency_ms: raw.latency_ms,
                jitter_ms: raw.jitter_ms,
                packet_loss_pct: raw.packet_loss_pct,
                timestamp_ms: ts,
            })
        }
        other => return Err(format!("unknown type {other:?}: use user, chat or meeting")),
    };
    Ok(v1::Event { event: Some(event) })
}

/// The JSON object for an event, in the format [`parse_event`] reads.
pub fn to_json(e: &v1::Event) -> serde_json::Value {
    use serde_json::json;
    match &e.event {
        None => json!({}),
        Some(Kind::User(u)) => json!({
            "type": "user", "tenant": u.tenant, "meeting_id": u.meeting_id, "user_id": u.user_id,
            "action": user_action_name(u.action()), "timestamp": u.timestamp_ms,
        }),
        Some(Kind::Chat(c)) => json!({
            "type": "chat", "tenant": c.tenant, "meeting_id": c.meeting_id, "user_id": c.user_id,
            "message_id": c.message_id, "length": c.length, "kind": chat_kind_name(c.kind()),
            "timestamp": c.timestamp_ms,
        }),
        Some(Kind::Meeting(m)) => json!({
            "type": "meeting", "tenant": m.tenant, "meeting_id": m.meeting_id, "user_id": m.user_id,
            "kind": meeting_kind_name(m.kind()),
            "latency_ms": m.latency_ms, "jitter_ms": m.jitter_ms, "packet_loss_pct": m.packet_loss_pct,
            "timestamp": m.timestamp_ms,
        }),
    }
}

const ACTIONS: [(&str, v1::UserAction); 8] = [
    ("join", v1::UserAction::Join),
    ("leave", v1::UserAction::Leave),
    ("mute", v1::UserAction::Mute),
    ("unmute", v1::UserAction::Unmute),
    ("camera_on", v1::UserAction::CameraOn),
    ("camera_off", v1::UserAction::CameraOff),
    ("screen_share_start", v1::UserAction::ScreenShareStart),
    ("screen_share_stop", v1::UserAction::ScreenShareStop),
];

/// A user event's action as the JSON format (and the cold tier's files) name it.
pub fn user_action_name(a: v1::UserAction) -> &'static str {
    ACTIONS.iter().find(|(_, x)| *x == a).map_or("unspecified", |(n, _)| n)
}

/// A chat event's kind as the JSON format names it.
pub fn chat_kind_name(k: v1::ChatKind) -> &'static str {
    match k {
        v1::ChatKind::Message => "message",
        v1::ChatKind::Reaction => "reaction",
    }
}

/// A meeting event's kind as the JSON format names it.
pub fn meeting_kind_name(k: v1::MeetingKind) -> &'static str {
    match k {
        v1::MeetingKind::Start => "start",
        v1::MeetingKind::End => "end",
        v1::MeetingKind::Quality => "quality",
        v1::MeetingKind::Unspecified => "unspecified",
    }
}

/// A user event's action by its JSON name.
pub fn user_action(s: &str) -> Result<v1::UserAction, String> {
    ACTIONS.iter().find(|(n, _)| *n == s).map(|(_, a)| *a).ok_or_else(|| {
        format!(
            "unknown action {s:?}: use join, leave, mute, unmute, camera_on, camera_off, screen_share_start or screen_share_stop"
        )
    })
}

/// A chat event's kind by its JSON name.
pub fn chat_kind(s: &str) -> Result<v1::ChatKind, String> {
    match s {
        "message" => Ok(v1::ChatKind::Message),
        "reaction" => Ok(v1::ChatKind::Reaction),
        other => Err(format!("unknown chat kind {other:?}: use message or reaction")),
    }
}

/// A meeting event's kind by its JSON name.
pub fn meeting_kind(s: &str) -> Result<v1::MeetingKind, String> {
    match s {
        "start" => Ok(v1::MeetingKind::Start),
        "end" => Ok(v1::MeetingKind::End),
        "quality" => Ok(v1::MeetingKind::Quality),
        other => Err(format!("unknown meeting kind {other:?}: use start, end or quality")),
    }
}

fn parse_timestamp(v: &serde_json::Value) -> Result<i64, String> {
    match v {
        serde_json::Value::Number(n) => n
            .as_i64()
            .or_else(|| n.as_f64().filter(|f| f.fract() == 0.0 && f.abs() < 9.2e18).map(|f| f as i64))
            .filter(|t| *t > 0)
            .ok_or_else(|| format!("timestamp {n} is not a positive whole number of unix milliseconds")),
        serde_json::Value::String(s) => OffsetDateTime::parse(s, &Rfc3339)
            .map(|t| (t.unix_timestamp_nanos() / 1_000_000) as i64)
            .map_err(|e| format!("timestamp {s:?} is not RFC 3339: {e}")),
        other => Err(format!("timestamp must be a number or an RFC 3339 string, got {other}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_documented_examples() {
        let u = parse_event(
            r#"{"type":"user","meeting_id":"m1","user_id":"u1","action":"join","timestamp":1732780800000}"#,
            None,
        )
        .unwrap();
        assert_eq!(crate::events::timestamp_ms(&u), Some(1_732_780_800_000));
        let c = parse_event(r#"{"type":"chat","meeting_id":"m1","user_id":"u1","message_id":"x","length":42,"timestamp":"2024-11-28T08:00:00.5Z"}"#, None).unwrap();
        assert_eq!(crate::events::timestamp_ms(&c), Some(1_732_780_800_500));
        let m = parse_event(r#"{"meeting_id":"m1","user_id":"u1","kind":"quality","latency_ms":120,"jitter_ms":8,"packet_loss_pct":0.2,"timestamp":1}"#, Some("meeting")).unwrap();
        assert!(matches!(m.event, Some(Kind::Meeting(ref q)) if q.latency_ms == 120.0));
    }

    #[test]
    fn to_json_round_trips() {
        let line = r#"{"type":"meeting","meeting_id":"m1","user_id":"u1","kind":"quality","latency_ms":120.5,"jitter_ms":8,"packet_loss_pct":0.2,"timestamp":7}"#;
        let e = parse_event(line, None).unwrap();
        assert_eq!(parse_event(&to_json(&e).to_string(), None).unwrap(), e);
        let u = parse_event(
            r#"{"type":"user","meeting_id":"m","user_id":"u","action":"screen_share_stop","timestamp":1}"#,
            None,
        )
        .unwrap();
        assert_eq!(to_json(&u)["action"], "screen_share_stop");
    }

    #[test]
    fn errors_say_what_to_fix() {
        let e = parse_event(
            r#"{"type":"user","meeting_id":"m1","user_id":"u1","action":"dance","timestamp":1}"#,
            None,
        )
        .unwrap_err();
        assert!(e.contains("unknown action \"dance\""), "{e}");
        assert!(parse_event("{", None).unwrap_err().starts_with("invalid JSON"));
        assert!(parse_event(r#"{"type":"user"}"#, None).unwrap_err().contains("timestamp is required"));
        assert!(
            parse_event(r#"{"timestamp":"yesterday","type":"chat"}"#, None).unwrap_err().contains("RFC 3339")
        );
        assert!(parse_event(r#"{"timestamp":5}"#, None).unwrap_err().contains("type is required"));
    }
}
