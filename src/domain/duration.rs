//! Access durations, written as ISO 8601 durations (`PT3H`, `PT30M`, `P1D`) as Azure's JIT API
//! writes them.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// A whole number of seconds. Years and months are refused: their length depends on the
/// calendar, and a grant must end at an instant everybody agrees on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct AccessDuration(u32);

impl AccessDuration {
    pub const fn from_secs(secs: u32) -> Self {
        AccessDuration(secs)
    }
    pub fn as_secs(self) -> u32 {
        self.0
    }
    pub fn as_chrono(self) -> chrono::Duration {
        chrono::Duration::seconds(i64::from(self.0))
    }
}

impl FromStr for AccessDuration {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("{s:?} is not an ISO 8601 duration such as PT3H, PT30M or PT1H30M");
        // The parser takes "P" and "PT" as zero; a duration with no number in it is a typo.
        // It is also lenient about signs; durations here are never negative.
        let charset_ok = s
            .bytes()
            .all(|b| b.is_ascii_digit() || b"PTYMWDHS.,".contains(&b));
        if !charset_ok || !s.bytes().any(|b| b.is_ascii_digit()) || s.ends_with('T') {
            return Err(bad());
        }
        let parsed = iso8601::duration(s).map_err(|_| bad())?;
        let secs: u64 = match parsed {
            iso8601::Duration::Weeks(w) => u64::from(w) * 7 * 86_400,
            iso8601::Duration::YMDHMS {
                year,
                month,
                day,
                hour,
                minute,
                second,
                millisecond,
            } => {
                if year != 0 || month != 0 {
                    return Err(format!(
                        "{s:?} uses years or months, whose length varies: use days, hours, minutes or seconds"
                    ));
                }
                if millisecond != 0 {
                    return Err(format!("{s:?} has fractional seconds: use whole seconds"));
                }
                u64::from(day) * 86_400
                    + u64::from(hour) * 3_600
                    + u64::from(minute) * 60
                    + u64::from(second)
            }
        };
        u32::try_from(secs).map(AccessDuration).map_err(|_| bad())
    }
}

impl TryFrom<String> for AccessDuration {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        s.parse()
    }
}

impl From<AccessDuration> for String {
    fn from(d: AccessDuration) -> String {
        d.to_string()
    }
}

/// Prints the shortest time form: `PT3H`, `PT1H30M`, `PT90S` stays `PT1M30S`, zero is `PT0S`.
impl fmt::Display for AccessDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (h, m, s) = (self.0 / 3600, self.0 / 60 % 60, self.0 % 60);
        f.write_str("PT")?;
        if h > 0 {
            write!(f, "{h}H")?;
        }
        if m > 0 {
            write!(f, "{m}M")?;
        }
        if s > 0 || self.0 == 0 {
            write!(f, "{s}S")?;
        }
        Ok(())
    }
}

/// The range a policy's or request's duration must fall in: from the deployment's
/// `JITGATE_MIN_ACCESS_DURATION` to Azure's ceiling of 24 hours.
#[derive(Debug, Clone, Copy)]
pub struct DurationLimits {
    pub min: AccessDuration,
    pub max: AccessDuration,
}

impl DurationLimits {
    pub const MAX: AccessDuration = AccessDuration::from_secs(24 * 3600);

    pub fn with_min(min: AccessDuration) -> Self {
        DurationLimits {
            min,
            max: Self::MAX,
        }
    }

    pub fn check(&self, d: AccessDuration) -> Result<AccessDuration, String> {
        if d < self.min || d > self.max {
            return Err(format!(
                "{d} is outside the allowed range {} to {}",
                self.min, self.max
            ));
        }
        Ok(d)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: &str) -> u32 {
        s.parse::<AccessDuration>().unwrap().as_secs()
    }

    #[test]
    fn parses_the_forms_azure_uses() {
        assert_eq!(secs("PT3H"), 10_800);
        assert_eq!(secs("PT30M"), 1_800);
        assert_eq!(secs("PT1H30M"), 5_400);
        assert_eq!(secs("P1D"), 86_400);
        assert_eq!(secs("PT2S"), 2);
    }

    #[test]
    fn refuses_calendar_units_fractions_and_garbage() {
        for bad in ["P1M", "P1Y", "PT1.5S", "3h", "", "PT", "P", "T1H", "PT-1H"] {
            assert!(
                bad.parse::<AccessDuration>().is_err(),
                "{bad:?} should be refused"
            );
        }
    }

    #[test]
    fn prints_the_shortest_form() {
        for (input, out) in [
            ("PT180M", "PT3H"),
            ("PT90M", "PT1H30M"),
            ("P1D", "PT24H"),
            ("PT0S", "PT0S"),
            ("PT61S", "PT1M1S"),
        ] {
            assert_eq!(input.parse::<AccessDuration>().unwrap().to_string(), out);
        }
    }

    #[test]
    fn limits_bound_both_ends() {
        let limits = DurationLimits::with_min("PT5M".parse().unwrap());
        assert!(limits.check("PT4M".parse().unwrap()).is_err());
        assert!(limits.check("PT5M".parse().unwrap()).is_ok());
        assert!(limits.check("PT24H".parse().unwrap()).is_ok());
        assert!(limits.check("PT24H1S".parse().unwrap()).is_err());
    }
}
