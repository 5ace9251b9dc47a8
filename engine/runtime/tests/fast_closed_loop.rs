//! The fast loop in closed loop over the simulated service fleet, against the reactive
//! HPA-style baseline on the same traffic (a short run; `examples/fast_closed_loop.rs` runs a
//! day for the figures in docs/benchmarks.md).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;

use chrono::{TimeDelta, TimeZone, Utc};
use setpoint_core::control::{ActionMapping, ControlAction, RegoVersion};
use setpoint_decide::{ControlPolicy, guard_bundle};
use setpoint_observe::services::{
    DegradationPlan, EventKind, ServiceFleetConfig, ServiceSim, SurgePlan, run_closed_loop,
};
use setpoint_runtime::fast::FastSettings;
use setpoint_runtime::fast::simulated::{SimulatedFastLoop, responses};

fn policy() -> ControlPolicy {
    let dir =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../policies/fast/examples/predictive");
    ControlPolicy::load(
        &[dir],
        serde_json::json!({}),
        RegoVersion::V1,
        "data.control.decision",
        ActionMapping::default(),
    )
    .unwrap()
}

/// Six services over a morning, a surge an hour in on two of them and a degradation of the
/// primary region two hours in on two others.
fn config() -> ServiceFleetConfig {
    let start = Utc
        .with_ymd_and_hms(2026, 11, 24, 7, 0, 0)
        .single()
        .unwrap();
    let mut config = ServiceFleetConfig::new(7, 6, start);
    config.schedule.surge = Some(SurgePlan {
        first: 0,
        every: 3,
        after: TimeDelta::hours(1),
        stagger: TimeDelta::minutes(10),
        ..SurgePlan::default()
    });
    config.schedule.degradation = Some(DegradationPlan {
        first: 1,
        every: 3,
        after: TimeDelta::hours(2),
        stagger: TimeDelta::minutes(10),
        ..DegradationPlan::default()
    });
    config.schedule.anomalies = None;
    config
}

#[test]
fn the_fast_loop_answers_surges_with_replicas_and_degradations_with_traffic_shifts() {
    let config = config();
    let until = config.start + TimeDelta::hours(4);
    let tick = TimeDelta::seconds(15);

    let mut sim = ServiceSim::new(config.clone()).unwrap();
    let mut hpa = sim.baseline();
    let reactive = run_closed_loop(&mut sim, &mut hpa, until, tick).unwrap();

    let mut sim = ServiceSim::new(config.clone()).unwrap();
    let mut settings = FastSettings::new("fast");
    settings.mode = setpoint_core::Mode::Enforce;
    let mut fast =
        SimulatedFastLoop::new(&sim, settings, &policy(), &guard_bundle().unwrap()).unwrap();
    let predictive = run_closed_loop(&mut sim, &mut fast, until, tick).unwrap();

    // The breach and cost figures of the two controllers on a day of the fleet are measured by
    // examples/fast_closed_loop.rs (docs/benchmarks.md); on this short run the test holds the
    // loop to answering every event, within its bounds.
    eprintln!("fast loop {predictive}\nbaseline {reactive}");
    assert!(
        reactive.total.breach_minutes > 0.0,
        "the events must hurt the baseline: {reactive}"
    );
    assert_eq!(predictive.actions_refused, 0, "{:?}", predictive.refusals);
    // Never worse than the baseline on the same traffic: no more time in breach, and fewer
    // requests failed (traffic moves off a degraded region no faster than the other's ready
    // replicas take it).
    assert!(
        predictive.total.breach_minutes <= reactive.total.breach_minutes,
        "fast loop {predictive}\nbaseline {reactive}"
    );
    assert!(
        predictive.total.failed_requests < reactive.total.failed_requests,
        "fast loop {predictive}\nbaseline {reactive}"
    );
    let log = fast.log();
    assert_eq!(log.ticks, 4 * 240);
    assert!(log.refits >= 4, "hourly refits: {}", log.refits);

    // Each degradation is answered by moving traffic off the degraded region.
    let answered = responses(sim.events(), log, fast.names(), TimeDelta::minutes(30));
    let degradations: Vec<_> = answered
        .iter()
        .filter(|r| matches!(r.event.kind, EventKind::Degradation { .. }))
        .collect();
    assert_eq!(degradations.len(), 2, "{answered:?}");
    // A degradation the secondary region absorbs without a breach needs no answer; one that
    // breached the SLO under the baseline is answered by moving traffic off the region.
    let hurting: Vec<_> = degradations
        .into_iter()
        .filter(|r| reactive.services[r.event.service].breach_minutes > 0.0)
        .collect();
    assert!(!hurting.is_empty(), "{reactive:?}");
    for response in hurting {
        let first = response.first.as_ref().expect("an answer");
        assert!(
            log.applied.iter().any(|a| a.service == first.service
                && matches!(a.action, ControlAction::TrafficShift { .. })),
            "no traffic shift for {}",
            first.service
        );
    }
    // Each surge beyond what the service's replicas carry is answered with more replicas.
    let surges: Vec<_> = answered
        .iter()
        .filter(|r| {
            matches!(r.event.kind, EventKind::Surge { .. })
                && reactive.services[r.event.service].breach_minutes > 0.0
        })
        .collect();
    assert!(!surges.is_empty(), "{reactive:?}");
    for response in surges {
        assert!(response.first.is_some(), "{:?}", response.event);
    }
}

#[test]
fn the_closed_loop_is_deterministic() {
    let run = || {
        let config = config();
        let until = config.start + TimeDelta::minutes(70);
        let mut sim = ServiceSim::new(config).unwrap();
        let mut fast = SimulatedFastLoop::new(
            &sim,
            FastSettings::new("fast"),
            &policy(),
            &guard_bundle().unwrap(),
        )
        .unwrap();
        let report = run_closed_loop(&mut sim, &mut fast, until, TimeDelta::seconds(15)).unwrap();
        (report.total, fast.log().clone())
    };
    assert_eq!(run(), run());
}
