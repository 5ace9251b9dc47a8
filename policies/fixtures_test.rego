# Shared inputs for the Rego unit tests: a reporting database (8 vCPU / 32 GiB) that the
# classifier wants to scale down, past its approval phase and stable, so that the default
# policy acts. Each test changes the one thing it is about with object.union.
package setpoint_test.fixtures

import rego.v1

gib := 1073741824

scale_down := {
	"action": "scale_down",
	"summary": "8 vCPU / 32 GiB -> 4 vCPU / 16 GiB, shared_buffers 8GB -> 4GB",
	"before": {"cpu_millicores": 8000, "memory_bytes": 32 * gib, "parameters": {"shared_buffers": "8GB"}},
	"after": {"cpu_millicores": 4000, "memory_bytes": 16 * gib, "parameters": {"shared_buffers": "4GB"}},
	"operations": [{"op": "resize", "cpu_millicores": 4000, "memory_bytes": 16 * gib}],
	"risk": "low",
	"rationale": "halve CPU and memory",
}

scale_up := {
	"action": "scale_up",
	"summary": "8 vCPU / 32 GiB -> 16 vCPU / 64 GiB",
	"before": {"cpu_millicores": 8000, "memory_bytes": 32 * gib, "parameters": {}},
	"after": {"cpu_millicores": 16000, "memory_bytes": 64 * gib, "parameters": {}},
	"operations": [{"op": "resize", "cpu_millicores": 16000, "memory_bytes": 64 * gib}],
	"risk": "medium",
	"rationale": "double CPU and memory",
}

base := {
	"target": {
		"id": "pg-reporting-a",
		"technology": "postgres",
		"labels": {"role": "reporting"},
		"resources": {"cpu_millicores": 8000, "memory_bytes": 32 * gib, "parameters": {"shared_buffers": "8GB"}},
	},
	"features": {"cpu_w1": {"value": 0.10, "coverage": 1.0}},
	"classification": {
		"class": "scale_down",
		"confidence": 0.9,
		"model": "bootstrap-heuristics",
		"model_version": "1",
		"explanation": {"code": "low_utilisation_all_weeks", "rule": "CPU < 40% and memory < 65% in all four weeks", "evidence": []},
	},
	"history": {
		"first_managed_at": "2025-01-01T00:00:00Z",
		"managed_days": 90,
		"stable_cycles": 4,
		"classes": [],
		"last_action": null,
		"days_since_last_action": null,
	},
	"proposals": [scale_down, scale_up],
	"now": "2025-04-01T00:00:00Z",
	"now_ns": 1743465600000000000,
	"mode": "dry-run",
	"loop": {"name": "weekly-rightsizing", "plugin": "postgres", "cycle": 13},
	"bounds": {
		"min_cpu_millicores": 1000,
		"max_cpu_millicores": 64000,
		"min_memory_bytes": 2 * gib,
		"max_memory_bytes": 512 * gib,
	},
}

# base with `patch` merged in (objects merge, anything else replaces).
with_patch(patch) := object.union(base, patch)

# base with the chosen proposal's "after" size replaced.
with_after(cpu, memory) := object.union(base, {"proposals": [object.union(scale_down, {"after": {"cpu_millicores": cpu, "memory_bytes": memory}})]})
