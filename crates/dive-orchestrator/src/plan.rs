//! Planning: which services a deployment runs (profiles), in what dependency order (levels,
//! start and stop order), what depends on what (for skipping dependents of a failed service), and
//! which chain of services bounds the start time (critical path before, critical chain after).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;
use std::time::Duration;

use serde::Serialize;

use crate::spec::{
    DependencyCondition, Pos, ServiceSpec, SpecError, SpecErrorKind, StackSpec, cycle_error,
};

/// The services of one deployment and their order.
#[derive(Debug, Clone, Serialize)]
pub struct Plan {
    pub stack: String,
    pub source: PathBuf,
    /// The active profiles, as given.
    pub profiles: Vec<String>,
    /// Planned services by name. Each `spec.depends_on` lists only planned services (non-required
    /// dependencies on services outside the plan are removed and listed in `dropped_dependencies`).
    pub services: BTreeMap<String, PlannedService>,
    /// `levels[n]`: services whose longest dependency chain below them has `n` links (names sorted).
    pub levels: Vec<Vec<String>>,
    /// Services left out because none of their profiles is active.
    pub excluded: Vec<Excluded>,
    pub dropped_dependencies: Vec<DroppedDependency>,
}

#[derive(Debug, Clone, Serialize)]
pub struct PlannedService {
    pub spec: ServiceSpec,
    pub level: usize,
    /// Planned services that depend directly on this one (sorted).
    pub dependents: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Excluded {
    pub service: String,
    pub profiles: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DroppedDependency {
    pub service: String,
    pub dependency: String,
    pub pos: Pos,
}

impl Plan {
    /// Select the services enabled by `profiles` (services without `profiles` are always on) and
    /// order them. A required dependency on a service that is not enabled is an error; a
    /// non-required one is dropped. Cycles are errors naming the cycle.
    pub fn build(spec: &StackSpec, profiles: &[String]) -> Result<Plan, SpecError> {
        let enabled = |s: &ServiceSpec| {
            s.profiles.is_empty() || s.profiles.iter().any(|p| profiles.contains(p))
        };
        let mut excluded = Vec::new();
        let mut dropped = Vec::new();
        let mut chosen: BTreeMap<String, ServiceSpec> = BTreeMap::new();
        for svc in spec.services.values() {
            if !enabled(svc) {
                excluded.push(Excluded {
                    service: svc.name.clone(),
                    profiles: svc.profiles.clone(),
                });
                continue;
            }
            let mut svc = svc.clone();
            let mut kept = Vec::with_capacity(svc.depends_on.len());
            for dep in std::mem::take(&mut svc.depends_on) {
                let target = spec.services.get(&dep.service);
                let path = format!("services.{}.depends_on.{}", svc.name, dep.service);
                match target {
                    None => {
                        return Err(SpecError::new(
                            spec.source.clone(),
                            dep.pos,
                            path,
                            SpecErrorKind::UnknownService(dep.service.clone()),
                        ));
                    }
                    Some(t) if enabled(t) => kept.push(dep),
                    Some(_) if !dep.required => dropped.push(DroppedDependency {
                        service: svc.name.clone(),
                        dependency: dep.service.clone(),
                        pos: dep.pos,
                    }),
                    Some(t) => {
                        return Err(SpecError::new(
                            spec.source.clone(),
                            dep.pos,
                            path,
                            SpecErrorKind::DependencyNotEnabled {
                                service: dep.service.clone(),
                                needs: t.profiles.join(" or "),
                            },
                        ));
                    }
                }
            }
            svc.depends_on = kept;
            chosen.insert(svc.name.clone(), svc);
        }
        if let Some(cycle) = find_cycle(chosen.values()) {
            return Err(cycle_error(spec, cycle));
        }
        let level_of = levels_of(&chosen);
        let mut dependents: BTreeMap<&str, Vec<String>> = BTreeMap::new();
        for svc in chosen.values() {
            for d in &svc.depends_on {
                dependents
                    .entry(d.service.as_str())
                    .or_default()
                    .push(svc.name.clone());
            }
        }
        let depth = level_of.values().copied().max().map_or(0, |m| m + 1);
        let mut levels = vec![Vec::new(); depth];
        for (name, lvl) in &level_of {
            levels[*lvl].push(name.clone());
        }
        let services = chosen
            .iter()
            .map(|(name, svc)| {
                let mut deps = dependents.get(name.as_str()).cloned().unwrap_or_default();
                deps.sort();
                (
                    name.clone(),
                    PlannedService {
                        spec: svc.clone(),
                        level: level_of[name],
                        dependents: deps,
                    },
                )
            })
            .collect();
        Ok(Plan {
            stack: spec.name.clone(),
            source: spec.source.clone(),
            profiles: profiles.to_vec(),
            services,
            levels,
            excluded,
            dropped_dependencies: dropped,
        })
    }

    pub fn get(&self, name: &str) -> Option<&PlannedService> {
        self.services.get(name)
    }

    /// A topological order: level by level, names sorted within a level.
    pub fn start_order(&self) -> Vec<&str> {
        self.levels.iter().flatten().map(String::as_str).collect()
    }

    /// Reverse topological order: every service stops before the services it depends on.
    pub fn stop_order(&self) -> Vec<&str> {
        let mut order = self.start_order();
        order.reverse();
        order
    }

    /// Direct dependents of `name` (empty for an unknown name).
    pub fn dependents(&self, name: &str) -> &[String] {
        self.services
            .get(name)
            .map_or(&[], |s| s.dependents.as_slice())
    }

    /// Everything that depends on `name`, directly or not, in start order: what to skip when
    /// `name` fails.
    pub fn transitive_dependents(&self, name: &str) -> Vec<String> {
        let mut seen = BTreeSet::new();
        let mut stack: Vec<&str> = vec![name];
        while let Some(n) = stack.pop() {
            for d in self.dependents(n) {
                if seen.insert(d.clone()) {
                    stack.push(d);
                }
            }
        }
        self.start_order()
            .into_iter()
            .filter(|n| seen.contains(*n))
            .map(str::to_string)
            .collect()
    }

    /// The chain of services that bounds the start time, given how long each service takes from
    /// spawn to satisfying its dependents (`estimate`). A service can start once each dependency
    /// has met its condition: `service_started` at the dependency's start, the other conditions
    /// at its start plus its estimate. Returns the chain (first to last) and the estimated total.
    pub fn critical_path(&self, estimate: impl Fn(&str) -> Duration) -> (Vec<String>, Duration) {
        // (start, finish, predecessor on the chain)
        let mut times: HashMap<&str, (Duration, Duration, Option<&str>)> = HashMap::new();
        for name in self.start_order() {
            let svc = &self.services[name].spec;
            let mut start = Duration::ZERO;
            let mut pred = None;
            for dep in &svc.depends_on {
                let (d_start, d_finish, _) = times[dep.service.as_str()];
                let unblock = match dep.condition {
                    DependencyCondition::Started => d_start,
                    _ => d_finish,
                };
                if pred.is_none() || unblock > start {
                    start = unblock;
                    pred = Some(dep.service.as_str());
                }
            }
            times.insert(name, (start, start + estimate(name), pred));
        }
        // The last service to finish; on ties the deeper one (longer chain) is more telling.
        let Some(last) = self.start_order().into_iter().max_by(|a, b| {
            let (fa, fb) = (times[a].1, times[b].1);
            fa.cmp(&fb)
                .then(self.services[*a].level.cmp(&self.services[*b].level))
                .then(b.cmp(a))
        }) else {
            return (Vec::new(), Duration::ZERO);
        };
        let total = times[last].1;
        let mut chain = vec![last.to_string()];
        let mut cur = last;
        while let Some(p) = times[cur].2 {
            chain.push(p.to_string());
            cur = p;
        }
        chain.reverse();
        (chain, total)
    }

    /// After a deployment: walk back from the service that became ready last through the
    /// dependency that unblocked it last (its start for `service_started`, else its readiness).
    /// `actual` maps a service to (start offset, ready offset) from the deployment start; services
    /// missing from it (skipped, failed) are ignored. Returns the chain first to last.
    pub fn critical_chain(&self, actual: &HashMap<String, (Duration, Duration)>) -> Vec<String> {
        let Some((last, _)) = actual
            .iter()
            .filter(|(n, _)| self.services.contains_key(n.as_str()))
            .max_by(|(na, a), (nb, b)| a.1.cmp(&b.1).then(nb.cmp(na)))
        else {
            return Vec::new();
        };
        let mut chain = vec![last.clone()];
        let mut cur = last.as_str();
        loop {
            let next = self.services[cur]
                .spec
                .depends_on
                .iter()
                .filter_map(|d| {
                    let (start, ready) = actual.get(&d.service)?;
                    let at = match d.condition {
                        DependencyCondition::Started => *start,
                        _ => *ready,
                    };
                    Some((d.service.as_str(), at))
                })
                .max_by(|(na, a), (nb, b)| a.cmp(b).then(nb.cmp(na)));
            match next {
                Some((n, _)) => {
                    chain.push(n.to_string());
                    cur = n;
                }
                None => break,
            }
        }
        chain.reverse();
        chain
    }
}

/// The default per-service estimate used by `dive stack plan`: no health check ⇒ ready when
/// spawned (0); otherwise its `start_period` if set, else [`FIRST_PROBE_ESTIMATE`] (DIVE probes
/// quickly after spawn, so a service that is ready at once passes its first probe about then).
pub fn default_estimate(svc: &ServiceSpec) -> Duration {
    match &svc.healthcheck {
        None => Duration::ZERO,
        Some(hc) if !hc.start_period.is_zero() => hc.start_period,
        Some(_) => FIRST_PROBE_ESTIMATE,
    }
}

/// Nominal time from spawn to the first health probe, for estimates only.
pub const FIRST_PROBE_ESTIMATE: Duration = Duration::from_millis(100);

/// A dependency cycle among `services` (dependencies on services not in the set are ignored), as
/// `[a, b, c, a]` starting at the alphabetically first member; `None` if the graph is acyclic.
pub(crate) fn find_cycle<'a>(
    services: impl IntoIterator<Item = &'a ServiceSpec>,
) -> Option<Vec<String>> {
    let by_name: BTreeMap<&str, &ServiceSpec> =
        services.into_iter().map(|s| (s.name.as_str(), s)).collect();
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        Active,
        Done,
    }
    let mut mark: HashMap<&str, Mark> = by_name.keys().map(|k| (*k, Mark::New)).collect();
    for &root in by_name.keys() {
        if mark[root] != Mark::New {
            continue;
        }
        // Iterative DFS: (node, index of next dependency to visit); `path` mirrors the stack.
        let mut stack: Vec<(&str, usize)> = vec![(root, 0)];
        mark.insert(root, Mark::Active);
        while let Some(&mut (node, ref mut next)) = stack.last_mut() {
            let deps = &by_name[node].depends_on;
            if *next >= deps.len() {
                mark.insert(node, Mark::Done);
                stack.pop();
                continue;
            }
            let dep = deps[*next].service.as_str();
            *next += 1;
            match mark.get(dep) {
                None | Some(Mark::Done) => {}
                Some(Mark::New) => {
                    mark.insert(dep, Mark::Active);
                    stack.push((dep, 0));
                }
                Some(Mark::Active) => {
                    let from = stack.iter().position(|(n, _)| *n == dep).unwrap_or(0);
                    let mut cycle: Vec<String> =
                        stack[from..].iter().map(|(n, _)| n.to_string()).collect();
                    let min = cycle
                        .iter()
                        .enumerate()
                        .min_by(|a, b| a.1.cmp(b.1))
                        .map_or(0, |(i, _)| i);
                    cycle.rotate_left(min);
                    cycle.push(cycle[0].clone());
                    return Some(cycle);
                }
            }
        }
    }
    None
}

/// Level of each service: 0 without dependencies, else one more than its deepest dependency.
/// The graph must be acyclic.
fn levels_of(services: &BTreeMap<String, ServiceSpec>) -> BTreeMap<String, usize> {
    fn visit(
        name: &str,
        services: &BTreeMap<String, ServiceSpec>,
        memo: &mut BTreeMap<String, usize>,
    ) -> usize {
        if let Some(l) = memo.get(name) {
            return *l;
        }
        let level = services[name]
            .depends_on
            .iter()
            .map(|d| visit(&d.service, services, memo) + 1)
            .max()
            .unwrap_or(0);
        memo.insert(name.to_string(), level);
        level
    }
    let mut memo = BTreeMap::new();
    for name in services.keys() {
        visit(name, services, &mut memo);
    }
    memo
}

#[cfg(test)]
mod tests;
