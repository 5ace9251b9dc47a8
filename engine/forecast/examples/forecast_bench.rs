//! Measures the forecaster: fit and predict times, a fleet's refit on two threads, forecast
//! quality against persistence and seasonal naive, interval coverage, and anomaly precision
//! and recall by episode, all on deterministic synthetic series.
//!
//! ```sh
//! cargo run --release -p setpoint-forecast --example forecast_bench
//! ```
//!
//! `SETPOINT_BENCH_FLEET` (default 10000) sets the refit's fleet size, `SETPOINT_BENCH_SERIES`
//! (default 20) the number of series the quality is measured on.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use chrono::{DateTime, TimeDelta, Utc};
use setpoint_forecast::synthetic::{Injection, Synthetic, inject};
use setpoint_forecast::{
    BacktestPlan, DEFAULT_ANOMALY_THRESHOLD, ForecastSettings, SeasonalModel, Series, backtest,
    refit_all,
};

const DAY_TICKS: usize = 5760; // 15 s

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn start() -> Result<DateTime<Utc>> {
    // A Monday at midnight, so the two weeks hold two whole weekends.
    DateTime::parse_from_rfc3339("2026-03-02T00:00:00Z")
        .map(|t| t.with_timezone(&Utc))
        .context("start time")
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    if xs.is_empty() {
        f64::NAN
    } else {
        xs[xs.len() / 2]
    }
}

fn median_duration(mut xs: Vec<Duration>) -> Duration {
    xs.sort();
    xs.get(xs.len() / 2).copied().unwrap_or_default()
}

/// The recipes quality is measured on: a spread of noise, drift and pattern strength.
fn recipe(i: usize) -> Synthetic {
    let k = i as f64;
    Synthetic {
        base: 50.0 + 37.0 * (k % 7.0),
        daily: 0.2 + 0.05 * (k % 6.0),
        weekly: 0.1 + 0.05 * (k % 4.0),
        noise: 0.01 + 0.01 * (k % 5.0),
        // From series where seasonal naive beats persistence at an hour (as on real CPU
        // series) to ones whose level wanders so much that it does not.
        drift: [0.001, 0.003, 0.007, 0.015][i % 4],
        seed: 1000 + i as u64,
    }
}

fn main() -> Result<()> {
    let settings = ForecastSettings::default();
    let t0 = start()?;
    let step = TimeDelta::seconds(15);

    // --- fit and predict times -------------------------------------------------------------
    println!("## fit and predict (one series, 2 weeks of history)");
    for (label, history_step) in [
        ("15 s", TimeDelta::seconds(15)),
        ("1 min", TimeDelta::minutes(1)),
    ] {
        let len = (TimeDelta::days(14).num_seconds() / history_step.num_seconds()) as usize;
        let history = Synthetic::default().generate(t0, history_step, len);
        let mut fits = Vec::new();
        let mut model = None;
        for _ in 0..41 {
            let t = Instant::now();
            model = Some(SeasonalModel::fit(&history, &settings)?);
            fits.push(t.elapsed());
        }
        let model = model.context("no model")?;
        let origin = history.end();
        let mut predicts = Vec::new();
        let mut detects = Vec::new();
        let mut sink = 0.0;
        for i in 0..10_000 {
            let horizon = TimeDelta::minutes((i % 61) as i64);
            let t = Instant::now();
            sink += model.predict(&history, origin, horizon)?.point;
            predicts.push(t.elapsed());
            let t = Instant::now();
            sink += model
                .detect(&history, origin, 100.0, DEFAULT_ANOMALY_THRESHOLD)?
                .score;
            detects.push(t.elapsed());
        }
        std::hint::black_box(sink);
        println!(
            "history at {label} ({len} samples): fit median {:.2} ms; predict median {:.1} µs; detect median {:.1} µs",
            median_duration(fits).as_secs_f64() * 1e3,
            median_duration(predicts).as_secs_f64() * 1e6,
            median_duration(detects).as_secs_f64() * 1e6,
        );
    }

    // --- fleet refit -----------------------------------------------------------------------
    let fleet = env("SETPOINT_BENCH_FLEET", 10_000);
    let distinct = 200.min(fleet.max(1));
    let minute_len = 14 * 24 * 60;
    let series: Vec<Series> = (0..distinct)
        .map(|i| recipe(i).generate(t0, TimeDelta::minutes(1), minute_len))
        .collect();
    let refs: Vec<&Series> = (0..fleet).map(|i| &series[i % distinct]).collect();
    let t = Instant::now();
    let models = refit_all(&refs, &settings, 2);
    let elapsed = t.elapsed();
    let failed = models.iter().filter(|m| m.is_err()).count();
    println!(
        "\n## refit of {fleet} series (2 weeks at 1 min, {distinct} distinct), 2 threads: {:.1} s, {failed} failed",
        elapsed.as_secs_f64()
    );
    drop(models);
    drop(series);

    // --- quality ---------------------------------------------------------------------------
    let n_series = env("SETPOINT_BENCH_SERIES", 20);
    let horizons = [5, 15, 30, 60].map(TimeDelta::minutes);
    println!(
        "\n## quality: {n_series} series at 15 s, origins every 15 min over the 2 days after 2 weeks, hourly refit"
    );
    let mut ratios_p: Vec<Vec<f64>> = vec![Vec::new(); horizons.len()];
    let mut ratios_s: Vec<Vec<f64>> = vec![Vec::new(); horizons.len()];
    let mut pooled: Vec<[f64; 5]> = vec![[0.0; 5]; horizons.len()]; // mae, persistence, naive, covered, count
    for i in 0..n_series {
        let s = recipe(i).generate(t0, step, 16 * DAY_TICKS);
        let plan = BacktestPlan {
            from: t0 + TimeDelta::days(14),
            to: s.end() - TimeDelta::hours(1),
            every: TimeDelta::minutes(15),
            horizons: horizons.to_vec(),
            refit_every: TimeDelta::hours(1),
        };
        let result = backtest(&s, &plan, &settings)?;
        for (h, summary) in result.summary.iter().enumerate() {
            let (Some(p), Some(n), Some(mae), Some(cov)) = (
                summary.ratio_persistence,
                summary.ratio_seasonal_naive,
                summary.mae,
                summary.coverage,
            ) else {
                bail!("series {i}: no comparable forecasts at {}", summary.horizon);
            };
            ratios_p[h].push(p);
            ratios_s[h].push(n);
            let c = summary.count as f64;
            pooled[h][0] += mae * c;
            pooled[h][1] += summary.mae_persistence.unwrap_or(f64::NAN) * c;
            pooled[h][2] += summary.mae_seasonal_naive.unwrap_or(f64::NAN) * c;
            pooled[h][3] += cov * c;
            pooled[h][4] += c;
        }
    }
    println!(
        "| horizon | MAE / persistence (median, worst) | MAE / seasonal naive (median, worst) | pooled: model / p, model / s, s / p | 80 % interval coverage |"
    );
    println!("|---|---|---|---|---|");
    for (h, horizon) in horizons.iter().enumerate() {
        let worst = |v: &Vec<f64>| v.iter().copied().fold(f64::MIN, f64::max);
        let [mae, pers, naive, cov, count] = pooled[h];
        println!(
            "| {} min | {:.2}, {:.2} | {:.2}, {:.2} | {:.2}, {:.2}, {:.2} | {:.3} |",
            horizon.num_minutes(),
            median(ratios_p[h].clone()),
            worst(&ratios_p[h]),
            median(ratios_s[h].clone()),
            worst(&ratios_s[h]),
            mae / pers,
            mae / naive,
            naive / pers,
            cov / count,
        );
    }

    // --- anomalies -------------------------------------------------------------------------
    println!(
        "\n## anomalies: {n_series} series, one day of 15 s ticks after 2 weeks, threshold {DEFAULT_ANOMALY_THRESHOLD}"
    );
    // Counted by episode, as `setpoint sim fast-loop` counts: alarms at most 5 min apart are
    // one episode, true when within 5 min of an injection; an injection is found when an
    // alarm falls in it or the 5 min after it.
    const EPISODE_TICKS: usize = 20;
    let (mut episodes, mut true_episodes, mut injected, mut found) = (0usize, 0, 0, 0);
    for i in 0..n_series {
        let mut s = recipe(i).generate(t0, step, 15 * DAY_TICKS);
        let history = s.slice_before(t0 + TimeDelta::days(14));
        let model = SeasonalModel::fit(&history, &settings)?;
        let first = 14 * DAY_TICKS;
        let injections: Vec<Injection> = (0..30)
            .map(|k| Injection {
                index: first + 100 + k * 180 + (k * 37) % 60,
                len: [2, 3, 5, 10, 20][k % 5],
                change: [0.5, -0.4, 0.3, -0.3, 0.35][(k / 5) % 5],
            })
            .collect();
        inject(&mut s, &injections);
        let mut alarms = Vec::new();
        for j in first..s.len() {
            let at = s.time_at(j);
            if model
                .detect(&s, at, s.values[j], DEFAULT_ANOMALY_THRESHOLD)?
                .anomalous
            {
                alarms.push(j);
            }
        }
        let near = |from: usize, to: usize| {
            injections
                .iter()
                .any(|w| from < w.index + w.len + EPISODE_TICKS && to + EPISODE_TICKS >= w.index)
        };
        let mut episode: Option<(usize, usize)> = None;
        for &j in &alarms {
            episode = match episode {
                Some((first, last)) if j - last <= EPISODE_TICKS => Some((first, j)),
                Some((first, last)) => {
                    episodes += 1;
                    true_episodes += usize::from(near(first, last));
                    Some((j, j))
                }
                None => Some((j, j)),
            };
        }
        if let Some((first, last)) = episode {
            episodes += 1;
            true_episodes += usize::from(near(first, last));
        }
        injected += injections.len();
        found += injections
            .iter()
            .filter(|w| {
                alarms
                    .iter()
                    .any(|&j| j >= w.index && j < w.index + w.len + EPISODE_TICKS)
            })
            .count();
    }
    println!(
        "precision {:.3}, recall {:.3} ({true_episodes} of {episodes} alarm episodes near an injection, {found} of {injected} injections flagged)",
        true_episodes as f64 / episodes.max(1) as f64,
        found as f64 / injected.max(1) as f64
    );
    Ok(())
}
