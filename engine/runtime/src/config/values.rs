//! Values written the operator's way and checked when read: loop names, cron schedules,
//! durations.

use super::*;

/// A loop name: letters, digits, `-`, `_` and `.`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct LoopName(pub String);

impl LoopName {
    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for LoopName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for LoopName {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let name = String::deserialize(deserializer)?;
        let valid = !name.is_empty()
            && name.len() <= 64
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
        if valid {
            Ok(LoopName(name))
        } else {
            Err(serde::de::Error::custom(format!(
                "invalid loop name {name:?}: use 1 to 64 letters, digits, '-', '_' or '.'"
            )))
        }
    }
}

/// A cron schedule, checked when read.
#[derive(Debug, Clone)]
pub struct Schedule {
    pattern: String,
    cron: Option<croner::Cron>,
}

impl Schedule {
    /// The weekly default, Monday 06:00 UTC.
    pub fn weekly() -> Self {
        // A constant pattern; parsing it cannot fail, but stay panic-free anyway.
        Schedule::from_str("0 6 * * Mon").unwrap_or(Schedule {
            pattern: String::new(),
            cron: None,
        })
    }
}

impl PartialEq for Schedule {
    fn eq(&self, other: &Self) -> bool {
        self.pattern == other.pattern
    }
}

impl Schedule {
    /// The pattern as written.
    pub fn pattern(&self) -> &str {
        &self.pattern
    }

    /// The first time strictly after `after` that the schedule fires.
    pub fn next_after(
        &self,
        after: chrono::DateTime<chrono::Utc>,
    ) -> Option<chrono::DateTime<chrono::Utc>> {
        use chrono::Timelike;
        let after = after.with_nanosecond(0).unwrap_or(after);
        self.cron.as_ref()?.find_next_occurrence(&after, false).ok()
    }
}

impl Schedule {
    /// The start of the schedule period `at` falls in: the latest time at or before `at` that
    /// the schedule fires. A cycle at any moment of a period counts for that period.
    pub fn period_of(
        &self,
        at: chrono::DateTime<chrono::Utc>,
    ) -> Option<chrono::DateTime<chrono::Utc>> {
        use chrono::Timelike;
        let at = at.with_nanosecond(0).unwrap_or(at);
        self.cron.as_ref()?.find_previous_occurrence(&at, true).ok()
    }
}

impl FromStr for Schedule {
    type Err = String;

    fn from_str(pattern: &str) -> Result<Self, Self::Err> {
        let parser = croner::parser::CronParser::builder()
            .seconds(croner::parser::Seconds::Optional)
            .build();
        match parser.parse(pattern) {
            Ok(cron) => Ok(Schedule {
                pattern: pattern.to_string(),
                cron: Some(cron),
            }),
            Err(e) => Err(format!("invalid cron schedule {pattern:?}: {e}")),
        }
    }
}

impl Serialize for Schedule {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.pattern)
    }
}

impl<'de> Deserialize<'de> for Schedule {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let pattern = String::deserialize(deserializer)?;
        Schedule::from_str(&pattern).map_err(serde::de::Error::custom)
    }
}

/// A duration written the human way (`5m`, `300s`, `1h`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HumanDuration(pub Duration);

impl HumanDuration {
    /// The duration as a span of the clock's time; one too long for it (years of years) is
    /// the longest span, so a limit written that way never wraps round to a short one.
    pub fn as_delta(self) -> chrono::TimeDelta {
        chrono::TimeDelta::from_std(self.0).unwrap_or(chrono::TimeDelta::MAX)
    }
}

impl Serialize for HumanDuration {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&humantime::format_duration(self.0).to_string())
    }
}

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        humantime::parse_duration(&text)
            .map(HumanDuration)
            .map_err(|e| serde::de::Error::custom(format!("invalid duration {text:?}: {e}")))
    }
}
