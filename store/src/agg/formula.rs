//! [`Formula`]: one output of a rule, computed from its window's [`Measures`].
//!
//! A rule accumulates one or more measures per window (the events it counts, a value it
//! averages, the users it tells apart, each over the events the caller routes to it) and
//! emits one value per formula. Most formulas are one measure's [`Output`]; the meetings pack
//! needs a few that combine measures, defined exactly as DESIGN §3 says.

use crate::agg::acc::{Needs, Output};
use crate::agg::measures::Measures;

/// A measure of a rule, by its position.
pub type MeasureId = u16;

/// What DESIGN §3 calls a meeting's health, from the means of its quality reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Health {
    Poor,
    Fair,
    Good,
}

impl Health {
    /// `poor` if latency > 300 ms or loss > 5 % or jitter > 100 ms; else `good` if latency
    /// < 150 ms and loss < 1 % and jitter < 30 ms; else `fair`.
    pub fn of(latency_ms: f64, loss_pct: f64, jitter_ms: f64) -> Self {
        if latency_ms > 300.0 || loss_pct > 5.0 || jitter_ms > 100.0 {
            Health::Poor
        } else if latency_ms < 150.0 && loss_pct < 1.0 && jitter_ms < 30.0 {
            Health::Good
        } else {
            Health::Fair
        }
    }

    /// The `status` label of `meeting_health`.
    pub fn name(self) -> &'static str {
        match self {
            Health::Poor => "poor",
            Health::Fair => "fair",
            Health::Good => "good",
        }
    }

    /// `meeting_health_score`: 2 good, 1 fair, 0 poor.
    pub fn score(self) -> f64 {
        match self {
            Health::Poor => 0.0,
            Health::Fair => 1.0,
            Health::Good => 2.0,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Formula {
    /// An output of one measure.
    Of { measure: MeasureId, output: Output },
    /// `numerator / max(denominator, 1)` of two counts (the meetings pack's churn rate:
    /// leaves / max(joins, 1)).
    PerAtLeastOne { numerator: MeasureId, denominator: MeasureId },
    /// The meetings pack's engagement score:
    /// `clamp(round(100·(0.4·c + 0.3·min(1, m/3) + 0.3·a)), 0, 100)` with c = distinct
    /// chatters / active users, m = messages / active users, a = distinct users who unmuted,
    /// turned the camera on or shared the screen / active users; 0 without active users.
    /// Active users, chatters and actors are distinct counts, messages a count.
    Engagement { active: MeasureId, chatters: MeasureId, messages: MeasureId, actors: MeasureId },
    /// 1 if the means of the three measures give `is`, else 0; none without reports.
    HealthIs { latency: MeasureId, loss: MeasureId, jitter: MeasureId, is: Health },
    /// The health's score; none without reports.
    HealthScore { latency: MeasureId, loss: MeasureId, jitter: MeasureId },
    /// A measure's sum per second of the window (a sample rule's `rate_sum`: counter increases
    /// per second).
    SumPerSecond { measure: MeasureId },
    /// [`Formula::SumPerSecond`] of `sum` over the distinct keys of `per` (`rate_avg`: per
    /// input series); none without keys.
    SumPerSecondPer { sum: MeasureId, per: MeasureId },
    /// The measure's sums of every window of the group up to this one's end, carried from
    /// window to window (a sample rule's `total` over the increases: an output counter). The
    /// windows compute it from their carry ([`crate::agg::totals::Totals`]): a window's
    /// measures alone do not hold it, so [`Formula::eval`] gives none.
    Total { measure: MeasureId },
}

impl Formula {
    /// The measure outputs this formula reads.
    pub fn reads(&self) -> Vec<(MeasureId, Output)> {
        match *self {
            Formula::Of { measure, output } => vec![(measure, output)],
            Formula::PerAtLeastOne { numerator, denominator } => {
                vec![(numerator, Output::Count), (denominator, Output::Count)]
            }
            Formula::Engagement { active, chatters, messages, actors } => vec![
                (active, Output::Distinct),
                (chatters, Output::Distinct),
                (messages, Output::Count),
                (actors, Output::Distinct),
            ],
            Formula::HealthIs { latency, loss, jitter, .. }
            | Formula::HealthScore { latency, loss, jitter } => {
                vec![(latency, Output::Avg), (loss, Output::Avg), (jitter, Output::Avg)]
            }
            Formula::SumPerSecond { measure } => vec![(measure, Output::Sum)],
            Formula::SumPerSecondPer { sum, per } => vec![(sum, Output::Sum), (per, Output::Distinct)],
            Formula::Total { measure } => vec![(measure, Output::Sum)],
        }
    }

    /// The value for a window `length_ms` long; `None` where it has none.
    pub fn eval(&self, m: &Measures, length_ms: i64) -> Option<f64> {
        let get = |id: MeasureId, o: Output| m.output(id, o, length_ms);
        match *self {
            Formula::Of { measure, output } => get(measure, output),
            Formula::PerAtLeastOne { numerator, denominator } => {
                let (n, d) = (get(numerator, Output::Count)?, get(denominator, Output::Count)?);
                Some(n / d.max(1.0))
            }
            Formula::Engagement { active, chatters, messages, actors } => {
                let users = get(active, Output::Distinct)?;
                if users <= 0.0 {
                    return Some(0.0);
                }
                let c = get(chatters, Output::Distinct)? / users;
                let per_user = get(messages, Output::Count)? / users;
                let a = get(actors, Output::Distinct)? / users;
                let score = 100.0 * (0.4 * c + 0.3 * (per_user / 3.0).min(1.0) + 0.3 * a);
                Some(libm::round(score).clamp(0.0, 100.0))
            }
            Formula::HealthIs { latency, loss, jitter, is } => {
                let h = Health::of(
                    get(latency, Output::Avg)?,
                    get(loss, Output::Avg)?,
                    get(jitter, Output::Avg)?,
                );
                Some(if h == is { 1.0 } else { 0.0 })
            }
            Formula::HealthScore { latency, loss, jitter } => {
                let h = Health::of(
                    get(latency, Output::Avg)?,
                    get(loss, Output::Avg)?,
                    get(jitter, Output::Avg)?,
                );
                Some(h.score())
            }
            Formula::SumPerSecond { measure } => per_second(get(measure, Output::Sum)?, length_ms),
            Formula::SumPerSecondPer { sum, per } => {
                let keys = get(per, Output::Distinct)?;
                if keys <= 0.0 {
                    return None;
                }
                Some(per_second(get(sum, Output::Sum)?, length_ms)? / keys)
            }
            Formula::Total { .. } => None,
        }
    }
}

/// `value` per second of a window `length_ms` long.
fn per_second(value: f64, length_ms: i64) -> Option<f64> {
    (length_ms > 0).then(|| value * 1000.0 / length_ms as f64)
}

/// What each measure must accumulate for `formulas`, indexed by measure.
pub fn needs(formulas: &[Formula], distinct_threshold: usize) -> Vec<Needs> {
    let reads: Vec<(MeasureId, Output)> = formulas.iter().flat_map(Formula::reads).collect();
    let count = reads.iter().map(|r| usize::from(r.0) + 1).max().unwrap_or(0);
    (0..count)
        .map(|i| {
            let outputs: Vec<Output> = reads.iter().filter(|r| usize::from(r.0) == i).map(|r| r.1).collect();
            Needs::of(&outputs, distinct_threshold)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agg::distinct::hash;
    use crate::agg::measures::{Input, Observation};

    // The measures of a meetings window, as the pack routes events to them.
    const ACTIVE: MeasureId = 0;
    const CHATTERS: MeasureId = 1;
    const MESSAGES: MeasureId = 2;
    const ACTORS: MeasureId = 3;
    const LATENCY: MeasureId = 4;
    const LOSS: MeasureId = 5;
    const JITTER: MeasureId = 6;
    const JOINS: MeasureId = 7;
    const LEAVES: MeasureId = 8;

    const ENGAGEMENT: Formula =
        Formula::Engagement { active: ACTIVE, chatters: CHATTERS, messages: MESSAGES, actors: ACTORS };
    const SCORE: Formula = Formula::HealthScore { latency: LATENCY, loss: LOSS, jitter: JITTER };
    const CHURN: Formula = Formula::PerAtLeastOne { numerator: LEAVES, denominator: JOINS };

    fn health_is(is: Health) -> Formula {
        Formula::HealthIs { latency: LATENCY, loss: LOSS, jitter: JITTER, is }
    }

    /// A window that saw `events`, each feeding the listed measures with a user or a value.
    fn window(events: &[&[(MeasureId, &str, f64)]]) -> Measures {
        let formulas = [ENGAGEMENT, SCORE, CHURN];
        let needs = needs(&formulas, 100);
        let mut m = Measures::default();
        for (i, e) in events.iter().enumerate() {
            let inputs = e
                .iter()
                .map(|(measure, user, value)| Input {
                    measure: *measure,
                    value: Some(*value),
                    distinct: Some(hash(user.as_bytes())),
                })
                .collect();
            m.add(&Observation { ts: i as i64, inputs }, &needs);
        }
        m
    }

    fn chat(user: &str) -> [(MeasureId, &str, f64); 3] {
        [(ACTIVE, user, 0.0), (CHATTERS, user, 0.0), (MESSAGES, user, 0.0)]
    }

    fn report(latency: f64, loss: f64, jitter: f64) -> [(MeasureId, &'static str, f64); 3] {
        [(LATENCY, "", latency), (LOSS, "", loss), (JITTER, "", jitter)]
    }

    #[test]
    fn a_meeting_with_a_bad_network_is_poor_and_scores_zero() {
        let m = window(&[&report(420.0, 2.0, 20.0), &report(380.0, 1.0, 10.0)]);
        assert_eq!(SCORE.eval(&m, 30_000), Some(0.0));
        assert_eq!(health_is(Health::Poor).eval(&m, 30_000), Some(1.0));
        assert_eq!(health_is(Health::Fair).eval(&m, 30_000), Some(0.0));
        assert_eq!(health_is(Health::Good).eval(&m, 30_000), Some(0.0));
        // No quality report in the window: no health at all.
        let quiet = window(&[&chat("u1")]);
        assert_eq!(SCORE.eval(&quiet, 30_000), None);
        assert_eq!(health_is(Health::Poor).eval(&quiet, 30_000), None);
    }

    #[test]
    fn health_thresholds_are_on_the_means_and_strict() {
        let cases = [
            ((149.9, 0.9, 29.9), Health::Good),
            ((150.0, 0.5, 10.0), Health::Fair),  // not under 150
            ((300.0, 5.0, 100.0), Health::Fair), // not over any poor threshold
            ((100.0, 5.1, 10.0), Health::Poor),
            ((100.0, 0.1, 100.5), Health::Poor),
        ];
        for ((l, p, j), want) in cases {
            assert_eq!(Health::of(l, p, j), want, "{l} {p} {j}");
        }
        // Means: (100 + 200) / 2 = 150, so fair, though one report alone is good.
        let m = window(&[&report(100.0, 0.0, 0.0), &report(200.0, 0.0, 0.0)]);
        assert_eq!(SCORE.eval(&m, 30_000), Some(1.0));
    }

    #[test]
    fn churn_is_leaves_over_at_least_one_join() {
        let leave = |u| [(LEAVES, u, 0.0)];
        let join = |u| [(JOINS, u, 0.0)];
        let m = window(&[&leave("a"), &leave("b"), &leave("c")]);
        assert_eq!(CHURN.eval(&m, 300_000), Some(3.0));
        let m = window(&[&leave("a"), &join("b"), &join("c"), &leave("d"), &join("e"), &join("f")]);
        assert_eq!(CHURN.eval(&m, 300_000), Some(0.5));
    }

    #[test]
    fn engagement_matches_hand_computed_cases() {
        let unmute = |u| [(ACTIVE, u, 0.0), (ACTORS, u, 0.0)];
        let join = |u| [(ACTIVE, u, 0.0)];
        // 4 active users, 2 chatters (c = 0.5), 9 messages (m = 2.25, min(1, 0.75)), 1 actor
        // (a = 0.25): 100 · (0.2 + 0.225 + 0.075) = 50.
        let mut events: Vec<&[(MeasureId, &str, f64)]> = Vec::new();
        let (c1, c2, u3, u4) = (chat("u1"), chat("u2"), unmute("u3"), join("u4"));
        for _ in 0..5 {
            events.push(&c1);
        }
        for _ in 0..4 {
            events.push(&c2);
        }
        events.push(&u3);
        events.push(&u4);
        assert_eq!(ENGAGEMENT.eval(&window(&events), 60_000), Some(50.0));
        // Everyone chats a lot and acts: 100. 8 users, one message, nobody acts:
        // 100 · (0.4/8 + 0.3 · (1/8)/3) = 6.25, rounded to 6.
        let all = ["a", "b", "c"].map(|u| [chat(u).as_slice(), &unmute(u)].concat());
        let mut lots: Vec<&[(MeasureId, &str, f64)]> = Vec::new();
        for _ in 0..4 {
            lots.extend(all.iter().map(Vec::as_slice));
        }
        assert_eq!(ENGAGEMENT.eval(&window(&lots), 60_000), Some(100.0));
        let joins = ["a", "b", "c", "d", "e", "f", "g"].map(join);
        let mut few: Vec<&[(MeasureId, &str, f64)]> = joins.iter().map(|j| j.as_slice()).collect();
        let one = chat("h");
        few.push(&one);
        assert_eq!(ENGAGEMENT.eval(&window(&few), 60_000), Some(6.0));
        // Events without users (a meeting's start): no active users, engagement 0.
        let start = [(MESSAGES, "", 0.0)];
        assert_eq!(ENGAGEMENT.eval(&window(&[&start]), 60_000), Some(0.0));
    }
}
