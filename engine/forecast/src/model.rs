//! The seasonal model: fitted on the history, then asked for forecasts and anomaly scores
//! with the recent samples.

use std::panic::{AssertUnwindSafe, catch_unwind};

use augurs_core::{Fit, Predict};
use augurs_ets::model::{ErrorComponent, ModelType, SeasonalComponent, TrendComponent, Unfit};
use augurs_mstl::MSTLModel;
use chrono::{DateTime, TimeDelta, Utc};

use crate::error::{FitStage, ForecastError};
use crate::series::{Series, checked_step, delta_ms, epoch_ms, shift, steps};
use crate::settings::ForecastSettings;
use crate::stats::{binomial_at_least, median_in_place, normal_upper_tail, quantile_in_place};

/// The ETS level model is fitted on at most this many of the newest samples: enough for a
/// stable smoothing weight, and its fit's cost grows faster than linearly with them.
const ETS_SAMPLES: usize = 1024;
/// In-sample origins the interval quantiles are measured on, at most.
const INTERVAL_ORIGINS: usize = 3000;
/// In-sample origins the anomaly scale is measured on, at most (each costs a median of the
/// anomaly window, most of the fit's added cost): about 100 per bin of the scale profile,
/// whose robust spread is then known to within about 7 % (a MAD of the 300 residuals of
/// three neighbouring bins). Twice as many changed no detection measured and cost 2.5 ms
/// more per fit of two weeks at 15 s.
const ANOMALY_ORIGINS: usize = 2400;
/// Bins of the shortest season (hours of a day) the anomaly scale is measured per: noise
/// grows with the load (a request rate's noise is a share of it, a latency's grows faster
/// still), so one scale for the whole day is too narrow at the peak and too wide at night.
const SCALE_BINS: usize = 24;
/// A bin's scale is measured on the residuals of its neighbours too (3 h of a day): it
/// triples what each is measured on and smooths the profile.
const SCALE_SPREAD: usize = 1;
/// Fewer residuals than this in a bin and its neighbours (a gappy history) and the bin takes
/// the whole history's scale.
const MIN_BIN_RESIDUALS: usize = 30;
/// A bin's scale is at least this share of the whole history's: a time of day at which the
/// series sat still (a night at zero) must not make its first blip an anomaly.
const SCALE_FLOOR_SHARE: f64 = 0.1;
/// Points of the horizon grid the interval quantiles are kept at (denser near zero, where
/// the error grows fastest); horizons in between are interpolated.
const HORIZON_GRID: usize = 16;
/// Profiles of seasons longer than the shortest are smoothed over this fraction of the
/// shortest one (see `seasonal_profiles`).
const LONG_SEASON_SMOOTHING: usize = 6;
/// 1.4826 × MAD estimates the standard deviation of normal residuals.
const MAD_TO_SIGMA: f64 = 1.4826;
/// The quantile of the in-sample anomaly scores that measures how heavy their tail is: far
/// enough out to see the tail, near enough for the 2,400 origins to put about 24 scores
/// beyond it, and for anomalies in the history to spoil it only if they cover 1 % of it.
const TAIL_QUANTILE: f64 = 0.99;

/// A forecast of one series at one instant, with its prediction interval.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Forecast {
    /// When it was made: samples stamped at or after it were not used.
    pub origin: DateTime<Utc>,
    /// The instant forecast (`origin + horizon`).
    pub at: DateTime<Utc>,
    /// The point forecast.
    pub point: f64,
    /// Lower bound of the prediction interval.
    pub lower: f64,
    /// Upper bound of the prediction interval.
    pub upper: f64,
    /// Probability the interval is meant to cover (the settings' `interval_level`).
    pub level: f64,
}

/// The score of one observation against what the model expected at its time.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Anomaly {
    /// Time of the observation.
    pub at: DateTime<Utc>,
    /// The observed value.
    pub observed: f64,
    /// The value expected at `at`: recent level plus the learned season.
    pub expected: f64,
    /// Lower end of the band within which an observation is not anomalous.
    pub lower: f64,
    /// Upper end of that band.
    pub upper: f64,
    /// How far out the observation is and has held, in units of the model's anomaly scale
    /// at `at` ([`SeasonalModel::anomaly_scale`], robust standard deviations): the largest
    /// `s` such that the observation and a strict majority of the newest
    /// [`anomaly_persistence`](ForecastSettings::anomaly_persistence) samples lie at least
    /// `s` from their expected value, on the observation's side (0 when they do not hold).
    /// With a persistence of 1 it is `sample_score`.
    pub score: f64,
    /// `|observed - expected|` in the same units: the observation on its own, held or not.
    pub sample_score: f64,
    /// Whether `score >= threshold`; then the observation is outside `[lower, upper]`.
    pub anomalous: bool,
}

/// A seasonal forecaster fitted on one series' history.
///
/// The forecast rule is "level now + season at the target time": the seasons (daily and
/// weekly by default) are learned from the history by MSTL on a coarse grid, and the level
/// is an exponentially weighted mean of the recent deseasonalised samples, with the
/// weight an ETS(A,N,N) model finds on the history. So the forecast re-levels on the present
/// at every call, and from about an hour out the seasonal change carries it.
///
/// The prediction interval of horizon `h` is the point forecast plus the empirical
/// quantiles of this same rule's errors at `h` over the history, measured at fit time. They
/// are used rather than ETS's analytic intervals because the rule is not the ETS model's
/// own forecast (the season comes from MSTL, the level from the recent window), the errors
/// of real series are skewed and heavy-tailed, and the quantiles cost nothing at predict.
///
/// Cheap to clone, `Send + Sync`: fit it off the tick's thread and share it.
#[derive(Debug, Clone, PartialEq)]
pub struct SeasonalModel {
    settings: ForecastSettings,
    fitted_until: DateTime<Utc>,
    /// The history's step, which the smoothing weight and the quantiles are measured in.
    step_ms: i64,
    fit_step_ms: i64,
    /// Per season, its offset for each bucket of the cycle, indexed by the bucket's number
    /// since the epoch modulo the period.
    profiles: Vec<Vec<f64>>,
    /// Exponential smoothing weight of one sample of the history's step.
    alpha: f64,
    /// Horizons of the interval grid, in samples of the history's step.
    grid: Vec<usize>,
    /// Error quantiles added to the point forecast at each grid horizon.
    lower: Vec<f64>,
    upper: Vec<f64>,
    /// Median of the anomaly rule's in-sample residuals.
    anomaly_center: f64,
    /// The anomaly scale per bin of the shortest season (the bins' centres are interpolated
    /// between), indexed by the bin's position in the season: the robust spread of the
    /// residuals there times the tail factor.
    anomaly_scales: Vec<f64>,
    /// The shortest season, which `anomaly_scales` spans.
    scale_period_ms: i64,
}

impl SeasonalModel {
    /// Fits the model on `history` (every sample of it; the caller slices the past it wants
    /// the model to see).
    ///
    /// # Errors
    /// [`ForecastError::Settings`] for invalid settings, [`ForecastError::TooShort`] and
    /// [`ForecastError::TooGappy`] by the rules in the crate docs, [`ForecastError::Fit`]
    /// when the decomposition or the level model fails on this series.
    pub fn fit(history: &Series, settings: &ForecastSettings) -> Result<Self, ForecastError> {
        settings.validate()?;
        let step_ms = checked_step(history.step)?;
        let fit_step_ms = delta_ms(settings.fit_step);

        let end = history.end();
        let window_start = history.count_before(shift(end, -settings.max_history));
        let values = &history.values[window_start..];
        let start = history.time_at(window_start);
        let Some(first_observed) = values.iter().position(|v| v.is_finite()) else {
            return Err(ForecastError::TooShort {
                have: TimeDelta::zero(),
                need: settings.min_history,
            });
        };
        let leading_gap = steps(history.step, first_observed);
        if end - start < settings.min_history || leading_gap > settings.max_gap {
            return Err(ForecastError::TooShort {
                have: end - history.time_at(window_start + first_observed),
                need: settings.min_history,
            });
        }
        check_gaps(values, history.step, settings)?;

        let start_ms = epoch_ms(start);
        let times: Vec<i64> = (0..values.len())
            .map(|i| start_ms + i as i64 * step_ms)
            .collect();
        let (first_bucket, buckets) = bucket_means(values, &times, fit_step_ms);
        let mut periods: Vec<usize> = settings
            .seasons
            .iter()
            .map(|s| (delta_ms(*s) / fit_step_ms) as usize)
            .collect();
        periods.sort_unstable();
        let longest = periods.last().copied().unwrap_or(0);
        if buckets.len() < 2 * longest {
            return Err(ForecastError::TooShort {
                have: TimeDelta::milliseconds(buckets.len() as i64 * fit_step_ms),
                need: TimeDelta::milliseconds(2 * longest as i64 * fit_step_ms),
            });
        }
        let profiles = seasonal_profiles(&buckets, first_bucket, &periods)?;

        let mut model = Self {
            settings: settings.clone(),
            fitted_until: end,
            step_ms,
            fit_step_ms,
            profiles,
            alpha: 1.0,
            grid: Vec::new(),
            lower: Vec::new(),
            upper: Vec::new(),
            anomaly_center: 0.0,
            anomaly_scales: Vec::new(),
            scale_period_ms: periods
                .first()
                .map_or(fit_step_ms, |p| *p as i64 * fit_step_ms),
        };
        let seasonal = model.seasonal_run(start_ms, step_ms, values.len());
        let deseasonalised: Vec<f64> = values.iter().zip(&seasonal).map(|(v, s)| v - s).collect();
        model.alpha = level_weight(&deseasonalised)?;
        model.calibrate_intervals(values, &seasonal, &deseasonalised)?;
        model.calibrate_anomalies(values, &seasonal, &deseasonalised, start_ms)?;
        Ok(model)
    }

    /// Forecasts the value at `origin + horizon` from the samples of `recent` stamped in
    /// `[origin - recent_window, origin)` (only those are read: `recent` may be the whole
    /// series).
    ///
    /// `recent` should have the history's step: the smoothing weight is converted to
    /// another step by equal decay per unit of time, but the intervals are calibrated on
    /// the history's step.
    ///
    /// # Errors
    /// [`ForecastError::NegativeHorizon`], [`ForecastError::HorizonTooLong`] past the
    /// settings' `max_horizon`, [`ForecastError::NoRecentData`] when the newest finite
    /// sample before `origin` is older than `max_staleness`, [`ForecastError::NonFinite`]
    /// when values near `f64`'s limits overflow.
    pub fn predict(
        &self,
        recent: &Series,
        origin: DateTime<Utc>,
        horizon: TimeDelta,
    ) -> Result<Forecast, ForecastError> {
        if horizon < TimeDelta::zero() {
            return Err(ForecastError::NegativeHorizon { horizon });
        }
        if horizon > self.settings.max_horizon {
            return Err(ForecastError::HorizonTooLong {
                horizon,
                max: self.settings.max_horizon,
            });
        }
        self.check_fresh(recent, origin)?;
        let level = self.level(recent, origin)?;
        let at = shift(origin, horizon);
        let point = level + self.seasonal(at);
        let (lo, hi) = self.interval_offsets(horizon);
        let (mut point, mut lower, mut upper) = (point, point + lo, point + hi);
        if self.settings.non_negative {
            point = point.max(0.0);
            lower = lower.max(0.0);
            upper = upper.max(0.0);
        }
        if !(point.is_finite() && lower.is_finite() && upper.is_finite()) {
            return Err(ForecastError::NonFinite { what: "forecast" });
        }
        Ok(Forecast {
            origin,
            at,
            point,
            lower,
            upper,
            level: self.settings.interval_level,
        })
    }

    /// Scores `observed`, sampled at `at`, against the median of the deseasonalised samples
    /// of `recent` in `[at - anomaly_window, at)` plus the season at `at`, and says whether it
    /// is an anomaly.
    ///
    /// The median keeps an anomaly lasting less than half the window from pulling the level
    /// it is judged against. The scale ([`Self::anomaly_scale`]) is measured on this same
    /// rule's residuals on the history's samples at this hour of the shortest season, widened
    /// when their tail is heavier than a normal distribution's (see the crate docs), so a
    /// deviation is in robust standard deviations of one sample at this time of day. The
    /// band is `expected ± threshold × scale`.
    ///
    /// The observation is anomalous when it is out of the band and a strict majority of the
    /// newest [`anomaly_persistence`](ForecastSettings::anomaly_persistence) samples (the
    /// observation and the finite samples of `recent` just before `at`, each against the same
    /// level plus the season at its own time) are out of it on the same side: one sample of
    /// noise beyond the band is not an anomaly, a change that holds for most of the
    /// persistence is, from its second sample (of three) on. `recent` should have the
    /// history's step, since the scale was measured on samples of that step.
    ///
    /// # Errors
    /// [`ForecastError::NonFiniteObservation`], and [`ForecastError::NoRecentData`] as for
    /// [`SeasonalModel::predict`].
    pub fn detect(
        &self,
        recent: &Series,
        at: DateTime<Utc>,
        observed: f64,
        threshold: f64,
    ) -> Result<Anomaly, ForecastError> {
        if !observed.is_finite() {
            return Err(ForecastError::NonFiniteObservation { value: observed });
        }
        self.check_fresh(recent, at)?;
        let mut deseasonalised =
            self.deseasonalised(recent, shift(at, -self.settings.anomaly_window), at);
        let persistence = self.settings.anomaly_persistence.max(1);
        // The samples just before the observation, taken before the median reorders them.
        let before: Vec<f64> =
            deseasonalised[deseasonalised.len().saturating_sub(persistence - 1)..].to_vec();
        let Some(level) = median_in_place(&mut deseasonalised) else {
            return Err(self.no_recent_data(recent, at));
        };
        let scale = self.anomaly_scale(at);
        let mut expected = level + self.seasonal(at) + self.anomaly_center;
        let deviation = (observed - expected) / scale;
        let sample_score = deviation.abs();
        let before: Vec<f64> = before
            .iter()
            .map(|d| (d - level - self.anomaly_center) / scale)
            .collect();
        let score = held_score(deviation, &before, persistence, &mut Vec::new());
        let mut lower = expected - threshold * scale;
        let mut upper = expected + threshold * scale;
        if self.settings.non_negative {
            expected = expected.max(0.0);
            lower = lower.max(0.0);
            upper = upper.max(0.0);
        }
        if !(score.is_finite() && sample_score.is_finite() && expected.is_finite()) {
            return Err(ForecastError::NonFinite {
                what: "anomaly score",
            });
        }
        Ok(Anomaly {
            at,
            observed,
            expected,
            lower,
            upper,
            score,
            sample_score,
            anomalous: score >= threshold,
        })
    }

    /// The end of the history the model was fitted on (the first instant it did not see).
    pub fn fitted_until(&self) -> DateTime<Utc> {
        self.fitted_until
    }

    /// The settings it was fitted with.
    pub fn settings(&self) -> &ForecastSettings {
        &self.settings
    }

    /// The learned seasonal offset at `at`: the sum of the seasons' offsets, linear between
    /// the centres of the fit buckets.
    pub fn seasonal(&self, at: DateTime<Utc>) -> f64 {
        self.seasonal_ms(epoch_ms(at))
    }

    /// The weight of the newest sample in the level (exponential smoothing, per sample of
    /// the history's step), as the ETS model found it.
    pub fn level_weight(&self) -> f64 {
        self.alpha
    }

    /// What the prediction interval adds to the point forecast at `horizon`: (lower, upper).
    pub fn interval_offsets(&self, horizon: TimeDelta) -> (f64, f64) {
        let k = (delta_ms(horizon) as f64 / self.step_ms as f64).max(0.0);
        let pos = self.grid.partition_point(|&g| (g as f64) < k);
        if pos == 0 {
            return (self.lower[0], self.upper[0]);
        }
        if pos >= self.grid.len() {
            let last = self.grid.len() - 1;
            return (self.lower[last], self.upper[last]);
        }
        let (g0, g1) = (self.grid[pos - 1] as f64, self.grid[pos] as f64);
        let frac = (k - g0) / (g1 - g0);
        (
            self.lower[pos - 1] + (self.lower[pos] - self.lower[pos - 1]) * frac,
            self.upper[pos - 1] + (self.upper[pos] - self.upper[pos - 1]) * frac,
        )
    }

    /// The scale an anomaly score at `at` is measured in: 1.4826 × the MAD of the in-sample
    /// residuals at that hour of the shortest season (linear between the centres of its 24
    /// bins), times the tail factor (see the crate docs).
    pub fn anomaly_scale(&self, at: DateTime<Utc>) -> f64 {
        let bins = self.anomaly_scales.len();
        if bins == 0 || self.scale_period_ms <= 0 {
            return f64::NAN;
        }
        let t = epoch_ms(at).rem_euclid(self.scale_period_ms) as f64;
        // The scale of a bin belongs to its centre.
        let pos = t / self.scale_period_ms as f64 * bins as f64 - 0.5;
        let lower = pos.floor();
        let frac = pos - lower;
        let i = (lower as i64).rem_euclid(bins as i64) as usize;
        let a = self.anomaly_scales[i];
        let b = self.anomaly_scales[(i + 1) % bins];
        a + (b - a) * frac
    }

    /// The seasonal offsets of `n` samples every `step_ms` from `start_ms`: the same values
    /// as [`Self::seasonal_ms`] each, with the profiles read once per bucket, not per sample.
    fn seasonal_run(&self, start_ms: i64, step_ms: i64, n: usize) -> Vec<f64> {
        if n == 0 {
            return Vec::new();
        }
        // Positions are counted in half-milliseconds from the first bucket's centre, in
        // integers (i128: twice an instant's milliseconds overflows i64 at chrono's ends): a
        // sample's bucket and its fraction advance by addition, sample by sample.
        let span = 2 * i128::from(self.fit_step_ms);
        let advance = 2 * i128::from(step_ms);
        let x0 = 2 * i128::from(start_ms) - i128::from(self.fit_step_ms);
        let first = x0.div_euclid(span);
        let last = (x0 + advance * (n as i128 - 1)).div_euclid(span) + 1;
        let offsets: Vec<f64> = (first..=last)
            .map(|b| self.bucket_offset(b as i64))
            .collect();
        let top = offsets.len() - 2;
        let mut bucket = 0usize;
        let mut rem = x0.rem_euclid(span);
        let mut out = Vec::with_capacity(n);
        for _ in 0..n {
            let k = bucket.min(top);
            let frac = rem as f64 / span as f64;
            out.push(offsets[k] + (offsets[k + 1] - offsets[k]) * frac);
            rem += advance;
            if rem >= span {
                bucket += (rem / span) as usize;
                rem %= span;
            }
        }
        out
    }

    /// The sum of the seasons' offsets of fit bucket `bucket` (counted from the epoch).
    fn bucket_offset(&self, bucket: i64) -> f64 {
        self.profiles
            .iter()
            .map(|p| p[bucket.rem_euclid(p.len() as i64) as usize])
            .sum()
    }

    fn seasonal_ms(&self, t_ms: i64) -> f64 {
        // The offset of a bucket belongs to its centre.
        let pos = t_ms as f64 / self.fit_step_ms as f64 - 0.5;
        let bucket = pos.floor();
        let frac = pos - bucket;
        let bucket = bucket as i64;
        self.profiles
            .iter()
            .map(|p| {
                let len = p.len() as i64;
                let a = p[bucket.rem_euclid(len) as usize];
                let b = p[(bucket + 1).rem_euclid(len) as usize];
                a + (b - a) * frac
            })
            .sum()
    }

    fn check_fresh(&self, recent: &Series, origin: DateTime<Utc>) -> Result<(), ForecastError> {
        checked_step(recent.step)?;
        match recent.last_before(origin) {
            Some((t, _)) if origin - t <= self.settings.max_staleness => Ok(()),
            _ => Err(self.no_recent_data(recent, origin)),
        }
    }

    fn no_recent_data(&self, recent: &Series, origin: DateTime<Utc>) -> ForecastError {
        ForecastError::NoRecentData {
            origin,
            last_seen: recent.last_before(origin).map(|(t, _)| t),
            max_staleness: self.settings.max_staleness,
        }
    }

    /// The level now: exponential smoothing of the deseasonalised recent samples, started
    /// from their mean so that a short window or a small weight still gives a fair level.
    fn level(&self, recent: &Series, origin: DateTime<Utc>) -> Result<f64, ForecastError> {
        let step_ms = delta_ms(recent.step);
        let alpha = if step_ms == self.step_ms {
            self.alpha
        } else {
            1.0 - (1.0 - self.alpha).powf(step_ms as f64 / self.step_ms as f64)
        };
        let deseasonalised =
            self.deseasonalised(recent, shift(origin, -self.settings.recent_window), origin);
        if deseasonalised.is_empty() {
            return Err(self.no_recent_data(recent, origin));
        }
        let start = deseasonalised.iter().sum::<f64>() / deseasonalised.len() as f64;
        Ok(deseasonalised
            .iter()
            .fold(start, |level, d| level + alpha * (d - level)))
    }

    /// The finite samples of `recent` stamped in `[from, to)`, less the season.
    fn deseasonalised(&self, recent: &Series, from: DateTime<Utc>, to: DateTime<Utc>) -> Vec<f64> {
        let range = recent.range(from, to);
        let start_ms = epoch_ms(recent.time_at(range.start));
        let values = &recent.values[range];
        let seasonal = self.seasonal_run(start_ms, delta_ms(recent.step), values.len());
        values
            .iter()
            .zip(seasonal)
            .filter(|(v, _)| v.is_finite())
            .map(|(v, s)| v - s)
            .collect()
    }

    fn calibrate_intervals(
        &mut self,
        values: &[f64],
        seasonal: &[f64],
        deseasonalised: &[f64],
    ) -> Result<(), ForecastError> {
        let n = values.len();
        // level_before[o]: the smoothed level from the samples before o, as predict sees it.
        let mut level_before = Vec::with_capacity(n);
        let mut level = deseasonalised
            .iter()
            .copied()
            .find(|d| d.is_finite())
            .unwrap_or(0.0);
        for &d in deseasonalised {
            level_before.push(level);
            if d.is_finite() {
                level += self.alpha * (d - level);
            }
        }

        let max_k = (delta_ms(self.settings.max_horizon) / self.step_ms).max(0) as usize;
        let mut grid: Vec<usize> = (0..=HORIZON_GRID)
            .map(|i| {
                let x = i as f64 / HORIZON_GRID as f64;
                (max_k as f64 * x * x).round() as usize
            })
            .collect();
        grid.dedup();

        let warmup = self.warmup(n);
        let stride = ((n.saturating_sub(warmup)) / INTERVAL_ORIGINS).max(1);
        let mut errors: Vec<Vec<f64>> = vec![Vec::new(); grid.len()];
        for o in (warmup..n).step_by(stride) {
            if !values[o - 1].is_finite() {
                continue;
            }
            for (g, &k) in grid.iter().enumerate() {
                let j = o + k;
                if j < n && values[j].is_finite() {
                    let forecast = level_before[o] + seasonal[j];
                    errors[g].push(values[j] - forecast);
                }
            }
        }
        let q_lo = (1.0 - self.settings.interval_level) / 2.0;
        let q_hi = 1.0 - q_lo;
        let mut kept = Vec::with_capacity(grid.len());
        for (&k, errs) in grid.iter().zip(errors.iter_mut()) {
            // Too few errors to trust a quantile: a horizon grid point near the end of a
            // short history. Its neighbours are interpolated instead.
            if errs.len() < 20 {
                continue;
            }
            let lo = quantile_in_place(errs, q_lo);
            let hi = quantile_in_place(errs, q_hi);
            if let (Some(lo), Some(hi)) = (lo, hi) {
                kept.push((k, lo, hi));
            }
        }
        if kept.is_empty() {
            return Err(calibration_error(
                "no in-sample errors to take quantiles of",
            ));
        }
        self.grid = kept.iter().map(|k| k.0).collect();
        self.lower = kept.iter().map(|k| k.1).collect();
        self.upper = kept.iter().map(|k| k.2).collect();
        Ok(())
    }

    /// Measures the anomaly rule's residuals on the history's own samples (the step the
    /// recent samples are scored at), at up to [`ANOMALY_ORIGINS`] origins: their median,
    /// their robust spread per bin of the shortest season and the tail factor.
    fn calibrate_anomalies(
        &mut self,
        values: &[f64],
        seasonal: &[f64],
        deseasonalised: &[f64],
        start_ms: i64,
    ) -> Result<(), ForecastError> {
        let n = values.len();
        let window = (delta_ms(self.settings.anomaly_window) / self.step_ms).max(1) as usize;
        let warmup = self.warmup(n).max(window);
        let stride = ((n.saturating_sub(warmup)) / ANOMALY_ORIGINS).max(1);
        let period = i128::from(self.scale_period_ms.max(1));
        let persistence = self.settings.anomaly_persistence.max(1);
        let mut residuals = Vec::new();
        // The residuals of the samples just before each origin's, against its level (the
        // persistence rule's other samples), `persistence - 1` per origin, newest last.
        let mut before: Vec<f64> = Vec::new();
        let mut before_counts = Vec::new();
        let mut bins = Vec::new();
        let mut scratch = Vec::with_capacity(window);
        for o in (warmup..n).step_by(stride) {
            if !values[o].is_finite() {
                continue;
            }
            scratch.clear();
            scratch.extend(
                deseasonalised[o - window..o]
                    .iter()
                    .filter(|d| d.is_finite()),
            );
            // The samples just before the origin, taken before the median reorders them.
            let newest = scratch.len().saturating_sub(persistence - 1);
            let first = before.len();
            before.extend_from_slice(&scratch[newest..]);
            if let Some(level) = median_in_place(&mut scratch) {
                residuals.push(values[o] - (level + seasonal[o]));
                before[first..].iter_mut().for_each(|d| *d -= level);
                before_counts.push(before.len() - first);
                // i128: an instant's milliseconds times the bins overflows i64 near chrono's
                // ends.
                let t = i128::from(start_ms) + o as i128 * i128::from(self.step_ms);
                bins.push((t.rem_euclid(period) * SCALE_BINS as i128 / period) as usize);
            }
        }
        let mut sorted = residuals.clone();
        let center = median_in_place(&mut sorted)
            .ok_or_else(|| calibration_error("no in-sample residuals to scale anomalies by"))?;
        let mut by_bin: Vec<Vec<f64>> = vec![Vec::new(); SCALE_BINS];
        for (r, &b) in residuals.iter().zip(&bins) {
            by_bin[b.min(SCALE_BINS - 1)].push((r - center).abs());
        }
        let mut all: Vec<f64> = by_bin.concat();
        let mad = median_in_place(&mut all).unwrap_or(0.0);
        // A flat series has a MAD of zero; a floor relative to its size keeps the score finite.
        let (sum, count) = values
            .iter()
            .filter(|v| v.is_finite())
            .fold((0.0, 0usize), |(s, c), v| (s + v.abs(), c + 1));
        let typical = sum / count.max(1) as f64;
        let whole = (MAD_TO_SIGMA * mad).max(1e-6 * typical.max(1.0));
        let floor = SCALE_FLOOR_SHARE * whole;
        let mut pooled = Vec::new();
        let bulk: Vec<f64> = (0..SCALE_BINS)
            .map(|b| {
                pooled.clear();
                for k in 0..=2 * SCALE_SPREAD {
                    let neighbour = (b + SCALE_BINS + k - SCALE_SPREAD) % SCALE_BINS;
                    pooled.extend_from_slice(&by_bin[neighbour]);
                }
                if pooled.len() < MIN_BIN_RESIDUALS {
                    return whole;
                }
                median_in_place(&mut pooled).map_or(whole, |m| (MAD_TO_SIGMA * m).max(floor))
            })
            .collect();
        // The MAD sees the bulk of the residuals; an alarm sees the tail of the score, which
        // is heavier when the noise is (a burst of requests, a slow scrape) and when it
        // lingers over several samples (a rate over a minute read every 15 s), where the
        // persistence rule gives less protection. So the score is measured in-sample, as
        // detect computes it, and the scale is widened by how much further out its 99th
        // percentile lies than it would for independent normal noise of the hour's MAD —
        // never narrowed. For such noise a score of 4 stays 4 MAD-sigmas.
        let mut scores = Vec::with_capacity(residuals.len());
        let mut offset = 0;
        let mut held = Vec::new();
        let mut others = Vec::new();
        for ((r, &b), &count) in residuals.iter().zip(&bins).zip(&before_counts) {
            let scale = bulk[b.min(SCALE_BINS - 1)];
            others.clear();
            others.extend(
                before[offset..offset + count]
                    .iter()
                    .map(|d| (d - center) / scale),
            );
            offset += count;
            scores.push(held_score(
                (r - center) / scale,
                &others,
                persistence,
                &mut held,
            ));
        }
        let tail = quantile_in_place(&mut scores, TAIL_QUANTILE)
            .map_or(1.0, |q| (q / normal_score_quantile(persistence)).max(1.0));
        self.anomaly_scales = bulk.iter().map(|s| s * tail).collect();
        self.anomaly_center = center;
        Ok(())
    }

    /// Origins before this are not used in calibration: the smoothed level and the anomaly
    /// window are still filling.
    fn warmup(&self, n: usize) -> usize {
        let settle = (3.0 / self.alpha).ceil() as usize;
        let recent = (delta_ms(self.settings.recent_window) / self.step_ms).max(1) as usize;
        settle.max(recent).max(1).min(n / 2).max(1)
    }
}

/// The anomaly score of an observation whose deviation is `sample` (signed, in scale units),
/// given the deviations `before` of the samples just before it (at most `persistence - 1`):
/// the largest `s` such that the observation and a strict majority of the `persistence`
/// newest samples lie at least `s` out on the observation's side; 0 when there are too few
/// samples for a majority. `held` is scratch space.
fn held_score(sample: f64, before: &[f64], persistence: usize, held: &mut Vec<f64>) -> f64 {
    let side = if sample < 0.0 { -1.0 } else { 1.0 };
    held.clear();
    held.extend(before.iter().map(|d| side * d));
    held.push(sample.abs());
    let majority = persistence / 2 + 1;
    if held.len() < majority {
        return 0.0;
    }
    held.sort_unstable_by(|a, b| b.total_cmp(a));
    held[majority - 1].min(sample.abs()).max(0.0)
}

/// The [`TAIL_QUANTILE`] quantile of [`held_score`] for independent standard normal
/// samples: the score passes `x` when the observation does, on either side (`2 Q(x)`), and
/// at least `persistence / 2` of the `persistence - 1` samples before it do on that side.
/// 2.576 for a persistence of 1, 1.64 for 3.
fn normal_score_quantile(persistence: usize) -> f64 {
    let others = persistence.max(1) - 1;
    let needed = persistence.max(1) / 2;
    let exceeds = |x: f64| {
        let q = normal_upper_tail(x);
        2.0 * q * binomial_at_least(others, needed, q)
    };
    // The probability falls as x grows: bisect for where it is 1 - TAIL_QUANTILE.
    let (mut lo, mut hi) = (0.0, 10.0);
    for _ in 0..60 {
        let mid = 0.5 * (lo + hi);
        if exceeds(mid) > 1.0 - TAIL_QUANTILE {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    0.5 * (lo + hi)
}

fn calibration_error(detail: &str) -> ForecastError {
    ForecastError::Fit {
        stage: FitStage::Calibration,
        detail: detail.to_owned(),
    }
}

/// Applies the documented missing-data rules to the history used.
fn check_gaps(
    values: &[f64],
    step: TimeDelta,
    settings: &ForecastSettings,
) -> Result<(), ForecastError> {
    let mut missing = 0usize;
    let mut run = 0usize;
    let mut longest = 0usize;
    for v in values {
        if v.is_finite() {
            run = 0;
        } else {
            missing += 1;
            run += 1;
            longest = longest.max(run);
        }
    }
    let missing_fraction = missing as f64 / values.len().max(1) as f64;
    let longest_gap = steps(step, longest);
    if missing_fraction > settings.max_missing || longest_gap > settings.max_gap {
        return Err(ForecastError::TooGappy {
            missing_fraction,
            max_missing: settings.max_missing,
            longest_gap,
            max_gap: settings.max_gap,
        });
    }
    Ok(())
}

/// Means of the finite samples per fit bucket, from the first sample's bucket to the
/// last's; empty buckets are interpolated linearly between their neighbours.
fn bucket_means(values: &[f64], times: &[i64], fit_step_ms: i64) -> (i64, Vec<f64>) {
    let first = times.first().map_or(0, |t| t.div_euclid(fit_step_ms));
    let last = times.last().map_or(0, |t| t.div_euclid(fit_step_ms));
    let len = (last - first + 1).max(0) as usize;
    let mut sums = vec![0.0; len];
    let mut counts = vec![0u32; len];
    for (v, t) in values.iter().zip(times) {
        if v.is_finite() {
            let b = (t.div_euclid(fit_step_ms) - first) as usize;
            sums[b] += v;
            counts[b] += 1;
        }
    }
    let mut means: Vec<f64> = sums
        .into_iter()
        .zip(counts)
        .map(|(s, c)| if c == 0 { f64::NAN } else { s / f64::from(c) })
        .collect();
    interpolate(&mut means);
    (first, means)
}

/// Fills non-finite runs linearly between the finite values around them (and with the
/// nearest finite value at either end).
pub(crate) fn interpolate(values: &mut [f64]) {
    let mut last: Option<usize> = None;
    for i in 0..values.len() {
        if !values[i].is_finite() {
            continue;
        }
        match last {
            Some(l) if i > l + 1 => {
                let (a, b) = (values[l], values[i]);
                for (j, v) in values.iter_mut().enumerate().take(i).skip(l + 1) {
                    *v = a + (b - a) * (j - l) as f64 / (i - l) as f64;
                }
            }
            None if i > 0 => {
                let v = values[i];
                values[..i].iter_mut().for_each(|x| *x = v);
            }
            _ => {}
        }
        last = Some(i);
    }
    if let Some(l) = last {
        let v = values[l];
        values[l + 1..].iter_mut().for_each(|x| *x = v);
    }
}

/// MSTL on the bucket means; each season's profile is its component averaged per position
/// in the cycle, over every cycle of the history.
fn seasonal_profiles(
    buckets: &[f64],
    first_bucket: i64,
    periods: &[usize],
) -> Result<Vec<Vec<f64>>, ForecastError> {
    let fitted = catch_unwind(AssertUnwindSafe(|| {
        MSTLModel::naive(periods.to_vec()).fit(buckets)
    }))
    .map_err(|_| ForecastError::Fit {
        stage: FitStage::Seasonal,
        detail: "the decomposition panicked".to_owned(),
    })?
    .map_err(|e| ForecastError::Fit {
        stage: FitStage::Seasonal,
        detail: e.to_string(),
    })?;
    let components = fitted.fit().seasonal();
    let mut profiles = Vec::with_capacity(periods.len());
    for (&period, component) in periods.iter().zip(components) {
        let mut sums = vec![0.0; period];
        let mut counts = vec![0u32; period];
        for (i, c) in component.iter().enumerate() {
            let slot = (first_bucket + i as i64).rem_euclid(period as i64) as usize;
            sums[slot] += f64::from(*c);
            counts[slot] += 1;
        }
        let profile: Vec<f64> = sums
            .into_iter()
            .zip(counts)
            .map(|(s, c)| s / f64::from(c.max(1)))
            .collect();
        // A longer season is learned from few cycles (two weeks hold two), so its profile
        // also holds those weeks' level wiggles, which would widen the errors of the future
        // and narrow the in-sample ones the intervals come from. Smoothing it over a sixth
        // of the shortest season (4 h of a day) keeps its shape and drops the wiggles.
        let width = if period > periods[0] {
            (periods[0] / LONG_SEASON_SMOOTHING).max(1)
        } else {
            1
        };
        let profile = circular_moving_average(&profile, width);
        if profile.iter().any(|v| !v.is_finite()) {
            return Err(ForecastError::Fit {
                stage: FitStage::Seasonal,
                detail: "the seasonal profile is not finite".to_owned(),
            });
        }
        profiles.push(profile);
    }
    Ok(profiles)
}

/// The smoothing weight of the level: ETS(A,N,N) fitted on the newest deseasonalised
/// samples (gaps interpolated), read back from its one-step fitted values, since
/// `l[t] - l[t-1] = alpha * (y[t] - l[t-1])` holds exactly for that model.
fn level_weight(deseasonalised: &[f64]) -> Result<f64, ForecastError> {
    let tail = &deseasonalised[deseasonalised.len().saturating_sub(ETS_SAMPLES)..];
    let mut y = tail.to_vec();
    interpolate(&mut y);
    let mean = y.iter().sum::<f64>() / y.len().max(1) as f64;
    let variance = y.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / y.len().max(1) as f64;
    // A flat deseasonalised series has nothing to smooth; ETS's optimiser cannot settle on it.
    if variance.is_nan() || variance <= 1e-12 * mean.abs().max(1.0).powi(2) {
        return Ok(1.0);
    }
    let model_type = ModelType {
        error: ErrorComponent::Additive,
        trend: TrendComponent::None,
        season: SeasonalComponent::None,
    };
    let level_error = |detail: String| ForecastError::Fit {
        stage: FitStage::Level,
        detail,
    };
    let fitted = catch_unwind(AssertUnwindSafe(|| {
        Unfit::new(model_type)
            .fit(&y)
            .and_then(|m| m.predict_in_sample(None))
    }))
    .map_err(|_| level_error("the ETS fit panicked".to_owned()))?
    .map_err(|e| level_error(e.to_string()))?
    .point;
    let (mut num, mut den) = (0.0, 0.0);
    for t in 0..y
        .len()
        .saturating_sub(1)
        .min(fitted.len().saturating_sub(1))
    {
        let e = y[t] - fitted[t];
        num += (fitted[t + 1] - fitted[t]) * e;
        den += e * e;
    }
    let alpha = num / den;
    if alpha.is_finite() {
        Ok(alpha.clamp(1e-3, 1.0))
    } else {
        Err(level_error(
            "the smoothing weight is not a finite number".to_owned(),
        ))
    }
}

/// Centred moving average of `width` values over a cycle.
fn circular_moving_average(values: &[f64], width: usize) -> Vec<f64> {
    let n = values.len();
    if width <= 1 || n == 0 {
        return values.to_vec();
    }
    let half = width / 2;
    (0..n)
        .map(|i| {
            let sum: f64 = (0..width).map(|k| values[(i + n + k - half) % n]).sum();
            sum / width as f64
        })
        .collect()
}
