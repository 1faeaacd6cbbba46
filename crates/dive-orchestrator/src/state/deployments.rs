//! Deployments, their transitions and their per-phase steps (checkpoints).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use sqlx::Row;
use sqlx::any::AnyRow;

use super::ids::{DeploymentId, UnixMillis, new_id, now_millis};
use super::machine::DeploymentState;
use super::{StateError, StateStore};

/// One deployment as recorded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeploymentRecord {
    pub id: DeploymentId,
    pub stack: String,
    /// `stack`, `hub` or `spoke`.
    pub kind: String,
    pub state: DeploymentState,
    pub started_at: UnixMillis,
    /// When the current state was entered.
    pub state_since: UnixMillis,
    pub finished_at: Option<UnixMillis>,
    /// `finished_at - started_at`, once finished.
    pub duration_ms: Option<i64>,
    pub spec_hash: String,
    pub summary: Option<serde_json::Value>,
}

/// One recorded state change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TransitionRecord {
    pub from: DeploymentState,
    pub to: DeploymentState,
    pub reason: String,
    pub at: UnixMillis,
    /// Time spent in `from`.
    pub duration_ms: i64,
}

/// How a phase ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum StepStatus {
    Done,
    Failed,
    Skipped,
}

impl StepStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            StepStatus::Done => "DONE",
            StepStatus::Failed => "FAILED",
            StepStatus::Skipped => "SKIPPED",
        }
    }
}

impl fmt::Display for StepStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where a phase is: still running, or finished with a status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum StepState {
    Running,
    Finished(StepStatus),
}

const RUNNING: &str = "RUNNING";

impl FromStr for StepState {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            RUNNING => Ok(StepState::Running),
            "DONE" => Ok(StepState::Finished(StepStatus::Done)),
            "FAILED" => Ok(StepState::Finished(StepStatus::Failed)),
            "SKIPPED" => Ok(StepState::Finished(StepStatus::Skipped)),
            other => Err(other.to_string()),
        }
    }
}

/// One phase of a deployment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepRecord {
    pub phase: String,
    pub state: StepState,
    pub started_at: UnixMillis,
    pub finished_at: Option<UnixMillis>,
    pub detail: Option<String>,
}

/// The most recent phase a stack completed, for resuming.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PhaseCheckpoint {
    pub deployment_id: DeploymentId,
    pub phase: String,
    pub finished_at: UnixMillis,
}

const DEPLOYMENT_COLUMNS: &str =
    "id, stack, kind, state, spec_hash, started_at, state_since, finished_at, summary";

pub(crate) fn parse_state(raw: String) -> Result<DeploymentState, StateError> {
    raw.parse().map_err(|_| StateError::Corrupt {
        what: "deployment state",
        value: raw,
    })
}

fn deployment_from_row(row: &AnyRow) -> Result<DeploymentRecord, StateError> {
    let get = StateError::query("reading a deployment");
    let started_at: i64 = row.try_get("started_at").map_err(get)?;
    let finished_at: Option<i64> = row
        .try_get("finished_at")
        .map_err(StateError::query("reading a deployment"))?;
    let summary: Option<String> = row
        .try_get("summary")
        .map_err(StateError::query("reading a deployment"))?;
    let summary = match summary {
        None => None,
        Some(s) => Some(serde_json::from_str(&s).map_err(|_| StateError::Corrupt {
            what: "deployment summary JSON",
            value: s,
        })?),
    };
    let text = |col: &str| -> Result<String, StateError> {
        row.try_get::<String, _>(col)
            .map_err(StateError::query("reading a deployment"))
    };
    Ok(DeploymentRecord {
        id: DeploymentId::new(text("id")?),
        stack: text("stack")?,
        kind: text("kind")?,
        state: parse_state(text("state")?)?,
        spec_hash: text("spec_hash")?,
        started_at,
        state_since: row
            .try_get("state_since")
            .map_err(StateError::query("reading a deployment"))?,
        finished_at,
        duration_ms: finished_at.map(|f| f - started_at),
        summary,
    })
}

fn check_kind(kind: &str) -> Result<(), StateError> {
    match kind {
        "stack" | "hub" | "spoke" => Ok(()),
        other => Err(StateError::InvalidInput {
            what: "deployment kind",
            reason: format!("{other:?} (expected stack, hub or spoke)"),
        }),
    }
}

impl StateStore {
    /// Record a new deployment of `stack` in PENDING.
    pub async fn create_deployment(
        &self,
        stack: &str,
        kind: &str,
        spec_hash: &str,
    ) -> Result<DeploymentId, StateError> {
        check_kind(kind)?;
        if stack.is_empty() {
            return Err(StateError::InvalidInput {
                what: "stack name",
                reason: "empty".into(),
            });
        }
        let id = DeploymentId::generate();
        let now = now_millis();
        sqlx::query(
            "INSERT INTO deployments (id, stack, kind, state, spec_hash, started_at, state_since) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(id.as_str())
        .bind(stack)
        .bind(kind)
        .bind(DeploymentState::Pending.as_str())
        .bind(spec_hash)
        .bind(now)
        .bind(now)
        .execute(&self.pool)
        .await
        .map_err(StateError::query("creating a deployment"))?;
        Ok(id)
    }

    /// Move a deployment to `to` if the transition table allows it, recording the reason and
    /// the time spent in the previous state. Entering a final state also sets `finished_at`.
    pub async fn transition(
        &self,
        id: &DeploymentId,
        to: DeploymentState,
        reason: &str,
    ) -> Result<(), StateError> {
        self.transition_with(id, to, reason, None).await
    }

    /// End a deployment in a final state, saying why, with its summary (JSON).
    pub async fn finish_deployment(
        &self,
        id: &DeploymentId,
        final_state: DeploymentState,
        reason: &str,
        summary: &serde_json::Value,
    ) -> Result<(), StateError> {
        if !final_state.is_final() {
            return Err(StateError::NotFinal(final_state));
        }
        self.transition_with(id, final_state, reason, Some(summary))
            .await
    }

    async fn transition_with(
        &self,
        id: &DeploymentId,
        to: DeploymentState,
        reason: &str,
        summary: Option<&serde_json::Value>,
    ) -> Result<(), StateError> {
        let current = self.deployment(id).await?;
        let from = current.state;
        if !from.can_transition_to(to) {
            return Err(StateError::InvalidTransition { from, to });
        }
        let now = now_millis().max(current.state_since);
        let finished = to.is_final().then_some(now);
        let summary = summary.map(|s| s.to_string());
        let mut tx = self
            .pool
            .begin()
            .await
            .map_err(StateError::query("starting a transition"))?;
        // Compare-and-set on the state read above: a concurrent writer makes this a no-op.
        let changed = sqlx::query(
            "UPDATE deployments SET state = $1, state_since = $2, \
             finished_at = COALESCE($3, finished_at), summary = COALESCE($4, summary) \
             WHERE id = $5 AND state = $6",
        )
        .bind(to.as_str())
        .bind(now)
        .bind(finished)
        .bind(summary)
        .bind(id.as_str())
        .bind(from.as_str())
        .execute(&mut *tx)
        .await
        .map_err(StateError::query("updating a deployment's state"))?;
        if changed.rows_affected() != 1 {
            return Err(StateError::Conflict {
                id: id.to_string(),
                expected: from,
            });
        }
        sqlx::query(
            "INSERT INTO transitions (id, deployment_id, from_state, to_state, reason, at, duration_ms) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(new_id())
        .bind(id.as_str())
        .bind(from.as_str())
        .bind(to.as_str())
        .bind(reason)
        .bind(now)
        .bind(now - current.state_since)
        .execute(&mut *tx)
        .await
        .map_err(StateError::query("recording a transition"))?;
        tx.commit()
            .await
            .map_err(StateError::query("committing a transition"))
    }

    /// One deployment.
    pub async fn deployment(&self, id: &DeploymentId) -> Result<DeploymentRecord, StateError> {
        let sql = format!("SELECT {DEPLOYMENT_COLUMNS} FROM deployments WHERE id = $1");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(id.as_str())
            .fetch_optional(&self.pool)
            .await
            .map_err(StateError::query("reading a deployment"))?
            .ok_or_else(|| StateError::UnknownDeployment(id.to_string()))?;
        deployment_from_row(&row)
    }

    /// The most recently started deployment of `stack`.
    pub async fn latest_deployment(
        &self,
        stack: &str,
    ) -> Result<Option<DeploymentRecord>, StateError> {
        Ok(self
            .list_deployments(Some(stack), 1)
            .await?
            .into_iter()
            .next())
    }

    /// Deployments, newest first, of one stack or of all.
    pub async fn list_deployments(
        &self,
        stack: Option<&str>,
        limit: u32,
    ) -> Result<Vec<DeploymentRecord>, StateError> {
        let sql = format!(
            "SELECT {DEPLOYMENT_COLUMNS} FROM deployments WHERE ($1 IS NULL OR stack = $1) \
             ORDER BY started_at DESC, id DESC LIMIT $2"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(stack)
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await
            .map_err(StateError::query("listing deployments"))?;
        rows.iter().map(deployment_from_row).collect()
    }

    /// The state changes of a deployment, oldest first.
    pub async fn transitions(
        &self,
        id: &DeploymentId,
    ) -> Result<Vec<TransitionRecord>, StateError> {
        let rows = sqlx::query(
            "SELECT from_state, to_state, reason, at, duration_ms FROM transitions \
             WHERE deployment_id = $1 ORDER BY at, id",
        )
        .bind(id.as_str())
        .fetch_all(&self.pool)
        .await
        .map_err(StateError::query("reading transitions"))?;
        rows.iter()
            .map(|r| {
                let q = StateError::query("reading transitions");
                let from: String = r.try_get("from_state").map_err(q)?;
                let to: String = r
                    .try_get("to_state")
                    .map_err(StateError::query("reading transitions"))?;
                Ok(TransitionRecord {
                    from: parse_state(from)?,
                    to: parse_state(to)?,
                    reason: r
                        .try_get("reason")
                        .map_err(StateError::query("reading transitions"))?,
                    at: r
                        .try_get("at")
                        .map_err(StateError::query("reading transitions"))?,
                    duration_ms: r
                        .try_get("duration_ms")
                        .map_err(StateError::query("reading transitions"))?,
                })
            })
            .collect()
    }

    /// Mark a phase as started (again, if it ran before in this deployment).
    pub async fn begin_step(&self, id: &DeploymentId, phase: &str) -> Result<(), StateError> {
        sqlx::query(
            "INSERT INTO steps (deployment_id, phase, status, started_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (deployment_id, phase) DO UPDATE SET status = excluded.status, \
             started_at = excluded.started_at, finished_at = NULL, detail = NULL",
        )
        .bind(id.as_str())
        .bind(phase)
        .bind(RUNNING)
        .bind(now_millis())
        .execute(&self.pool)
        .await
        .map_err(|e| self.fk_or(e, id, "starting a step"))?;
        Ok(())
    }

    /// Mark a phase as finished. A phase that never began (e.g. skipped) is recorded as well.
    pub async fn finish_step(
        &self,
        id: &DeploymentId,
        phase: &str,
        status: StepStatus,
        detail: Option<&str>,
    ) -> Result<(), StateError> {
        let now = now_millis();
        sqlx::query(
            "INSERT INTO steps (deployment_id, phase, status, started_at, finished_at, detail) \
             VALUES ($1, $2, $3, $4, $4, $5) \
             ON CONFLICT (deployment_id, phase) DO UPDATE SET status = excluded.status, \
             finished_at = excluded.finished_at, detail = excluded.detail",
        )
        .bind(id.as_str())
        .bind(phase)
        .bind(status.as_str())
        .bind(now)
        .bind(detail)
        .execute(&self.pool)
        .await
        .map_err(|e| self.fk_or(e, id, "finishing a step"))?;
        Ok(())
    }

    /// The phases of a deployment in the order they started.
    pub async fn steps(&self, id: &DeploymentId) -> Result<Vec<StepRecord>, StateError> {
        let rows = sqlx::query(
            "SELECT phase, status, started_at, finished_at, detail FROM steps \
             WHERE deployment_id = $1 ORDER BY started_at, phase",
        )
        .bind(id.as_str())
        .fetch_all(&self.pool)
        .await
        .map_err(StateError::query("reading steps"))?;
        rows.iter()
            .map(|r| {
                let q = || StateError::query("reading steps");
                let status: String = r.try_get("status").map_err(q())?;
                Ok(StepRecord {
                    phase: r.try_get("phase").map_err(q())?,
                    state: status.parse().map_err(|value| StateError::Corrupt {
                        what: "step status",
                        value,
                    })?,
                    started_at: r.try_get("started_at").map_err(q())?,
                    finished_at: r.try_get("finished_at").map_err(q())?,
                    detail: r.try_get("detail").map_err(q())?,
                })
            })
            .collect()
    }

    /// The most recently completed (DONE) phase of any deployment of `stack`: where a resumed
    /// deployment continues from. Call it before the new deployment records its own steps.
    pub async fn last_completed_phase(
        &self,
        stack: &str,
    ) -> Result<Option<PhaseCheckpoint>, StateError> {
        let row = sqlx::query(
            "SELECT s.deployment_id, s.phase, s.finished_at FROM steps s \
             JOIN deployments d ON d.id = s.deployment_id \
             WHERE d.stack = $1 AND s.status = $2 AND s.finished_at IS NOT NULL \
             ORDER BY s.finished_at DESC, d.started_at DESC LIMIT 1",
        )
        .bind(stack)
        .bind(StepStatus::Done.as_str())
        .fetch_optional(&self.pool)
        .await
        .map_err(StateError::query("finding the last completed phase"))?;
        row.map(|r| {
            let q = || StateError::query("finding the last completed phase");
            Ok(PhaseCheckpoint {
                deployment_id: DeploymentId::new(
                    r.try_get::<String, _>("deployment_id").map_err(q())?,
                ),
                phase: r.try_get("phase").map_err(q())?,
                finished_at: r.try_get("finished_at").map_err(q())?,
            })
        })
        .transpose()
    }

    /// Close out deployments of `stack` that are still active although their process is gone
    /// (killed, crashed, machine rebooted): they are recorded as FAILED with the reason. Call it
    /// while holding the stack's lock, passing the current deployment, which is left alone —
    /// the lock guarantees every other active deployment of the stack is abandoned.
    pub async fn fail_abandoned_deployments(
        &self,
        stack: &str,
        current: &DeploymentId,
    ) -> Result<Vec<DeploymentId>, StateError> {
        let rows = sqlx::query(
            "SELECT id, state FROM deployments WHERE stack = $1 AND finished_at IS NULL AND id <> $2",
        )
        .bind(stack)
        .bind(current.as_str())
        .fetch_all(&self.pool)
        .await
        .map_err(StateError::query("finding abandoned deployments"))?;
        let mut closed = Vec::new();
        for r in rows {
            let q = || StateError::query("finding abandoned deployments");
            let id = DeploymentId::new(r.try_get::<String, _>("id").map_err(q())?);
            let state = parse_state(r.try_get("state").map_err(q())?)?;
            if state.is_final() {
                continue;
            }
            let reason = format!(
                "abandoned in {state}: its process ended without finishing (found by deployment {current})"
            );
            match self.transition(&id, DeploymentState::Failed, &reason).await {
                Ok(()) => closed.push(id),
                // Finished by its owner in the meantime: nothing to close.
                Err(StateError::Conflict { .. } | StateError::InvalidTransition { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(closed)
    }

    /// Turn a foreign-key violation into "unknown deployment"; other errors stay query errors.
    pub(crate) fn fk_or(
        &self,
        e: sqlx::Error,
        id: &DeploymentId,
        what: &'static str,
    ) -> StateError {
        if let sqlx::Error::Database(db) = &e
            && db.is_foreign_key_violation()
        {
            return StateError::UnknownDeployment(id.to_string());
        }
        StateError::Query { what, source: e }
    }
}
