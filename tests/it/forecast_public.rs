//! The forecaster on real public series it was never tuned on (tests/data/public-series):
//! replayed over the last four weeks of each, it must beat both persistence and seasonal naive
//! at 60 minutes, the one horizon of the fast loop's two (15 and 60 minutes) that their hourly
//! and half-hourly samples can judge. The suite refits daily to keep its time down;
//! `cargo bench -p setpoint-test-support --bench forecast_public` refits hourly and reports
//! the figures.

use chrono::TimeDelta;
use setpoint_test_support::public_series::{evaluate, load_all};

#[test]
fn forecasts_beat_persistence_and_seasonal_naive_on_real_public_series() {
    let all = load_all();
    assert_eq!(all.len(), 6, "five CAISO columns and the Taylor demand");
    let mut failures = Vec::new();
    for public in &all {
        let result = evaluate(public, 4, TimeDelta::hours(2), TimeDelta::days(1));
        for h in &result.summary {
            let beats = |ratio: Option<f64>| ratio.is_some_and(|r| r < 1.0);
            let why: Vec<String> = result
                .rows
                .iter()
                .filter_map(|r| r.reason.as_ref().map(ToString::to_string))
                .take(3)
                .collect();
            assert!(
                h.count >= 300,
                "{}: only {} forecasts; {why:?}",
                public.name,
                h.count
            );
            if !(beats(h.ratio_persistence) && beats(h.ratio_seasonal_naive)) {
                failures.push(format!(
                    "{} at {} min: MAE/persistence {:?}, MAE/seasonal naive {:?}",
                    public.name,
                    h.horizon.num_minutes(),
                    h.ratio_persistence,
                    h.ratio_seasonal_naive
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}
