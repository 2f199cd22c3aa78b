//! Pacing: when the next message may go out to hold a target rate. Pure arithmetic.

use std::time::Duration;

/// Holds a steady rate from a fixed start: message `n` is due at `start + n / rate`, so
/// a slow stretch is made up afterwards instead of drifting.
#[derive(Debug, Clone, Copy)]
pub struct Pacer {
    rate_per_second: u64,
}

impl Pacer {
    /// `rate_per_second == 0` means unpaced.
    pub fn new(rate_per_second: u64) -> Self {
        Self { rate_per_second }
    }

    /// When message number `sent` (0-based) is due, from the start (zero when unpaced).
    pub fn due(&self, sent: u64) -> Duration {
        if self.rate_per_second == 0 {
            return Duration::ZERO;
        }
        Duration::from_nanos(
            (u128::from(sent) * 1_000_000_000 / u128::from(self.rate_per_second))
                .min(u128::from(u64::MAX)) as u64,
        )
    }

    /// How long to wait before sending message number `sent` (0-based), `elapsed` since start.
    pub fn wait_before(&self, sent: u64, elapsed: Duration) -> Option<Duration> {
        wait_until_due(self.due(sent), elapsed)
    }
}

/// How long until `due` when `elapsed` has passed; `None` when it is due already.
pub fn wait_until_due(due: Duration, elapsed: Duration) -> Option<Duration> {
    due.checked_sub(elapsed).filter(|wait| !wait.is_zero())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_due_at_even_intervals() {
        let pacer = Pacer::new(100);
        assert_eq!(pacer.wait_before(0, Duration::ZERO), None);
        assert_eq!(
            pacer.wait_before(1, Duration::ZERO),
            Some(Duration::from_millis(10))
        );
        assert_eq!(
            pacer.wait_before(50, Duration::from_millis(400)),
            Some(Duration::from_millis(100))
        );
    }

    #[test]
    fn a_late_sender_catches_up_without_waiting() {
        let pacer = Pacer::new(1_000);
        assert_eq!(pacer.wait_before(10, Duration::from_secs(1)), None);
    }

    #[test]
    fn zero_rate_never_waits() {
        assert_eq!(Pacer::new(0).wait_before(1_000_000, Duration::ZERO), None);
    }
}
