//! Replaying the forecaster over past origins of a series, beside what followed.

use chrono::{DateTime, TimeDelta, Utc};

use crate::baseline::{persistence, seasonal_naive};
use crate::error::{ForecastError, PlanProblem};
use crate::model::{Forecast, SeasonalModel};
use crate::series::{Series, shift};
use crate::settings::ForecastSettings;
use crate::tracker::ErrorTracker;

/// Which origins to replay and what to forecast from each.
#[derive(Debug, Clone, PartialEq)]
pub struct BacktestPlan {
    /// First origin.
    pub from: DateTime<Utc>,
    /// Origins are before this.
    pub to: DateTime<Utc>,
    /// Time between two origins.
    pub every: TimeDelta,
    /// Horizons forecast from each origin.
    pub horizons: Vec<TimeDelta>,
    /// How often the model is refitted (as the fast loop does, hourly by default there).
    pub refit_every: TimeDelta,
}

/// One forecast of a backtest, beside what followed and the two baselines.
#[derive(Debug, Clone, PartialEq)]
pub struct BacktestRow {
    /// The origin: only samples stamped before it were used, for the fit and the level.
    pub origin: DateTime<Utc>,
    /// The horizon.
    pub horizon: TimeDelta,
    /// The forecast, if there is one.
    pub forecast: Option<Forecast>,
    /// Why there is none (no model, no recent data).
    pub reason: Option<ForecastError>,
    /// The value at `origin + horizon`, if observed.
    pub actual: Option<f64>,
    /// The persistence forecast.
    pub persistence: Option<f64>,
    /// The seasonal-naive forecast (first season of the settings).
    pub seasonal_naive: Option<f64>,
}

/// The errors at one horizon, over the rows where the model, both baselines and the actual
/// value are all known (so the three are compared on the same forecasts).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HorizonSummary {
    /// The horizon.
    pub horizon: TimeDelta,
    /// Rows compared.
    pub count: u64,
    /// The model's mean absolute error.
    pub mae: Option<f64>,
    /// Persistence's mean absolute error.
    pub mae_persistence: Option<f64>,
    /// Seasonal naive's mean absolute error.
    pub mae_seasonal_naive: Option<f64>,
    /// `mae / mae_persistence`: below 1, the model beats persistence.
    pub ratio_persistence: Option<f64>,
    /// `mae / mae_seasonal_naive`: below 1, the model beats seasonal naive.
    pub ratio_seasonal_naive: Option<f64>,
    /// The model's mean absolute percentage error, as a fraction.
    pub mape: Option<f64>,
    /// The model's MASE against seasonal naive (the same as `ratio_seasonal_naive`, up to rounding).
    pub mase: Option<f64>,
    /// Fraction of actual values inside the intervals.
    pub coverage: Option<f64>,
}

/// A backtest's rows and per-horizon summary.
#[derive(Debug, Clone, PartialEq)]
pub struct Backtest {
    /// One row per origin and horizon, origins in order.
    pub rows: Vec<BacktestRow>,
    /// One summary per horizon of the plan, in its order.
    pub summary: Vec<HorizonSummary>,
}

/// Replays the forecaster over `plan`'s origins of `series`.
///
/// At each origin the model sees only the samples stamped before it: it is refitted on
/// those every `refit_every` (a failed fit leaves that stretch's rows without a forecast,
/// with the reason), and the level is read from them.
///
/// # Errors
/// [`ForecastError::InvalidPlan`], [`ForecastError::Settings`], [`ForecastError::InvalidStep`];
/// a series that cannot be fitted is not an error but rows with a reason.
pub fn backtest(
    series: &Series,
    plan: &BacktestPlan,
    settings: &ForecastSettings,
) -> Result<Backtest, ForecastError> {
    settings.validate()?;
    crate::series::checked_step(series.step)?;
    let problem = if plan.every.num_milliseconds() < 1 || plan.refit_every.num_milliseconds() < 1 {
        Some(PlanProblem::NonPositiveInterval)
    } else if plan.to <= plan.from {
        Some(PlanProblem::EmptyRange)
    } else if plan.horizons.is_empty() {
        Some(PlanProblem::NoHorizons)
    } else {
        None
    };
    if let Some(problem) = problem {
        return Err(ForecastError::InvalidPlan { problem });
    }
    // `validate` made sure there is a first season.
    let season = settings
        .seasons
        .first()
        .copied()
        .unwrap_or(TimeDelta::days(1));

    let mut rows = Vec::new();
    let mut model: Option<Result<SeasonalModel, ForecastError>> = None;
    let mut last_fit: Option<DateTime<Utc>> = None;
    let mut origin = plan.from;
    while origin < plan.to {
        if last_fit.is_none_or(|t| origin - t >= plan.refit_every) {
            let history = series.slice(shift(origin, -settings.max_history), origin);
            model = Some(SeasonalModel::fit(&history, settings));
            last_fit = Some(origin);
        }
        let recent = series.slice(
            shift(origin, -settings.recent_window.max(settings.max_staleness)),
            origin,
        );
        let past = series.slice(
            shift(
                origin,
                -season
                    .checked_add(&settings.max_horizon)
                    .unwrap_or(TimeDelta::MAX),
            ),
            origin,
        );
        for &horizon in &plan.horizons {
            let (forecast, reason) = match &model {
                Some(Ok(m)) => match m.predict(&recent, origin, horizon) {
                    Ok(f) => (Some(f), None),
                    Err(e) => (None, Some(e)),
                },
                Some(Err(e)) => (None, Some(e.clone())),
                None => (None, None),
            };
            rows.push(BacktestRow {
                origin,
                horizon,
                forecast,
                reason,
                actual: series.value_at(shift(origin, horizon)),
                persistence: persistence(&recent, origin),
                seasonal_naive: seasonal_naive(&past, origin, horizon, season),
            });
        }
        let next = shift(origin, plan.every);
        if next <= origin {
            break;
        }
        origin = next;
    }
    let summary = plan.horizons.iter().map(|&h| summarise(&rows, h)).collect();
    Ok(Backtest { rows, summary })
}

fn summarise(rows: &[BacktestRow], horizon: TimeDelta) -> HorizonSummary {
    let mut model = ErrorTracker::new();
    let (mut persistence_error, mut naive_error) = (0.0, 0.0);
    for row in rows.iter().filter(|r| r.horizon == horizon) {
        let (Some(f), Some(actual), Some(p), Some(n)) = (
            &row.forecast,
            row.actual,
            row.persistence,
            row.seasonal_naive,
        ) else {
            continue;
        };
        model.record(f, actual, Some(n));
        persistence_error += (actual - p).abs();
        naive_error += (actual - n).abs();
    }
    let count = model.count();
    let mean = |sum: f64| (count > 0).then(|| sum / count as f64);
    let mae = model.mae();
    let mae_persistence = mean(persistence_error);
    let mae_seasonal_naive = mean(naive_error);
    let ratio = |base: Option<f64>| match (mae, base) {
        (Some(m), Some(b)) if b > 0.0 => Some(m / b),
        _ => None,
    };
    HorizonSummary {
        horizon,
        count,
        mae,
        mae_persistence,
        mae_seasonal_naive,
        ratio_persistence: ratio(mae_persistence),
        ratio_seasonal_naive: ratio(mae_seasonal_naive),
        mape: model.mape(),
        mase: model.mase(),
        coverage: model.coverage(),
    }
}
