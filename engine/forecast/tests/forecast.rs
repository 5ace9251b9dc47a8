//! Behaviour of the forecaster on generated series with known patterns, gaps, level shifts
//! and injected anomalies.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use chrono::{DateTime, TimeDelta, Utc};
use setpoint_forecast::synthetic::{Injection, Synthetic, inject};
use setpoint_forecast::{
    BacktestPlan, DEFAULT_ANOMALY_THRESHOLD, ErrorTracker, Forecast, ForecastError,
    ForecastSettings, SeasonalModel, Series, backtest, persistence, refit_all, seasonal_naive,
};

/// A Monday at midnight.
fn t0() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-03-02T00:00:00Z")
        .unwrap()
        .with_timezone(&Utc)
}

fn minute() -> TimeDelta {
    TimeDelta::minutes(1)
}

const DAY_MINUTES: usize = 24 * 60;

fn series(recipe: Synthetic, days: usize) -> Series {
    recipe.generate(t0(), minute(), days * DAY_MINUTES)
}

fn fit(history: &Series) -> SeasonalModel {
    SeasonalModel::fit(history, &ForecastSettings::default()).unwrap()
}

// --- the model ------------------------------------------------------------------------------

#[test]
fn recovers_a_known_seasonal_pattern() {
    let recipe = Synthetic {
        noise: 0.01,
        drift: 0.0,
        ..Synthetic::default()
    };
    let model = fit(&series(recipe, 14));
    // Compare shapes (the level is not part of the season) over the third week's Wednesday,
    // which is away from the weekend's edges.
    let day = t0() + TimeDelta::days(16);
    let times: Vec<_> = (0..96).map(|i| day + TimeDelta::minutes(15 * i)).collect();
    let learned: Vec<f64> = times.iter().map(|&t| model.seasonal(t)).collect();
    let truth: Vec<f64> = times.iter().map(|&t| recipe.seasonal(t)).collect();
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    let (ml, mt) = (mean(&learned), mean(&truth));
    let worst = learned
        .iter()
        .zip(&truth)
        .map(|(l, t)| ((l - ml) - (t - mt)).abs())
        .fold(0.0, f64::max);
    // The daily swing is ±52 around a base of 100.
    assert!(worst < 3.0, "seasonal shape off by up to {worst}");

    // The weekend dip (about 21 at noon) is learned too.
    let saturday = t0() + TimeDelta::days(19) + TimeDelta::hours(12);
    let wednesday = t0() + TimeDelta::days(16) + TimeDelta::hours(12);
    let learned = model.seasonal(wednesday) - model.seasonal(saturday);
    let truth = recipe.seasonal(wednesday) - recipe.seasonal(saturday);
    assert!(truth > 20.0);
    assert!(
        (learned - truth).abs() < 3.0,
        "weekend dip learned as {learned}, is {truth}"
    );
}

#[test]
fn fitting_is_deterministic() {
    let history = series(Synthetic::default(), 14);
    assert_eq!(fit(&history), fit(&history));
}

#[test]
fn forecasts_re_level_after_a_level_shift() {
    let recipe = Synthetic {
        drift: 0.0,
        ..Synthetic::default()
    };
    let mut s = series(recipe, 15);
    let model = fit(&s.slice_before(t0() + TimeDelta::days(14)));
    // From 14 days + 6 h on, the level is 50 units higher (half the base).
    let shift_at = 14 * DAY_MINUTES + 360;
    for v in &mut s.values[shift_at..] {
        *v += 50.0;
    }
    let horizon = TimeDelta::minutes(15);
    let before = t0() + TimeDelta::days(14) + TimeDelta::minutes(350);
    let after = t0() + TimeDelta::days(14) + TimeDelta::minutes(420);
    for (origin, offset) in [(before, 0.0), (after, 50.0)] {
        let f = model.predict(&s, origin, horizon).unwrap();
        let truth = 100.0 + recipe.seasonal(f.at) + offset;
        assert!(
            (f.point - truth).abs() < 8.0,
            "at {origin}: forecast {} for {truth}",
            f.point
        );
        assert!(f.lower < f.point && f.point < f.upper);
    }
}

#[test]
fn intervals_cover_close_to_their_level_on_noisy_series() {
    let settings = ForecastSettings::default();
    let mut tracker_15 = ErrorTracker::new();
    let mut tracker_60 = ErrorTracker::new();
    for seed in 1..=3 {
        let recipe = Synthetic {
            noise: 0.05,
            drift: 0.005,
            seed,
            ..Synthetic::default()
        };
        let s = series(recipe, 17);
        let plan = BacktestPlan {
            from: t0() + TimeDelta::days(14),
            to: s.end() - TimeDelta::hours(1),
            every: TimeDelta::minutes(10),
            horizons: vec![TimeDelta::minutes(15), TimeDelta::minutes(60)],
            refit_every: TimeDelta::hours(6),
        };
        let result = backtest(&s, &plan, &settings).unwrap();
        for row in &result.rows {
            let (Some(f), Some(actual)) = (&row.forecast, row.actual) else {
                continue;
            };
            let tracker = if row.horizon == TimeDelta::minutes(15) {
                &mut tracker_15
            } else {
                &mut tracker_60
            };
            tracker.record(f, actual, row.seasonal_naive);
        }
    }
    for (label, tracker) in [("15 min", &tracker_15), ("60 min", &tracker_60)] {
        let coverage = tracker.coverage().unwrap();
        assert!(tracker.count() > 1000);
        assert!(
            (0.72..=0.88).contains(&coverage),
            "80 % interval covered {coverage} at {label}"
        );
    }
}

#[test]
fn beats_persistence_and_seasonal_naive_at_15_and_60_minutes() {
    let settings = ForecastSettings::default();
    // A series dominated by noise (where seasonal naive is strong) and one by drift (where
    // persistence is).
    for recipe in [
        Synthetic {
            noise: 0.04,
            drift: 0.002,
            seed: 7,
            ..Synthetic::default()
        },
        Synthetic {
            noise: 0.01,
            drift: 0.015,
            seed: 8,
            ..Synthetic::default()
        },
    ] {
        let s = series(recipe, 16);
        let plan = BacktestPlan {
            from: t0() + TimeDelta::days(14),
            to: s.end() - TimeDelta::hours(1),
            every: TimeDelta::minutes(15),
            horizons: vec![TimeDelta::minutes(15), TimeDelta::minutes(60)],
            refit_every: TimeDelta::hours(4),
        };
        let result = backtest(&s, &plan, &settings).unwrap();
        for summary in &result.summary {
            let p = summary.ratio_persistence.unwrap();
            let n = summary.ratio_seasonal_naive.unwrap();
            assert!(
                p < 1.0 && n < 1.0,
                "{recipe:?} at {}: MAE / persistence {p}, MAE / seasonal naive {n}",
                summary.horizon
            );
            assert!((summary.mase.unwrap() - n).abs() < 1e-9);
        }
    }
}

// --- bad input ------------------------------------------------------------------------------

#[test]
fn a_history_shorter_than_two_weeks_is_too_short() {
    let short = series(Synthetic::default(), 10);
    let err = SeasonalModel::fit(&short, &ForecastSettings::default()).unwrap_err();
    assert!(
        matches!(err, ForecastError::TooShort { have, need } if have == TimeDelta::days(10) && need == TimeDelta::days(14)),
        "{err:?}"
    );
    // Missing samples at the start do not count as history.
    let mut s = series(Synthetic::default(), 15);
    for v in &mut s.values[..2 * DAY_MINUTES] {
        *v = f64::NAN;
    }
    assert!(matches!(
        SeasonalModel::fit(&s, &ForecastSettings::default()),
        Err(ForecastError::TooShort { .. })
    ));
    // Nothing at all.
    let empty = Series::new(t0(), minute(), vec![f64::NAN; 100]);
    assert!(matches!(
        SeasonalModel::fit(&empty, &ForecastSettings::default()),
        Err(ForecastError::TooShort { .. })
    ));
}

#[test]
fn too_many_missing_samples_or_a_long_gap_is_too_gappy() {
    // A missing first sample is no reason to refuse a history of exactly 14 days.
    let mut first_missing = series(Synthetic::default(), 14);
    first_missing.values[0] = f64::NAN;
    assert!(SeasonalModel::fit(&first_missing, &ForecastSettings::default()).is_ok());

    let mut sparse = series(Synthetic::default(), 14);
    for v in sparse.values.iter_mut().step_by(4) {
        *v = f64::NAN; // 25 % missing, in runs of one
    }
    let err = SeasonalModel::fit(&sparse, &ForecastSettings::default()).unwrap_err();
    assert!(
        matches!(err, ForecastError::TooGappy { missing_fraction, .. } if (missing_fraction - 0.25).abs() < 0.01),
        "{err:?}"
    );

    let mut gap = series(Synthetic::default(), 14);
    let from = 5 * DAY_MINUTES;
    for v in &mut gap.values[from..from + 181] {
        *v = f64::INFINITY; // non-finite is missing: a gap of 3 h 1 min
    }
    let err = SeasonalModel::fit(&gap, &ForecastSettings::default()).unwrap_err();
    assert!(
        matches!(err, ForecastError::TooGappy { longest_gap, .. } if longest_gap == TimeDelta::minutes(181)),
        "{err:?}"
    );
    assert!(err.to_string().contains("longest gap"));
}

#[test]
fn short_gaps_and_non_finite_values_are_tolerated() {
    let mut s = series(Synthetic::default(), 15);
    let from = 5 * DAY_MINUTES;
    for v in &mut s.values[from..from + 90] {
        *v = f64::NAN;
    }
    for i in (0..s.len()).step_by(97) {
        s.values[i] = if i % 2 == 0 {
            f64::INFINITY
        } else {
            f64::NEG_INFINITY
        };
    }
    let origin = t0() + TimeDelta::days(14);
    let model = fit(&s.slice_before(origin));
    // A missing sample among the recent ones is skipped.
    let f = model.predict(&s, origin, TimeDelta::minutes(30)).unwrap();
    let clean = fit(&series(Synthetic::default(), 14))
        .predict(
            &series(Synthetic::default(), 15),
            origin,
            TimeDelta::minutes(30),
        )
        .unwrap();
    assert!(
        (f.point - clean.point).abs() < 3.0,
        "{f:?} against {clean:?}"
    );
}

#[test]
fn stale_recent_data_horizons_and_observations_are_checked() {
    let s = series(Synthetic::default(), 15);
    let origin = t0() + TimeDelta::days(14) + TimeDelta::hours(3);
    let model = fit(&s.slice_before(t0() + TimeDelta::days(14)));

    let stale = s.slice_before(origin - TimeDelta::minutes(10));
    let err = model
        .predict(&stale, origin, TimeDelta::minutes(5))
        .unwrap_err();
    assert!(
        matches!(err, ForecastError::NoRecentData { last_seen: Some(t), .. } if t == origin - TimeDelta::minutes(11)),
        "{err:?}"
    );
    assert!(matches!(
        model.detect(&stale, origin, 100.0, 4.0),
        Err(ForecastError::NoRecentData { .. })
    ));
    assert!(matches!(
        model.predict(&s, origin, TimeDelta::minutes(61)),
        Err(ForecastError::HorizonTooLong { .. })
    ));
    assert!(matches!(
        model.predict(&s, origin, TimeDelta::minutes(-1)),
        Err(ForecastError::NegativeHorizon { .. })
    ));
    assert!(matches!(
        model.detect(&s, origin, f64::NAN, 4.0),
        Err(ForecastError::NonFiniteObservation { .. })
    ));
    let bad_settings = ForecastSettings {
        interval_level: 0.0,
        ..ForecastSettings::default()
    };
    assert!(matches!(
        SeasonalModel::fit(&s, &bad_settings),
        Err(ForecastError::Settings(_))
    ));
}

#[test]
fn non_negative_series_get_no_negative_bounds() {
    // A small rate that touches zero at night.
    let recipe = Synthetic {
        base: 2.0,
        daily: 0.9,
        weekly: 0.0,
        noise: 0.3,
        drift: 0.0,
        seed: 3,
    };
    let s = series(recipe, 15);
    let settings = ForecastSettings {
        non_negative: true,
        ..ForecastSettings::default()
    };
    let unclamped = fit(&s.slice_before(t0() + TimeDelta::days(14)));
    let model = SeasonalModel::fit(&s.slice_before(t0() + TimeDelta::days(14)), &settings).unwrap();
    let mut clamped = 0;
    for m in (0..DAY_MINUTES).step_by(20) {
        let origin = t0() + TimeDelta::days(14) + TimeDelta::minutes(m as i64);
        let f = model.predict(&s, origin, TimeDelta::minutes(30)).unwrap();
        assert!(f.lower >= 0.0 && f.point >= 0.0, "{f:?}");
        if unclamped
            .predict(&s, origin, TimeDelta::minutes(30))
            .unwrap()
            .lower
            < 0.0
        {
            clamped += 1;
        }
        let a = model.detect(&s, origin, 0.0, 4.0).unwrap();
        assert!(a.lower >= 0.0 && a.expected >= 0.0);
    }
    assert!(clamped > 0, "the series never came near zero");
}

// --- anomalies ------------------------------------------------------------------------------

/// Alarms of one series at most this many ticks (5 min at 15 s) apart are one episode, and an
/// alarm this close to an injected anomaly counts for it: as `setpoint sim fast-loop` counts.
const EPISODE_TICKS: usize = 20;

/// `(episodes, episodes near an injection, injections, injections flagged)` of the alarms at
/// ticks `alarms` (ascending) against the injected ticks `truth`.
fn episodes(alarms: &[usize], truth: &[bool]) -> (usize, usize, usize, usize) {
    let mut windows: Vec<(usize, usize)> = Vec::new();
    for (i, &injected) in truth.iter().enumerate() {
        match windows.last_mut() {
            Some((_, end)) if injected && *end == i => *end = i + 1,
            _ if injected => windows.push((i, i + 1)),
            _ => {}
        }
    }
    let near = |from: usize, to: usize| {
        windows
            .iter()
            .any(|&(s, e)| from < e + EPISODE_TICKS && to + EPISODE_TICKS >= s)
    };
    let (mut total, mut true_ones) = (0, 0);
    let mut episode: Option<(usize, usize)> = None;
    for &j in alarms {
        episode = match episode {
            Some((first, last)) if j - last <= EPISODE_TICKS => Some((first, j)),
            Some((first, last)) => {
                total += 1;
                true_ones += usize::from(near(first, last));
                Some((j, j))
            }
            None => Some((j, j)),
        };
    }
    if let Some((first, last)) = episode {
        total += 1;
        true_ones += usize::from(near(first, last));
    }
    let found = windows
        .iter()
        .filter(|&&(s, e)| alarms.iter().any(|&j| j >= s && j < e + EPISODE_TICKS))
        .count();
    (total, true_ones, windows.len(), found)
}

#[test]
fn injected_anomalies_are_found_with_precision_and_recall_above_0_9() {
    let step = TimeDelta::seconds(15);
    let day = 5760;
    let (mut total, mut true_ones, mut injected, mut found) = (0, 0, 0, 0);
    for seed in 1..=2u64 {
        let recipe = Synthetic {
            noise: 0.03,
            drift: 0.005,
            seed,
            ..Synthetic::default()
        };
        let mut s = recipe.generate(t0(), step, 14 * day + day / 2);
        let model = SeasonalModel::fit(
            &s.slice_before(t0() + TimeDelta::days(14)),
            &ForecastSettings::default(),
        )
        .unwrap();
        let first = 14 * day;
        // Spikes, dips and level shifts of 30-50 % of the level, lasting 2 to 20 ticks.
        let injections: Vec<Injection> = (0..15)
            .map(|k| Injection {
                index: first + 120 + k * 180 + (k * 37) % 50,
                len: [2, 3, 5, 10, 20][k % 5],
                change: [0.5, -0.4, 0.3, -0.3, 0.35][(k / 5 + k) % 5],
            })
            .collect();
        let truth = inject(&mut s, &injections);
        let mut alarms = Vec::new();
        for j in first..s.len() {
            let a = model
                .detect(&s, s.time_at(j), s.values[j], DEFAULT_ANOMALY_THRESHOLD)
                .unwrap();
            // An anomaly is always out of the band; out of the band is not always one.
            assert!(!a.anomalous || a.observed < a.lower || a.observed > a.upper);
            assert!(a.score <= a.sample_score);
            if a.anomalous {
                alarms.push(j);
            }
        }
        let (t, tt, i, f) = episodes(&alarms, &truth);
        total += t;
        true_ones += tt;
        injected += i;
        found += f;
    }
    let precision = true_ones as f64 / total as f64;
    let recall = found as f64 / injected as f64;
    assert!(
        precision >= 0.9 && recall >= 0.9,
        "precision {precision}, recall {recall} ({true_ones} of {total} episodes near an injection, {found} of {injected} injections flagged)"
    );
}

#[test]
fn noise_that_grows_with_the_load_does_not_flag_the_daily_peak() {
    // Before the scale was measured per hour of the day, one scale for the whole day sat
    // between the quiet night's noise and the peak's, and noise that is a share of the
    // load (5 % here, on a day that goes from about 60 to 180) was flagged at every peak.
    let step = minute();
    let day = DAY_MINUTES;
    let len = 15 * day;
    let clean = Synthetic {
        daily: 0.6,
        noise: 0.0,
        drift: 0.0,
        ..Synthetic::default()
    }
    .generate(t0(), step, len);
    let noise = Synthetic {
        base: 1.0,
        daily: 0.0,
        weekly: 0.0,
        noise: 0.05,
        drift: 0.0,
        seed: 7,
    }
    .generate(t0(), step, len);
    let values = clean
        .values
        .iter()
        .zip(&noise.values)
        .map(|(c, n)| c * n)
        .collect();
    let s = Series::new(t0(), step, values);
    let model = fit(&s.slice_before(t0() + TimeDelta::days(14)));
    let peak = t0() + TimeDelta::days(14) + TimeDelta::hours(14);
    let night = t0() + TimeDelta::days(14) + TimeDelta::hours(2);
    assert!(
        model.anomaly_scale(peak) > 2.0 * model.anomaly_scale(night),
        "peak {} night {}",
        model.anomaly_scale(peak),
        model.anomaly_scale(night)
    );
    let alarms: Vec<usize> = (14 * day..len)
        .filter(|&j| {
            model
                .detect(&s, s.time_at(j), s.values[j], DEFAULT_ANOMALY_THRESHOLD)
                .unwrap()
                .anomalous
        })
        .collect();
    assert!(alarms.is_empty(), "false alarms at ticks {alarms:?}");
}

#[test]
fn an_observation_on_the_learned_pattern_is_not_anomalous() {
    let s = series(Synthetic::default(), 15);
    let model = fit(&s.slice_before(t0() + TimeDelta::days(14)));
    let at = t0() + TimeDelta::days(14) + TimeDelta::hours(5);
    let value = s.value_at(at).unwrap();
    let a = model.detect(&s, at, value, 4.0).unwrap();
    assert!(!a.anomalous && a.score < 4.0, "{a:?}");
    // One sample 50 % up is out of the band but, on its own, noise's business...
    let lone = model.detect(&s, at, value * 1.5, 4.0).unwrap();
    assert!(
        lone.observed > lone.upper && lone.sample_score >= 4.0 && !lone.anomalous,
        "{lone:?}"
    );
    // ...the second of two is an anomaly.
    let mut held = s.clone();
    let before = held.index_of(at - minute()).unwrap();
    held.values[before] *= 1.5;
    let spike = model.detect(&held, at, value * 1.5, 4.0).unwrap();
    assert!(spike.anomalous && spike.observed > spike.upper, "{spike:?}");
}

// --- backtest -------------------------------------------------------------------------------

#[test]
fn the_backtest_sees_nothing_at_or_after_its_origins() {
    let s = series(Synthetic::default(), 16);
    let settings = ForecastSettings::default();
    let origins = [
        t0() + TimeDelta::days(14) + TimeDelta::minutes(7),
        t0() + TimeDelta::days(15) + TimeDelta::hours(3),
    ];
    for origin in origins {
        let plan = BacktestPlan {
            from: origin,
            to: origin + TimeDelta::seconds(1),
            every: TimeDelta::minutes(15),
            horizons: vec![
                TimeDelta::zero(),
                TimeDelta::minutes(15),
                TimeDelta::minutes(60),
            ],
            refit_every: TimeDelta::hours(1),
        };
        let clean = backtest(&s, &plan, &settings).unwrap();
        let mut poisoned = s.clone();
        let from = poisoned.index_of(origin).unwrap();
        for (k, v) in poisoned.values[from..].iter_mut().enumerate() {
            *v = if k % 2 == 0 { 1e9 } else { f64::NAN };
        }
        let dirty = backtest(&poisoned, &plan, &settings).unwrap();
        assert_eq!(clean.rows.len(), 3);
        for (c, d) in clean.rows.iter().zip(&dirty.rows) {
            assert!(c.forecast.is_some());
            assert_eq!(c.forecast, d.forecast);
            assert_eq!(c.persistence, d.persistence);
            assert_eq!(c.seasonal_naive, d.seasonal_naive);
        }
    }
}

#[test]
fn a_backtest_before_enough_history_reports_why() {
    let s = series(Synthetic::default(), 15);
    let plan = BacktestPlan {
        from: t0() + TimeDelta::days(13),
        to: t0() + TimeDelta::days(14) + TimeDelta::hours(2),
        every: TimeDelta::hours(1),
        horizons: vec![TimeDelta::minutes(15)],
        refit_every: TimeDelta::hours(1),
    };
    let result = backtest(&s, &plan, &ForecastSettings::default()).unwrap();
    let first = &result.rows[0];
    assert!(first.forecast.is_none());
    assert!(matches!(first.reason, Some(ForecastError::TooShort { .. })));
    assert!(first.actual.is_some() && first.persistence.is_some());
    let last = result.rows.last().unwrap();
    assert!(last.forecast.is_some(), "{:?}", last.reason);
    assert_eq!(result.summary[0].count, 2);

    let bad = BacktestPlan {
        horizons: vec![],
        ..plan
    };
    assert!(matches!(
        backtest(&s, &bad, &ForecastSettings::default()),
        Err(ForecastError::InvalidPlan { .. })
    ));
}

// --- fleet refit ----------------------------------------------------------------------------

#[test]
fn one_series_failing_to_fit_does_not_affect_the_others() {
    let a = series(Synthetic::default(), 14);
    let broken = Series::new(t0(), minute(), vec![f64::NAN; 14 * DAY_MINUTES]);
    let short = series(Synthetic::default(), 3);
    let bad_step = Series::new(t0(), TimeDelta::zero(), vec![1.0; 10]);
    let b = series(
        Synthetic {
            seed: 9,
            ..Synthetic::default()
        },
        14,
    );
    let all = [&a, &broken, &short, &bad_step, &b];
    let settings = ForecastSettings::default();
    let results = refit_all(&all, &settings, 2);
    assert_eq!(results.len(), 5);
    assert_eq!(results[0].as_ref().unwrap(), &fit(&a));
    assert!(matches!(results[1], Err(ForecastError::TooShort { .. })));
    assert!(matches!(results[2], Err(ForecastError::TooShort { .. })));
    assert!(matches!(results[3], Err(ForecastError::InvalidStep { .. })));
    assert_eq!(results[4].as_ref().unwrap(), &fit(&b));
}

// --- baselines and error tracking -----------------------------------------------------------

#[test]
fn the_error_tracker_adds_up() {
    let forecast = |point: f64| Forecast {
        origin: t0(),
        at: t0(),
        point,
        lower: point - 1.0,
        upper: point + 1.0,
        level: 0.8,
    };
    let mut tracker = ErrorTracker::new();
    assert_eq!(tracker.mae(), None);
    tracker.record(&forecast(10.0), 12.0, Some(14.0)); // |e| 2, in interval? no; naive |e| 2
    tracker.record(&forecast(10.0), 10.5, Some(9.5)); // |e| 0.5, covered; naive |e| 1
    tracker.record(&forecast(1.0), 0.0, None); // |e| 1, covered, no MAPE, no MASE
    tracker.record(&forecast(1.0), f64::NAN, Some(1.0)); // ignored
    assert_eq!(tracker.count(), 3);
    assert!((tracker.mae().unwrap() - 3.5 / 3.0).abs() < 1e-12);
    assert!((tracker.mape().unwrap() - (2.0 / 12.0 + 0.5 / 10.5) / 2.0).abs() < 1e-12);
    assert!((tracker.mase().unwrap() - 2.5 / 3.0).abs() < 1e-12);
    assert!((tracker.coverage().unwrap() - 2.0 / 3.0).abs() < 1e-12);

    let mut fleet = ErrorTracker::new();
    fleet.merge(&tracker);
    fleet.merge(&tracker);
    assert_eq!(fleet.count(), 6);
    assert_eq!(fleet.metrics().mase, tracker.metrics().mase);
}

#[test]
fn baselines_match_their_definitions() {
    let s = series(Synthetic::default(), 3);
    let origin = t0() + TimeDelta::days(2) + TimeDelta::hours(5);
    assert_eq!(persistence(&s, origin), s.value_at(origin - minute()));
    assert_eq!(
        seasonal_naive(&s, origin, TimeDelta::minutes(30), TimeDelta::days(1)),
        s.value_at(origin + TimeDelta::minutes(30) - TimeDelta::days(1))
    );
}

#[test]
fn a_recent_series_at_another_step_is_read_at_its_own_step() {
    let recipe = Synthetic {
        drift: 0.0,
        ..Synthetic::default()
    };
    let model = fit(&series(recipe, 14));
    // The same recipe sampled every 15 s, another draw of the noise.
    let recent = Synthetic { seed: 99, ..recipe }.generate(t0(), TimeDelta::seconds(15), 15 * 5760);
    let origin = t0() + TimeDelta::days(14) + TimeDelta::hours(9);
    let f = model
        .predict(&recent, origin, TimeDelta::minutes(30))
        .unwrap();
    let truth = 100.0 + recipe.seasonal(f.at);
    assert!(
        (f.point - truth).abs() < 5.0,
        "forecast {} for {truth}",
        f.point
    );
}

#[test]
fn instants_at_the_ends_of_time_give_errors_not_panics() {
    let model = fit(&series(Synthetic::default(), 14));
    let far = Series::new(
        DateTime::<Utc>::MAX_UTC - TimeDelta::hours(1),
        minute(),
        vec![1.0; 30],
    );
    let early = Series::new(DateTime::<Utc>::MIN_UTC, TimeDelta::days(1), vec![1.0; 30]);
    for (s, origin) in [
        (&far, DateTime::<Utc>::MAX_UTC),
        (&far, far.end()),
        (&early, DateTime::<Utc>::MIN_UTC),
        (&early, DateTime::<Utc>::MAX_UTC),
    ] {
        let _ = model.predict(s, origin, TimeDelta::minutes(60));
        let _ = model.detect(s, origin, 1.0, 4.0);
        let _ = seasonal_naive(s, origin, TimeDelta::minutes(60), TimeDelta::days(1));
        let _ = s.slice_before(origin);
    }
    let _ = SeasonalModel::fit(&early, &ForecastSettings::default());
    let _ = SeasonalModel::fit(&far, &ForecastSettings::default());
}
