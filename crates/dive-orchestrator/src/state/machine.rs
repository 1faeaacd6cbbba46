//! The deployment state machine and its transition table.
//!
//! ```text
//!            ┌──────────── progress (forward only, phases may be skipped) ─────────────┐
//! PENDING → INITIALIZING → DEPLOYING → CONFIGURING → VERIFYING → COMPLETE | DEGRADED
//!    │            └────────────┴────────────┴────────────┴──→ ROLLING_BACK → CLEANUP → COMPLETE
//!    └→ CLEANUP (a teardown deployment)             any active ──→ FAILED | INTERRUPTED
//! ```
//!
//! * Progress states (PENDING, INITIALIZING, DEPLOYING, CONFIGURING, VERIFYING) only move forward;
//!   a resumed or no-op deployment may skip phases (e.g. PENDING → COMPLETE when nothing changed).
//! * Any progress state may finish as COMPLETE or DEGRADED (core services up, some non-core failed).
//! * Any active (non-final) state may end as FAILED or INTERRUPTED (Ctrl-C, lost lock).
//! * ROLLING_BACK is entered from a started phase (not PENDING: nothing to undo) and leads to
//!   CLEANUP, FAILED or INTERRUPTED; CLEANUP (also a teardown's first step) leads to COMPLETE,
//!   FAILED or INTERRUPTED.
//! * COMPLETE, DEGRADED, FAILED and INTERRUPTED are final: a deployment never leaves them. A new
//!   deployment of the stack resumes from the checkpoints of the interrupted or failed one.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum DeploymentState {
    Pending,
    Initializing,
    Deploying,
    Configuring,
    Verifying,
    Complete,
    /// Partial success: every core service is up, some non-core service failed.
    Degraded,
    Failed,
    Interrupted,
    RollingBack,
    Cleanup,
}

impl DeploymentState {
    pub const ALL: [DeploymentState; 11] = [
        DeploymentState::Pending,
        DeploymentState::Initializing,
        DeploymentState::Deploying,
        DeploymentState::Configuring,
        DeploymentState::Verifying,
        DeploymentState::Complete,
        DeploymentState::Degraded,
        DeploymentState::Failed,
        DeploymentState::Interrupted,
        DeploymentState::RollingBack,
        DeploymentState::Cleanup,
    ];

    /// The stored and displayed name.
    pub fn as_str(self) -> &'static str {
        match self {
            DeploymentState::Pending => "PENDING",
            DeploymentState::Initializing => "INITIALIZING",
            DeploymentState::Deploying => "DEPLOYING",
            DeploymentState::Configuring => "CONFIGURING",
            DeploymentState::Verifying => "VERIFYING",
            DeploymentState::Complete => "COMPLETE",
            DeploymentState::Degraded => "DEGRADED",
            DeploymentState::Failed => "FAILED",
            DeploymentState::Interrupted => "INTERRUPTED",
            DeploymentState::RollingBack => "ROLLING_BACK",
            DeploymentState::Cleanup => "CLEANUP",
        }
    }

    /// A final state: the deployment is over and never changes state again.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            DeploymentState::Complete
                | DeploymentState::Degraded
                | DeploymentState::Failed
                | DeploymentState::Interrupted
        )
    }

    /// The deployment ended with its services usable (all, or all core ones).
    pub fn is_success(self) -> bool {
        matches!(self, DeploymentState::Complete | DeploymentState::Degraded)
    }

    /// Position in the forward progress order, for the progress states only.
    fn progress_rank(self) -> Option<u8> {
        match self {
            DeploymentState::Pending => Some(0),
            DeploymentState::Initializing => Some(1),
            DeploymentState::Deploying => Some(2),
            DeploymentState::Configuring => Some(3),
            DeploymentState::Verifying => Some(4),
            _ => None,
        }
    }

    /// Whether the table in this module's documentation allows `self → to`.
    pub fn can_transition_to(self, to: DeploymentState) -> bool {
        use DeploymentState as S;
        if self.is_final() || self == to {
            return false;
        }
        match (self.progress_rank(), to) {
            (Some(_), S::Complete | S::Degraded) => true,
            (_, S::Failed | S::Interrupted) => true,
            (Some(rank), S::RollingBack) => rank > 0,
            (Some(0), S::Cleanup) => true,
            (Some(from), to) => to.progress_rank().is_some_and(|r| r > from),
            (None, to) => matches!(
                (self, to),
                (S::RollingBack, S::Cleanup) | (S::Cleanup, S::Complete)
            ),
        }
    }
}

impl fmt::Display for DeploymentState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An unknown deployment state name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown deployment state {0:?} (expected one of PENDING, INITIALIZING, DEPLOYING, CONFIGURING, VERIFYING, COMPLETE, DEGRADED, FAILED, INTERRUPTED, ROLLING_BACK, CLEANUP)"
)]
pub struct UnknownState(pub String);

impl FromStr for DeploymentState {
    type Err = UnknownState;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        DeploymentState::ALL
            .into_iter()
            .find(|st| st.as_str().eq_ignore_ascii_case(s))
            .ok_or_else(|| UnknownState(s.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::DeploymentState as S;

    /// The transition table written out independently of the implementation: row = from, and
    /// the columns follow `DeploymentState::ALL` (PEN INI DEP CON VER COM DEG FAI INT RB CLN).
    const TABLE: [(S, [u8; 11]); 11] = [
        (
            S::Pending,
            /*      */ [0, 1, 1, 1, 1, 1, 1, 1, 1, 0, 1],
        ),
        (
            S::Initializing,
            /* */ [0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 0],
        ),
        (
            S::Deploying,
            /*    */ [0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 0],
        ),
        (
            S::Configuring,
            /*  */ [0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 0],
        ),
        (
            S::Verifying,
            /*    */ [0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 0],
        ),
        (
            S::Complete,
            /*     */ [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
        ),
        (
            S::Degraded,
            /*     */ [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
        ),
        (
            S::Failed,
            /*       */ [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
        ),
        (
            S::Interrupted,
            /*  */ [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
        ),
        (
            S::RollingBack,
            /*  */ [0, 0, 0, 0, 0, 0, 0, 1, 1, 0, 1],
        ),
        (
            S::Cleanup,
            /*      */ [0, 0, 0, 0, 0, 1, 0, 1, 1, 0, 0],
        ),
    ];

    #[test]
    fn every_pair_follows_the_table() {
        for (row, (from, allowed)) in TABLE.iter().enumerate() {
            assert_eq!(*from, S::ALL[row], "table rows follow ALL");
            for (col, to) in S::ALL.iter().enumerate() {
                assert_eq!(
                    from.can_transition_to(*to),
                    allowed[col] == 1,
                    "{from} -> {to} should be {}",
                    if allowed[col] == 1 {
                        "allowed"
                    } else {
                        "refused"
                    }
                );
            }
        }
    }

    #[test]
    fn final_states_are_exactly_those_without_exits() {
        for (from, allowed) in TABLE {
            assert_eq!(from.is_final(), allowed.iter().all(|a| *a == 0), "{from}");
        }
    }

    #[test]
    fn every_active_state_can_be_interrupted_or_failed() {
        for s in S::ALL.into_iter().filter(|s| !s.is_final()) {
            assert!(s.can_transition_to(S::Interrupted), "{s}");
            assert!(s.can_transition_to(S::Failed), "{s}");
        }
    }

    #[test]
    fn names_round_trip_and_unknown_names_are_refused() {
        for s in S::ALL {
            assert_eq!(s.to_string().parse::<S>(), Ok(s));
        }
        assert_eq!(S::RollingBack.to_string(), "ROLLING_BACK");
        assert_eq!("rolling_back".parse::<S>(), Ok(S::RollingBack));
        let err = "PARTIAL".parse::<S>().unwrap_err();
        assert!(err.to_string().contains("\"PARTIAL\""), "{err}");
        assert_eq!(serde_json::to_string(&S::Degraded).unwrap(), "\"DEGRADED\"");
    }
}
