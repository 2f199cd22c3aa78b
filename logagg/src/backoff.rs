//! Exponential backoff with jitter for reconnects and write retries.

use std::fmt::Display;
use std::future::Future;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

/// Doubles the delay after every failure up to a ceiling; `reset` after a success.
/// Each delay is drawn between half and all of the current step, so many collectors
/// retrying at once do not hit the server in lockstep.
#[derive(Debug, Clone)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    current: Duration,
}

impl Backoff {
    pub fn new(initial: Duration, max: Duration) -> Self {
        let initial = initial.max(Duration::from_millis(1));
        Self {
            initial,
            max: max.max(initial),
            current: initial,
        }
    }

    /// The delay before the next attempt.
    pub fn next_delay(&mut self) -> Duration {
        let step = self.current;
        self.current = (self.current * 2).min(self.max);
        let half = step / 2;
        let jitter_millis = rand::random_range(0..=half.as_millis() as u64);
        half + Duration::from_millis(jitter_millis)
    }

    pub fn reset(&mut self) {
        self.current = self.initial;
    }
}

/// Runs `attempt` until it succeeds, waiting `backoff`'s delays between failures and logging
/// each failure as a WARN that `what` cannot be done yet. `false` if `shutdown` came first.
/// For start-up steps that must wait for a dependency, such as creating indexes.
pub async fn retry_until_ok<Attempt, Fut, Error>(
    what: &str,
    mut backoff: Backoff,
    shutdown: &CancellationToken,
    mut attempt: Attempt,
) -> bool
where
    Attempt: FnMut() -> Fut,
    Fut: Future<Output = Result<(), Error>>,
    Error: Display,
{
    loop {
        match attempt().await {
            Ok(()) => return true,
            Err(error) => {
                let delay = backoff.next_delay();
                tracing::warn!(%error, retry_in_ms = delay.as_millis() as u64, "cannot {what} yet");
                if !crate::shutdown::sleep_unless_cancelled(delay, shutdown).await {
                    return false;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_to_the_ceiling_and_reset() {
        let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_millis(800));
        let delays: Vec<Duration> = (0..6).map(|_| backoff.next_delay()).collect();
        let steps = [100u64, 200, 400, 800, 800, 800];
        for (delay, step) in delays.iter().zip(steps) {
            assert!(
                *delay >= Duration::from_millis(step / 2),
                "{delay:?} < half of {step}"
            );
            assert!(*delay <= Duration::from_millis(step), "{delay:?} > {step}");
        }
        backoff.reset();
        assert!(backoff.next_delay() <= Duration::from_millis(100));
    }
}
