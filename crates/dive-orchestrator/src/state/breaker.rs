//! Circuit breaker: a pure state machine; [`super::StateStore`] persists it per stack and service.
//!
//! CLOSED → OPEN after `failure_threshold` consecutive failures; OPEN refuses attempts until
//! `cooldown` has passed, then becomes HALF_OPEN and allows a trial; HALF_OPEN → CLOSED after
//! `success_threshold` consecutive successes, or back to OPEN (cooldown restarts) on a failure.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::ids::{UnixMillis, format_millis};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum BreakerState {
    Closed,
    Open,
    HalfOpen,
}

impl BreakerState {
    pub fn as_str(self) -> &'static str {
        match self {
            BreakerState::Closed => "CLOSED",
            BreakerState::Open => "OPEN",
            BreakerState::HalfOpen => "HALF_OPEN",
        }
    }
}

impl fmt::Display for BreakerState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for BreakerState {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "CLOSED" => Ok(BreakerState::Closed),
            "OPEN" => Ok(BreakerState::Open),
            "HALF_OPEN" => Ok(BreakerState::HalfOpen),
            other => Err(format!("unknown breaker state {other:?}")),
        }
    }
}

/// When a breaker opens and how it recovers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BreakerConfig {
    /// Consecutive failures that open a closed breaker (at least 1).
    pub failure_threshold: u32,
    /// How long an open breaker refuses attempts before allowing a trial.
    pub cooldown: Duration,
    /// Consecutive successful trials that close a half-open breaker (at least 1).
    pub success_threshold: u32,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        BreakerConfig {
            failure_threshold: 3,
            cooldown: Duration::from_secs(60),
            success_threshold: 1,
        }
    }
}

impl BreakerConfig {
    fn cooldown_ms(&self) -> i64 {
        i64::try_from(self.cooldown.as_millis()).unwrap_or(i64::MAX)
    }
}

/// The persisted state of one breaker.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BreakerRecord {
    pub state: BreakerState,
    pub consecutive_failures: u32,
    pub consecutive_successes: u32,
    /// When the breaker last opened.
    pub opened_at: Option<UnixMillis>,
    pub last_failure: Option<UnixMillis>,
    pub last_error: Option<String>,
}

impl Default for BreakerRecord {
    fn default() -> Self {
        BreakerRecord {
            state: BreakerState::Closed,
            consecutive_failures: 0,
            consecutive_successes: 0,
            opened_at: None,
            last_failure: None,
            last_error: None,
        }
    }
}

/// Permission to make an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BreakerPermit {
    /// The breaker was half-open: this attempt is a trial that decides whether it closes.
    pub trial: bool,
}

/// An attempt refused because the breaker is open.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", open_message(self))]
pub struct BreakerOpen {
    pub stack: String,
    pub service: String,
    /// When the breaker allows a trial again.
    pub until: UnixMillis,
    pub failures: u32,
    pub last_error: Option<String>,
}

fn open_message(o: &BreakerOpen) -> String {
    let mut m = format!(
        "circuit breaker for service {} of stack {} is open after {} consecutive failures; next trial allowed at {}",
        o.service,
        o.stack,
        o.failures,
        format_millis(o.until)
    );
    if let Some(e) = &o.last_error {
        m.push_str(&format!(" (last error: {e})"));
    }
    m
}

impl BreakerRecord {
    /// The state as of `now`: an open breaker whose cooldown has passed is half-open.
    pub fn effective_state(&self, now: UnixMillis, cfg: &BreakerConfig) -> BreakerState {
        match (self.state, self.opened_at) {
            (BreakerState::Open, Some(at)) if now >= at.saturating_add(cfg.cooldown_ms()) => {
                BreakerState::HalfOpen
            }
            (BreakerState::Open, None) => BreakerState::HalfOpen,
            (s, _) => s,
        }
    }

    /// Whether an attempt may be made at `now`; `Err` carries when it may be retried.
    pub fn check(
        &self,
        stack: &str,
        service: &str,
        now: UnixMillis,
        cfg: &BreakerConfig,
    ) -> Result<BreakerPermit, BreakerOpen> {
        match self.effective_state(now, cfg) {
            BreakerState::Closed => Ok(BreakerPermit { trial: false }),
            BreakerState::HalfOpen => Ok(BreakerPermit { trial: true }),
            BreakerState::Open => Err(BreakerOpen {
                stack: stack.to_string(),
                service: service.to_string(),
                until: self
                    .opened_at
                    .unwrap_or(now)
                    .saturating_add(cfg.cooldown_ms()),
                failures: self.consecutive_failures,
                last_error: self.last_error.clone(),
            }),
        }
    }

    /// Apply the outcome of an attempt made at `now`; returns the new state.
    pub fn record(
        &mut self,
        success: bool,
        error: Option<&str>,
        now: UnixMillis,
        cfg: &BreakerConfig,
    ) -> BreakerState {
        let state = self.effective_state(now, cfg);
        if success {
            self.consecutive_failures = 0;
            self.consecutive_successes = self.consecutive_successes.saturating_add(1);
            if state == BreakerState::Closed
                || self.consecutive_successes >= cfg.success_threshold.max(1)
            {
                self.close();
            } else {
                self.state = state;
            }
        } else {
            self.consecutive_successes = 0;
            self.consecutive_failures = self.consecutive_failures.saturating_add(1);
            self.last_failure = Some(now);
            self.last_error = error.map(str::to_string);
            let opens = match state {
                BreakerState::Closed => self.consecutive_failures >= cfg.failure_threshold.max(1),
                // A failed trial reopens; a failure recorded while open restarts the cooldown.
                BreakerState::HalfOpen | BreakerState::Open => true,
            };
            if opens {
                self.state = BreakerState::Open;
                self.opened_at = Some(now);
            }
        }
        self.state
    }

    fn close(&mut self) {
        self.state = BreakerState::Closed;
        self.consecutive_successes = 0;
        self.opened_at = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> BreakerConfig {
        BreakerConfig {
            failure_threshold: 3,
            cooldown: Duration::from_secs(10),
            success_threshold: 2,
        }
    }

    fn fail(b: &mut BreakerRecord, now: i64) -> BreakerState {
        b.record(false, Some("exit 1"), now, &cfg())
    }

    #[test]
    fn closed_opens_after_threshold_consecutive_failures() {
        let mut b = BreakerRecord::default();
        assert_eq!(fail(&mut b, 1), BreakerState::Closed);
        assert_eq!(fail(&mut b, 2), BreakerState::Closed);
        assert!(b.check("s", "svc", 2, &cfg()).is_ok());
        assert_eq!(fail(&mut b, 3), BreakerState::Open);
        assert_eq!(b.opened_at, Some(3));
        let open = b.check("s", "svc", 4, &cfg()).unwrap_err();
        assert_eq!(open.until, 10_003);
        assert_eq!(open.failures, 3);
        assert_eq!(open.last_error.as_deref(), Some("exit 1"));
        let msg = open.to_string();
        assert!(
            msg.contains("svc") && msg.contains("3 consecutive failures") && msg.contains("exit 1"),
            "{msg}"
        );
    }

    #[test]
    fn a_success_resets_the_failure_count_while_closed() {
        let mut b = BreakerRecord::default();
        fail(&mut b, 1);
        fail(&mut b, 2);
        assert_eq!(b.record(true, None, 3, &cfg()), BreakerState::Closed);
        assert_eq!(b.consecutive_failures, 0);
        assert_eq!(fail(&mut b, 4), BreakerState::Closed);
        assert_eq!(fail(&mut b, 5), BreakerState::Closed);
    }

    #[test]
    fn open_becomes_half_open_after_cooldown_and_closes_after_successes() {
        let mut b = BreakerRecord::default();
        for t in 0..3 {
            fail(&mut b, t);
        }
        assert!(
            b.check("s", "svc", 10_001, &cfg()).is_err(),
            "cooldown not over"
        );
        assert_eq!(b.effective_state(10_002, &cfg()), BreakerState::HalfOpen);
        assert_eq!(
            b.check("s", "svc", 10_002, &cfg()),
            Ok(BreakerPermit { trial: true })
        );
        assert_eq!(
            b.record(true, None, 10_003, &cfg()),
            BreakerState::HalfOpen,
            "needs 2 successes"
        );
        assert_eq!(b.record(true, None, 10_004, &cfg()), BreakerState::Closed);
        assert_eq!(
            b.check("s", "svc", 10_005, &cfg()),
            Ok(BreakerPermit { trial: false })
        );
        assert_eq!(b.opened_at, None);
    }

    #[test]
    fn a_failed_trial_reopens_and_restarts_the_cooldown() {
        let mut b = BreakerRecord::default();
        for t in 0..3 {
            fail(&mut b, t);
        }
        assert_eq!(b.record(true, None, 10_002, &cfg()), BreakerState::HalfOpen);
        assert_eq!(fail(&mut b, 10_003), BreakerState::Open);
        let open = b.check("s", "svc", 10_004, &cfg()).unwrap_err();
        assert_eq!(open.until, 20_003);
        assert_eq!(b.consecutive_successes, 0);
    }

    #[test]
    fn defaults_match_the_documented_values() {
        let d = BreakerConfig::default();
        assert_eq!(
            (d.failure_threshold, d.cooldown, d.success_threshold),
            (3, Duration::from_secs(60), 1)
        );
        let mut b = BreakerRecord::default();
        for t in 0..3 {
            b.record(false, None, t, &d);
        }
        assert_eq!(b.state, BreakerState::Open);
        assert_eq!(
            b.record(true, None, 60_002, &d),
            BreakerState::Closed,
            "one trial success closes"
        );
    }

    #[test]
    fn state_names_round_trip() {
        for s in [
            BreakerState::Closed,
            BreakerState::Open,
            BreakerState::HalfOpen,
        ] {
            assert_eq!(s.as_str().parse::<BreakerState>(), Ok(s));
        }
        assert!("open".parse::<BreakerState>().is_err());
    }
}
