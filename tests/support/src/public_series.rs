//! The real public series in `tests/data/public-series` (see its README: what they are, where
//! they come from, their licences), and the forecaster replayed over them: one definition of
//! the evaluation, for the suite's check and the benchmark that reports its figures.

use std::path::PathBuf;

use chrono::{DateTime, NaiveDateTime, TimeDelta, Utc};
use setpoint_forecast::{Backtest, BacktestPlan, ForecastSettings, Series, backtest};

/// One real series.
#[derive(Debug, Clone)]
pub struct PublicSeries {
    /// `file:column`.
    pub name: String,
    /// Its sample spacing.
    pub step: TimeDelta,
    /// The samples, in time order.
    pub series: Series,
}

/// The directory of the data files.
pub fn data_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../data/public-series")
}

/// Every series: the five load columns of the CAISO file (hourly) and the Taylor demand
/// (half-hourly).
pub fn load_all() -> Vec<PublicSeries> {
    let mut out = Vec::new();
    let caiso = data_dir().join("caiso_hourly_2018.csv");
    let text = std::fs::read_to_string(&caiso).expect("read the CAISO series");
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().expect("a header").split(',').collect();
    let rows: Vec<Vec<&str>> = lines
        .filter(|l| !l.is_empty())
        .map(|l| l.split(',').collect())
        .collect();
    let times: Vec<DateTime<Utc>> = rows
        .iter()
        .map(|r| {
            NaiveDateTime::parse_from_str(r[0], "%Y-%m-%d %H:%M:%S")
                .expect("a CAISO timestamp")
                .and_utc()
        })
        .collect();
    for (column, name) in header.iter().enumerate().skip(3) {
        let points: Vec<(DateTime<Utc>, f64)> = rows
            .iter()
            .zip(&times)
            .map(|(r, &t)| (t, r[column].parse::<f64>().expect("a CAISO value")))
            .collect();
        out.push(PublicSeries {
            name: format!("caiso_hourly_2018:{name}"),
            step: TimeDelta::hours(1),
            series: Series::from_points(&points, TimeDelta::hours(1)).expect("a regular series"),
        });
    }
    let taylor = data_dir().join("taylor_halfhourly_2000.csv");
    let text = std::fs::read_to_string(&taylor).expect("read the Taylor series");
    let points: Vec<(DateTime<Utc>, f64)> = text
        .lines()
        .skip(1)
        .filter(|l| !l.is_empty())
        .map(|l| {
            let (t, v) = l.split_once(',').expect("timestamp,value");
            (
                t.parse::<DateTime<Utc>>().expect("an RFC 3339 timestamp"),
                v.parse::<f64>().expect("a number"),
            )
        })
        .collect();
    out.push(PublicSeries {
        name: "taylor_halfhourly_2000:demand_mw".to_string(),
        step: TimeDelta::minutes(30),
        series: Series::from_points(&points, TimeDelta::minutes(30)).expect("a regular series"),
    });
    out
}

/// The horizons a series can be judged at: 15 and 60 minutes where its step allows (a
/// forecast between two samples has nothing to be compared with).
pub fn horizons(step: TimeDelta) -> Vec<TimeDelta> {
    [TimeDelta::minutes(15), TimeDelta::minutes(60)]
        .into_iter()
        .filter(|h| h.num_seconds() % step.num_seconds() == 0)
        .collect()
}

/// The forecaster's default settings, adapted to a series' step where the defaults assume a
/// fast loop's seconds: fitted on its own grid (it has none finer), a sample one step old
/// counts as recent, and the level reads at least four of them.
pub fn settings(step: TimeDelta) -> ForecastSettings {
    let defaults = ForecastSettings::default();
    ForecastSettings {
        fit_step: step.max(defaults.fit_step),
        max_staleness: step.max(defaults.max_staleness),
        recent_window: (step * 4).max(defaults.recent_window),
        non_negative: true,
        ..defaults
    }
}

/// The forecaster replayed over the last `weeks` weeks of `series`, an origin every `every`,
/// refitted every `refit_every`, only the data before each origin visible.
pub fn evaluate(
    public: &PublicSeries,
    weeks: i64,
    every: TimeDelta,
    refit_every: TimeDelta,
) -> Backtest {
    let horizons = horizons(public.step);
    let longest = horizons.iter().copied().max().unwrap_or(public.step);
    let end = public.series.end();
    let plan = BacktestPlan {
        from: end - TimeDelta::weeks(weeks),
        to: end - longest,
        every,
        horizons,
        refit_every,
    };
    backtest(&public.series, &plan, &settings(public.step)).expect("a valid plan")
}
