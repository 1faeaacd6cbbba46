//! ISO 3166-1 alpha-3 country codes, validated against the officially assigned list.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::str::FromStr;
use std::sync::OnceLock;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::CoreError;

const ISO3166_ALPHA3: &str = include_str!("../data/iso3166-alpha3.txt");
/// alpha-3, alpha-2 and English short name of every assigned code (from Debian's iso-codes).
const ISO3166_NAMES: &str = include_str!("../data/iso3166-names.tsv");

/// alpha-3 → (alpha-2, English name).
fn names() -> &'static BTreeMap<[u8; 3], (&'static str, &'static str)> {
    static MAP: OnceLock<BTreeMap<[u8; 3], (&'static str, &'static str)>> = OnceLock::new();
    MAP.get_or_init(|| {
        ISO3166_NAMES
            .lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| {
                let mut f = l.split('\t');
                let a3 = <[u8; 3]>::try_from(f.next()?.as_bytes()).ok()?;
                Some((a3, (f.next()?, f.next()?)))
            })
            .collect()
    })
}

fn assigned() -> &'static BTreeSet<[u8; 3]> {
    static SET: OnceLock<BTreeSet<[u8; 3]>> = OnceLock::new();
    SET.get_or_init(|| {
        ISO3166_ALPHA3
            .lines()
            .filter(|l| !l.starts_with('#'))
            .flat_map(str::split_whitespace)
            .filter_map(|w| <[u8; 3]>::try_from(w.as_bytes()).ok())
            .collect()
    })
}

/// An officially assigned ISO 3166-1 alpha-3 code, upper case, exact: `USA`, `FRA`.
/// `usa`, `UK`, `NATO` and unassigned codes are rejected.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CountryCode([u8; 3]);

impl CountryCode {
    /// Validate a code; the error says why it was rejected.
    pub fn new(code: &str) -> Result<CountryCode, CoreError> {
        let invalid = |why: &str| CoreError::InvalidCountry {
            code: code.to_string(),
            why: why.to_string(),
        };
        let bytes: [u8; 3] = code
            .as_bytes()
            .try_into()
            .map_err(|_| invalid("an ISO 3166-1 alpha-3 code has exactly three letters"))?;
        if !bytes.iter().all(u8::is_ascii_uppercase) {
            return Err(invalid(
                "country codes are upper case letters (e.g. USA, FRA)",
            ));
        }
        if !assigned().contains(&bytes) {
            return Err(invalid("not an assigned ISO 3166-1 alpha-3 code"));
        }
        Ok(CountryCode(bytes))
    }

    pub fn as_str(&self) -> &str {
        // Only ASCII upper-case letters are ever stored.
        std::str::from_utf8(&self.0).unwrap_or("???")
    }

    /// The ISO 3166-1 alpha-2 code (`FRA` → `FR`).
    pub fn alpha2(&self) -> &'static str {
        names().get(&self.0).map_or("", |n| n.0)
    }

    /// The English short name (`FRA` → `France`, `KOR` → `South Korea`).
    pub fn name(&self) -> &'static str {
        names().get(&self.0).map_or("", |n| n.1)
    }

    /// The flag emoji: the alpha-2 code as two regional indicator symbols (`FR` → 🇫🇷).
    pub fn flag(&self) -> String {
        self.alpha2()
            .bytes()
            .filter_map(|b| char::from_u32(0x1F1E6 + u32::from(b.wrapping_sub(b'A'))))
            .collect()
    }

    /// Every assigned code, in alphabetical order.
    pub fn all() -> impl Iterator<Item = CountryCode> {
        assigned().iter().map(|b| CountryCode(*b))
    }
}

impl fmt::Display for CountryCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for CountryCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CountryCode({})", self.as_str())
    }
}

impl FromStr for CountryCode {
    type Err = CoreError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        CountryCode::new(s)
    }
}

impl TryFrom<&str> for CountryCode {
    type Error = CoreError;
    fn try_from(s: &str) -> Result<Self, Self::Error> {
        CountryCode::new(s)
    }
}

impl Serialize for CountryCode {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for CountryCode {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        CountryCode::new(&s).map_err(serde::de::Error::custom)
    }
}

/// The 32 NATO members.
pub const NATO_MEMBERS: [&str; 32] = [
    "ALB", "BEL", "BGR", "CAN", "HRV", "CZE", "DNK", "EST", "FIN", "FRA", "DEU", "GRC", "HUN",
    "ISL", "ITA", "LVA", "LTU", "LUX", "MNE", "NLD", "MKD", "NOR", "POL", "PRT", "ROU", "SVK",
    "SVN", "ESP", "SWE", "TUR", "GBR", "USA",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_assigned_upper_case_codes() {
        assert_eq!(
            CountryCode::new("FRA")
                .map(|c| c.to_string())
                .ok()
                .as_deref(),
            Some("FRA")
        );
        assert!(NATO_MEMBERS.iter().all(|c| CountryCode::new(c).is_ok()));
        assert_eq!(CountryCode::all().count(), 249);
    }

    #[test]
    fn every_code_has_an_alpha2_code_a_name_and_a_flag() {
        for c in CountryCode::all() {
            assert_eq!(c.alpha2().len(), 2, "{c}");
            assert!(!c.name().is_empty(), "{c}");
            assert_eq!(c.flag().chars().count(), 2, "{c}");
        }
        let fra = CountryCode::new("FRA").unwrap();
        assert_eq!((fra.alpha2(), fra.name()), ("FR", "France"));
        assert_eq!(fra.flag(), "\u{1F1EB}\u{1F1F7}");
        assert_eq!(CountryCode::new("USA").unwrap().name(), "United States");
    }

    #[test]
    fn rejects_lower_case_short_and_pseudo_codes() {
        for bad in ["usa", "UK", "NATO", "XXX", "", "US A"] {
            let err = CountryCode::new(bad)
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default();
            assert!(err.contains(bad), "{bad}: {err}");
        }
        assert!(serde_json::from_str::<CountryCode>("\"gbr\"").is_err());
    }
}
