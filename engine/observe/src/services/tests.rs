#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::{Arc, RwLock};

use chrono::{DateTime, TimeDelta, Timelike, Utc};

use super::*;
use crate::{MetricSource, RangeQuery};

/// 2026-11-23T00:00:00Z, a Monday.
const START: i64 = 1_795_392_000;

fn start() -> DateTime<Utc> {
    DateTime::from_timestamp(START, 0).unwrap()
}

fn config(services: usize) -> ServiceFleetConfig {
    ServiceFleetConfig::new(42, services, start())
}

fn quiet(services: usize) -> ServiceSim {
    let mut config = config(services);
    config.schedule = ScheduleConfig::none();
    ServiceSim::new(config).unwrap()
}

fn query(metric: &str, from: DateTime<Utc>, to: DateTime<Utc>, step: u64) -> RangeQuery {
    RangeQuery {
        metric: metric.to_string(),
        promql: String::new(),
        technology: SERVICE_TECHNOLOGY.to_string(),
        start: from,
        end: to,
        step_seconds: step,
        target_label: "service".to_string(),
        weekly: None,
    }
}

fn mean(values: impl IntoIterator<Item = f64>) -> f64 {
    let (sum, n) = values
        .into_iter()
        .fold((0.0, 0usize), |(s, n), v| (s + v, n + 1));
    sum / n as f64
}

/// Runs `controller` from the present to `until`, ticking every 15 s.
fn run(sim: &mut ServiceSim, controller: &mut dyn Controller, until: DateTime<Utc>) -> RunReport {
    run_closed_loop(sim, controller, until, TimeDelta::seconds(15)).unwrap()
}

/// A cheating controller: it reads future demand and degradations from the model and
/// scales each region ahead, so that the capacity wanted over the next pod start is there
/// when it is needed.
struct Oracle {
    model: Arc<FleetModel>,
    slo_ms: f64,
}

impl Controller for Oracle {
    fn name(&self) -> &str {
        "oracle"
    }

    fn tick(&mut self, now: DateTime<Utc>, observed: &FleetObservation, actions: &mut Vec<Action>) {
        for seen in &observed.services {
            let i = seen.service;
            let spec = &self.model.services()[i];
            let horizon = spec.pod_start + TimeDelta::seconds(30);
            for region in Region::ALL {
                let r = &seen.regions[region];
                let mut need: f64 = 0.0;
                let mut t = now;
                while t <= now + horizon {
                    let latency = spec.base_latency_ms * self.model.latency_factor(i, region, t);
                    // Utilisation that keeps p99 at 80 % of the SLO, and never above 70 %.
                    let rho = (1.0 - latency / (0.8 * self.slo_ms)).min(0.7);
                    let per_replica =
                        spec.saturation_rps() * self.model.capacity_factor(i, region, t) * rho;
                    need = need.max(self.model.demand(i, t) * r.weight / per_replica);
                    t += TimeDelta::seconds(15);
                }
                let desired = (need.ceil() as u32).clamp(r.min_replicas, r.max_replicas);
                if desired != r.replicas_desired {
                    actions.push(Action::SetReplicas {
                        service: i,
                        region,
                        replicas: desired,
                    });
                }
            }
        }
    }
}

#[test]
fn seasonality_shows_weekday_peaks_quiet_nights_and_lower_weekends() {
    let sim = quiet(12);
    // The last week of history: Monday 2026-11-16 to Monday 2026-11-23.
    let from = start() - TimeDelta::days(7);
    let result = sim
        .query(&query("request_rate", from, start(), 300))
        .unwrap();
    assert_eq!(result.series.len(), 12);
    for (name, series) in &result.series {
        let spec = &sim.services()[sim.service_index(name).unwrap()];
        let samples: Vec<(DateTime<Utc>, f64)> = series
            .timestamps_ms
            .iter()
            .zip(&series.values)
            .map(|(&t, &v)| (DateTime::from_timestamp_millis(t).unwrap(), v))
            .collect();
        let hour_of = |t: &DateTime<Utc>| f64::from(t.hour()) + f64::from(t.minute()) / 60.0;
        let weekday = |t: &DateTime<Utc>| (t.timestamp() - from.timestamp()) / 86_400 < 5;
        let near = |t: &DateTime<Utc>, hour: f64| {
            let d = (hour_of(t) - hour).rem_euclid(24.0);
            d.min(24.0 - d) <= 1.0
        };
        let peak = mean(
            samples
                .iter()
                .filter(|(t, _)| weekday(t) && near(t, spec.peak_hour))
                .map(|s| s.1),
        );
        let night = mean(
            samples
                .iter()
                .filter(|(t, _)| weekday(t) && near(t, spec.peak_hour + 12.0))
                .map(|s| s.1),
        );
        let weekday_mean = mean(samples.iter().filter(|(t, _)| weekday(t)).map(|s| s.1));
        let weekend_mean = mean(samples.iter().filter(|(t, _)| !weekday(t)).map(|s| s.1));
        assert!(peak > 1.8 * night, "{name}: peak {peak} vs night {night}");
        assert!(
            weekend_mean < 0.9 * weekday_mean,
            "{name}: weekend {weekend_mean} vs weekdays {weekday_mean}"
        );
    }
}

#[test]
fn surges_and_degradations_happen_at_their_scheduled_times() {
    let mut sim = ServiceSim::new(config(10)).unwrap();
    let model = Arc::clone(sim.model());
    let surges: Vec<Event> = model
        .events()
        .iter()
        .filter(|e| matches!(e.kind, EventKind::Surge { .. }))
        .copied()
        .collect();
    let degradations: Vec<Event> = model
        .events()
        .iter()
        .filter(|e| matches!(e.kind, EventKind::Degradation { .. }))
        .copied()
        .collect();
    let services = |events: &[Event]| {
        let mut ids: Vec<usize> = events.iter().map(|e| e.service).collect();
        ids.sort_unstable();
        ids
    };
    assert_eq!(services(&surges), [0, 5]);
    assert_eq!(services(&degradations), [2, 9]);
    for e in &surges {
        let EventKind::Surge {
            peak,
            ramp_up,
            hold,
            ramp_down,
        } = e.kind
        else {
            unreachable!()
        };
        assert!((2.0..=3.0).contains(&peak));
        assert!(e.start >= start() + TimeDelta::hours(10));
        assert!(e.start <= start() + TimeDelta::hours(11));
        assert_eq!(e.end - e.start, ramp_up + hold + ramp_down);
        let top = e.start + ramp_up + hold / 2;
        // Against the same minute a week earlier: the surge is the difference.
        let ratio =
            model.demand(e.service, top) / model.demand(e.service, top - TimeDelta::days(7));
        assert!(
            ratio > peak * 0.75 && ratio < peak * 1.35,
            "{ratio} vs {peak}"
        );
        let before = model.demand(e.service, e.start - TimeDelta::minutes(1))
            / model.demand(
                e.service,
                e.start - TimeDelta::minutes(1) - TimeDelta::days(7),
            );
        assert!(before > 0.7 && before < 1.35, "{before}");
    }
    // A degradation: at its start the primary's replicas get slower at once — fewer
    // requests each (higher utilisation) and a higher base latency.
    let e = degradations[0];
    let EventKind::Degradation {
        capacity_factor,
        latency_factor,
        ..
    } = e.kind
    else {
        unreachable!()
    };
    assert!(e.start >= start() + TimeDelta::hours(13));
    assert!(e.end - e.start >= TimeDelta::minutes(30) && e.end - e.start <= TimeDelta::minutes(60));
    sim.step_to(e.start + TimeDelta::seconds(10)).unwrap();
    let before = sim
        .observe_service(e.service, e.start - TimeDelta::seconds(5))
        .unwrap();
    let during = sim
        .observe_service(e.service, e.start + TimeDelta::seconds(5))
        .unwrap();
    let (b, d) = (before.regions.primary, during.regions.primary);
    assert_eq!(b.replicas, d.replicas);
    let cpu_ratio = d.cpu_percent / b.cpu_percent;
    assert!(
        cpu_ratio > 0.9 / capacity_factor,
        "{cpu_ratio} vs capacity × {capacity_factor}"
    );
    assert!(d.latency_p99_ms > b.latency_p99_ms * latency_factor * 0.9);
    // The secondary region is untouched.
    let ratio = during.regions.secondary.cpu_percent / before.regions.secondary.cpu_percent;
    assert!(ratio < 1.2, "{ratio}");
    assert_eq!(
        model.capacity_factor(e.service, Region::Primary, e.end),
        1.0
    );
}

#[test]
fn anomalies_listed_match_the_data() {
    let mut sim = ServiceSim::new(config(40)).unwrap();
    let anomalies: Vec<Event> = sim.model().anomalies().copied().collect();
    let kinds = |k: AnomalyKind| {
        anomalies
            .iter()
            .filter(|e| matches!(e.kind, EventKind::Anomaly { kind, .. } if kind == k))
            .count()
    };
    assert!(
        kinds(AnomalyKind::Spike) > 0
            && kinds(AnomalyKind::Dip) > 0
            && kinds(AnomalyKind::LevelShift) > 0,
        "{anomalies:?}"
    );
    sim.step_to(start() + TimeDelta::days(1)).unwrap();
    for e in &anomalies {
        let EventKind::Anomaly { factor, .. } = e.kind else {
            unreachable!()
        };
        assert!((factor - 1.0).abs() >= 0.3, "{e:?}");
        assert!(e.end - e.start >= TimeDelta::minutes(1), "{e:?}");
        assert!(e.start >= start() && e.end <= start() + TimeDelta::days(1));
        // No other event of the service within 30 minutes.
        for other in sim
            .events()
            .iter()
            .filter(|o| o.service == e.service && *o != e)
        {
            assert!(
                other.end + TimeDelta::minutes(30) <= e.start
                    || e.end + TimeDelta::minutes(30) <= other.start,
                "{e:?} vs {other:?}"
            );
        }
        // In the observed request rate: the anomaly against the minute before it.
        let name = &sim.services()[e.service].name;
        let window = |from: DateTime<Utc>, to: DateTime<Utc>| {
            let result = sim.query(&query("request_rate", from, to, 15)).unwrap();
            let (_, series) = result.series.iter().find(|(n, _)| n == name).unwrap();
            mean(series.values.iter().copied())
        };
        let inside = window(e.start, e.start + TimeDelta::minutes(1));
        let before = window(e.start - TimeDelta::minutes(1), e.start);
        let seen = inside / before;
        assert!(
            (seen - factor).abs() < 0.25 * factor,
            "{e:?}: seen × {seen}"
        );
        let mid = e.start + (e.end - e.start) / 2;
        let exact = sim.model().demand(e.service, mid)
            / sim.model().demand_without_anomalies(e.service, mid);
        assert!((exact - factor).abs() < 1e-9);
        assert_eq!(
            sim.model().demand(e.service, e.end),
            sim.model().demand_without_anomalies(e.service, e.end)
        );
    }
}

#[test]
fn replicas_throttles_and_weights_feed_back() {
    let base = quiet(3);
    // Service 0 at the start (midnight, its quietest): compare forks at the same instant.
    let later = base.now() + TimeDelta::seconds(95);
    let mut idle = base.clone();
    idle.step_to(later).unwrap();
    let reference = idle.observe_service(0, later).unwrap();

    let mut scaled = base.clone();
    let current = reference.regions.primary.replicas_desired;
    assert_eq!(
        scaled
            .set_replicas(0, Region::Primary, current * 2)
            .unwrap(),
        current * 2
    );
    scaled.step_to(later - TimeDelta::seconds(40)).unwrap();
    // Not yet: pods take 60–90 s to serve.
    let starting = scaled.observe_service(0, scaled.now()).unwrap();
    assert!(starting.regions.primary.replicas < current * 2);
    assert_eq!(starting.regions.primary.replicas_desired, current * 2);
    scaled.step_to(later).unwrap();
    let more = scaled.observe_service(0, later).unwrap();
    assert_eq!(more.regions.primary.replicas, current * 2);
    assert!(more.regions.primary.latency_p99_ms < reference.regions.primary.latency_p99_ms);
    assert!(more.regions.primary.cpu_percent < reference.regions.primary.cpu_percent);
    assert_eq!(more.offered_rps, reference.offered_rps);

    // Fewer: at once, and down to the overload regime when far too few.
    let mut shrunk = idle.clone();
    shrunk
        .set_weights(
            0,
            PerRegion {
                primary: 1.0,
                secondary: 0.0,
            },
        )
        .unwrap();
    assert_eq!(shrunk.set_replicas(0, Region::Primary, 0).unwrap(), 2);
    let squeezed = shrunk.observe_service(0, shrunk.now()).unwrap();
    assert_eq!(
        squeezed.regions.primary.replicas, 2,
        "bounded by min_replicas"
    );
    let saturated = squeezed.regions.primary.cpu_percent >= 97.9;
    if saturated {
        assert_eq!(squeezed.latency_p99_ms, 2000.0);
        assert!(squeezed.failed_rps > 0.0 && squeezed.error_percent > 1.0);
    } else {
        assert!(squeezed.latency_p99_ms > reference.latency_p99_ms);
    }

    // A throttle rejects (errors up) and protects latency (utilisation down).
    let mut throttled = idle.clone();
    throttled
        .set_throttle(0, Some(Throttle::Shed(0.5)))
        .unwrap();
    let shed = throttled.observe_service(0, later).unwrap();
    assert!((shed.throttled_rps - reference.offered_rps / 2.0).abs() < 1e-9);
    assert!(shed.error_percent > 49.0 && shed.error_percent > reference.error_percent);
    assert!(shed.latency_p99_ms < reference.latency_p99_ms);
    throttled
        .set_throttle(0, Some(Throttle::MaxRate(1.0)))
        .unwrap();
    let capped = throttled.observe_service(0, later).unwrap();
    assert!((capped.served_rps - 1.0).abs() < 1e-9);
    assert!(
        throttled
            .set_throttle(0, Some(Throttle::Shed(1.5)))
            .is_err()
    );

    // Weights move load to the other region's capacity.
    let mut moved = idle.clone();
    let applied = moved
        .set_weights(
            0,
            PerRegion {
                primary: 1.0,
                secondary: 3.0,
            },
        )
        .unwrap();
    assert_eq!(applied.secondary, 0.75);
    let shifted = moved.observe_service(0, later).unwrap();
    assert!(shifted.regions.secondary.offered_rps > reference.regions.secondary.offered_rps);
    assert!(shifted.regions.primary.offered_rps < reference.regions.primary.offered_rps);
    assert!((shifted.regions.secondary.offered_rps - 0.75 * reference.offered_rps).abs() < 1e-9);
    assert!(shifted.regions.secondary.cpu_percent > reference.regions.secondary.cpu_percent);
    assert!(matches!(
        moved.set_weights(
            0,
            PerRegion {
                primary: 0.0,
                secondary: 0.0
            }
        ),
        Err(ServiceSimError::InvalidWeights { .. })
    ));
    assert!(matches!(
        moved.set_replicas(7, Region::Primary, 3),
        Err(ServiceSimError::UnknownService {
            service: 7,
            count: 3
        })
    ));
}

#[test]
fn the_baseline_scales_up_after_load_rises_and_waits_300_s_to_scale_down() {
    let mut sim = quiet(4);
    let mut hpa = sim.baseline();
    // Mid-morning on a Monday: load is rising or at its peak.
    run(&mut sim, &mut hpa, start() + TimeDelta::hours(11));
    let desired = |sim: &ServiceSim| {
        sim.observe_now().services[0]
            .regions
            .primary
            .replicas_desired
    };
    let before = desired(&sim);
    assert!(before > 2, "{before}");

    // Load drops (a throttle sheds 60 %): nothing for 300 s, then down.
    let dropped = sim.now();
    sim.set_throttle(0, Some(Throttle::Shed(0.6))).unwrap();
    let mut seen = Vec::new();
    while sim.now() < dropped + TimeDelta::seconds(330) {
        let until = sim.now() + TimeDelta::seconds(15);
        run(&mut sim, &mut hpa, until);
        seen.push(((sim.now() - dropped).num_seconds(), desired(&sim)));
    }
    for &(after, replicas) in &seen {
        if after <= 285 {
            assert!(replicas >= before, "{after} s: {replicas} < {before}");
        }
    }
    let low = seen.last().unwrap().1;
    assert!(low < before * 6 / 10, "{seen:?}");

    // Load comes back: the next sync scales up; the pods serve a pod start later.
    let rose = sim.now();
    sim.set_throttle(0, None).unwrap();
    run(&mut sim, &mut hpa, rose + TimeDelta::seconds(15));
    let up = sim.observe_now().services[0].regions.primary;
    assert!(up.replicas_desired > low, "{up:?}");
    assert_eq!(up.replicas, low);
    run(&mut sim, &mut hpa, rose + TimeDelta::seconds(15 + 90));
    let served = sim.observe_now().services[0].regions.primary;
    assert!(served.replicas >= up.replicas_desired, "{served:?}");

    // A floor under the HPA (what a predictive loop sets ahead of a surge) is honoured at
    // the next sync, whatever the load.
    let floor = served.replicas_desired + 10;
    sim.apply(&Action::SetHpaMinReplicas {
        service: 0,
        region: Region::Primary,
        min: Some(floor),
    })
    .unwrap();
    let floored_at = sim.now();
    let report = run(&mut sim, &mut hpa, floored_at + TimeDelta::seconds(15));
    assert_eq!(
        report.actions,
        [AppliedAction {
            at: floored_at,
            action: Action::SetReplicas {
                service: 0,
                region: Region::Primary,
                replicas: floor,
            },
        }]
    );
}

#[test]
fn the_baseline_rides_seasonality_without_breaches() {
    // No events: the morning ramp is slow enough for a reactive HPA. What it cannot follow
    // are the surges, degradations and spikes.
    let mut sim = quiet(20);
    let mut hpa = sim.baseline();
    let report = run(&mut sim, &mut hpa, start() + TimeDelta::hours(14));
    assert!(report.total.breach_minutes < 1.0, "{report}");
    assert_eq!(report.total.failed_requests, 0.0, "{report}");
    assert!(!report.actions.is_empty());
}

#[test]
fn same_seed_and_actions_give_the_same_numbers_bit_for_bit() {
    let mut a = ServiceSim::new(config(6)).unwrap();
    let mut b = ServiceSim::new(config(6)).unwrap();
    assert_eq!(a.events(), b.events());
    let until = start() + TimeDelta::hours(2);
    let (mut ha, mut hb) = (a.baseline(), b.baseline());
    let ra = run(&mut a, &mut ha, until);
    let rb = run(&mut b, &mut hb, until);
    assert_eq!(ra, rb);
    assert_eq!(
        ra.total.replica_hours.to_bits(),
        rb.total.replica_hours.to_bits()
    );
    let q = query("latency_p99_ms", start() - TimeDelta::days(14), until, 60);
    assert_eq!(a.query(&q).unwrap(), b.query(&q).unwrap());
    assert_eq!(a.observe_now(), b.observe_now());

    let mut other = config(6);
    other.seed = 7;
    let c = ServiceSim::new(other).unwrap();
    assert_ne!(c.services()[0], a.services()[0]);
    assert_ne!(c.events(), a.events());
}

#[test]
fn nothing_is_answered_from_the_future_and_the_past_never_changes() {
    let mut sim = quiet(3);
    sim.step_to(start() + TimeDelta::minutes(30)).unwrap();
    let now = sim.now();
    let q = query(
        "request_rate",
        now - TimeDelta::hours(1),
        now + TimeDelta::hours(1),
        15,
    );
    let answer = sim.query(&q).unwrap();
    for (_, series) in &answer.series {
        assert_eq!(
            *series.timestamps_ms.last().unwrap(),
            now.timestamp_millis()
        );
        assert_eq!(series.timestamps_ms.len(), 4 * 60 + 1);
    }
    assert!(matches!(
        sim.observe(now + TimeDelta::seconds(1)),
        Err(ServiceSimError::Future { .. })
    ));
    assert!(matches!(
        sim.observe(start() - TimeDelta::days(15)),
        Err(ServiceSimError::BeforeHistory { .. })
    ));
    assert!(matches!(
        sim.step_to(now - TimeDelta::seconds(1)),
        Err(ServiceSimError::TimeWentBack { .. })
    ));
    // A query entirely in the future has no series at all.
    let ahead = query(
        "request_rate",
        now + TimeDelta::hours(1),
        now + TimeDelta::hours(2),
        15,
    );
    assert!(sim.query(&ahead).unwrap().series.is_empty());

    // Acting and stepping on leaves what was already observed as it was.
    sim.set_replicas(0, Region::Primary, 40).unwrap();
    sim.set_throttle(1, Some(Throttle::Shed(0.3))).unwrap();
    sim.step_to(now + TimeDelta::hours(2)).unwrap();
    let again = sim.query(&q).unwrap();
    for ((_, early), (_, late)) in answer.series.iter().zip(&again.series) {
        let n = early.values.len();
        assert_eq!(early.values[..], late.values[..n]);
        assert_eq!(early.timestamps_ms[..], late.timestamps_ms[..n]);
    }
    let then = sim.observe(now).unwrap();
    assert_eq!(then.at, now);
    assert_ne!(then.services[0], sim.observe_now().services[0]);
}

#[test]
fn acting_ahead_beats_reacting_in_this_model() {
    let sim = ServiceSim::new(config(30)).unwrap();
    let from = start() + TimeDelta::hours(9);
    let until = start() + TimeDelta::hours(16);
    let mut base = sim.clone();
    base.step_to(from).unwrap();
    let mut oracle_sim = base.clone();
    let mut hpa = base.baseline();
    let baseline = run(&mut base, &mut hpa, until);
    let mut oracle = Oracle {
        model: Arc::clone(sim.model()),
        slo_ms: 300.0,
    };
    let ahead = run(&mut oracle_sim, &mut oracle, until);
    assert_eq!(
        baseline.total.offered_requests,
        ahead.total.offered_requests
    );
    assert!(baseline.total.breach_minutes > 20.0, "{baseline}");
    assert!(
        ahead.total.breach_minutes < 0.25 * baseline.total.breach_minutes,
        "{ahead}\n{baseline}"
    );
    assert!(ahead.total.failed_requests < baseline.total.failed_requests);
    assert_eq!(baseline.actions_refused, 0);
}

#[test]
fn a_thousand_services_generate_and_answer_a_fleet_wide_query() {
    let mut config = config(1000);
    config.history_step = TimeDelta::minutes(5);
    let sim = ServiceSim::new(config).unwrap();
    assert_eq!(sim.services().len(), 1000);
    assert_eq!(sim.services()[999].name, "svc-1000");
    assert_eq!(sim.service_index("svc-0731"), Some(730));
    assert_eq!(sim.service_index("svc-1001"), None);
    // The journal is the history: a few changes per service and day, not a sample per step.
    let per_service_day = sim.journal_len() as f64 / 1000.0 / 14.0;
    assert!(per_service_day < 100.0, "{per_service_day}");
    let day = sim
        .query(&query(
            "replicas",
            start() - TimeDelta::days(1),
            start(),
            300,
        ))
        .unwrap();
    assert_eq!(day.series.len(), 1000);
    assert!(day.series.iter().all(|(_, s)| s.values.len() == 288));
    // Under the history's HPA, nobody ends the night saturated.
    let now = sim.observe_now();
    let saturated = now.services.iter().filter(|s| s.failed_rps > 0.0).count();
    assert!(saturated < 10, "{saturated}");
}

#[test]
fn the_metric_catalogue_is_documented_and_round_trips() {
    let docs = include_str!("mod.rs");
    let keys = MetricKey::all();
    assert_eq!(keys.len(), 8 + 2 * 8);
    for key in &keys {
        assert_eq!(MetricKey::parse(&key.name()), Some(*key));
        if key.region.is_none() {
            let row = format!(
                "//! | `{}` | `{}` |",
                key.name(),
                key.promql().replace('|', "\\|")
            );
            assert!(docs.contains(&row), "missing from the docs: {row}");
        }
    }
    assert!(docs.contains("//! | `traffic_weight` |"));
    assert_eq!(MetricKey::parse("throttled_rate_primary"), None);
    assert_eq!(MetricKey::parse("traffic_weight"), None);
    let primary_latency = MetricKey::parse("latency_p99_ms_primary").unwrap();
    assert!(primary_latency.promql().contains("region=\"primary\""));

    // A query found by its PromQL alone answers like one found by name.
    let sim = quiet(2);
    let mut by_promql = query("p99", start() - TimeDelta::hours(1), start(), 60);
    by_promql.promql = primary_latency.promql();
    let mut by_name = by_promql.clone();
    by_name.metric = primary_latency.name();
    let a = sim.query(&by_promql).unwrap();
    let b = sim.query(&by_name).unwrap();
    assert_eq!(a.series[0].1.values, b.series[0].1.values);
    let unknown = sim
        .query(&query(
            "queue_depth",
            start() - TimeDelta::hours(1),
            start(),
            60,
        ))
        .unwrap_err()
        .to_string();
    assert!(unknown.contains("queue_depth") && unknown.contains("latency_p99_ms"));
}

#[tokio::test]
async fn the_shared_source_discovers_and_answers_like_prometheus() {
    let sim = Arc::new(RwLock::new(quiet(3)));
    let source = ServiceSource::new(Arc::clone(&sim));
    assert_eq!(source.name(), "simulated-services(seed=42)");
    let targets = source.discover(SERVICE_TECHNOLOGY).await.unwrap();
    assert_eq!(targets.len(), 3);
    assert_eq!(targets[1].labels["service"], "svc-0002");
    assert!(source.discover("postgres").await.unwrap().is_empty());
    let q = query("cpu_percent", start() - TimeDelta::days(7), start(), 3600);
    let answer = source.query_range(&q).await.unwrap();
    assert_eq!(answer.series.len(), 3);
    assert_eq!(answer.series[0].1.values.len(), 7 * 24);
    let mut weekly = q.clone();
    weekly.weekly = Some(crate::WeeklySummary {
        aggregation: setpoint_core::Aggregation::Max,
        weeks: 1,
        counted: true,
    });
    let summary = source.query_range(&weekly).await.unwrap();
    let max = answer.series[0]
        .1
        .values
        .iter()
        .copied()
        .fold(f64::MIN, f64::max);
    assert_eq!(summary.series[0].1.values, [max]);
    // Stepping the shared simulation moves what the source can see.
    sim.write()
        .unwrap()
        .step_to(start() + TimeDelta::minutes(10))
        .unwrap();
    let recent = query(
        "replicas_primary",
        start(),
        start() + TimeDelta::hours(1),
        60,
    );
    let answer = source.query_range(&recent).await.unwrap();
    assert_eq!(answer.series[0].1.values.len(), 11);
    let mut wrong = recent.clone();
    wrong.technology = "redis".into();
    assert!(source.query_range(&wrong).await.is_err());
}

#[test]
fn invalid_configurations_name_every_problem() {
    let mut bad = config(0);
    bad.step = TimeDelta::zero();
    bad.hpa.target_cpu_percent = 120.0;
    if let Some(surge) = bad.schedule.surge.as_mut() {
        surge.every = 0;
    }
    let Err(ServiceSimError::InvalidConfig { problems }) = ServiceSim::new(bad) else {
        panic!("accepted");
    };
    let text = problems.join("\n");
    for field in [
        "services",
        "step",
        "hpa.target_cpu_percent",
        "schedule.surge.every",
    ] {
        assert!(text.contains(field), "{field} in {text}");
    }
}

/// Baseline and oracle over the default fleet's day; run with `--ignored --nocapture` to
/// print the figures.
#[test]
#[ignore = "prints figures; a few seconds in release"]
fn default_day_figures() {
    let sim = ServiceSim::new(config(100)).unwrap();
    let until = start() + TimeDelta::days(1);
    let mut hold_sim = sim.clone();
    let mut base_sim = sim.clone();
    let mut oracle_sim = sim.clone();
    let mut hpa = sim.baseline();
    let mut oracle = Oracle {
        model: Arc::clone(sim.model()),
        slo_ms: 300.0,
    };
    println!("{}", run(&mut hold_sim, &mut Hold, until));
    println!("{}", run(&mut base_sim, &mut hpa, until));
    println!("{}", run(&mut oracle_sim, &mut oracle, until));
}

/// How long a 1,000-service fleet takes; run in release with `--ignored --nocapture`.
#[test]
#[ignore = "prints timings; meant for release builds"]
fn thousand_service_timings() {
    let clock = std::time::Instant::now();
    let sim = ServiceSim::new(config(1000)).unwrap();
    println!(
        "1,000 services, 14 days of history at 1 min: {:?}, {} journal entries",
        clock.elapsed(),
        sim.journal_len()
    );
    let clock = std::time::Instant::now();
    let two_weeks = sim
        .query(&query(
            "request_rate",
            start() - TimeDelta::days(14),
            start(),
            300,
        ))
        .unwrap();
    println!(
        "request_rate, 14 days at 5 min, {} series: {:?}",
        two_weeks.series.len(),
        clock.elapsed()
    );
    let mut live = sim.clone();
    let mut hpa = live.baseline();
    let clock = std::time::Instant::now();
    let report = run(&mut live, &mut hpa, start() + TimeDelta::hours(1));
    println!(
        "one hour under the baseline at 5 s steps: {:?}",
        clock.elapsed()
    );
    println!("{report}");
}
