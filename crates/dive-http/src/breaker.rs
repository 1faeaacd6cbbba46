//! In-memory circuit breakers for calls to peers (partner resource services, upstream identity
//! providers): `threshold` consecutive failures open a peer's breaker for `cooldown`, during which
//! it is not called at all; then one trial call is let through (half-open), whose success closes
//! the breaker and whose failure opens it for another cooldown. A peer that is down then costs a
//! refused call instead of a timeout per request.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::Serialize;

/// A breaker's state, as reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BreakerState {
    Closed,
    Open,
    HalfOpen,
}

impl BreakerState {
    pub fn as_str(self) -> &'static str {
        match self {
            BreakerState::Closed => "closed",
            BreakerState::Open => "open",
            BreakerState::HalfOpen => "half_open",
        }
    }
}

/// Whether a call to a peer may go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Permit {
    Go,
    /// The half-open trial: its outcome decides the breaker.
    Trial,
    Refused,
}

#[derive(Debug, Clone, Copy, Default)]
struct Entry {
    failures: u32,
    open_until: Option<Instant>,
    trial_in_flight: bool,
}

/// One breaker per peer key.
pub struct Breakers<K> {
    threshold: u32,
    cooldown: Duration,
    entries: Mutex<HashMap<K, Entry>>,
}

impl<K: Hash + Eq + Clone> Breakers<K> {
    pub fn new(threshold: u32, cooldown: Duration) -> Breakers<K> {
        Breakers {
            threshold: threshold.max(1),
            cooldown,
            entries: Mutex::new(HashMap::new()),
        }
    }

    /// Consecutive failures that open a breaker.
    pub fn threshold(&self) -> u32 {
        self.threshold
    }

    fn with<T>(&self, f: impl FnOnce(&mut HashMap<K, Entry>) -> T) -> T {
        match self.entries.lock() {
            Ok(mut g) => f(&mut g),
            Err(p) => f(&mut p.into_inner()),
        }
    }

    /// Ask to call `peer`; a `Trial` must be followed by [`Breakers::record`].
    pub fn permit(&self, peer: &K, now: Instant) -> Permit {
        self.with(|m| {
            let e = m.entry(peer.clone()).or_default();
            match e.open_until {
                None => Permit::Go,
                Some(t) if now < t || e.trial_in_flight => Permit::Refused,
                Some(_) => {
                    e.trial_in_flight = true;
                    Permit::Trial
                }
            }
        })
    }

    /// The outcome of a call to `peer`.
    pub fn record(&self, peer: &K, ok: bool, now: Instant) {
        self.with(|m| {
            let e = m.entry(peer.clone()).or_default();
            e.trial_in_flight = false;
            if ok {
                *e = Entry::default();
            } else {
                e.failures = e.failures.saturating_add(1);
                if e.failures >= self.threshold || e.open_until.is_some() {
                    e.open_until = Some(now + self.cooldown);
                }
            }
        })
    }

    pub fn state(&self, peer: &K, now: Instant) -> BreakerState {
        self.with(|m| match m.get(peer).and_then(|e| e.open_until) {
            None => BreakerState::Closed,
            Some(t) if now < t => BreakerState::Open,
            Some(_) => BreakerState::HalfOpen,
        })
    }

    /// Consecutive failures recorded for `peer`.
    pub fn failures(&self, peer: &K) -> u32 {
        self.with(|m| m.get(peer).map_or(0, |e| e.failures))
    }

    /// How long until an open breaker lets a trial through (`None` unless open).
    pub fn retry_in(&self, peer: &K, now: Instant) -> Option<Duration> {
        self.with(|m| {
            m.get(peer)
                .and_then(|e| e.open_until)
                .filter(|t| now < *t)
                .map(|t| t - now)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_breaker_opens_after_the_threshold_lets_one_trial_through_and_closes_on_success() {
        let b = Breakers::new(2, Duration::from_secs(10));
        let fra = "FRA".to_string();
        let t0 = Instant::now();
        assert_eq!(b.permit(&fra, t0), Permit::Go);
        b.record(&fra, false, t0);
        assert_eq!(b.state(&fra, t0), BreakerState::Closed);
        assert_eq!(b.retry_in(&fra, t0), None);
        b.record(&fra, false, t0);
        assert_eq!(b.state(&fra, t0), BreakerState::Open);
        assert_eq!(b.failures(&fra), 2);
        assert_eq!(
            b.retry_in(&fra, t0 + Duration::from_secs(4)),
            Some(Duration::from_secs(6))
        );
        assert_eq!(b.permit(&fra, t0 + Duration::from_secs(5)), Permit::Refused);
        let later = t0 + Duration::from_secs(11);
        assert_eq!(b.state(&fra, later), BreakerState::HalfOpen);
        assert_eq!(b.permit(&fra, later), Permit::Trial);
        assert_eq!(
            b.permit(&fra, later),
            Permit::Refused,
            "one trial at a time"
        );
        // The trial fails: open again for a whole cooldown.
        b.record(&fra, false, later);
        assert_eq!(
            b.state(&fra, later + Duration::from_secs(9)),
            BreakerState::Open
        );
        let again = later + Duration::from_secs(11);
        assert_eq!(b.permit(&fra, again), Permit::Trial);
        b.record(&fra, true, again);
        assert_eq!(b.state(&fra, again), BreakerState::Closed);
        assert_eq!(b.failures(&fra), 0);
        assert_eq!(b.permit(&fra, again), Permit::Go);
        // Other peers are independent.
        assert_eq!(b.state(&"DEU".to_string(), again), BreakerState::Closed);
    }

    #[test]
    fn a_success_between_failures_starts_the_count_again() {
        let b = Breakers::new(3, Duration::from_secs(10));
        let t = Instant::now();
        for ok in [false, false, true, false, false] {
            b.record(&1u8, ok, t);
        }
        assert_eq!(b.state(&1u8, t), BreakerState::Closed);
        b.record(&1u8, false, t);
        assert_eq!(b.state(&1u8, t), BreakerState::Open);
    }
}
