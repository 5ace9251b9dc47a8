//! What a model is fitted with: seasons, grids, missing-data rules, interval level.

use chrono::TimeDelta;

/// The largest `anomaly_persistence` accepted.
const MAX_ANOMALY_PERSISTENCE: usize = 1000;

/// How series are fitted, forecast and scored. [`Default`] suits a 15-second fast loop.
///
/// Every duration is a [`TimeDelta`]; [`ForecastSettings::validate`] lists every problem.
#[derive(Debug, Clone, PartialEq)]
pub struct ForecastSettings {
    /// Width of the buckets the seasonal part is fitted on (default 15 min). Each season must
    /// be a whole number of buckets.
    pub fit_step: TimeDelta,
    /// Seasons learned from the history (default 1 day and 7 days). The first one is also the
    /// season of the seasonal-naive baseline in [`crate::backtest`].
    pub seasons: Vec<TimeDelta>,
    /// History a fit needs, from the first observed sample to the end (default 14 days); at
    /// least twice the longest season.
    pub min_history: TimeDelta,
    /// History a fit uses at most: older samples are ignored (default 28 days).
    pub max_history: TimeDelta,
    /// Largest fraction of missing samples in the history a fit accepts (default 0.2).
    pub max_missing: f64,
    /// Longest run of missing samples in the history a fit accepts (default 2 h); shorter
    /// runs are interpolated for the seasonal fit.
    pub max_gap: TimeDelta,
    /// Coverage of the prediction interval, in (0, 1) (default 0.8: p10..p90).
    pub interval_level: f64,
    /// How far back from the origin a forecast reads the recent samples to find the level
    /// now (default 1 h).
    pub recent_window: TimeDelta,
    /// How old the newest recent sample may be at the origin (default 5 min): older, and
    /// the series has no present level to forecast from.
    pub max_staleness: TimeDelta,
    /// The recent samples whose median is the level an observation is judged against in
    /// [`crate::SeasonalModel::detect`] (default 15 min). An anomaly lasting less than half
    /// of it does not pull the level it is judged against.
    pub anomaly_window: TimeDelta,
    /// How many of the newest samples an anomaly must hold in (default 3): an observation is
    /// anomalous only when it and a strict majority of the newest `anomaly_persistence`
    /// samples (itself included) are out of the band on the same side, so a lone excursion
    /// of noise is not an anomaly and one that lasts two samples of three is. 1 scores each
    /// observation on its own; at most 1,000 (more samples than a 15-minute window holds
    /// at one a second), which bounds the work of a score. See
    /// [`crate::SeasonalModel::detect`].
    pub anomaly_persistence: usize,
    /// The series cannot go below zero (request rates, latencies): points and lower bounds
    /// are clamped at 0 (default false).
    pub non_negative: bool,
    /// Longest horizon a forecast may be asked for; intervals are calibrated up to it
    /// (default 60 min).
    pub max_horizon: TimeDelta,
}

impl Default for ForecastSettings {
    fn default() -> Self {
        Self {
            fit_step: TimeDelta::minutes(15),
            seasons: vec![TimeDelta::days(1), TimeDelta::days(7)],
            min_history: TimeDelta::days(14),
            max_history: TimeDelta::days(28),
            max_missing: 0.2,
            max_gap: TimeDelta::hours(2),
            interval_level: 0.8,
            recent_window: TimeDelta::hours(1),
            max_staleness: TimeDelta::minutes(5),
            anomaly_window: TimeDelta::minutes(15),
            anomaly_persistence: 3,
            non_negative: false,
            max_horizon: TimeDelta::minutes(60),
        }
    }
}

/// One thing wrong with a [`ForecastSettings`].
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SettingsProblem {
    /// A duration that must be positive is not (or is under a millisecond).
    #[error("{field}: must be at least 1 ms, got {value}")]
    NotPositive {
        /// The field's name.
        field: &'static str,
        /// Its value.
        value: TimeDelta,
    },
    /// A season is not a whole number of fit buckets, or has fewer than two of them.
    #[error(
        "seasons[{index}]: {season} must be a multiple of fit_step ({fit_step}) and at least two of them"
    )]
    SeasonNotOnGrid {
        /// Position in `seasons`.
        index: usize,
        /// The season.
        season: TimeDelta,
        /// The fit step.
        fit_step: TimeDelta,
    },
    /// No season at all: the model is a seasonal one.
    #[error("seasons: at least one season is needed")]
    NoSeason,
    /// `min_history` cannot hold two cycles of the longest season.
    #[error("min_history: {min_history} is less than two cycles of the longest season ({season})")]
    HistoryShorterThanTwoSeasons {
        /// The minimum history.
        min_history: TimeDelta,
        /// The longest season.
        season: TimeDelta,
    },
    /// `max_history` is below `min_history`.
    #[error("max_history: {max_history} is less than min_history ({min_history})")]
    MaxBelowMin {
        /// The maximum history.
        max_history: TimeDelta,
        /// The minimum history.
        min_history: TimeDelta,
    },
    /// A fraction or level outside its range.
    #[error("{field}: must be in {range}, got {value}")]
    OutOfRange {
        /// The field's name.
        field: &'static str,
        /// The accepted range, for the message.
        range: &'static str,
        /// Its value.
        value: f64,
    },
}

/// Every problem found in a [`ForecastSettings`].
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("invalid forecast settings: {}", list(.problems))]
pub struct SettingsError {
    /// The problems, in field order.
    pub problems: Vec<SettingsProblem>,
}

fn list(problems: &[SettingsProblem]) -> String {
    problems
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

impl ForecastSettings {
    /// Checks every field and returns all the problems at once.
    ///
    /// # Errors
    /// A [`SettingsError`] listing each problem.
    pub fn validate(&self) -> Result<(), SettingsError> {
        let mut problems = Vec::new();
        let durations = [
            ("fit_step", self.fit_step),
            ("min_history", self.min_history),
            ("max_history", self.max_history),
            ("max_gap", self.max_gap),
            ("recent_window", self.recent_window),
            ("max_staleness", self.max_staleness),
            ("anomaly_window", self.anomaly_window),
            ("max_horizon", self.max_horizon),
        ];
        for (field, value) in durations {
            if value.num_milliseconds() < 1 {
                problems.push(SettingsProblem::NotPositive { field, value });
            }
        }
        let fit_ms = self.fit_step.num_milliseconds();
        if self.seasons.is_empty() {
            problems.push(SettingsProblem::NoSeason);
        }
        for (index, season) in self.seasons.iter().enumerate() {
            let ms = season.num_milliseconds();
            if fit_ms >= 1 && (ms < 2 * fit_ms || ms % fit_ms != 0) {
                problems.push(SettingsProblem::SeasonNotOnGrid {
                    index,
                    season: *season,
                    fit_step: self.fit_step,
                });
            }
        }
        if let Some(longest) = self.seasons.iter().max()
            && longest
                .checked_mul(2)
                .is_none_or(|two| self.min_history < two)
        {
            problems.push(SettingsProblem::HistoryShorterThanTwoSeasons {
                min_history: self.min_history,
                season: *longest,
            });
        }
        if self.max_history < self.min_history {
            problems.push(SettingsProblem::MaxBelowMin {
                max_history: self.max_history,
                min_history: self.min_history,
            });
        }
        if !(self.max_missing >= 0.0 && self.max_missing < 1.0) {
            problems.push(SettingsProblem::OutOfRange {
                field: "max_missing",
                range: "[0, 1)",
                value: self.max_missing,
            });
        }
        if !(self.interval_level > 0.0 && self.interval_level < 1.0) {
            problems.push(SettingsProblem::OutOfRange {
                field: "interval_level",
                range: "(0, 1)",
                value: self.interval_level,
            });
        }
        if !(1..=MAX_ANOMALY_PERSISTENCE).contains(&self.anomaly_persistence) {
            problems.push(SettingsProblem::OutOfRange {
                field: "anomaly_persistence",
                range: "[1, 1000]",
                value: self.anomaly_persistence as f64,
            });
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(SettingsError { problems })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        assert_eq!(ForecastSettings::default().validate(), Ok(()));
    }

    #[test]
    fn an_unbounded_persistence_is_refused() {
        let settings = ForecastSettings {
            anomaly_persistence: usize::MAX,
            ..ForecastSettings::default()
        };
        assert!(settings.validate().is_err());
    }

    #[test]
    fn every_problem_is_reported() {
        let settings = ForecastSettings {
            fit_step: TimeDelta::minutes(7),
            min_history: TimeDelta::days(3),
            interval_level: 1.5,
            max_gap: TimeDelta::zero(),
            anomaly_persistence: 0,
            ..ForecastSettings::default()
        };
        let Err(err) = settings.validate() else {
            panic!("invalid settings passed");
        };
        assert!(err.problems.contains(&SettingsProblem::NotPositive {
            field: "max_gap",
            value: TimeDelta::zero()
        }));
        assert!(
            err.problems
                .iter()
                .any(|p| matches!(p, SettingsProblem::SeasonNotOnGrid { .. }))
        );
        assert!(
            err.problems
                .iter()
                .any(|p| matches!(p, SettingsProblem::HistoryShorterThanTwoSeasons { .. }))
        );
        for field in ["interval_level", "anomaly_persistence"] {
            assert!(
                err.problems.iter().any(
                    |p| matches!(p, SettingsProblem::OutOfRange { field: f, .. } if *f == field)
                ),
                "{field} not reported"
            );
        }
    }
}
