//! Checks across services: dependencies exist, conditions can be met, no cycles.

use super::error::{SpecError, SpecErrorKind as K};
use super::types::{DependencyCondition, StackSpec};

pub fn validate(spec: &StackSpec) -> Result<(), SpecError> {
    for svc in spec.services.values() {
        for dep in &svc.depends_on {
            let path = format!("services.{}.depends_on.{}", svc.name, dep.service);
            let err = |kind| SpecError::new(spec.source.clone(), dep.pos, path.clone(), kind);
            let Some(target) = spec.services.get(&dep.service) else {
                return Err(err(K::UnknownService(dep.service.clone())));
            };
            if dep.condition == DependencyCondition::Healthy && target.healthcheck.is_none() {
                return Err(err(K::HealthyWithoutHealthcheck(dep.service.clone())));
            }
        }
    }
    if let Some(cycle) = crate::plan::find_cycle(spec.services.values()) {
        return Err(cycle_error(spec, cycle));
    }
    Ok(())
}

/// A cycle error located at the first member's dependency on the next member.
pub fn cycle_error(spec: &StackSpec, cycle: Vec<String>) -> SpecError {
    let (from, to) = (&cycle[0], &cycle[1]);
    let pos = spec
        .services
        .get(from)
        .and_then(|s| s.depends_on.iter().find(|d| &d.service == to))
        .map(|d| d.pos)
        .unwrap_or_default();
    SpecError::new(
        spec.source.clone(),
        pos,
        format!("services.{from}.depends_on.{to}"),
        K::Cycle(cycle),
    )
}
