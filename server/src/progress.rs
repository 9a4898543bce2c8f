//! [`Progress`]: the progress bar of `collabstream produce` on stderr: how far a bounded run is,
//! what was sent, and the rate achieved.

use std::io::Write;
use std::time::Duration;

/// Renders one line per update, overwriting the last.
#[derive(Debug)]
pub(crate) struct Progress {
    /// The bound to show progress against: a count of items, or a duration.
    count: Option<u64>,
    duration: Option<Duration>,
    quiet: bool,
}

const WIDTH: usize = 24;

impl Progress {
    pub(crate) fn new(count: Option<u64>, duration: Option<Duration>, quiet: bool) -> Self {
        Self { count, duration, quiet }
    }

    /// The fraction done, by whichever bound is nearer.
    fn fraction(&self, sent: u64, elapsed: Duration) -> Option<f64> {
        let by_count = self.count.map(|c| sent as f64 / c.max(1) as f64);
        let by_time = self.duration.map(|d| elapsed.as_secs_f64() / d.as_secs_f64().max(1e-9));
        match (by_count, by_time) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        }
        .map(|f| f.clamp(0.0, 1.0))
    }

    pub(crate) fn line(&self, sent: u64, elapsed: Duration) -> String {
        let rate = sent as f64 / elapsed.as_secs_f64().max(1e-3);
        let secs = elapsed.as_secs();
        let stats = format!("{sent} sent, {rate:.0}/s, {}:{:02}", secs / 60, secs % 60);
        match self.fraction(sent, elapsed) {
            Some(f) => {
                let filled = (f * WIDTH as f64).round() as usize;
                format!("[{}{}] {:>3.0}%  {stats}", "#".repeat(filled), "-".repeat(WIDTH - filled), f * 100.0)
            }
            None => stats,
        }
    }

    pub(crate) fn update(&self, sent: u64, elapsed: Duration) {
        if !self.quiet {
            let mut err = std::io::stderr().lock();
            let _ = write!(err, "\r{}\x1b[K", self.line(sent, elapsed));
            let _ = err.flush();
        }
    }

    pub(crate) fn finish(&self) {
        if !self.quiet {
            eprintln!();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bar_follows_the_nearer_bound_and_shows_the_rate() {
        let p = Progress::new(Some(1000), Some(Duration::from_secs(100)), true);
        assert_eq!(
            p.line(250, Duration::from_secs(10)),
            "[######------------------]  25%  250 sent, 25/s, 0:10"
        );
        assert!(p.line(100, Duration::from_secs(50)).starts_with("[############------------]  50%"));
        assert!(p.line(5000, Duration::from_secs(1)).starts_with("[########################] 100%"));
        let open = Progress::new(None, None, true);
        assert_eq!(open.line(600, Duration::from_secs(61)), "600 sent, 10/s, 1:01");
    }
}
