//! Exponential backoff with jitter, for start retries and supervised restarts.

use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Backoff {
    /// Delay before the first retry.
    pub base: Duration,
    /// No delay exceeds this (before jitter).
    pub max: Duration,
    /// Fraction of the delay added or removed at random (0.2 = ±20%), so that services failing
    /// together do not retry in lockstep.
    pub jitter: f64,
}

impl Default for Backoff {
    /// The reference schedule: 2, 4, 8, 16 s … capped at 30 s, ±20%.
    fn default() -> Self {
        Backoff {
            base: Duration::from_secs(2),
            max: Duration::from_secs(30),
            jitter: 0.2,
        }
    }
}

impl Backoff {
    /// The delay before retry number `attempt` (0 = first retry), without jitter.
    pub fn nominal(&self, attempt: u32) -> Duration {
        let factor = 2u32.saturating_pow(attempt.min(30));
        self.base.saturating_mul(factor).min(self.max)
    }

    /// The delay before retry number `attempt`, with jitter.
    pub fn delay(&self, attempt: u32) -> Duration {
        let nominal = self.nominal(attempt);
        if self.jitter <= 0.0 {
            return nominal;
        }
        let j = self.jitter.min(1.0);
        let factor = 1.0 + rand::random_range(-j..=j);
        nominal.mul_f64(factor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_from_base_and_caps() {
        let b = Backoff::default();
        let secs: Vec<u64> = (0..6).map(|a| b.nominal(a).as_secs()).collect();
        assert_eq!(secs, vec![2, 4, 8, 16, 30, 30]);
        assert_eq!(b.nominal(u32::MAX), Duration::from_secs(30));
    }

    #[test]
    fn jitter_stays_within_bounds_and_varies() {
        let b = Backoff::default();
        let delays: Vec<Duration> = (0..200).map(|_| b.delay(1)).collect();
        for d in &delays {
            assert!(*d >= Duration::from_millis(3200) && *d <= Duration::from_millis(4800));
        }
        assert!(delays.iter().any(|d| *d != delays[0]), "jitter must vary");
        let none = Backoff { jitter: 0.0, ..b };
        assert_eq!(none.delay(2), Duration::from_secs(8));
    }
}
