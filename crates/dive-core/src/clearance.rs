//! The five-level DIVE clearance ladder (ranks 0–4), shared by subjects and resources.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::CoreError;

/// A normalised classification level. Ordering follows the ladder: `Unclassified < … < TopSecret`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Clearance {
    Unclassified,
    Restricted,
    Confidential,
    Secret,
    TopSecret,
}

impl Clearance {
    /// All levels, lowest first.
    pub const ALL: [Clearance; 5] = [
        Clearance::Unclassified,
        Clearance::Restricted,
        Clearance::Confidential,
        Clearance::Secret,
        Clearance::TopSecret,
    ];

    /// Rank on the ladder: 0 (UNCLASSIFIED) … 4 (TOP_SECRET).
    pub fn rank(self) -> u8 {
        self as u8
    }

    pub fn from_rank(rank: u8) -> Option<Clearance> {
        Clearance::ALL.get(usize::from(rank)).copied()
    }

    /// The canonical identifier used in attributes and policy data (`TOP_SECRET`).
    pub fn as_str(self) -> &'static str {
        match self {
            Clearance::Unclassified => "UNCLASSIFIED",
            Clearance::Restricted => "RESTRICTED",
            Clearance::Confidential => "CONFIDENTIAL",
            Clearance::Secret => "SECRET",
            Clearance::TopSecret => "TOP_SECRET",
        }
    }

    /// The words used in a display marking (`TOP SECRET`).
    pub fn marking(self) -> &'static str {
        match self {
            Clearance::TopSecret => "TOP SECRET",
            other => other.as_str(),
        }
    }

    /// The matching NATO marking (`COSMIC TOP SECRET` for the top level).
    pub fn nato_marking(self) -> &'static str {
        match self {
            Clearance::Unclassified => "NATO UNCLASSIFIED",
            Clearance::Restricted => "NATO RESTRICTED",
            Clearance::Confidential => "NATO CONFIDENTIAL",
            Clearance::Secret => "NATO SECRET",
            Clearance::TopSecret => "COSMIC TOP SECRET",
        }
    }

    /// Whether a holder of `self` may see material classified `level`.
    pub fn dominates(self, level: Clearance) -> bool {
        self >= level
    }
}

impl fmt::Display for Clearance {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Parses the canonical level names, tolerant of case and separators (`top secret`, `TOP-SECRET`).
/// National labels go through [`crate::Equivalency`] instead.
impl FromStr for Clearance {
    type Err = CoreError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let key = crate::normalize::label_key(s);
        Clearance::ALL
            .into_iter()
            .find(|c| crate::normalize::label_key(c.as_str()) == key)
            .ok_or_else(|| CoreError::UnknownClearance {
                label: s.to_string(),
                country: None,
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ladder_orders_and_ranks() {
        assert!(Clearance::TopSecret.dominates(Clearance::Secret));
        assert!(!Clearance::Confidential.dominates(Clearance::Secret));
        assert_eq!(Clearance::Secret.rank(), 3);
        assert_eq!(Clearance::from_rank(4), Some(Clearance::TopSecret));
        assert_eq!(Clearance::from_rank(5), None);
    }

    #[test]
    fn parses_canonical_names_and_rejects_others() {
        assert_eq!(
            "top secret".parse::<Clearance>().ok(),
            Some(Clearance::TopSecret)
        );
        assert_eq!(
            "TOP_SECRET".parse::<Clearance>().ok(),
            Some(Clearance::TopSecret)
        );
        assert!("GEHEIM".parse::<Clearance>().is_err());
        assert_eq!(
            serde_json::to_string(&Clearance::TopSecret).ok().as_deref(),
            Some("\"TOP_SECRET\"")
        );
    }
}
