//! History for percentiles: per-service and per-deployment durations, recorded metric samples.

use serde::{Deserialize, Serialize};
use sqlx::Row;

use super::ids::{DeploymentId, UnixMillis};
use super::{StateError, StateStore};

/// p50/p95/p99 of a set of values (nearest-rank method: always one of the values).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Percentiles {
    pub count: usize,
    pub p50: f64,
    pub p95: f64,
    pub p99: f64,
}

/// Percentiles of `values`; `None` when there are no (finite) values.
pub fn percentiles(values: &[f64]) -> Option<Percentiles> {
    let mut sorted: Vec<f64> = values.iter().copied().filter(|v| v.is_finite()).collect();
    if sorted.is_empty() {
        return None;
    }
    sorted.sort_by(f64::total_cmp);
    let n = sorted.len();
    // Nearest rank: the smallest value with at least p% of the values at or below it.
    let rank = |p: f64| -> f64 {
        let r = ((p / 100.0) * n as f64).ceil() as usize;
        sorted[r.clamp(1, n) - 1]
    };
    Some(Percentiles {
        count: n,
        p50: rank(50.0),
        p95: rank(95.0),
        p99: rank(99.0),
    })
}

/// How long one service took to become healthy in one deployment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceDuration {
    pub deployment_id: DeploymentId,
    pub stack: String,
    pub service: String,
    pub time_to_healthy_ms: i64,
}

/// How long one finished deployment took.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeploymentDuration {
    pub deployment_id: DeploymentId,
    pub stack: String,
    pub state: super::DeploymentState,
    pub started_at: UnixMillis,
    pub duration_ms: i64,
}

/// One recorded metric sample.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetricSample {
    pub deployment_id: Option<DeploymentId>,
    pub name: String,
    pub labels: std::collections::BTreeMap<String, String>,
    pub value: f64,
    pub at: UnixMillis,
}

impl StateStore {
    /// The most recent `limit` samples (of one metric or all), newest first.
    pub async fn metric_samples(
        &self,
        name: Option<&str>,
        limit: u32,
    ) -> Result<Vec<MetricSample>, StateError> {
        let rows = sqlx::query(
            "SELECT deployment_id, name, labels, value, at FROM metrics \
             WHERE ($1 IS NULL OR name = $1) ORDER BY at DESC, id DESC LIMIT $2",
        )
        .bind(name)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(StateError::query("reading metrics"))?;
        rows.iter()
            .map(|r| {
                let q = || StateError::query("reading metrics");
                let labels: String = r.try_get("labels").map_err(q())?;
                Ok(MetricSample {
                    deployment_id: r
                        .try_get::<Option<String>, _>("deployment_id")
                        .map_err(q())?
                        .map(DeploymentId::new),
                    name: r.try_get("name").map_err(q())?,
                    labels: serde_json::from_str(&labels).map_err(|_| StateError::Corrupt {
                        what: "metric labels",
                        value: labels,
                    })?,
                    value: r.try_get("value").map_err(q())?,
                    at: r.try_get("at").map_err(q())?,
                })
            })
            .collect()
    }

    /// Times to healthy of services in the most recent `limit` deployments (of one stack or all),
    /// newest deployment first.
    pub async fn service_durations(
        &self,
        stack: Option<&str>,
        limit: u32,
    ) -> Result<Vec<ServiceDuration>, StateError> {
        let rows = sqlx::query(
            "SELECT r.deployment_id, d.stack, r.service, r.time_to_healthy_ms \
             FROM service_results r JOIN deployments d ON d.id = r.deployment_id \
             WHERE r.time_to_healthy_ms IS NOT NULL AND d.id IN ( \
               SELECT id FROM deployments WHERE ($1 IS NULL OR stack = $1) \
               ORDER BY started_at DESC, id DESC LIMIT $2) \
             ORDER BY d.started_at DESC, d.id DESC, r.service",
        )
        .bind(stack)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(StateError::query("reading service durations"))?;
        rows.iter()
            .map(|r| {
                let q = || StateError::query("reading service durations");
                Ok(ServiceDuration {
                    deployment_id: DeploymentId::new(
                        r.try_get::<String, _>("deployment_id").map_err(q())?,
                    ),
                    stack: r.try_get("stack").map_err(q())?,
                    service: r.try_get("service").map_err(q())?,
                    time_to_healthy_ms: r.try_get("time_to_healthy_ms").map_err(q())?,
                })
            })
            .collect()
    }

    /// Total durations of the most recent `limit` finished deployments, newest first.
    pub async fn deployment_durations(
        &self,
        stack: Option<&str>,
        limit: u32,
    ) -> Result<Vec<DeploymentDuration>, StateError> {
        let rows = sqlx::query(
            "SELECT id, stack, state, started_at, finished_at FROM deployments \
             WHERE finished_at IS NOT NULL AND ($1 IS NULL OR stack = $1) \
             ORDER BY started_at DESC, id DESC LIMIT $2",
        )
        .bind(stack)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(StateError::query("reading deployment durations"))?;
        rows.iter()
            .map(|r| {
                let q = || StateError::query("reading deployment durations");
                let started_at: i64 = r.try_get("started_at").map_err(q())?;
                let finished_at: i64 = r.try_get("finished_at").map_err(q())?;
                Ok(DeploymentDuration {
                    deployment_id: DeploymentId::new(r.try_get::<String, _>("id").map_err(q())?),
                    stack: r.try_get("stack").map_err(q())?,
                    state: super::deployments::parse_state(r.try_get("state").map_err(q())?)?,
                    started_at,
                    duration_ms: finished_at - started_at,
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_use_nearest_rank() {
        let values: Vec<f64> = (1..=100).map(f64::from).collect();
        let p = percentiles(&values).unwrap();
        assert_eq!((p.count, p.p50, p.p95, p.p99), (100, 50.0, 95.0, 99.0));
        let p = percentiles(&[300.0, 100.0, 200.0]).unwrap();
        assert_eq!((p.p50, p.p95, p.p99), (200.0, 300.0, 300.0));
        let p = percentiles(&[7.0]).unwrap();
        assert_eq!((p.p50, p.p99), (7.0, 7.0));
    }

    #[test]
    fn no_values_no_percentiles() {
        assert_eq!(percentiles(&[]), None);
        assert_eq!(percentiles(&[f64::NAN]), None);
    }
}
