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

test_plans_for_the_forecast_while_the_load_rises if {
	# 320 / 37.5 = 8.5 → 9, and 320 × 1.1 still needs 10: hold at 10.
	control.decision == {"type": "NONE"} with input as base

	surge := object.union(base, {"forecast": {"request_rate": 600}, "forecast_interval": {"request_rate": {"lower": 500, "upper": 700}}})
	control.decision == {"type": "REPLICAS", "replicas": 16} with input as surge
}

# With the horizon known, the plan is for the load lead_seconds (300) ahead, on the way from
# now to the forecast: 300 + (900 − 300) × 300 / 900 = 500 → 14.
test_plans_for_the_load_when_new_replicas_serve if {
	surge := object.union(base, {"horizon_seconds": 900, "forecast": {"request_rate": 900}})
	control.decision == {"type": "REPLICAS", "replicas": 14} with input as surge
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

# A secondary that serves 30 req/s at 45 % CPU carries 60 short of saturation (90 %): a fifth
# of the service's 300 moves now, more once its replicas grow; none while it has no room.
test_moves_no_more_traffic_than_the_secondary_carries if {
	degraded := object.union(base, {
		"now": {"region": {
			"primary": {"request_rate": 270, "cpu_percent": 80, "replicas": 8, "latency_p99_ms": 900},
			"secondary": {"request_rate": 30, "cpu_percent": 45, "replicas": 2, "latency_p99_ms": 80},
		}},
		"current": {"weights": {"primary": 90, "secondary": 10}},
	})
	control.decision == {"type": "WEIGHTS", "to": "secondary", "share": 20} with input as degraded

	full := object.union(degraded, {"current": {"weights": {"primary": 80, "secondary": 20}}})
	not control.shifting with input as full
}

test_throttles_only_beyond_the_maximum if {
	flood := object.union(base, {"now": {"request_rate": 2000}, "current": {"replicas": 20}})
	control.decision == {"type": "THROTTLE", "limit_rate": 750} with input as flood
}

test_scales_down_only_when_the_load_grown_by_the_tolerance_fits if {
	# 320 needs 9, but 352 needs 10: hold at 10; from 11, down to 9.
	control.decision == {"type": "NONE"} with input as object.union(base, {"current": {"replicas": 10}})
	control.decision == {"type": "REPLICAS", "replicas": 9} with input as object.union(base, {"current": {"replicas": 11}})
}

test_scales_up_only_when_the_load_shrunk_by_the_tolerance_needs_more if {
	# 400 / 1.1 = 364 fits 10: hold; 450 / 1.1 = 409 needs 11: up to what 450 needs, 12.
	control.decision == {"type": "NONE"} with input as object.union(base, {"forecast": {"request_rate": 400}})
	control.decision == {"type": "REPLICAS", "replicas": 12} with input as object.union(base, {"forecast": {"request_rate": 450}})
}

# 8 replicas at 70 % serve 300 req/s at a p99 of 400 ms: a service time of 120 ms, so p99
# stays within 0.8 × 300 ms only at 50 % — 12 replicas, where the capacity model says 8.
test_plans_for_the_latency_the_capacity_model_misses if {
	slow := object.union(json.remove(base, ["forecast", "forecast_interval"]), {
		"now": {"cpu_percent": 70, "latency_p99_ms": 400, "replicas": 8},
		"current": {"replicas": 8},
	})
	control.decision == {"type": "REPLICAS", "replicas": 12} with input as slow

	# A service time of 250 ms uses the budget alone: replicas cannot help, and none go.
	hopeless := object.union(slow, {"now": {"cpu_percent": 50, "latency_p99_ms": 500}, "current": {"replicas": 20}})
	control.decision == {"type": "NONE"} with input as hopeless
}

# Each region is planned for its share on its own replicas, never below its own minimum: the
# primary carries 10 % (1 replica's worth) but keeps its 2, the secondary needs 8 for 270
# req/s.
regional := object.union(json.remove(base, ["forecast", "forecast_interval"]), {
	"now": {"region": {
		"primary": {"request_rate": 30, "cpu_percent": 10, "replicas": 2, "latency_p99_ms": 60},
		"secondary": {"request_rate": 270, "cpu_percent": 60, "replicas": 6, "latency_p99_ms": 100},
	}},
	"current": {"replicas": 8, "weights": {"primary": 10, "secondary": 90}},
	"limits": {"region": {
		"primary": {"min_replicas": 2, "max_replicas": 10},
		"secondary": {"min_replicas": 1, "max_replicas": 10},
	}},
})

test_plans_each_region_above_its_minimum if {
	control.decision == {"type": "REPLICAS", "replicas": 10} with input as regional
	control.want == 9 with input as json.remove(regional, ["limits/region"])
}

# A primary that is only busier (the same service time and CPU per request as the
# secondary) needs replicas, not fewer requests; one that serves slower is degraded.
test_a_busier_primary_is_not_degraded if {
	busier := object.union(base, {"now": {"region": {
		"primary": {"request_rate": 150, "cpu_percent": 85, "replicas": 2, "latency_p99_ms": 307},
		"secondary": {"request_rate": 150, "cpu_percent": 42.5, "replicas": 4, "latency_p99_ms": 80},
	}}})
	control.decision != {"type": "WEIGHTS", "to": "secondary", "share": "most"} with input as busier

	slower := object.union(busier, {"now": {"region": {"primary": {"latency_p99_ms": 900}}}})
	control.decision == {"type": "WEIGHTS", "to": "secondary", "share": "most"} with input as slower
}

test_no_scale_down_on_an_anomalous_dip if {
	dip := object.union(base, {"current": {"replicas": 12}, "anomaly": {"request_rate": {"score": 6, "anomalous": true}}})
	control.decision == {"type": "NONE"} with input as dip

	# Above its expected band the rate is a surge, not a dip: the plan alone decides.
	above := object.union(dip, {"anomaly": {"request_rate": {"expected": {"lower": 150, "upper": 250}}}})
	control.decision == {"type": "REPLICAS", "replicas": 9} with input as above
}

# Without a configured capacity, a replica's is read off the present: 10 replicas at 56 % CPU
# serving 300 req/s carry 37.5 req/s each at 70 %, so the surge's 600 needs 16.
test_capacity_read_off_cpu_when_not_configured if {
	unconfigured := object.union(json.remove(base, ["limits/capacity_per_replica"]), {
		"now": {"replicas": 10, "cpu_percent": 56},
		"forecast": {"request_rate": 600},
		"forecast_interval": {"request_rate": {"lower": 500, "upper": 700}},
	})
	control.decision == {"type": "REPLICAS", "replicas": 16} with input as unconfigured

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
