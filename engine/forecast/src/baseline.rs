//! The two forecasts every model is judged against.

use chrono::{DateTime, TimeDelta, Utc};

/// Persistence: the newest finite sample of `recent` stamped before `origin`, forecast for
/// any horizon.
pub fn persistence(recent: &crate::Series, origin: DateTime<Utc>) -> Option<f64> {
    recent.last_before(origin).map(|(_, v)| v)
}

/// Seasonal naive: the value one `season` before the target `origin + horizon` ("the same
/// minute yesterday" with a season of one day). `None` when that sample is missing, or is
/// not before `origin` (a horizon of a season or more).
pub fn seasonal_naive(
    history: &crate::Series,
    origin: DateTime<Utc>,
    horizon: TimeDelta,
    season: TimeDelta,
) -> Option<f64> {
    let source = crate::series::shift(crate::series::shift(origin, horizon), -season);
    if source >= origin {
        return None;
    }
    history.value_at(source)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::Series;

    #[test]
    fn baselines_read_only_the_past() {
        let t0 = DateTime::from_timestamp(0, 0).unwrap();
        let s = Series::new(
            t0,
            TimeDelta::minutes(1),
            vec![1.0, 2.0, f64::NAN, 4.0, 5.0],
        );
        let origin = t0 + TimeDelta::minutes(4);
        assert_eq!(persistence(&s, origin), Some(4.0));
        assert_eq!(persistence(&s, t0 + TimeDelta::minutes(3)), Some(2.0));
        assert_eq!(persistence(&s, t0), None);
        let season = TimeDelta::minutes(3);
        assert_eq!(
            seasonal_naive(&s, origin, TimeDelta::zero(), season),
            Some(2.0)
        );
        assert_eq!(
            seasonal_naive(&s, origin, TimeDelta::minutes(1), season),
            None
        ); // missing
        assert_eq!(
            seasonal_naive(&s, origin, TimeDelta::minutes(3), season),
            None
        ); // not past
    }
}
