//! COI templates: how a document's community, releasability, caveats, originating nation and
//! national marking are chosen. Every label built here is coherent against dive-core's built-in
//! COI registry and equivalency tables (tested over tens of thousands of documents).
//!
//! Rules kept by construction:
//! - releasability is a subset of the members of the label's COIs (the union under `ANY`, the
//!   national COI under a program layering), always including the originating nation;
//! - the originating nation is the instance when the instance belongs to the community, else a
//!   member of it (US-ONLY and NOFORN documents are therefore always US-originated);
//! - the original marking is one of the originating nation's own labels for the level, so it
//!   normalises back to the classification through the equivalency table;
//! - NOFORN only with COI exactly US-ONLY and releasability exactly USA; US-ONLY alone;
//!   no mutually exclusive pair; under `ANY` no COI that is a subset of another listed one.

use std::fmt;

use dive_core::{Clearance, CoiOperator, CoiRegistry, CountryCode, Equivalency, US_ONLY};

use crate::rng::Rng;

/// The COI template a document was generated from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Template {
    /// COI US-ONLY, releasable to USA.
    UsOnly,
    /// COI US-ONLY with the NOFORN caveat, releasable to USA.
    UsOnlyNoforn,
    /// One of the bilateral X-US communities (CAN-US, GBR-US, FRA-US, DEU-US).
    Bilateral,
    Fvey,
    Aukus,
    Nato,
    /// NATO-COSMIC: TOP SECRET only.
    NatoCosmic,
    EuRestricted,
    Quad,
    /// A combatant command community (NORTHCOM, EUCOM, PACOM, CENTCOM, SOCOM).
    CombatantCommand,
    /// A program COI (Alpha, Beta, Gamma), alone or layered on a national community.
    Program,
    /// Several COIs under the `ANY` operator.
    AnyCombination,
    /// No COI; releasability listed explicitly.
    NoCoi,
}

impl Template {
    pub const ALL: [Template; 13] = [
        Template::UsOnly,
        Template::UsOnlyNoforn,
        Template::Bilateral,
        Template::Fvey,
        Template::Aukus,
        Template::Nato,
        Template::NatoCosmic,
        Template::EuRestricted,
        Template::Quad,
        Template::CombatantCommand,
        Template::Program,
        Template::AnyCombination,
        Template::NoCoi,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Template::UsOnly => "us-only",
            Template::UsOnlyNoforn => "us-only-noforn",
            Template::Bilateral => "bilateral",
            Template::Fvey => "fvey",
            Template::Aukus => "aukus",
            Template::Nato => "nato",
            Template::NatoCosmic => "nato-cosmic",
            Template::EuRestricted => "eu-restricted",
            Template::Quad => "quad",
            Template::CombatantCommand => "combatant-command",
            Template::Program => "program",
            Template::AnyCombination => "any-combination",
            Template::NoCoi => "no-coi",
        }
    }

    /// Relative weight of this template among documents of `level` (0 = never at that level).
    /// Columns: UNCLASSIFIED, RESTRICTED, CONFIDENTIAL, SECRET, TOP SECRET.
    fn weight(self, level: Clearance) -> u32 {
        let row: [u32; 5] = match self {
            Template::UsOnly => [0, 6, 8, 8, 10],
            Template::UsOnlyNoforn => [0, 0, 5, 7, 10],
            Template::Bilateral => [4, 8, 8, 8, 4],
            Template::Fvey => [0, 4, 10, 12, 14],
            Template::Aukus => [0, 0, 4, 8, 10],
            Template::Nato => [20, 20, 14, 10, 0],
            Template::NatoCosmic => [0, 0, 0, 0, 14],
            Template::EuRestricted => [0, 16, 10, 4, 0],
            Template::Quad => [0, 6, 6, 6, 4],
            Template::CombatantCommand => [6, 8, 10, 10, 6],
            Template::Program => [0, 0, 0, 8, 12],
            Template::AnyCombination => [4, 8, 10, 8, 6],
            Template::NoCoi => [66, 24, 15, 11, 10],
        };
        row[usize::from(level.rank())]
    }
}

impl fmt::Display for Template {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Classification weights in percent, UNCLASSIFIED … TOP SECRET.
pub const CLASSIFICATION_WEIGHTS: [u32; 5] = [20, 15, 25, 25, 15];

/// Percent of documents releasable to industry, by level (none at TOP SECRET: every nation's
/// industry cap is SECRET or lower).
const INDUSTRY_PERCENT: [u32; 5] = [50, 35, 20, 10, 0];

const BILATERALS: &[&str] = &["CAN-US", "GBR-US", "FRA-US", "DEU-US"];
const COMMANDS: &[&str] = &["NORTHCOM", "EUCOM", "PACOM", "CENTCOM", "SOCOM"];
const PROGRAMS: &[&str] = &["Alpha", "Beta", "Gamma"];
/// National communities a program COI may be layered on (never US-ONLY: it stands alone).
const PROGRAM_HOSTS: &[&str] = &[
    "FVEY",
    "NATO",
    "EUCOM",
    "PACOM",
    "AUKUS",
    "CAN-US",
    "GBR-US",
    "FRA-US",
    "DEU-US",
    "QUAD",
    "EU-RESTRICTED",
];
/// COI sets used under `ANY`: none is a subset of, or exclusive with, another in its set.
const ANY_COMBINATIONS: &[&[&str]] = &[
    &["FVEY", "NATO"],
    &["NATO", "QUAD"],
    &["EUCOM", "PACOM"],
    &["CAN-US", "GBR-US"],
    &["FRA-US", "DEU-US"],
    &["AUKUS", "QUAD"],
    &["FVEY", "EU-RESTRICTED"],
    &["NORTHCOM", "EUCOM", "CENTCOM"],
    &["SOCOM", "NATO"],
    &["EU-RESTRICTED", "PACOM"],
];
/// Partners an explicitly released (no-COI) document may go to besides NATO and FVEY members.
const OTHER_PARTNERS: &[&str] = &["JPN", "KOR", "AUS", "NZL", "IND", "SGP", "ISR", "UKR"];

/// What the template chose; the caller adds dates, originator unit and industry flag.
pub(crate) struct Drafted {
    pub template: Template,
    pub classification: Clearance,
    pub original_country: CountryCode,
    pub original_marking: String,
    pub coi: Vec<&'static str>,
    pub operator: CoiOperator,
    pub releasability: Vec<CountryCode>,
    pub noforn: bool,
    pub industry: bool,
}

/// Precomputed registry lookups for one instance (members as sorted vectors).
pub(crate) struct Tables {
    instance: CountryCode,
    usa: CountryCode,
    registry: &'static CoiRegistry,
    equivalency: &'static Equivalency,
    /// NATO ∪ FVEY ∪ OTHER_PARTNERS: the pool explicit releasability draws from.
    partners: Vec<CountryCode>,
}

fn cc(code: &str) -> CountryCode {
    // Only called on the constant codes of this module and registry members (tested).
    CountryCode::new(code).unwrap_or_else(|e| unreachable!("built-in country code: {e}"))
}

impl Tables {
    pub(crate) fn new(instance: CountryCode) -> Self {
        let registry = CoiRegistry::builtin();
        let mut partners: Vec<CountryCode> = Vec::new();
        for tag in ["NATO", "FVEY"] {
            partners.extend(members_of(registry, tag));
        }
        partners.extend(OTHER_PARTNERS.iter().map(|c| cc(c)));
        partners.sort();
        partners.dedup();
        partners.retain(|c| *c != instance);
        Tables {
            instance,
            usa: cc("USA"),
            registry,
            equivalency: Equivalency::builtin(),
            partners,
        }
    }

    fn members(&self, tag: &str) -> Vec<CountryCode> {
        members_of(self.registry, tag)
    }

    fn is_member(&self, tag: &str) -> bool {
        self.registry.is_member(tag, self.instance)
    }

    /// The instance when it belongs to `community`, else a member (USA when it is one, half the
    /// time, since most partner-originated material on a coalition hub is US).
    /// Members with their own national table are preferred, so that the original marking is
    /// national rather than the NATO fallback.
    fn originator(&self, community: &[CountryCode], rng: &mut Rng) -> CountryCode {
        if community.contains(&self.instance) {
            return self.instance;
        }
        if community.contains(&self.usa) && rng.percent(50) {
            return self.usa;
        }
        let national: Vec<CountryCode> = community
            .iter()
            .copied()
            .filter(|c| self.equivalency.has_nation(*c))
            .collect();
        *rng.pick(if national.is_empty() {
            community
        } else {
            &national
        })
    }

    pub(crate) fn draft(&self, rng: &mut Rng) -> Drafted {
        let level = Clearance::ALL[rng.weighted(&CLASSIFICATION_WEIGHTS)];
        let weights: Vec<u32> = Template::ALL.iter().map(|t| t.weight(level)).collect();
        let template = Template::ALL[rng.weighted(&weights)];
        let mut noforn = false;
        let mut operator = CoiOperator::All;
        let (coi, origin, releasability): (Vec<&'static str>, CountryCode, Vec<CountryCode>) =
            match template {
                Template::UsOnly | Template::UsOnlyNoforn => {
                    noforn = template == Template::UsOnlyNoforn;
                    (vec![US_ONLY], self.usa, vec![self.usa])
                }
                Template::Bilateral => {
                    let own: Vec<&'static str> = BILATERALS
                        .iter()
                        .copied()
                        .filter(|t| self.is_member(t) && self.instance != self.usa)
                        .collect();
                    let tag = if !own.is_empty() && rng.percent(60) {
                        *rng.pick(&own)
                    } else {
                        *rng.pick(BILATERALS)
                    };
                    self.single(tag, 100, rng)
                }
                Template::Fvey => self.single("FVEY", 75, rng),
                Template::Aukus => self.single("AUKUS", 80, rng),
                Template::Nato => self.single("NATO", 60, rng),
                Template::NatoCosmic => self.single("NATO-COSMIC", 60, rng),
                Template::EuRestricted => self.single("EU-RESTRICTED", 60, rng),
                Template::Quad => self.single("QUAD", 80, rng),
                Template::CombatantCommand => {
                    let own: Vec<&'static str> = COMMANDS
                        .iter()
                        .copied()
                        .filter(|t| self.is_member(t))
                        .collect();
                    let tag = if !own.is_empty() && rng.percent(70) {
                        *rng.pick(&own)
                    } else {
                        *rng.pick(COMMANDS)
                    };
                    self.single(tag, 70, rng)
                }
                Template::Program => self.program(rng),
                Template::AnyCombination => {
                    operator = CoiOperator::Any;
                    self.any_combination(rng)
                }
                Template::NoCoi => (Vec::new(), self.instance, self.explicit(level, rng)),
            };
        let original_marking = self.marking(origin, level, rng);
        Drafted {
            template,
            classification: level,
            original_country: origin,
            original_marking,
            coi,
            operator,
            releasability,
            noforn,
            industry: rng.percent(INDUSTRY_PERCENT[usize::from(level.rank())]),
        }
    }

    /// One COI; releasable to all its members `full_percent` of the time, else to the
    /// originator and a few co-members.
    fn single(
        &self,
        tag: &'static str,
        full_percent: u32,
        rng: &mut Rng,
    ) -> (Vec<&'static str>, CountryCode, Vec<CountryCode>) {
        let members = self.members(tag);
        let origin = self.originator(&members, rng);
        let rel = release(origin, &members, full_percent, rng);
        (vec![tag], origin, rel)
    }

    fn program(&self, rng: &mut Rng) -> (Vec<&'static str>, CountryCode, Vec<CountryCode>) {
        let n = if rng.percent(20) { 2 } else { 1 };
        let mut tags: Vec<&'static str> = rng.sample(PROGRAMS, n);
        tags.sort_unstable();
        let hosts: Vec<&'static str> = PROGRAM_HOSTS
            .iter()
            .copied()
            .filter(|t| self.is_member(t))
            .collect();
        if !hosts.is_empty() && rng.percent(60) {
            // Layered: ALL of a national community and the program(s); releasable to the
            // originator and up to two co-members of the national community.
            let host = *rng.pick(&hosts);
            let members = self.members(host);
            let others: Vec<CountryCode> = members
                .iter()
                .copied()
                .filter(|c| *c != self.instance)
                .collect();
            let mut rel = vec![self.instance];
            let k = rng.range(0, 2);
            rel.extend(sorted(rng.sample(&others, k)));
            let mut coi = vec![host];
            coi.extend(tags);
            (coi, self.instance, rel)
        } else {
            // Program only: membership by tag, releasable to the originating nation alone.
            (tags, self.instance, vec![self.instance])
        }
    }

    fn any_combination(&self, rng: &mut Rng) -> (Vec<&'static str>, CountryCode, Vec<CountryCode>) {
        let own: Vec<&[&'static str]> = ANY_COMBINATIONS
            .iter()
            .copied()
            .filter(|set| set.iter().any(|t| self.is_member(t)))
            .collect();
        let set = if !own.is_empty() && rng.percent(80) {
            *rng.pick(&own)
        } else {
            *rng.pick(ANY_COMBINATIONS)
        };
        let mut union: Vec<CountryCode> = set.iter().flat_map(|t| self.members(t)).collect();
        union.sort();
        union.dedup();
        let origin = self.originator(&union, rng);
        let rel = release(origin, &union, 60, rng);
        (set.to_vec(), origin, rel)
    }

    /// No COI: the instance plus explicitly listed partners (a broad list for some public material).
    fn explicit(&self, level: Clearance, rng: &mut Rng) -> Vec<CountryCode> {
        let mut rel = vec![self.instance];
        if level == Clearance::Unclassified && rng.percent(25) {
            rel.extend(self.partners.iter().copied());
        } else {
            let k = rng.range(0, 5);
            rel.extend(sorted(rng.sample(&self.partners, k)));
        }
        rel
    }

    /// One of `nation`'s own labels for `level` (the first, most common form three times in
    /// four); abbreviations such as "S" or "TS" are not used as original markings.
    fn marking(&self, nation: CountryCode, level: Clearance, rng: &mut Rng) -> String {
        let labels = self.equivalency.labels(nation, level);
        let words: Vec<&String> = labels.iter().filter(|l| l.chars().count() > 2).collect();
        let pool: Vec<&String> = if words.is_empty() {
            labels.iter().collect()
        } else {
            words
        };
        if pool.len() > 1 && rng.percent(25) {
            pool[1 + rng.below(pool.len() - 1)].clone()
        } else {
            pool[0].clone()
        }
    }
}

fn members_of(registry: &CoiRegistry, tag: &str) -> Vec<CountryCode> {
    registry
        .get(tag)
        .and_then(|d| d.members.as_ref())
        .map(|m| m.iter().copied().collect())
        .unwrap_or_default()
}

fn sorted(mut v: Vec<CountryCode>) -> Vec<CountryCode> {
    v.sort();
    v
}

/// Releasability within `members`: the originator first, then the others alphabetically
/// (the usual `REL TO USA, AUS, CAN, GBR, NZL` order).
fn release(
    origin: CountryCode,
    members: &[CountryCode],
    full_percent: u32,
    rng: &mut Rng,
) -> Vec<CountryCode> {
    let others: Vec<CountryCode> = members.iter().copied().filter(|c| *c != origin).collect();
    let picked = if rng.percent(full_percent) || others.len() <= 1 {
        others
    } else {
        let k = rng.range(1, others.len().min(7) - 1).max(1);
        sorted(rng.sample(&others, k))
    };
    let mut rel = Vec::with_capacity(picked.len() + 1);
    rel.push(origin);
    rel.extend(picked);
    rel
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn template_tags_exist_in_the_registry_and_combinations_are_coherent() {
        let r = CoiRegistry::builtin();
        for tag in BILATERALS
            .iter()
            .chain(COMMANDS)
            .chain(PROGRAMS)
            .chain(PROGRAM_HOSTS)
        {
            assert!(r.contains(tag), "{tag}");
        }
        for set in ANY_COMBINATIONS {
            for (i, a) in set.iter().enumerate() {
                assert!(r.contains(a), "{a}");
                for b in &set[i + 1..] {
                    assert!(!r.is_subset(a, b) && !r.is_subset(b, a), "{a} {b}");
                    assert!(!r.are_exclusive(a, b), "{a} {b}");
                }
            }
        }
        for c in OTHER_PARTNERS {
            assert!(CountryCode::new(c).is_ok(), "{c}");
        }
    }

    #[test]
    fn every_level_has_a_template_and_weights_sum_to_100() {
        assert_eq!(CLASSIFICATION_WEIGHTS.iter().sum::<u32>(), 100);
        for level in Clearance::ALL {
            assert!(Template::ALL.iter().any(|t| t.weight(level) > 0));
        }
        assert_eq!(Template::NatoCosmic.weight(Clearance::Secret), 0);
    }
}
