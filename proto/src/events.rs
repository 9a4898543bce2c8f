//! Helpers over the event family: validation and the fields every event carries.

use crate::v1::{self, event::Event as Kind};

/// Why an event was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum EventError {
    #[error("event has no type: set one of user, chat or meeting")]
    Empty,
    #[error("meeting_id is required")]
    MissingMeetingId,
    #[error("user_id is required for {0} events")]
    MissingUserId(&'static str),
    #[error("timestamp is required (unix milliseconds)")]
    MissingTimestamp,
    #[error("user event action is required")]
    MissingAction,
    #[error("meeting event kind is required")]
    MissingKind,
    #[error("{field} must be a finite number ≥ 0, got {value}")]
    BadQuality { field: &'static str, value: f64 },
}

/// The event's time in unix milliseconds.
pub fn timestamp_ms(e: &v1::Event) -> Option<i64> {
    match e.event.as_ref()? {
        Kind::User(u) => Some(u.timestamp_ms),
        Kind::Chat(c) => Some(c.timestamp_ms),
        Kind::Meeting(m) => Some(m.timestamp_ms),
    }
}

/// The event's meeting id.
pub fn meeting_id(e: &v1::Event) -> Option<&str> {
    match e.event.as_ref()? {
        Kind::User(u) => Some(&u.meeting_id),
        Kind::Chat(c) => Some(&c.meeting_id),
        Kind::Meeting(m) => Some(&m.meeting_id),
    }
}

/// Checks the fields the aggregation rules and SQL rely on.
pub fn validate(e: &v1::Event) -> Result<(), EventError> {
    let kind = e.event.as_ref().ok_or(EventError::Empty)?;
    let (meeting, ts) = match kind {
        Kind::User(u) => {
            if u.user_id.is_empty() {
                return Err(EventError::MissingUserId("user"));
            }
            if u.action() == v1::UserAction::Unspecified {
                return Err(EventError::MissingAction);
            }
            (&u.meeting_id, u.timestamp_ms)
        }
        Kind::Chat(c) => {
            if c.user_id.is_empty() {
                return Err(EventError::MissingUserId("chat"));
            }
            (&c.meeting_id, c.timestamp_ms)
        }
        Kind::Meeting(m) => {
            if m.kind() == v1::MeetingKind::Unspecified {
                return Err(EventError::MissingKind);
            }
            for (field, value) in [
                ("latency_ms", m.latency_ms),
                ("jitter_ms", m.jitter_ms),
                ("packet_loss_pct", m.packet_loss_pct),
            ] {
                if !value.is_finite() || value < 0.0 {
                    return Err(EventError::BadQuality { field, value });
                }
            }
            (&m.meeting_id, m.timestamp_ms)
        }
    };
    if meeting.is_empty() {
        return Err(EventError::MissingMeetingId);
    }
    if ts == 0 {
        return Err(EventError::MissingTimestamp);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn join(meeting: &str, user: &str, ts: i64) -> v1::Event {
        v1::Event {
            event: Some(Kind::User(v1::UserEvent {
                tenant: String::new(),
                meeting_id: meeting.into(),
                user_id: user.into(),
                action: v1::UserAction::Join as i32,
                timestamp_ms: ts,
            })),
        }
    }

    #[test]
    fn validates_required_fields() {
        assert_eq!(validate(&join("m1", "u1", 5)), Ok(()));
        assert_eq!(validate(&join("", "u1", 5)), Err(EventError::MissingMeetingId));
        assert_eq!(validate(&join("m1", "", 5)), Err(EventError::MissingUserId("user")));
        assert_eq!(validate(&join("m1", "u1", 0)), Err(EventError::MissingTimestamp));
        assert_eq!(validate(&v1::Event { event: None }), Err(EventError::Empty));
        assert_eq!(timestamp_ms(&join("m1", "u1", 5)), Some(5));
        assert_eq!(meeting_id(&join("m1", "u1", 5)), Some("m1"));
    }

    #[test]
    fn quality_numbers_must_be_finite() {
        let e = v1::Event {
            event: Some(Kind::Meeting(v1::MeetingEvent {
                meeting_id: "m".into(),
                kind: v1::MeetingKind::Quality as i32,
                latency_ms: f64::NAN,
                timestamp_ms: 1,
                ..Default::default()
            })),
        };
        assert!(matches!(validate(&e), Err(EventError::BadQuality { field: "latency_ms", .. })));
    }
}
