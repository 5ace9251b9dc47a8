//! The forecaster against persistence and seasonal naive on the real public series of
//! `tests/data/public-series`: an origin every step over the last four weeks of each series,
//! refitted every hour as the fast loop does, only the data before each origin visible.
//!
//! ```text
//! cargo bench -p setpoint-test-support --bench forecast_public
//! ```
//!
//! Prints, per series and horizon, the MAE ratios to persistence and to seasonal naive (below
//! 1: the forecaster is better), MAPE, and the coverage of the 80 % interval.

use chrono::TimeDelta;
use setpoint_test_support::public_series::{evaluate, load_all};

fn main() {
    println!(
        "| series | horizon | forecasts | MAE / persistence | MAE / seasonal naive | MAPE | 80 % interval coverage |"
    );
    println!("|---|---|---|---|---|---|---|");
    let started = std::time::Instant::now();
    for public in load_all() {
        let result = evaluate(&public, 4, public.step, TimeDelta::hours(1));
        for h in &result.summary {
            let f = |v: Option<f64>| v.map_or("–".to_string(), |v| format!("{v:.3}"));
            println!(
                "| `{}` | {} min | {} | {} | {} | {} | {} |",
                public.name,
                h.horizon.num_minutes(),
                h.count,
                f(h.ratio_persistence),
                f(h.ratio_seasonal_naive),
                h.mape
                    .map_or("–".to_string(), |v| format!("{:.1} %", v * 100.0)),
                f(h.coverage),
            );
        }
    }
    eprintln!("evaluated in {:.1} s", started.elapsed().as_secs_f64());
}
