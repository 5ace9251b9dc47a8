//! Seasonal forecasts with prediction intervals, anomaly scores and backtests, for the
//! predictive fast loop.
//!
//! The loop refits a [`SeasonalModel`] per series on a schedule (hourly, off the tick's
//! thread: [`refit_all`]) and, every tick, asks it for forecasts ([`SeasonalModel::predict`])
//! and anomaly scores ([`SeasonalModel::detect`]) given the recent samples, which is cheap
//! (a pass over the recent window). It tracks each series' forecast errors as the targets
//! arrive ([`ErrorTracker`]). `setpoint forecast` replays the same code over past origins
//! ([`backtest`]) and compares it with [`persistence`] and [`seasonal_naive`].
//!
//! # The model
//!
//! Forecast = level now + season at the target time. The seasons (1 day and 7 days by
//! default) are learned by MSTL (augurs) on bucket means of the history (15-minute buckets by
//! default); the level is an exponentially weighted mean of the recent deseasonalised
//! samples, weighted as an ETS(A,N,N) model (augurs) fitted on the history finds best. At
//! 15 minutes the level carries most of the signal, from about an hour out the season does;
//! the rule uses both. There is no trend term: over a horizon of an hour a trend is
//! negligible next to the level, which is re-read every tick. The prediction interval is the
//! empirical quantiles of this same rule's in-sample errors per horizon (see
//! [`SeasonalModel`]). Fitting is deterministic: the same history gives the same model.
//!
//! Seasons are additive: a pattern whose amplitude grows with the level is fitted at the
//! amplitude of the history's level. A change sharper than the fit bucket (a step at an
//! instant) is learned as a ramp over about a bucket, and the profile of a season longer
//! than the shortest is smoothed over a sixth of the shortest (4 h).
//!
//! # Anomalies
//!
//! [`SeasonalModel::detect`] judges an observation at `t` against *expected* = the median of
//! the deseasonalised samples in `[t - anomaly_window, t)` (15 min) + the season at `t`
//! (+ the median in-sample residual). Its *scale* is measured at fit time by running this
//! same rule over up to 2,400 origins of the history, on the history's own samples — the
//! resolution the recent samples are scored at, so the history should be sampled as they
//! are — and is the product of two parts:
//!
//! - the **hour's spread**: 1.4826 × the MAD of the residuals at that hour of the shortest
//!   season (24 bins, each pooled with its neighbours, at least a tenth of the whole
//!   history's), linear between the bins' centres, because noise grows with the load: one
//!   scale for the whole day flags every peak and sleeps through the night;
//! - the **tail factor**: how much further out the 99th percentile of the in-sample scores
//!   lies than it would for independent normal noise of that spread (never below 1),
//!   because alarms live in the tail, which is heavier than the MAD implies when the noise
//!   is heavy-tailed or lingers over several samples (a `rate()` over a minute read every
//!   15 s).
//!
//! A sample's deviation is `(observed - expected) / scale`. The **score** of the observation
//! is the largest `s` such that it and a strict majority of the newest `anomaly_persistence`
//! samples (3: itself and the two before it) lie at least `s` out on the same side; it is
//! *anomalous* when the score reaches the threshold ([`DEFAULT_ANOMALY_THRESHOLD`] = 4). So
//! a lone sample beyond the band is not an anomaly — at 5,760 samples a day, even normal
//! noise puts one beyond 4 sigmas every third day, heavy-tailed noise several a day — and a
//! change that holds is flagged from its second sample. For independent normal noise the
//! scale is its standard deviation and a false alarm at a threshold of 4 comes about once
//! in 250 million samples.
//!
//! # Missing data and bad input
//!
//! - A non-finite value (`NaN`, `±inf`) is a missing sample.
//! - **Fit** uses the history's last `max_history` (28 days). Less than `min_history` (14
//!   days, at least two cycles of the longest season), or no sample in its first `max_gap`
//!   (2 h), is [`ForecastError::TooShort`]. More than `max_missing` (20 %) of its samples
//!   missing, or a run of missing samples longer than `max_gap` (a missing tail counts), is
//!   [`ForecastError::TooGappy`]. Otherwise fit buckets without a sample are interpolated
//!   linearly (the nearest bucket's value at the ends) for the seasonal fit, and missing
//!   samples are skipped by the level.
//! - **Predict and detect** read the recent samples before the origin: if the newest finite
//!   one is older than `max_staleness` (5 min), [`ForecastError::NoRecentData`].
//! - A horizon beyond `max_horizon` (60 min) is [`ForecastError::HorizonTooLong`].
//! - A decomposition or level fit that fails (or panics) is [`ForecastError::Fit`] for that
//!   series only; nothing in this crate panics on any input.
//! - Values may be negative. With `non_negative` set, points, interval bounds and expected
//!   values are clamped at 0.
//!
//! # Time
//!
//! A sample belongs to the instant it is stamped with. An *origin* is the instant a forecast
//! is made: samples stamped at or after it are not used, so `series.end()` (one step after
//! the last sample) forecasts from all of a series. The horizon counts from the origin: a
//! horizon of 0 is the sample at the origin. Nothing here reads the clock.

mod backtest;
mod baseline;
mod error;
mod model;
mod refit;
mod series;
mod settings;
mod stats;
pub mod synthetic;
mod tracker;

pub use backtest::{Backtest, BacktestPlan, BacktestRow, HorizonSummary, backtest};
pub use baseline::{persistence, seasonal_naive};
pub use error::{FitStage, ForecastError, PlanProblem};
pub use model::{Anomaly, Forecast, SeasonalModel};
pub use refit::refit_all;
pub use series::Series;
pub use settings::{ForecastSettings, SettingsError, SettingsProblem};
pub use tracker::{ErrorMetrics, ErrorTracker};

/// The anomaly threshold the fast loop starts from, in robust standard deviations of one
/// sample's residual at that time of day (see the crate docs' *Anomalies*): with the
/// persistence rule, rare enough on noise that a fleet's false alarms stay well under its
/// anomalies at a 15 s tick, low enough to flag a change of 30 % of the level on series
/// with a few percent of noise.
pub const DEFAULT_ANOMALY_THRESHOLD: f64 = 4.0;

/// `Result` with this crate's error.
pub type Result<T, E = ForecastError> = std::result::Result<T, E>;
