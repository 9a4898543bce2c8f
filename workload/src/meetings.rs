//! [`Meetings`]: a synthetic collaboration workload. Meetings start and end, users join and
//! leave, chat, react, mute, turn cameras on and share screens, and clients send a quality
//! report every 10 s; some meetings run on a bad network (high latency, jitter and loss).

use collabstream_proto::v1::{self, event::Event as Kind};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

#[derive(Debug)]
struct Meeting {
    id: String,
    present: Vec<String>,
    next_user: u32,
    ends_at_ms: i64,
    bad_network: bool,
    next_quality_ms: i64,
}

/// A fixed number of concurrent meetings, each replaced by a new one when it ends.
#[derive(Debug)]
pub struct Meetings {
    meetings: Vec<Meeting>,
    rng: SmallRng,
    started: u64,
    tenant: String,
}

const QUALITY_EVERY_MS: i64 = 10_000;

impl Meetings {
    pub fn new(concurrent: usize, seed: u64) -> Self {
        Self {
            meetings: Vec::with_capacity(concurrent),
            rng: SmallRng::seed_from_u64(seed),
            started: 0,
            tenant: "demo".into(),
        }
        .filled(concurrent)
    }

    fn filled(mut self, n: usize) -> Self {
        self.meetings.reserve(n);
        for _ in 0..n {
            let m = self.new_meeting();
            self.meetings.push(m);
        }
        self
    }

    /// A meeting that starts at the next tick (`ends_at_ms` 0 means not started).
    fn new_meeting(&mut self) -> Meeting {
        self.started += 1;
        Meeting {
            id: format!("meeting-{:06}", self.started),
            present: Vec::new(),
            next_user: 0,
            ends_at_ms: 0,
            bad_network: self.rng.random_bool(0.15),
            next_quality_ms: 0,
        }
    }

    /// Events for the interval `(now_ms - dt_ms, now_ms]`.
    pub fn tick(&mut self, now_ms: i64, dt_ms: i64) -> Vec<v1::Event> {
        let mut out = Vec::new();
        for i in 0..self.meetings.len() {
            if self.meetings[i].ends_at_ms != 0 && now_ms >= self.meetings[i].ends_at_ms {
                self.end(i, now_ms, &mut out);
                self.meetings[i] = self.new_meeting();
            }
            if self.meetings[i].ends_at_ms == 0 {
                let minutes = self.rng.random_range(5..60);
                let m = &mut self.meetings[i];
                m.ends_at_ms = now_ms + minutes * 60_000;
                m.next_quality_ms = now_ms;
                let m = &self.meetings[i];
                out.push(self.meeting_event(m, v1::MeetingKind::Start, now_ms, (0.0, 0.0, 0.0)));
            }
            self.step(i, now_ms, dt_ms, &mut out);
        }
        out
    }

    fn end(&mut self, i: usize, now_ms: i64, out: &mut Vec<v1::Event>) {
        let m = &mut self.meetings[i];
        let users = std::mem::take(&mut m.present);
        let id = m.id.clone();
        for u in users {
            out.push(user_event(&self.tenant, &id, &u, v1::UserAction::Leave, now_ms));
        }
        let m = &self.meetings[i];
        out.push(self.meeting_event(m, v1::MeetingKind::End, now_ms, (0.0, 0.0, 0.0)));
    }

    fn step(&mut self, i: usize, now_ms: i64, dt_ms: i64, out: &mut Vec<v1::Event>) {
        let secs = (dt_ms as f64 / 1000.0).max(0.001);
        let rng = &mut self.rng;
        let m = &mut self.meetings[i];
        let t = |rng: &mut SmallRng| now_ms - rng.random_range(0..dt_ms.max(1));
        // Joins: a meeting fills up to 3–25 people, then a trickle of leaves and rejoins.
        let target = 3 + (m.id.len() + m.next_user as usize) % 23;
        if m.present.len() < target && rng.random_bool((0.5 * secs).min(1.0)) {
            m.next_user += 1;
            let u = format!("{}-user-{:03}", m.id, m.next_user);
            out.push(user_event(&self.tenant, &m.id, &u, v1::UserAction::Join, t(rng)));
            m.present.push(u);
        }
        if m.present.len() > 2 && rng.random_bool((0.02 * secs).min(1.0)) {
            let k = rng.random_range(0..m.present.len());
            let u = m.present.swap_remove(k);
            out.push(user_event(&self.tenant, &m.id, &u, v1::UserAction::Leave, t(rng)));
        }
        for u in &m.present {
            if rng.random_bool((0.05 * secs).min(1.0)) {
                let reaction = rng.random_bool(0.2);
                out.push(v1::Event {
                    event: Some(Kind::Chat(v1::ChatEvent {
                        tenant: self.tenant.clone(),
                        meeting_id: m.id.clone(),
                        user_id: u.clone(),
                        message_id: format!("{}-{}", u, rng.random::<u32>()),
                        length: if reaction { 1 } else { rng.random_range(2..200) },
                        kind: if reaction { v1::ChatKind::Reaction } else { v1::ChatKind::Message } as i32,
                        timestamp_ms: t(rng),
                    })),
                });
            }
            if rng.random_bool((0.01 * secs).min(1.0)) {
                let actions = [
                    v1::UserAction::Mute,
                    v1::UserAction::Unmute,
                    v1::UserAction::CameraOn,
                    v1::UserAction::CameraOff,
                    v1::UserAction::ScreenShareStart,
                    v1::UserAction::ScreenShareStop,
                ];
                let a = actions[rng.random_range(0..actions.len())];
                out.push(user_event(&self.tenant, &m.id, u, a, t(rng)));
            }
        }
        while m.next_quality_ms <= now_ms {
            let ts = m.next_quality_ms;
            m.next_quality_ms += QUALITY_EVERY_MS;
            if m.present.is_empty() {
                continue;
            }
            let q = if m.bad_network {
                (rng.random_range(200.0..600.0), rng.random_range(40.0..200.0), rng.random_range(2.0..12.0))
            } else {
                (rng.random_range(30.0..160.0), rng.random_range(2.0..30.0), rng.random_range(0.0..1.2))
            };
            let user = m.present[rng.random_range(0..m.present.len())].clone();
            out.push(v1::Event {
                event: Some(Kind::Meeting(v1::MeetingEvent {
                    tenant: self.tenant.clone(),
                    meeting_id: m.id.clone(),
                    user_id: user,
                    kind: v1::MeetingKind::Quality as i32,
                    latency_ms: (q.0 * 10.0_f64).round() / 10.0,
                    jitter_ms: (q.1 * 10.0_f64).round() / 10.0,
                    packet_loss_pct: (q.2 * 100.0_f64).round() / 100.0,
                    timestamp_ms: ts,
                })),
            });
        }
    }

    fn meeting_event(&self, m: &Meeting, kind: v1::MeetingKind, ts: i64, q: (f64, f64, f64)) -> v1::Event {
        v1::Event {
            event: Some(Kind::Meeting(v1::MeetingEvent {
                tenant: self.tenant.clone(),
                meeting_id: m.id.clone(),
                user_id: String::new(),
                kind: kind as i32,
                latency_ms: q.0,
                jitter_ms: q.1,
                packet_loss_pct: q.2,
                timestamp_ms: ts,
            })),
        }
    }
}

fn user_event(tenant: &str, meeting: &str, user: &str, action: v1::UserAction, ts: i64) -> v1::Event {
    v1::Event {
        event: Some(Kind::User(v1::UserEvent {
            tenant: tenant.into(),
            meeting_id: meeting.into(),
            user_id: user.into(),
            action: action as i32,
            timestamp_ms: ts,
        })),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn produces_a_plausible_stream() {
        let mut w = Meetings::new(20, 1);
        let mut all = Vec::new();
        let start = 1_732_780_800_000;
        for s in 1..=600 {
            all.extend(w.tick(start + s * 1_000, 1_000));
        }
        let count =
            |f: &dyn Fn(&Kind) -> bool| all.iter().filter(|e| e.event.as_ref().is_some_and(f)).count();
        assert!(count(&|k| matches!(k, Kind::User(u) if u.action() == v1::UserAction::Join)) > 100);
        assert!(count(&|k| matches!(k, Kind::Chat(_))) > 100);
        assert!(count(&|k| matches!(k, Kind::Meeting(m) if m.kind() == v1::MeetingKind::Quality)) > 100);
        assert!(count(&|k| matches!(k, Kind::Meeting(m) if m.latency_ms > 300.0)) > 0, "some bad networks");
        for e in &all {
            collabstream_proto::events::validate(e).expect("every generated event is valid");
        }
    }
}
