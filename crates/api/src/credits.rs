//! Credits as integer units of 1/10000 credit (EvoLink's wire scale). Every credit
//! amount that comes in (config, admin bodies, CLI flags, catalog prices) is parsed
//! from its decimal text by `Credits::parse_decimal` or `Credits::parse_json`; a
//! float appears only on the way out, for display.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// An amount of credits in units of 1/10000 credit.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, ToSchema, Default)]
#[serde(transparent)]
pub struct Credits(i64);

impl Credits {
    pub const UNITS_PER_CREDIT: i64 = 10_000;

    pub const fn from_units(units: i64) -> Self {
        Self(units)
    }

    pub const fn units(self) -> i64 {
        self.0
    }

    /// Display only.
    pub fn to_credits_f64(self) -> f64 {
        self.0 as f64 / Self::UNITS_PER_CREDIT as f64
    }

    /// Display only: 72 credits = $1.
    pub fn to_usd_f64(self) -> f64 {
        self.to_credits_f64() / 72.0
    }
}

impl Credits {
    /// Parses a decimal credit amount such as `27`, `7.1982` or `-0.5` exactly
    /// (at most 4 decimals: the unit is 1/10000 credit). No float on the way.
    pub fn parse_decimal(s: &str) -> Option<Self> {
        let (neg, digits) = match s.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, s),
        };
        let (whole, frac) = digits.split_once('.').unwrap_or((digits, ""));
        let all_digits = |p: &str| p.bytes().all(|b| b.is_ascii_digit());
        if whole.is_empty() || !all_digits(whole) || !all_digits(frac) || frac.len() > 4 || digits.ends_with('.') {
            return None;
        }
        let whole: i64 = whole.parse().ok()?;
        let frac_units: i64 = if frac.is_empty() { 0 } else { format!("{frac:0<4}").parse().ok()? };
        let units = whole.checked_mul(Self::UNITS_PER_CREDIT)?.checked_add(frac_units)?;
        Some(Self(if neg { -units } else { units }))
    }
}

impl Credits {
    /// A credit amount in a JSON body: a number such as `27` or `7.1982`, read from
    /// its decimal text (serde_json prints the shortest text that reads back as the
    /// same number, so `7.1982` stays `7.1982`), or the same as a string.
    pub fn parse_json(v: &serde_json::Value) -> Option<Self> {
        match v {
            serde_json::Value::Number(n) => Self::parse_decimal(&n.to_string()),
            serde_json::Value::String(s) => Self::parse_decimal(s.trim()),
            _ => None,
        }
    }
}

impl std::str::FromStr for Credits {
    type Err = InvalidCredits;
    fn from_str(s: &str) -> Result<Self, InvalidCredits> {
        Self::parse_decimal(s).ok_or(InvalidCredits)
    }
}

/// A string that is not a decimal credit amount with at most 4 decimals.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("not a credit amount: use a decimal number with at most 4 decimals")]
pub struct InvalidCredits;

impl std::fmt::Display for Credits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let sign = if self.0 < 0 { "-" } else { "" };
        let abs = self.0.unsigned_abs();
        let whole = abs / Self::UNITS_PER_CREDIT as u64;
        let frac = abs % Self::UNITS_PER_CREDIT as u64;
        if frac == 0 {
            write!(f, "{sign}{whole}")
        } else {
            let frac = format!("{frac:04}");
            write!(f, "{sign}{whole}.{}", frac.trim_end_matches('0'))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn displays_exact_decimals() {
        assert_eq!(Credits::from_units(270_000).to_string(), "27");
        assert_eq!(Credits::from_units(71_982).to_string(), "7.1982");
        assert_eq!(Credits::from_units(162_000).to_string(), "16.2");
        assert_eq!(Credits::from_units(-5).to_string(), "-0.0005");
        assert_eq!(Credits::from_units(10_000).to_string(), "1");
        assert_eq!(Credits::from_units(0).to_string(), "0");
        assert_eq!(Credits::from_units(i64::MIN).to_string(), "-922337203685477.5808");
    }

    #[test]
    fn parses_decimals_exactly_and_round_trips_display() {
        for (s, units) in [("27", 270_000), ("7.1982", 71_982), ("0.5", 5_000), ("-0.0005", -5), ("1.0", 10_000)] {
            assert_eq!(Credits::parse_decimal(s), Some(Credits::from_units(units)), "{s}");
        }
        for s in ["", "-", ".5", "1.", "1.23456", "1e3", "abc", "1,5", "+1", "99999999999999999999"] {
            assert_eq!(s.parse::<Credits>(), Err(InvalidCredits), "{s}");
        }
        for units in [0, 1, 71_982, 270_000, -123_456, 1_079_730] {
            let c = Credits::from_units(units);
            assert_eq!(c.to_string().parse::<Credits>(), Ok(c));
        }
    }

    #[test]
    fn json_amounts_are_read_from_their_decimal_text() {
        use serde_json::json;
        for (v, units) in [
            (json!(27), Some(270_000)),
            (json!(7.1982), Some(71_982)),
            (json!(0.1), Some(1_000)),
            (json!(-0.5), Some(-5_000)),
            (json!(1e3), Some(10_000_000)),
            (json!("7.1982"), Some(71_982)),
            (json!(" 3 "), Some(30_000)),
            (json!(0.00001), None),
            (json!(1.23456), None),
            (json!("1e3"), None),
            (json!(true), None),
            (json!(null), None),
            (json!([1]), None),
        ] {
            assert_eq!(Credits::parse_json(&v), units.map(Credits::from_units), "{v}");
        }
    }

    #[test]
    fn display_helpers_convert_at_72_credits_per_dollar() {
        assert_eq!(Credits::from_units(720_000).to_usd_f64(), 1.0);
        assert_eq!(Credits::from_units(270_000).to_credits_f64(), 27.0);
        assert_eq!(serde_json::to_string(&Credits::from_units(270_000)).ok().as_deref(), Some("270000"));
    }
}
