//! The errors of fitting, forecasting and scoring one series.

use chrono::{DateTime, TimeDelta, Utc};

use crate::settings::SettingsError;

/// Why a series has no model, forecast or score. Each error concerns one series only.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ForecastError {
    /// The settings are not usable.
    #[error(transparent)]
    Settings(#[from] SettingsError),
    /// A series' step is under a millisecond.
    #[error("series step must be at least 1 ms, got {step}")]
    InvalidStep {
        /// The step.
        step: TimeDelta,
    },
    /// No points at all were given.
    #[error("no data points")]
    NoData,
    /// The history does not reach back far enough to learn the seasons.
    #[error("history too short to fit: {have} of observed history, {need} needed")]
    TooShort {
        /// From the first observed sample to the end of the history.
        have: TimeDelta,
        /// What the settings require.
        need: TimeDelta,
    },
    /// The history misses too many samples, or misses them for too long.
    #[error(
        "history too gappy to fit: {:.1} % missing (at most {:.1} %), longest gap {longest_gap} (at most {max_gap})",
        missing_fraction * 100.0,
        max_missing * 100.0
    )]
    TooGappy {
        /// Fraction of missing samples in the history used.
        missing_fraction: f64,
        /// The accepted fraction.
        max_missing: f64,
        /// The longest run of missing samples.
        longest_gap: TimeDelta,
        /// The accepted run.
        max_gap: TimeDelta,
    },
    /// No recent sample close enough to the origin to know the level now.
    #[error("no recent data: last sample before {origin} is {}, more than {max_staleness} old", last_seen.map_or_else(|| "absent".to_owned(), |t| t.to_rfc3339()))]
    NoRecentData {
        /// The origin of the forecast or detection.
        origin: DateTime<Utc>,
        /// Time of the newest finite sample before it, if any.
        last_seen: Option<DateTime<Utc>>,
        /// The accepted age.
        max_staleness: TimeDelta,
    },
    /// A horizon past the longest one the intervals are calibrated for.
    #[error("horizon {horizon} is longer than the maximum {max}")]
    HorizonTooLong {
        /// The horizon asked for.
        horizon: TimeDelta,
        /// The settings' `max_horizon`.
        max: TimeDelta,
    },
    /// A negative horizon.
    #[error("horizon {horizon} is negative")]
    NegativeHorizon {
        /// The horizon asked for.
        horizon: TimeDelta,
    },
    /// The observation to score is not a finite number.
    #[error("observation {value} is not a finite number")]
    NonFiniteObservation {
        /// The value.
        value: f64,
    },
    /// A backtest plan that cannot run.
    #[error("invalid backtest plan: {problem}")]
    InvalidPlan {
        /// What is wrong.
        problem: PlanProblem,
    },
    /// A forecast or score came out as a non-finite number (values near `f64`'s limits).
    #[error("the {what} is not a finite number")]
    NonFinite {
        /// What came out non-finite.
        what: &'static str,
    },
    /// The seasonal or level model could not be fitted to this series.
    #[error("fitting the {stage} failed: {detail}")]
    Fit {
        /// Which part of the fit failed.
        stage: FitStage,
        /// The fitting library's own message.
        detail: String,
    },
}

/// The part of a fit that failed, in [`ForecastError::Fit`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FitStage {
    /// The MSTL decomposition into seasons.
    Seasonal,
    /// The ETS level model of the deseasonalised series.
    Level,
    /// Calibrating the intervals and the anomaly scale on the history's own errors.
    Calibration,
    /// The fit panicked: a bug, caught so that the other series are fitted.
    Internal,
}

impl std::fmt::Display for FitStage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Seasonal => "seasonal decomposition (MSTL)",
            Self::Level => "level model (ETS)",
            Self::Calibration => "intervals and anomaly scale",
            Self::Internal => "model (internal error)",
        })
    }
}

/// What is wrong with a [`crate::BacktestPlan`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PlanProblem {
    /// `every` or `refit_every` is under a millisecond.
    #[error("every and refit_every must be positive")]
    NonPositiveInterval,
    /// `to` is not after `from`.
    #[error("to must be after from")]
    EmptyRange,
    /// No horizon to forecast.
    #[error("no horizons")]
    NoHorizons,
}
