//! Exact sliding windows: counts per severity over the last N seconds, in a ring of
//! one-second buckets. Adding is O(1) (amortised: moving the ring forward clears each
//! bucket once), reading is O(severities), memory is fixed per window.

use logagg::Severity;

const SEVERITIES: usize = Severity::ALL.len();

#[derive(Debug, Clone)]
pub struct SlidingWindow {
    buckets: Box<[[u32; SEVERITIES]]>,
    totals: [u64; SEVERITIES],
    /// The second the newest bucket counts; nothing before `newest - len + 1` is held.
    newest: i64,
}

impl SlidingWindow {
    pub fn new(seconds: u64) -> SlidingWindow {
        let len = usize::try_from(seconds.max(1)).unwrap_or(usize::MAX);
        SlidingWindow {
            buckets: vec![[0; SEVERITIES]; len].into_boxed_slice(),
            totals: [0; SEVERITIES],
            newest: i64::MIN,
        }
    }

    pub fn seconds(&self) -> usize {
        self.buckets.len()
    }

    /// Counts a log seen at `second` (seconds since the epoch). A second older than the
    /// window is ignored.
    pub fn add(&mut self, second: i64, severity: Severity) {
        self.advance(second);
        let len = self.buckets.len() as i64;
        if second <= self.newest - len {
            return;
        }
        let slot = second.rem_euclid(len) as usize;
        self.buckets[slot][severity as usize] += 1;
        self.totals[severity as usize] += 1;
    }

    /// Logs at or above `minimum` in the window ending at `second`.
    pub fn at_least(&mut self, second: i64, minimum: Severity) -> u64 {
        self.advance(second);
        self.totals[minimum as usize..].iter().sum()
    }

    /// All logs in the window ending at `second`.
    pub fn total(&mut self, second: i64) -> u64 {
        self.advance(second);
        self.totals.iter().sum()
    }

    /// Moves the window's end to `second`, clearing the buckets that fall out.
    fn advance(&mut self, second: i64) {
        if second <= self.newest {
            return;
        }
        let len = self.buckets.len() as i64;
        if self.newest == i64::MIN || second - self.newest >= len {
            self.buckets
                .iter_mut()
                .for_each(|bucket| *bucket = [0; SEVERITIES]);
            self.totals = [0; SEVERITIES];
        } else {
            for expired in self.newest + 1..=second {
                let slot = expired.rem_euclid(len) as usize;
                for (total, count) in self.totals.iter_mut().zip(self.buckets[slot]) {
                    *total -= u64::from(count);
                }
                self.buckets[slot] = [0; SEVERITIES];
            }
        }
        self.newest = second;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_exactly_the_last_n_seconds() {
        let mut window = SlidingWindow::new(60);
        for second in 0..120 {
            window.add(1_000 + second, Severity::Error);
            window.add(1_000 + second, Severity::Info);
        }
        // Seconds 1060..=1119 are in the window ending at 1119.
        assert_eq!(window.at_least(1_119, Severity::Error), 60);
        assert_eq!(window.total(1_119), 120);
        assert_eq!(window.at_least(1_149, Severity::Error), 30);
        assert_eq!(window.at_least(1_178, Severity::Warn), 1);
        assert_eq!(window.total(1_179), 0);
        assert_eq!(window.total(5_000), 0, "a long gap empties it");
    }

    #[test]
    fn a_second_older_than_the_window_is_ignored_and_late_ones_inside_count() {
        let mut window = SlidingWindow::new(10);
        window.add(100, Severity::Error);
        window.add(85, Severity::Error);
        window.add(95, Severity::Fatal);
        assert_eq!(window.at_least(100, Severity::Error), 2);
        assert_eq!(window.at_least(100, Severity::Fatal), 1);
    }
}
