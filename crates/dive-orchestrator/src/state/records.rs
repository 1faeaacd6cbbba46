//! Per-deployment records: service results, events, errors and metrics.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use sqlx::Row;

use super::ids::{DeploymentId, UnixMillis, new_id, now_millis};
use super::{StateError, StateStore};

/// How one service fared in one deployment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceResult {
    pub service: String,
    /// `core`, `stretch`, `optional` or `init`.
    pub class: String,
    /// e.g. `healthy`, `failed`, `skipped`, `completed`, `unchanged`.
    pub outcome: String,
    pub attempts: u32,
    pub time_to_healthy_ms: Option<i64>,
    pub error: Option<String>,
}

/// How serious a recorded error is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Severity {
    Info,
    Warning,
    Error,
    Critical,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "INFO",
            Severity::Warning => "WARNING",
            Severity::Error => "ERROR",
            Severity::Critical => "CRITICAL",
        }
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Severity {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        [
            Severity::Info,
            Severity::Warning,
            Severity::Error,
            Severity::Critical,
        ]
        .into_iter()
        .find(|v| v.as_str().eq_ignore_ascii_case(s))
        .ok_or_else(|| format!("unknown severity {s:?}"))
    }
}

/// One recorded error (or warning) of a deployment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorRecord {
    pub at: UnixMillis,
    pub severity: Severity,
    pub service: Option<String>,
    pub message: String,
    pub remediation: Option<String>,
}

/// One compact per-service event of a deployment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventRecord {
    pub at: UnixMillis,
    pub service: Option<String>,
    pub event: String,
    pub detail: Option<String>,
}

impl StateStore {
    /// Record (or replace) the result of one service in a deployment.
    pub async fn record_service_result(
        &self,
        id: &DeploymentId,
        result: &ServiceResult,
    ) -> Result<(), StateError> {
        sqlx::query(
            "INSERT INTO service_results \
             (deployment_id, service, class, outcome, attempts, time_to_healthy_ms, error, recorded_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
             ON CONFLICT (deployment_id, service) DO UPDATE SET class = excluded.class, \
             outcome = excluded.outcome, attempts = excluded.attempts, \
             time_to_healthy_ms = excluded.time_to_healthy_ms, error = excluded.error, \
             recorded_at = excluded.recorded_at",
        )
        .bind(id.as_str())
        .bind(&result.service)
        .bind(&result.class)
        .bind(&result.outcome)
        .bind(i64::from(result.attempts))
        .bind(result.time_to_healthy_ms)
        .bind(result.error.as_deref())
        .bind(now_millis())
        .execute(&self.pool)
        .await
        .map_err(|e| self.fk_or(e, id, "recording a service result"))?;
        Ok(())
    }

    /// The service results of a deployment, by service name.
    pub async fn service_results(
        &self,
        id: &DeploymentId,
    ) -> Result<Vec<ServiceResult>, StateError> {
        let rows = sqlx::query(
            "SELECT service, class, outcome, attempts, time_to_healthy_ms, error \
             FROM service_results WHERE deployment_id = $1 ORDER BY service",
        )
        .bind(id.as_str())
        .fetch_all(&self.pool)
        .await
        .map_err(StateError::query("reading service results"))?;
        rows.iter()
            .map(|r| {
                let q = || StateError::query("reading service results");
                let attempts: i64 = r.try_get("attempts").map_err(q())?;
                Ok(ServiceResult {
                    service: r.try_get("service").map_err(q())?,
                    class: r.try_get("class").map_err(q())?,
                    outcome: r.try_get("outcome").map_err(q())?,
                    attempts: u32::try_from(attempts).map_err(|_| StateError::Corrupt {
                        what: "attempt count",
                        value: attempts.to_string(),
                    })?,
                    time_to_healthy_ms: r.try_get("time_to_healthy_ms").map_err(q())?,
                    error: r.try_get("error").map_err(q())?,
                })
            })
            .collect()
    }

    /// Record an error, warning or notice of a deployment, with how to fix it when known.
    pub async fn record_error(
        &self,
        id: &DeploymentId,
        severity: Severity,
        service: Option<&str>,
        message: &str,
        remediation: Option<&str>,
    ) -> Result<(), StateError> {
        sqlx::query(
            "INSERT INTO errors (id, deployment_id, at, severity, service, message, remediation) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(new_id())
        .bind(id.as_str())
        .bind(now_millis())
        .bind(severity.as_str())
        .bind(service)
        .bind(message)
        .bind(remediation)
        .execute(&self.pool)
        .await
        .map_err(|e| self.fk_or(e, id, "recording an error"))?;
        Ok(())
    }

    /// The errors of a deployment, oldest first.
    pub async fn errors(&self, id: &DeploymentId) -> Result<Vec<ErrorRecord>, StateError> {
        let rows = sqlx::query(
            "SELECT at, severity, service, message, remediation FROM errors \
             WHERE deployment_id = $1 ORDER BY at, id",
        )
        .bind(id.as_str())
        .fetch_all(&self.pool)
        .await
        .map_err(StateError::query("reading errors"))?;
        rows.iter()
            .map(|r| {
                let q = || StateError::query("reading errors");
                let severity: String = r.try_get("severity").map_err(q())?;
                Ok(ErrorRecord {
                    at: r.try_get("at").map_err(q())?,
                    severity: severity.parse().map_err(|_| StateError::Corrupt {
                        what: "error severity",
                        value: severity,
                    })?,
                    service: r.try_get("service").map_err(q())?,
                    message: r.try_get("message").map_err(q())?,
                    remediation: r.try_get("remediation").map_err(q())?,
                })
            })
            .collect()
    }

    /// Record a compact event (e.g. `started`, `healthy`, `retry`) of a deployment.
    pub async fn record_event(
        &self,
        id: &DeploymentId,
        service: Option<&str>,
        event: &str,
        detail: Option<&str>,
    ) -> Result<(), StateError> {
        sqlx::query(
            "INSERT INTO events (id, deployment_id, at, service, event, detail) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(new_id())
        .bind(id.as_str())
        .bind(now_millis())
        .bind(service)
        .bind(event)
        .bind(detail)
        .execute(&self.pool)
        .await
        .map_err(|e| self.fk_or(e, id, "recording an event"))?;
        Ok(())
    }

    /// Record many events of a deployment in one transaction (a deployment's per-service events
    /// are written together when it settles, so that recording costs one commit, not hundreds).
    pub async fn record_events(
        &self,
        id: &DeploymentId,
        events: &[EventRecord],
    ) -> Result<(), StateError> {
        let mut tx = self
            .pool
            .begin()
            .await
            .map_err(StateError::query("starting to record events"))?;
        for e in events {
            sqlx::query(
                "INSERT INTO events (id, deployment_id, at, service, event, detail) \
                 VALUES ($1, $2, $3, $4, $5, $6)",
            )
            .bind(new_id())
            .bind(id.as_str())
            .bind(e.at)
            .bind(e.service.as_deref())
            .bind(e.event.as_str())
            .bind(e.detail.as_deref())
            .execute(&mut *tx)
            .await
            .map_err(|err| self.fk_or(err, id, "recording events"))?;
        }
        tx.commit()
            .await
            .map_err(StateError::query("committing events"))
    }

    /// The events of a deployment, oldest first.
    pub async fn events(&self, id: &DeploymentId) -> Result<Vec<EventRecord>, StateError> {
        let rows = sqlx::query(
            "SELECT at, service, event, detail FROM events WHERE deployment_id = $1 ORDER BY at, id",
        )
        .bind(id.as_str())
        .fetch_all(&self.pool)
        .await
        .map_err(StateError::query("reading events"))?;
        rows.iter()
            .map(|r| {
                let q = || StateError::query("reading events");
                Ok(EventRecord {
                    at: r.try_get("at").map_err(q())?,
                    service: r.try_get("service").map_err(q())?,
                    event: r.try_get("event").map_err(q())?,
                    detail: r.try_get("detail").map_err(q())?,
                })
            })
            .collect()
    }

    /// Record one metric sample, optionally tied to a deployment.
    pub async fn record_metric(
        &self,
        id: Option<&DeploymentId>,
        name: &str,
        labels: &[(&str, &str)],
        value: f64,
    ) -> Result<(), StateError> {
        if name.is_empty() {
            return Err(StateError::InvalidInput {
                what: "metric name",
                reason: "empty".into(),
            });
        }
        if !value.is_finite() {
            return Err(StateError::InvalidInput {
                what: "metric value",
                reason: format!("{name} = {value} is not a finite number"),
            });
        }
        let labels: serde_json::Map<String, serde_json::Value> = labels
            .iter()
            .map(|(k, v)| ((*k).to_string(), serde_json::Value::from(*v)))
            .collect();
        let result = sqlx::query(
            "INSERT INTO metrics (id, deployment_id, name, labels, value, at) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(new_id())
        .bind(id.map(DeploymentId::as_str))
        .bind(name)
        .bind(serde_json::Value::Object(labels).to_string())
        .bind(value)
        .bind(now_millis())
        .execute(&self.pool)
        .await;
        match (result, id) {
            (Ok(_), _) => Ok(()),
            (Err(e), Some(id)) => Err(self.fk_or(e, id, "recording a metric")),
            (Err(e), None) => Err(StateError::Query {
                what: "recording a metric",
                source: e,
            }),
        }
    }
}
