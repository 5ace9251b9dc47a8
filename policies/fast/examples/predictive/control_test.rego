package control_test

import rego.v1

import data.control

# 300 req/s now, rising to 320 in 15 min (up to 350), 37.5 req/s per replica at target load.
base := {
	"now": {
		"request_rate": 300,
		"region": {"primary": {"latency_p99_ms": 80}, "secondary": {"latency_p99_ms": 80}},
	},
	"forecast": {"request_rate": 320},
	"forecast_interval": {"request_rate": {"lower": 250, "upper": 350}},
	"limits": {"min_replicas": 2, "max_replicas": 20, "capacity_per_replica": 37.5},
	"current": {"replicas": 10, "weights": {"primary": 50, "secondary": 50}},
}

test_plans_for_the_upper_bound_while_the_load_rises if {
	# 350 / 37.5 = 9.3 → 10: already there.
	control.decision == {"type": "NONE"} with input as base

	surge := object.union(base, {"forecast": {"request_rate": 600}, "forecast_interval": {"request_rate": {"lower": 500, "upper": 700}}})
	control.decision == {"type": "REPLICAS", "replicas": 19} with input as surge
}

test_never_plans_below_the_present_load if {
	falling := object.union(base, {"now": {"request_rate": 600}, "forecast": {"request_rate": 150}, "forecast_interval": {"request_rate": {"lower": 100, "upper": 200}}})
	control.decision == {"type": "REPLICAS", "replicas": 16} with input as falling
}

test_without_a_forecast_plans_for_the_present if {
	no_forecast := json.remove(base, ["forecast", "forecast_interval"])
	control.decision == {"type": "REPLICAS", "replicas": 8} with input as no_forecast
}

test_bounded_by_the_limits if {
	idle := object.union(base, {"now": {"request_rate": 1}, "forecast": {"request_rate": 1}, "forecast_interval": {"request_rate": {"lower": 0, "upper": 2}}})
	control.decision == {"type": "REPLICAS", "replicas": 2} with input as idle
}

test_a_degraded_primary_sends_most_traffic_to_the_secondary if {
	degraded := object.union(base, {"now": {"region": {"primary": {"latency_p99_ms": 900}}}})
	control.decision == {"type": "WEIGHTS", "to": "secondary", "share": "most"} with input as degraded
}

test_throttles_only_beyond_the_maximum if {
	flood := object.union(base, {"now": {"request_rate": 2000}, "current": {"replicas": 20}})
	control.decision == {"type": "THROTTLE", "limit_rate": 750} with input as flood
}

test_scales_down_only_past_the_tolerance if {
	# 10 wanted: within 10 % of 11, hold; below 12 × 0.9, scale down.
	control.decision == {"type": "NONE"} with input as object.union(base, {"current": {"replicas": 11}})
	control.decision == {"type": "REPLICAS", "replicas": 10} with input as object.union(base, {"current": {"replicas": 12}})
}

test_scales_up_only_past_the_tolerance if {
	# 400 / 37.5 → 11 wanted: within 10 % of 10, hold; 450 → 12, scale up.
	control.decision == {"type": "NONE"} with input as object.union(base, {"forecast_interval": {"request_rate": {"lower": 300, "upper": 400}}})
	control.decision == {"type": "REPLICAS", "replicas": 12} with input as object.union(base, {"forecast_interval": {"request_rate": {"lower": 300, "upper": 450}}})
}

test_no_scale_down_on_an_anomalous_dip if {
	dip := object.union(base, {"current": {"replicas": 12}, "anomaly": {"request_rate": {"score": 6, "anomalous": true}}})
	control.decision == {"type": "NONE"} with input as dip
}

# Without a configured capacity, a replica's is read off the present: 10 replicas at 56 % CPU
# serving 300 req/s carry 37.5 req/s each at 70 %, so the surge's upper bound of 700 needs 19.
test_capacity_read_off_cpu_when_not_configured if {
	unconfigured := object.union(json.remove(base, ["limits/capacity_per_replica"]), {
		"now": {"replicas": 10, "cpu_percent": 56},
		"forecast": {"request_rate": 600},
		"forecast_interval": {"request_rate": {"lower": 500, "upper": 700}},
	})
	control.decision == {"type": "REPLICAS", "replicas": 19} with input as unconfigured

	# Without the CPU either, no replica change.
	blind := json.remove(unconfigured, ["now/cpu_percent"])
	control.decision == {"type": "NONE"} with input as blind
}

# Traffic moved to the secondary comes back, half of it, when the secondary breaches and the
# primary has room; no replica change meanwhile.
test_traffic_comes_back_from_a_breaching_secondary if {
	moved := object.union(base, {
		"now": {"region": {"primary": {"latency_p99_ms": 60}, "secondary": {"latency_p99_ms": 900}}},
		"current": {"weights": {"primary": 10, "secondary": 90}},
		"forecast": {"request_rate": 900},
		"forecast_interval": {"request_rate": {"lower": 800, "upper": 1000}},
	})
	control.decision == {"type": "WEIGHTS", "to": "primary", "share": 50} with input as moved

	balanced := object.union(moved, {"current": {"weights": {"primary": 50, "secondary": 50}}})
	control.decision == {"type": "REPLICAS", "replicas": 20} with input as balanced
}
