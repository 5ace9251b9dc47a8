//! The reactive baseline: a Kubernetes HPA on CPU utilisation, one per region's deployment.

use std::collections::VecDeque;

use chrono::{DateTime, TimeDelta, Utc};

use super::model::{Action, FleetObservation, RegionObservation};
use super::score::Controller;
use super::{PerRegion, Region};

/// The HPA's settings; the defaults are Kubernetes' own.
#[derive(Debug, Clone, PartialEq)]
pub struct HpaConfig {
    /// Target mean CPU utilisation of the ready replicas, percent.
    pub target_cpu_percent: f64,
    /// No change while `|utilisation / target − 1|` is within this (0.1).
    pub tolerance: f64,
    /// How often it syncs (15 s); ticks in between are ignored.
    pub sync: TimeDelta,
    /// Scale-down stabilisation: the highest recommendation of this window wins (300 s).
    pub scale_down_window: TimeDelta,
    /// Per sync, scale up to at most `current × factor` …
    pub scale_up_factor: f64,
    /// … or `current + pods`, whichever is more (×2 or +4).
    pub scale_up_pods: u32,
}

impl Default for HpaConfig {
    fn default() -> Self {
        Self {
            target_cpu_percent: 70.0,
            tolerance: 0.1,
            sync: TimeDelta::seconds(15),
            scale_down_window: TimeDelta::seconds(300),
            scale_up_factor: 2.0,
            scale_up_pods: 4,
        }
    }
}

impl HpaConfig {
    pub(super) fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if !(self.target_cpu_percent > 0.0 && self.target_cpu_percent < 100.0) {
            problems.push(format!(
                "target_cpu_percent: {} is not within 0..100",
                self.target_cpu_percent
            ));
        }
        if !(0.0..1.0).contains(&self.tolerance) {
            problems.push(format!("tolerance: {} is not within 0..1", self.tolerance));
        }
        if self.sync <= TimeDelta::zero() || self.scale_down_window < TimeDelta::zero() {
            problems.push("sync: must be positive; scale_down_window: not negative".to_string());
        }
        if !(self.scale_up_factor >= 1.0 && self.scale_up_factor.is_finite()) {
            problems.push(format!(
                "scale_up_factor: {} is not a finite number >= 1",
                self.scale_up_factor
            ));
        }
        problems
    }
}

/// An HPA-style controller per region of every service:
/// `desired = ceil(ready × utilisation / target)` outside a 10 % tolerance, replicas still
/// starting counted as idle when scaling up, scale-down stabilised over 300 s, scale-up
/// limited to `max(×2, +4)` per sync, bounded by the deployment's min (raised by any
/// [`Action::SetHpaMinReplicas`] floor) and max.
///
/// It is a [`Controller`] on its own; a predictive controller that keeps an HPA underneath
/// (and only raises its floor) can own one and call [`Controller::tick`] on it.
#[derive(Debug, Clone)]
pub struct HpaBaseline {
    config: HpaConfig,
    last_sync_ms: Option<i64>,
    /// Per service and region: `(time, raw recommendation)` within the scale-down window.
    recommendations: Vec<PerRegion<VecDeque<(i64, u32)>>>,
}

impl HpaBaseline {
    /// A fresh HPA. Its first sync counts the current replicas as a recommendation, as if it
    /// had been running: nothing scales down in its first window.
    pub fn new(config: HpaConfig) -> Self {
        Self {
            config,
            last_sync_ms: None,
            recommendations: Vec::new(),
        }
    }

    /// Its settings.
    pub fn config(&self) -> &HpaConfig {
        &self.config
    }

    /// The replicas one region's HPA wants, given what it observes and its window. Records
    /// the raw recommendation.
    fn desired(
        &mut self,
        now_ms: i64,
        service: usize,
        region: Region,
        seen: &RegionObservation,
    ) -> u32 {
        let config = &self.config;
        let current = seen.replicas_desired;
        let ready = seen.replicas;
        let ratio = seen.cpu_percent / config.target_cpu_percent;
        let raw = if ready == 0 {
            // No ready pod, no metric: Kubernetes leaves the scale alone.
            current
        } else if ready == current || ratio <= 1.0 {
            if (ratio - 1.0).abs() <= config.tolerance {
                current
            } else {
                (ratio * f64::from(ready)).ceil() as u32
            }
        } else {
            // Scaling up while pods start: those count as idle, so a burst is not chased
            // twice before the first new pods serve.
            let adjusted = ratio * f64::from(ready) / f64::from(current);
            if adjusted <= 1.0 + config.tolerance {
                current
            } else {
                ((ratio * f64::from(ready)).ceil() as u32).max(current)
            }
        };
        let window = &mut self.recommendations[service][region];
        let fresh = window.is_empty();
        if fresh {
            window.push_back((now_ms, current));
        }
        window.push_back((now_ms, raw));
        let oldest = now_ms - config.scale_down_window.num_milliseconds();
        while window.front().is_some_and(|&(t, _)| t < oldest) {
            window.pop_front();
        }
        let highest = window.iter().map(|&(_, r)| r).max().unwrap_or(raw);
        let mut stabilised = current;
        if stabilised < raw {
            stabilised = raw;
        }
        if stabilised > highest {
            stabilised = highest;
        }
        let up_limit = ((f64::from(current) * config.scale_up_factor).ceil() as u32)
            .max(current.saturating_add(config.scale_up_pods));
        let floor = seen
            .min_replicas
            .max(seen.hpa_min_replicas.unwrap_or(0))
            .min(seen.max_replicas);
        stabilised.min(up_limit).clamp(floor, seen.max_replicas)
    }
}

impl Controller for HpaBaseline {
    fn name(&self) -> &str {
        "hpa-baseline"
    }

    fn tick(&mut self, now: DateTime<Utc>, observed: &FleetObservation, actions: &mut Vec<Action>) {
        let now_ms = now.timestamp_millis();
        if let Some(last) = self.last_sync_ms
            && now_ms - last < self.config.sync.num_milliseconds()
        {
            return;
        }
        self.last_sync_ms = Some(now_ms);
        if self.recommendations.len() < observed.services.len() {
            self.recommendations
                .resize_with(observed.services.len(), PerRegion::default);
        }
        for seen in &observed.services {
            for region in Region::ALL {
                let r = &seen.regions[region];
                let desired = self.desired(now_ms, seen.service, region, r);
                if desired != r.replicas_desired {
                    actions.push(Action::SetReplicas {
                        service: seen.service,
                        region,
                        replicas: desired,
                    });
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn region(cpu: f64, ready: u32, desired: u32) -> RegionObservation {
        RegionObservation {
            cpu_percent: cpu,
            replicas: ready,
            replicas_desired: desired,
            min_replicas: 2,
            max_replicas: 100,
            ..RegionObservation::default()
        }
    }

    fn hpa() -> HpaBaseline {
        let mut hpa = HpaBaseline::new(HpaConfig::default());
        hpa.recommendations.resize_with(1, PerRegion::default);
        hpa
    }

    #[test]
    fn follows_the_kubernetes_formula_within_tolerance_and_limits() {
        let mut hpa = hpa();
        // 75 % against 70 %: within 10 %.
        assert_eq!(
            hpa.desired(0, 0, Region::Primary, &region(75.0, 10, 10)),
            10
        );
        // 95 % → ceil(10 × 1.357) = 14.
        assert_eq!(
            hpa.desired(15_000, 0, Region::Primary, &region(95.0, 10, 10)),
            14
        );
        // Far beyond: limited to max(×2, +4).
        let mut hpa2 = self::hpa();
        assert_eq!(hpa2.desired(0, 0, Region::Primary, &region(98.0, 2, 2)), 3);
        let mut hpa3 = self::hpa();
        assert_eq!(
            hpa3.desired(
                0,
                0,
                Region::Primary,
                &RegionObservation {
                    cpu_percent: 700.0,
                    ..region(0.0, 3, 3)
                }
            ),
            7
        );
    }

    #[test]
    fn starting_pods_count_as_idle_when_scaling_up() {
        let mut hpa = hpa();
        // 10 ready at 90 %, 14 asked: 10 × 90 / 70 = 12.9 < 14 → hold.
        assert_eq!(
            hpa.desired(0, 0, Region::Primary, &region(90.0, 10, 14)),
            14
        );
        // 10 ready at 95 %, 12 asked: ceil(10 × 95 / 70) = 14.
        assert_eq!(
            hpa.desired(0, 0, Region::Primary, &region(95.0, 10, 12)),
            14
        );
    }

    #[test]
    fn scale_down_waits_for_the_window_and_floors_hold() {
        let mut hpa = hpa();
        let mut t = 0;
        assert_eq!(
            hpa.desired(t, 0, Region::Primary, &region(70.0, 10, 10)),
            10
        );
        while t < 300_000 {
            t += 15_000;
            assert_eq!(
                hpa.desired(t, 0, Region::Primary, &region(35.0, 10, 10)),
                10,
                "{t}"
            );
        }
        t += 15_000;
        assert_eq!(hpa.desired(t, 0, Region::Primary, &region(35.0, 10, 10)), 5);
        let floored = RegionObservation {
            hpa_min_replicas: Some(8),
            ..region(35.0, 10, 10)
        };
        assert_eq!(hpa.desired(t, 0, Region::Primary, &floored), 8);
    }
}
