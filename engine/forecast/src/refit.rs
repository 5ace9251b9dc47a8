//! Fitting a fleet's models on a few threads, one series' failure staying its own.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::error::{FitStage, ForecastError};
use crate::model::SeasonalModel;
use crate::series::Series;
use crate::settings::ForecastSettings;

/// Fits one model per series on `threads` threads (0: one per available core), returning
/// the results in the order of `series`.
///
/// It blocks until every series is fitted: call it from a thread of its own (or
/// `spawn_blocking`), not the tick's. A series that cannot be fitted gets its error; even
/// a panic inside a fit is caught and becomes that series' [`ForecastError::Fit`].
pub fn refit_all(
    series: &[&Series],
    settings: &ForecastSettings,
    threads: usize,
) -> Vec<Result<SeasonalModel, ForecastError>> {
    let threads = if threads == 0 {
        std::thread::available_parallelism().map_or(1, usize::from)
    } else {
        threads
    }
    .min(series.len())
    .max(1);
    let next = AtomicUsize::new(0);
    let fit_one = |i: usize| {
        catch_unwind(AssertUnwindSafe(|| SeasonalModel::fit(series[i], settings))).unwrap_or_else(
            |_| {
                Err(ForecastError::Fit {
                    stage: FitStage::Internal,
                    detail: "the fit panicked".to_owned(),
                })
            },
        )
    };
    let work = || {
        let mut done = Vec::new();
        loop {
            let i = next.fetch_add(1, Ordering::Relaxed);
            if i >= series.len() {
                return done;
            }
            done.push((i, fit_one(i)));
        }
    };
    let mut results: Vec<Option<Result<SeasonalModel, ForecastError>>> = vec![None; series.len()];
    std::thread::scope(|scope| {
        let handles: Vec<_> = (1..threads).map(|_| scope.spawn(work)).collect();
        let mut all = work();
        for handle in handles {
            // A worker only panics outside `fit_one`, i.e. never; its series would then be
            // reported as failed below.
            if let Ok(done) = handle.join() {
                all.extend(done);
            }
        }
        for (i, result) in all {
            results[i] = Some(result);
        }
    });
    results
        .into_iter()
        .map(|r| {
            r.unwrap_or_else(|| {
                Err(ForecastError::Fit {
                    stage: FitStage::Internal,
                    detail: "the fitting thread failed".to_owned(),
                })
            })
        })
        .collect()
}
