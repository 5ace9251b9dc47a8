//! Running forecast errors of one series, updated as forecasts' target times arrive.

use crate::model::Forecast;

/// Accumulates a series' forecast errors: MAE, MAPE, MASE and interval coverage.
///
/// MASE is the model's MAE divided by the seasonal-naive forecast's MAE over the same
/// forecasts (those recorded with a seasonal-naive value), so below 1 means better than
/// seasonal naive. MAPE skips actual values of zero.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ErrorTracker {
    count: u64,
    abs_error: f64,
    covered: u64,
    pct_count: u64,
    abs_pct_error: f64,
    scaled_count: u64,
    scaled_abs_error: f64,
    naive_abs_error: f64,
}

/// A snapshot of an [`ErrorTracker`], for export as metrics. Means are `None` until they
/// have something to average.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ErrorMetrics {
    /// Forecasts recorded.
    pub count: u64,
    /// Mean absolute error.
    pub mae: Option<f64>,
    /// Mean absolute percentage error, as a fraction (0.05 = 5 %).
    pub mape: Option<f64>,
    /// Mean absolute scaled error against seasonal naive.
    pub mase: Option<f64>,
    /// Fraction of actual values inside the forecast's interval.
    pub coverage: Option<f64>,
}

impl ErrorTracker {
    /// An empty tracker.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records what followed `forecast`: `actual` at `forecast.at`, and what the seasonal
    /// naive forecast said for that instant, if known. A non-finite `actual` is ignored.
    pub fn record(&mut self, forecast: &Forecast, actual: f64, seasonal_naive: Option<f64>) {
        if !actual.is_finite() || !forecast.point.is_finite() {
            return;
        }
        let error = (actual - forecast.point).abs();
        self.count += 1;
        self.abs_error += error;
        if forecast.lower <= actual && actual <= forecast.upper {
            self.covered += 1;
        }
        if actual != 0.0 {
            self.pct_count += 1;
            self.abs_pct_error += error / actual.abs();
        }
        if let Some(naive) = seasonal_naive.filter(|v| v.is_finite()) {
            self.scaled_count += 1;
            self.scaled_abs_error += error;
            self.naive_abs_error += (actual - naive).abs();
        }
    }

    /// Adds another tracker's records (e.g. to sum a fleet).
    pub fn merge(&mut self, other: &ErrorTracker) {
        self.count += other.count;
        self.abs_error += other.abs_error;
        self.covered += other.covered;
        self.pct_count += other.pct_count;
        self.abs_pct_error += other.abs_pct_error;
        self.scaled_count += other.scaled_count;
        self.scaled_abs_error += other.scaled_abs_error;
        self.naive_abs_error += other.naive_abs_error;
    }

    /// Forecasts recorded.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// Mean absolute error.
    pub fn mae(&self) -> Option<f64> {
        ratio(self.abs_error, self.count as f64)
    }

    /// Mean absolute percentage error, as a fraction.
    pub fn mape(&self) -> Option<f64> {
        ratio(self.abs_pct_error, self.pct_count as f64)
    }

    /// Mean absolute scaled error: the model's MAE over the seasonal-naive MAE, on the
    /// forecasts recorded with a seasonal-naive value.
    pub fn mase(&self) -> Option<f64> {
        if self.scaled_count == 0 {
            return None;
        }
        ratio(self.scaled_abs_error, self.naive_abs_error)
    }

    /// Fraction of actual values inside the interval.
    pub fn coverage(&self) -> Option<f64> {
        ratio(self.covered as f64, self.count as f64)
    }

    /// All of the above at once.
    pub fn metrics(&self) -> ErrorMetrics {
        ErrorMetrics {
            count: self.count,
            mae: self.mae(),
            mape: self.mape(),
            mase: self.mase(),
            coverage: self.coverage(),
        }
    }
}

fn ratio(num: f64, den: f64) -> Option<f64> {
    (den > 0.0).then(|| num / den)
}
