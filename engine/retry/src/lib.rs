//! One retry policy for every call that may pass on a second try: a metric query, an MLflow
//! request, a Slack post, a webhook delivery, an actuator call.
//!
//! Each of those used to hand-write its own loop; they now share [`RetryPolicy`], which keeps
//! the part that is easy to get subtly wrong in one place: jittered exponential backoff (so a
//! fleet of loops that failed together does not retry together), a cap on attempts, and an
//! optional deadline over the whole operation, attempts and waits included, so a hanging
//! server costs a known amount of time. The backoff itself is [`backon`]'s; this crate adds the
//! deadline, the attempt count the callers report, and one log line per retry.
//!
//! What is worth retrying stays with the caller, who knows its errors: [`RetryPolicy::run`]
//! takes a predicate. Time is Tokio's: the waits are Tokio sleeps and the deadline is measured
//! on Tokio's clock, so a test with `tokio::time::pause()` runs without waiting.

use std::fmt::Display;
use std::future::Future;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};
use tokio::time::Instant;

/// How an operation is retried: exponential backoff from `initial_delay`, doubling up to
/// `max_delay`, for at most `max_attempts` attempts and, if set, within `deadline`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// The wait before the first retry; it doubles on each retry.
    pub initial_delay: Duration,
    /// The longest wait between two attempts.
    pub max_delay: Duration,
    /// Most attempts, the first one included; 0 counts as 1.
    pub max_attempts: u32,
    /// The longest the whole operation may take, attempts and waits included; `None` for no
    /// limit beyond the attempts.
    pub deadline: Option<Duration>,
    /// Whether each wait is drawn at random from the upper half of its nominal value, so that
    /// callers that failed together spread their retries.
    pub jitter: bool,
}

impl RetryPolicy {
    /// A policy with jitter and no deadline.
    pub fn new(initial_delay: Duration, max_delay: Duration, max_attempts: u32) -> Self {
        Self {
            initial_delay,
            max_delay,
            max_attempts,
            deadline: None,
            jitter: true,
        }
    }

    /// The same policy with `retries` retries after the first attempt.
    pub fn with_retries(self, retries: u32) -> Self {
        Self {
            max_attempts: retries.saturating_add(1),
            ..self
        }
    }

    /// The same policy with an overall deadline.
    pub fn with_deadline(self, deadline: Duration) -> Self {
        Self {
            deadline: Some(deadline),
            ..self
        }
    }

    /// The same policy with a deadline of what its attempts take at most when each is one
    /// request bounded by `request_timeout`: that timeout and a little more per attempt, plus
    /// [`RetryPolicy::max_total_delay`]. A hanging server then costs a known time, and the
    /// deadline does not race the last request's own timeout, whose error says more.
    pub fn with_request_deadline(self, request_timeout: Duration) -> Self {
        // Per attempt, the time around the request that its timeout does not cover.
        const AROUND: Duration = Duration::from_millis(100);
        let attempts = request_timeout
            .saturating_add(AROUND)
            .saturating_mul(self.max_attempts.max(1));
        self.with_deadline(attempts.saturating_add(self.max_total_delay()))
    }

    /// The same policy without jitter: every wait is its nominal value.
    pub fn without_jitter(self) -> Self {
        Self {
            jitter: false,
            ..self
        }
    }

    /// Retries after the first attempt.
    pub fn retries(&self) -> u32 {
        self.max_attempts.saturating_sub(1)
    }

    /// The backoff as a [`backon`] builder.
    ///
    /// backon's jitter adds up to 100 % to a wait, which would break `max_delay`; with jitter
    /// on, the builder therefore starts from half the waits, so each wait falls in
    /// `[nominal / 2, nominal)` and does not exceed `max_delay` (but for backon's f32 rounding,
    /// which [`RetryPolicy::run`] clamps). The sum of the waits is bounded
    /// by the deadline too (backon's total delay), though only [`RetryPolicy::run`] also counts
    /// the time the attempts take.
    pub fn backoff(&self) -> ExponentialBuilder {
        let max = self.max_delay;
        let first = self.initial_delay.min(max);
        let builder = ExponentialBuilder::new()
            .with_factor(2.0)
            .with_max_times(usize::try_from(self.retries()).unwrap_or(usize::MAX))
            .with_total_delay(self.deadline);
        if self.jitter {
            builder
                .with_min_delay(first / 2)
                .with_max_delay(max / 2)
                .with_jitter()
        } else {
            builder.with_min_delay(first).with_max_delay(max)
        }
    }

    /// The longest the waits can add up to when every retry is used: the sum of the nominal
    /// waits (jitter only shortens them).
    pub fn max_total_delay(&self) -> Duration {
        let max = self.max_delay;
        let mut wait = self.initial_delay.min(max);
        let mut total = Duration::ZERO;
        let retries = self.retries();
        for done in 0..retries {
            if wait >= max || wait.is_zero() {
                // From here on every wait is the same; no need to walk them one by one.
                return total.saturating_add(wait.saturating_mul(retries - done));
            }
            total = total.saturating_add(wait);
            wait = wait.saturating_mul(2).min(max);
        }
        total
    }

    /// Runs `operation` until it succeeds, fails with an error `retryable` rejects, runs out of
    /// attempts, or would run past the deadline; logs a warning naming `what` before each
    /// retry. Returns the value and the number of attempts made.
    ///
    /// A wait that would end past the deadline is not started: the last error is returned
    /// then. An attempt still running at the deadline is dropped, and the outcome is
    /// [`Error::DeadlineExceeded`].
    pub async fn run<T, E, F, Fut, P>(
        &self,
        what: &str,
        mut operation: F,
        mut retryable: P,
    ) -> Result<(T, u32), Error<E>>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, E>>,
        P: FnMut(&E) -> bool,
        E: Display,
    {
        // Atomic rather than a Cell only so the future stays `Send`; nothing runs concurrently.
        let attempts = AtomicU32::new(0);
        let deadline = self.deadline.map(|limit| Instant::now() + limit);
        let attempt = || {
            attempts.fetch_add(1, Ordering::Relaxed);
            let call = operation();
            async move {
                match deadline {
                    None => call.await.map_err(Stop::Failed),
                    Some(at) => match tokio::time::timeout_at(at, call).await {
                        Ok(outcome) => outcome.map_err(Stop::Failed),
                        Err(_) => Err(Stop::Deadline),
                    },
                }
            }
        };
        let outcome = attempt
            .retry(self.backoff())
            .when(|stop| match stop {
                Stop::Failed(error) => retryable(error),
                Stop::Deadline => false,
            })
            .adjust(|_, wait| {
                // backon computes the waits in f32, which can overshoot the cap by nanoseconds.
                let wait = wait.map(|wait| wait.min(self.max_delay));
                // The attempt after this wait needs some time before the deadline too.
                wait.filter(|wait| deadline.is_none_or(|at| Instant::now() + *wait < at))
            })
            .notify(|stop, wait| {
                if let Stop::Failed(error) = stop {
                    tracing::warn!(
                        what,
                        attempt = attempts.load(Ordering::Relaxed),
                        %error,
                        retry_in = ?wait,
                        "failed; retrying"
                    );
                }
            })
            .await;
        let attempts = attempts.into_inner();
        match outcome {
            Ok(value) => Ok((value, attempts)),
            Err(Stop::Failed(error)) => Err(Error::Failed { error, attempts }),
            Err(Stop::Deadline) => Err(Error::DeadlineExceeded {
                deadline: self.deadline.unwrap_or_default(),
                attempts,
            }),
        }
    }
}

/// Why one attempt ended without a value.
enum Stop<E> {
    Failed(E),
    Deadline,
}

/// How a retried operation failed.
#[derive(Debug, thiserror::Error)]
pub enum Error<E> {
    /// The last attempt failed: its error was not retryable, or no attempt or no time was left
    /// for another.
    #[error("{error}")]
    Failed {
        /// The last attempt's error.
        error: E,
        /// Attempts made, the last one included.
        attempts: u32,
    },
    /// The deadline passed while an attempt was running; the attempt was abandoned.
    #[error("no success within {deadline:?} ({attempts} attempt(s))")]
    DeadlineExceeded {
        /// The policy's deadline.
        deadline: Duration,
        /// Attempts made, the abandoned one included.
        attempts: u32,
    },
}

impl<E> Error<E> {
    /// Attempts made, the last one included.
    pub fn attempts(&self) -> u32 {
        match self {
            Error::Failed { attempts, .. } | Error::DeadlineExceeded { attempts, .. } => *attempts,
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::cell::{Cell, RefCell};

    use backon::BackoffBuilder;

    use super::*;

    const MS: Duration = Duration::from_millis(1);

    /// An error that says whether it is worth retrying.
    #[derive(Debug, PartialEq)]
    struct Failure {
        transient: bool,
    }

    impl Display for Failure {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(if self.transient { "down" } else { "refused" })
        }
    }

    fn policy() -> RetryPolicy {
        RetryPolicy::new(100 * MS, 1000 * MS, 4)
    }

    #[tokio::test]
    async fn retries_a_retryable_error_up_to_max_attempts() {
        tokio::time::pause();
        let calls = Cell::new(0);
        let outcome: Result<((), u32), _> = policy()
            .run(
                "test",
                || {
                    calls.set(calls.get() + 1);
                    async { Err(Failure { transient: true }) }
                },
                |e: &Failure| e.transient,
            )
            .await;
        let error = outcome.unwrap_err();
        assert!(matches!(
            error,
            Error::Failed {
                error: Failure { transient: true },
                attempts: 4
            }
        ));
        assert_eq!(calls.get(), 4);
    }

    #[tokio::test]
    async fn a_success_after_failures_reports_its_attempt() {
        tokio::time::pause();
        let calls = Cell::new(0);
        let outcome = policy()
            .run(
                "test",
                || {
                    calls.set(calls.get() + 1);
                    let n = calls.get();
                    async move {
                        if n < 3 {
                            Err(Failure { transient: true })
                        } else {
                            Ok(n)
                        }
                    }
                },
                |e: &Failure| e.transient,
            )
            .await;
        assert_eq!(outcome.unwrap(), (3, 3));
    }

    #[tokio::test]
    async fn stops_at_once_on_a_non_retryable_error() {
        tokio::time::pause();
        let start = Instant::now();
        let outcome: Result<((), u32), _> = policy()
            .run(
                "test",
                || async { Err(Failure { transient: false }) },
                |e: &Failure| e.transient,
            )
            .await;
        assert_eq!(outcome.unwrap_err().attempts(), 1);
        assert_eq!(start.elapsed(), Duration::ZERO, "no wait before giving up");
    }

    #[tokio::test]
    async fn zero_attempts_still_makes_one() {
        tokio::time::pause();
        let outcome: Result<((), u32), _> = RetryPolicy::new(MS, MS, 0)
            .run(
                "test",
                || async { Err(Failure { transient: true }) },
                |e: &Failure| e.transient,
            )
            .await;
        assert_eq!(outcome.unwrap_err().attempts(), 1);
    }

    #[tokio::test]
    async fn never_exceeds_the_deadline_with_slow_failures() {
        tokio::time::pause();
        let deadline = 5000 * MS;
        let start = Instant::now();
        // Each attempt takes 700 ms and fails; without the deadline the 20 attempts and their
        // waits would take over 30 s.
        let outcome: Result<((), u32), _> = RetryPolicy::new(100 * MS, 1000 * MS, 20)
            .with_deadline(deadline)
            .run(
                "test",
                || async {
                    tokio::time::sleep(700 * MS).await;
                    Err(Failure { transient: true })
                },
                |e: &Failure| e.transient,
            )
            .await;
        // Tokio's timer ticks in milliseconds and rounds a deadline up to the next tick.
        assert!(
            start.elapsed() <= deadline + MS,
            "took {:?}",
            start.elapsed()
        );
        let error = outcome.unwrap_err();
        assert!(error.attempts() > 1 && error.attempts() < 20, "{error:?}");
    }

    #[tokio::test]
    async fn a_hanging_attempt_is_cut_at_the_deadline() {
        tokio::time::pause();
        let deadline = 3000 * MS;
        let start = Instant::now();
        let outcome: Result<((), u32), _> = policy()
            .with_deadline(deadline)
            .run(
                "test",
                || async {
                    tokio::time::sleep(Duration::from_secs(3600)).await;
                    Err(Failure { transient: true })
                },
                |e: &Failure| e.transient,
            )
            .await;
        // Tokio's timer ticks in milliseconds and rounds a deadline up to the next tick.
        assert!(start.elapsed() >= deadline && start.elapsed() <= deadline + MS);
        assert!(matches!(
            outcome.unwrap_err(),
            Error::DeadlineExceeded { deadline: d, attempts: 1 } if d == deadline
        ));
    }

    #[tokio::test]
    async fn waits_between_attempts_grow_and_stay_under_max() {
        tokio::time::pause();
        let starts = RefCell::new(Vec::new());
        let outcome: Result<((), u32), _> = RetryPolicy::new(100 * MS, 1000 * MS, 8)
            .run(
                "test",
                || {
                    starts.borrow_mut().push(Instant::now());
                    async { Err(Failure { transient: true }) }
                },
                |e: &Failure| e.transient,
            )
            .await;
        assert_eq!(outcome.unwrap_err().attempts(), 8);
        let starts = starts.into_inner();
        let waits: Vec<Duration> = starts.windows(2).map(|w| w[1] - w[0]).collect();
        let nominal = [100, 200, 400, 800, 1000, 1000, 1000].map(|ms| ms * MS);
        assert_eq!(waits.len(), nominal.len());
        // The paused clock advances in whole milliseconds (Tokio's timer resolution).
        for (wait, nominal) in waits.iter().zip(nominal) {
            assert!(
                *wait >= nominal / 2 && *wait <= nominal + MS,
                "wait {wait:?} for nominal {nominal:?}: {waits:?}"
            );
        }
        // Up to the cap, each wait's range starts where the previous one's ends.
        assert!(waits[..4].windows(2).all(|w| w[0] <= w[1]), "{waits:?}");
    }

    #[test]
    fn the_future_is_send() {
        // Callers box it as a `Send` future for their trait objects.
        fn send<T: Send>(_: &T) {}
        let policy = policy();
        let future = policy.run(
            "test",
            || async { Ok::<_, Failure>(()) },
            |_: &Failure| true,
        );
        send(&future);
    }

    #[test]
    fn without_jitter_the_waits_double_up_to_max() {
        // backon computes in f32: compare to the microsecond.
        let waits: Vec<Duration> = RetryPolicy::new(100 * MS, 1000 * MS, 7)
            .without_jitter()
            .backoff()
            .build()
            .map(|wait| Duration::from_micros(u64::try_from(wait.as_micros()).unwrap()))
            .collect();
        let expected = [100, 200, 400, 800, 1000, 1000].map(|ms| ms * MS);
        assert_eq!(waits, expected);
    }

    #[test]
    fn jittered_waits_never_exceed_max() {
        let policy = RetryPolicy::new(300 * MS, 1000 * MS, 50);
        for _ in 0..100 {
            for wait in policy.backoff().build() {
                // Within backon's f32 rounding; `run` clamps the rest.
                assert!(
                    wait <= policy.max_delay + Duration::from_micros(1),
                    "{wait:?}"
                );
            }
        }
    }

    #[test]
    fn an_initial_delay_above_max_is_capped() {
        let waits: Vec<Duration> = RetryPolicy::new(5000 * MS, 1000 * MS, 3)
            .without_jitter()
            .backoff()
            .build()
            .collect();
        assert_eq!(waits, [1000 * MS, 1000 * MS]);
    }

    #[test]
    fn a_request_deadline_covers_every_attempt_and_wait() {
        let policy = RetryPolicy::new(200 * MS, 5000 * MS, 4).with_request_deadline(30_000 * MS);
        // 30.1 s for each of the 4 attempts, and waits of at most 200, 400 and 800 ms.
        assert_eq!(policy.deadline, Some(121_800 * MS));
        let once = RetryPolicy::new(200 * MS, 5000 * MS, 1).with_request_deadline(2000 * MS);
        assert_eq!(once.deadline, Some(2100 * MS));
    }

    #[test]
    fn max_total_delay_is_the_sum_of_the_nominal_waits() {
        let policy = RetryPolicy::new(100 * MS, 1000 * MS, 7);
        assert_eq!(policy.max_total_delay(), 3500 * MS);
        assert_eq!(policy.with_retries(0).max_total_delay(), Duration::ZERO);
        assert_eq!(
            RetryPolicy::new(100 * MS, 1000 * MS, u32::MAX).max_total_delay(),
            1500 * MS + 1000 * MS * (u32::MAX - 5)
        );
    }
}
