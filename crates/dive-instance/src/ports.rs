//! The port table: every instance gets a block of ten ports, and every service a fixed offset in
//! its block, so that a hub and any number of spokes run side by side on one machine.
//!
//! `port = 8443 + 10 × slot(instance) + offset(service)`
//!
//! * slots 0–33 are fixed: the hub USA is 0, then the other NATO members, then AUS and NZL
//!   ([`FIXED_SLOTS`]);
//! * every other ISO 3166-1 alpha-3 code gets `100 + its position` among the remaining assigned
//!   codes in alphabetical order (slots 100–314), so any country can be a spoke;
//! * offsets: idp 0, api 1, kas 2, web 3, pdp 4 (5–9 reserved).
//!
//! The highest port is below 11 600, under the Linux ephemeral range (32768+). Ports can be
//! overridden per instance (flags, or `DIVE_<CODE>_<SERVICE>_PORT`); overrides are kept in the
//! instance file and checked against every other instance's ports.

use std::collections::BTreeMap;
use std::fmt;

use dive_core::CountryCode;
use serde::{Deserialize, Serialize};

use crate::error::InstanceError;

/// The first port of the hub's block (the hub's IdP).
pub const BASE_PORT: u16 = 8443;
/// Ports per instance block.
pub const STRIDE: u16 = 10;
/// First slot of the countries outside [`FIXED_SLOTS`].
pub const OTHER_SLOTS_START: u16 = 100;

/// Fixed slots: the hub, the other NATO members, AUS and NZL. Never reorder: instances keep their
/// ports across releases.
pub const FIXED_SLOTS: [(&str, u16); 34] = [
    ("USA", 0),
    ("FRA", 1),
    ("GBR", 2),
    ("DEU", 3),
    ("CAN", 4),
    ("ITA", 5),
    ("ESP", 6),
    ("NLD", 7),
    ("BEL", 8),
    ("POL", 9),
    ("NOR", 10),
    ("DNK", 11),
    ("PRT", 12),
    ("TUR", 13),
    ("GRC", 14),
    ("CZE", 15),
    ("HUN", 16),
    ("ROU", 17),
    ("BGR", 18),
    ("SVK", 19),
    ("SVN", 20),
    ("HRV", 21),
    ("ALB", 22),
    ("MNE", 23),
    ("MKD", 24),
    ("EST", 25),
    ("LVA", 26),
    ("LTU", 27),
    ("LUX", 28),
    ("ISL", 29),
    ("FIN", 30),
    ("SWE", 31),
    ("AUS", 32),
    ("NZL", 33),
];

/// The services that get a port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Service {
    Idp,
    Api,
    Kas,
    /// The browser UI (reserved: not deployed yet).
    Web,
    /// The optional OPA-compatible decision API.
    Pdp,
}

impl Service {
    pub const ALL: [Service; 5] = [
        Service::Idp,
        Service::Api,
        Service::Kas,
        Service::Web,
        Service::Pdp,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Service::Idp => "idp",
            Service::Api => "api",
            Service::Kas => "kas",
            Service::Web => "web",
            Service::Pdp => "pdp",
        }
    }

    /// Offset of the service in its instance's block.
    pub fn offset(self) -> u16 {
        match self {
            Service::Idp => 0,
            Service::Api => 1,
            Service::Kas => 2,
            Service::Web => 3,
            Service::Pdp => 4,
        }
    }

    pub fn parse(s: &str) -> Option<Service> {
        Service::ALL.into_iter().find(|x| x.as_str() == s)
    }
}

impl fmt::Display for Service {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The instance's slot in the table.
pub fn slot(code: CountryCode) -> u16 {
    if let Some((_, s)) = FIXED_SLOTS.iter().find(|(c, _)| *c == code.as_str()) {
        return *s;
    }
    let position = CountryCode::all()
        .filter(|c| !FIXED_SLOTS.iter().any(|(f, _)| *f == c.as_str()))
        .position(|c| c == code)
        .unwrap_or(0);
    // Fewer than 250 assigned codes exist, so this cannot overflow the u16 range used below.
    OTHER_SLOTS_START + position as u16
}

/// The default port of `service` in `code`'s block.
pub fn default_port(code: CountryCode, service: Service) -> u16 {
    BASE_PORT + STRIDE * slot(code) + service.offset()
}

/// The ports of one instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ports {
    pub idp: u16,
    pub api: u16,
    pub kas: u16,
    pub web: u16,
    pub pdp: u16,
}

impl Ports {
    /// The table's ports for `code`.
    pub fn defaults(code: CountryCode) -> Ports {
        Ports {
            idp: default_port(code, Service::Idp),
            api: default_port(code, Service::Api),
            kas: default_port(code, Service::Kas),
            web: default_port(code, Service::Web),
            pdp: default_port(code, Service::Pdp),
        }
    }

    pub fn get(&self, s: Service) -> u16 {
        match s {
            Service::Idp => self.idp,
            Service::Api => self.api,
            Service::Kas => self.kas,
            Service::Web => self.web,
            Service::Pdp => self.pdp,
        }
    }

    pub fn set(&mut self, s: Service, port: u16) {
        match s {
            Service::Idp => self.idp = port,
            Service::Api => self.api = port,
            Service::Kas => self.kas = port,
            Service::Web => self.web = port,
            Service::Pdp => self.pdp = port,
        }
    }

    pub fn iter(&self) -> impl Iterator<Item = (Service, u16)> + '_ {
        Service::ALL.into_iter().map(|s| (s, self.get(s)))
    }

    /// Every port is non-zero and no two services share one.
    pub fn validate(&self, code: CountryCode) -> Result<(), InstanceError> {
        let mut seen: BTreeMap<u16, Service> = BTreeMap::new();
        for (s, p) in self.iter() {
            if p == 0 {
                return Err(InstanceError::invalid(format!(
                    "{code}: the {s} port must be between 1 and 65535"
                )));
            }
            if let Some(other) = seen.insert(p, s) {
                return Err(InstanceError::invalid(format!(
                    "{code}: port {p} is given to both {other} and {s}"
                )));
            }
        }
        Ok(())
    }

    /// Ports of `self` that `other` uses too, as (service here, port, service there).
    pub fn clashes(&self, other: &Ports) -> Vec<(Service, u16, Service)> {
        let mut out = Vec::new();
        for (s, p) in self.iter() {
            for (o, q) in other.iter() {
                if p == q {
                    out.push((s, p, o));
                }
            }
        }
        out
    }
}

/// Ports chosen by the operator for one deployment (flags, then environment).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PortOverrides(pub BTreeMap<Service, u16>);

impl PortOverrides {
    /// The environment variable that overrides `service`'s port of `code`, e.g.
    /// `DIVE_FRA_IDP_PORT`.
    pub fn env_name(code: CountryCode, service: Service) -> String {
        format!(
            "DIVE_{}_{}_PORT",
            code.as_str(),
            service.as_str().to_ascii_uppercase()
        )
    }

    /// Flags first; for services without a flag, `DIVE_<CODE>_<SERVICE>_PORT` from `lookup`.
    pub fn resolve(
        code: CountryCode,
        flags: &BTreeMap<Service, u16>,
        lookup: &dyn Fn(&str) -> Option<String>,
    ) -> Result<PortOverrides, InstanceError> {
        let mut out = flags.clone();
        for s in Service::ALL {
            if out.contains_key(&s) {
                continue;
            }
            let name = Self::env_name(code, s);
            if let Some(v) = lookup(&name).filter(|v| !v.is_empty()) {
                let port = v
                    .trim()
                    .parse::<u16>()
                    .ok()
                    .filter(|p| *p > 0)
                    .ok_or_else(|| {
                        InstanceError::invalid(format!(
                            "{name}={v:?}: expected a port number between 1 and 65535"
                        ))
                    })?;
                out.insert(s, port);
            }
        }
        Ok(PortOverrides(out))
    }

    /// `base` with these overrides applied.
    pub fn apply(&self, mut base: Ports) -> Ports {
        for (s, p) in &self.0 {
            base.set(*s, *p);
        }
        base
    }
}

/// The table as documented: `(code, slot, ports)` for the fixed slots.
pub fn fixed_table() -> Vec<(CountryCode, u16, Ports)> {
    FIXED_SLOTS
        .iter()
        .filter_map(|(c, s)| {
            let code = CountryCode::new(c).ok()?;
            Some((code, *s, Ports::defaults(code)))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    fn cc(s: &str) -> CountryCode {
        CountryCode::new(s).unwrap()
    }

    #[test]
    fn the_hub_and_first_spokes_have_the_documented_ports() {
        assert_eq!(
            Ports::defaults(cc("USA")),
            Ports {
                idp: 8443,
                api: 8444,
                kas: 8445,
                web: 8446,
                pdp: 8447
            }
        );
        assert_eq!(Ports::defaults(cc("FRA")).idp, 8453);
        assert_eq!(Ports::defaults(cc("GBR")).kas, 8465);
        assert_eq!(Ports::defaults(cc("NZL")).idp, 8443 + 330);
        // Outside the fixed table: 100 + alphabetical position among the rest (ABW is first).
        assert_eq!(slot(cc("ABW")), 100);
        assert_eq!(Ports::defaults(cc("ABW")).idp, 9443);
    }

    #[test]
    fn the_fixed_table_covers_nato_aus_and_nzl_once_each() {
        let codes: BTreeSet<&str> = FIXED_SLOTS.iter().map(|(c, _)| *c).collect();
        assert_eq!(codes.len(), FIXED_SLOTS.len());
        for member in dive_core::country::NATO_MEMBERS
            .iter()
            .chain(&["AUS", "NZL"])
        {
            assert!(codes.contains(member), "{member} has a fixed slot");
        }
        for (c, _) in FIXED_SLOTS {
            assert!(CountryCode::new(c).is_ok(), "{c} is assigned");
        }
        let slots: BTreeSet<u16> = FIXED_SLOTS.iter().map(|(_, s)| *s).collect();
        assert_eq!(slots.len(), FIXED_SLOTS.len());
        assert!(*slots.iter().max().unwrap() < OTHER_SLOTS_START);
    }

    #[test]
    fn no_two_instances_or_services_share_a_port_and_all_stay_below_the_ephemeral_range() {
        let mut seen: BTreeMap<u16, (CountryCode, Service)> = BTreeMap::new();
        for code in CountryCode::all() {
            for (s, p) in Ports::defaults(code).iter() {
                assert!(p < 32768, "{code} {s} {p}");
                if let Some(prev) = seen.insert(p, (code, s)) {
                    panic!("{code} {s} and {prev:?} share port {p}");
                }
            }
        }
        assert_eq!(seen.len(), CountryCode::all().count() * Service::ALL.len());
    }

    #[test]
    fn overrides_come_from_flags_then_environment_and_bad_values_name_the_variable() {
        let usa = cc("USA");
        let flags = BTreeMap::from([(Service::Idp, 19000)]);
        let env = |k: &str| match k {
            "DIVE_USA_IDP_PORT" => Some("19999".to_string()),
            "DIVE_USA_KAS_PORT" => Some("19002".to_string()),
            _ => None,
        };
        let o = PortOverrides::resolve(usa, &flags, &env).unwrap();
        let p = o.apply(Ports::defaults(usa));
        assert_eq!((p.idp, p.kas, p.api), (19000, 19002, 8444));
        let bad = |k: &str| (k == "DIVE_USA_API_PORT").then(|| "http".to_string());
        let e = PortOverrides::resolve(usa, &BTreeMap::new(), &bad).unwrap_err();
        assert!(e.to_string().contains("DIVE_USA_API_PORT"), "{e}");
        let mut dup = Ports::defaults(usa);
        dup.kas = dup.idp;
        let e = dup.validate(usa).unwrap_err().to_string();
        assert!(
            e.contains("8443") && e.contains("idp") && e.contains("kas"),
            "{e}"
        );
    }
}
