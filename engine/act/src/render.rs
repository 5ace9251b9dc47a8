//! A plan in the terms of the systems that carry it out: a CloudNativePG `Cluster` merge patch, a
//! Patroni `PATCH /config` body with a scheduled restart, a Kubernetes `VerticalPodAutoscaler`.
//!
//! The plugin proposes typed operations; these functions say exactly what each actuator would
//! send, so a reviewer reads the change as the platform will see it and the actuators share one
//! translation. Sizes follow Kubernetes quantities (`4`, `500m`, `16Gi`); parameters keep the
//! technology's own syntax.

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};
use setpoint_core::{Operation, Proposal};

/// Kubernetes CPU quantity: whole cores as `4`, otherwise millicores as `500m`.
pub fn cpu_quantity(millicores: u64) -> String {
    if millicores.is_multiple_of(1000) {
        (millicores / 1000).to_string()
    } else {
        format!("{millicores}m")
    }
}

/// Kubernetes memory quantity in the largest binary unit that divides it exactly.
pub fn memory_quantity(bytes: u64) -> String {
    const UNITS: [(u64, &str); 4] = [
        (1 << 40, "Ti"),
        (1 << 30, "Gi"),
        (1 << 20, "Mi"),
        (1 << 10, "Ki"),
    ];
    for (size, unit) in UNITS {
        if bytes >= size && bytes.is_multiple_of(size) {
            return format!("{}{unit}", bytes / size);
        }
    }
    bytes.to_string()
}

/// The size the plan resizes to, if it resizes.
fn resize(proposal: &Proposal) -> Option<(u64, u64)> {
    proposal.operations.iter().find_map(|op| match op {
        Operation::Resize {
            cpu_millicores,
            memory_bytes,
        } => Some((*cpu_millicores, *memory_bytes)),
        _ => None,
    })
}

/// Parameter changes, in plan order: (name, value, needs a restart).
fn parameters(proposal: &Proposal) -> Vec<(&str, &str, bool)> {
    proposal
        .operations
        .iter()
        .filter_map(|op| match op {
            Operation::SetParameter {
                name,
                value,
                requires_restart,
            } => Some((name.as_str(), value.as_str(), *requires_restart)),
            _ => None,
        })
        .collect()
}

fn replicas(proposal: &Proposal) -> Option<u32> {
    proposal.operations.iter().find_map(|op| match op {
        Operation::SetReplicas { replicas } => Some(*replicas),
        _ => None,
    })
}

/// The merge patch for a CloudNativePG `Cluster`: `spec.resources` (requests = limits, the
/// Guaranteed QoS CloudNativePG recommends), `spec.postgresql.parameters`, `spec.instances`.
/// CloudNativePG rolls the change through the replicas one by one, primary last; with
/// `primaryUpdateStrategy: supervised` it waits before the primary, which is what the
/// approval gate asks of a human anyway.
pub fn cnpg_cluster_patch(proposal: &Proposal) -> Value {
    let mut spec = Map::new();
    if let Some((cpu, memory)) = resize(proposal) {
        let size = json!({"cpu": cpu_quantity(cpu), "memory": memory_quantity(memory)});
        spec.insert(
            "resources".into(),
            json!({"requests": size.clone(), "limits": size}),
        );
    }
    let params: BTreeMap<&str, &str> = parameters(proposal)
        .into_iter()
        .map(|(name, value, _)| (name, value))
        .collect();
    if !params.is_empty() {
        spec.insert("postgresql".into(), json!({ "parameters": params }));
    }
    if let Some(n) = replicas(proposal) {
        spec.insert("instances".into(), json!(n));
    }
    json!({ "spec": spec })
}

/// What Patroni is sent: `PATCH /config` with the parameters (live ones apply on reload), and,
/// when one needs a restart, a `POST /restart` scheduled with `restart_pending` so only members
/// that need it restart. Patroni needs a raised `max_connections` on the standbys first and a
/// lowered one on the primary first; it orders that itself when the change goes through the DCS.
#[derive(Debug, Clone, PartialEq)]
pub struct PatroniPlan {
    /// Body of `PATCH /config`, or `None` when no parameter changes.
    pub config_patch: Option<Value>,
    /// Body of `POST /restart` on each member, or `None` when nothing needs a restart.
    pub restart: Option<Value>,
}

/// The Patroni plan of a proposal; `schedule` is the restart time (RFC 3339), e.g. the next
/// maintenance window.
pub fn patroni_plan(proposal: &Proposal, schedule: &str) -> PatroniPlan {
    let params = parameters(proposal);
    let config_patch = (!params.is_empty()).then(|| {
        let map: BTreeMap<&str, &str> = params.iter().map(|(n, v, _)| (*n, *v)).collect();
        json!({"postgresql": {"parameters": map}})
    });
    let needs_restart = params.iter().any(|(_, _, restart)| *restart)
        || proposal
            .operations
            .iter()
            .any(|op| matches!(op, Operation::Restart { .. }));
    let restart = needs_restart.then(|| json!({"schedule": schedule, "restart_pending": true}));
    PatroniPlan {
        config_patch,
        restart,
    }
}

/// A `VerticalPodAutoscaler` that pins `container` of `workload` (a StatefulSet) to the planned
/// size: `minAllowed` = `maxAllowed` = the new size, `updateMode: Initial` so pods take it when
/// they are next created (by the database operator's rolling restart) rather than being evicted
/// by VPA at a time nobody chose. `None` when the plan does not resize.
pub fn vpa_object(proposal: &Proposal, workload: &str, container: &str) -> Option<Value> {
    let (cpu, memory) = resize(proposal)?;
    let size = json!({"cpu": cpu_quantity(cpu), "memory": memory_quantity(memory)});
    Some(json!({
        "apiVersion": "autoscaling.k8s.io/v1",
        "kind": "VerticalPodAutoscaler",
        "metadata": {"name": format!("{workload}-setpoint")},
        "spec": {
            "targetRef": {"apiVersion": "apps/v1", "kind": "StatefulSet", "name": workload},
            "updatePolicy": {"updateMode": "Initial"},
            "resourcePolicy": {"containerPolicies": [{
                "containerName": container,
                "controlledResources": ["cpu", "memory"],
                "controlledValues": "RequestsAndLimits",
                "minAllowed": size.clone(),
                "maxAllowed": size,
            }]},
        },
    }))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use setpoint_core::{ActionKind, Resources, Risk};

    const GIB: u64 = 1 << 30;

    fn scale_down() -> Proposal {
        let size = |cpu, memory| Resources {
            cpu_millicores: cpu,
            memory_bytes: memory,
            replicas: 1,
            parameters: BTreeMap::new(),
        };
        Proposal {
            action: ActionKind::ScaleDown,
            summary: "8 vCPU / 32 GiB → 4 vCPU / 16 GiB, shared_buffers 8GB → 4GB".into(),
            before: size(8000, 32 * GIB),
            after: size(4000, 16 * GIB),
            operations: vec![
                Operation::Resize {
                    cpu_millicores: 4000,
                    memory_bytes: 16 * GIB,
                },
                Operation::SetParameter {
                    name: "shared_buffers".into(),
                    value: "4GB".into(),
                    requires_restart: true,
                },
                Operation::SetParameter {
                    name: "effective_cache_size".into(),
                    value: "12GB".into(),
                    requires_restart: false,
                },
                Operation::Restart {
                    reason: "shared_buffers".into(),
                },
            ],
            risk: Risk::Medium,
            rationale: String::new(),
        }
    }

    #[test]
    fn quantities_as_kubernetes_writes_them() {
        assert_eq!(cpu_quantity(4000), "4");
        assert_eq!(cpu_quantity(1500), "1500m");
        assert_eq!(memory_quantity(16 * GIB), "16Gi");
        assert_eq!(memory_quantity(1536 << 20), "1536Mi");
        assert_eq!(memory_quantity(1000), "1000");
    }

    #[test]
    fn a_cloudnativepg_patch_moves_resources_and_parameters_together() {
        assert_eq!(
            cnpg_cluster_patch(&scale_down()),
            json!({"spec": {
                "resources": {
                    "requests": {"cpu": "4", "memory": "16Gi"},
                    "limits": {"cpu": "4", "memory": "16Gi"},
                },
                "postgresql": {"parameters": {"effective_cache_size": "12GB", "shared_buffers": "4GB"}},
            }})
        );
    }

    #[test]
    fn patroni_gets_the_parameters_and_a_scheduled_pending_restart() {
        let plan = patroni_plan(&scale_down(), "2026-11-24T02:00:00Z");
        assert_eq!(
            plan.config_patch,
            Some(
                json!({"postgresql": {"parameters": {"effective_cache_size": "12GB", "shared_buffers": "4GB"}}})
            )
        );
        assert_eq!(
            plan.restart,
            Some(json!({"schedule": "2026-11-24T02:00:00Z", "restart_pending": true}))
        );
        let mut live_only = scale_down();
        live_only.operations = vec![Operation::SetParameter {
            name: "work_mem".into(),
            value: "64MB".into(),
            requires_restart: false,
        }];
        assert_eq!(patroni_plan(&live_only, "x").restart, None);
    }

    #[test]
    fn a_vpa_pins_the_new_size_and_waits_for_the_next_pod() {
        let vpa = vpa_object(&scale_down(), "pg-reporting-01", "postgres").unwrap();
        assert_eq!(vpa["spec"]["updatePolicy"]["updateMode"], "Initial");
        let policy = &vpa["spec"]["resourcePolicy"]["containerPolicies"][0];
        assert_eq!(policy["minAllowed"], json!({"cpu": "4", "memory": "16Gi"}));
        assert_eq!(policy["maxAllowed"], policy["minAllowed"]);
        assert_eq!(vpa["spec"]["targetRef"]["name"], "pg-reporting-01");
        let mut no_resize = scale_down();
        no_resize.operations.remove(0);
        assert!(vpa_object(&no_resize, "w", "c").is_none());
    }
}
