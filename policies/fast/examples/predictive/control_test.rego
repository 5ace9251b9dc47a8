package control_test

import rego.v1

import data.control

base := {
	"now": {
		"request_rate": 300,
		"region": {"primary": {"latency_p99_ms": 80}, "secondary": {"latency_p99_ms": 80}},
	},
	"forecast_interval": {"request_rate": {"lower": 250, "upper": 350}},
	"limits": {"min_replicas": 2, "max_replicas": 20, "capacity_per_replica": 50},
	"current": {"replicas": 10, "weights": {"primary": 50, "secondary": 50}},
}

test_scales_to_what_the_forecast_upper_bound_needs if {
	# 350 / (50 × 0.75) = 9.3 → 10: already there.
	control.decision == {"type": "NONE"} with input as base

	surge := object.union(base, {"forecast_interval": {"request_rate": {"lower": 500, "upper": 700}}})
	control.decision == {"type": "REPLICAS", "replicas": 19} with input as surge
}

test_never_plans_below_the_present_load if {
	falling := object.union(base, {"now": {"request_rate": 600}, "forecast_interval": {"request_rate": {"lower": 100, "upper": 200}}})
	control.decision == {"type": "REPLICAS", "replicas": 16} with input as falling
}

test_without_a_forecast_plans_for_the_present if {
	no_forecast := json.remove(base, ["forecast_interval"])
	control.decision == {"type": "REPLICAS", "replicas": 8} with input as no_forecast
}

test_bounded_by_the_limits if {
	idle := object.union(base, {"now": {"request_rate": 1}, "forecast_interval": {"request_rate": {"lower": 0, "upper": 2}}})
	control.decision == {"type": "REPLICAS", "replicas": 2} with input as idle
}

test_a_degraded_primary_sends_most_traffic_to_the_secondary if {
	degraded := object.union(base, {"now": {"region": {"primary": {"latency_p99_ms": 900}}}})
	control.decision == {"type": "WEIGHTS", "to": "secondary", "share": "most"} with input as degraded
}

test_throttles_only_beyond_the_maximum if {
	flood := object.union(base, {
		"now": {"request_rate": 2000},
		"current": {"replicas": 20},
	})
	control.decision == {"type": "THROTTLE", "limit_rate": 1000} with input as flood
}
