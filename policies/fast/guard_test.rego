package setpoint_test.fast.guard

import rego.v1

import data.setpoint.fast.guard

# 2026-12-01T00:00:00Z; the last change was 10 minutes earlier.
now_ns := 1796083200000000000

minute_ns := 60000000000

metrics := {"request_rate": 800, "latency_p99_ms": 120, "error_percent": 0.2, "cpu_percent": 40}

base := {
	"service": "checkout",
	"loop": "fast-scaling",
	"at": "2026-12-01T00:00:00Z",
	"at_ns": now_ns,
	"proposed": {"type": "replicas", "factor": 1.5},
	"current": {"replicas": 4, "weights": {"primary": 100, "secondary": 0}},
	"limits": {"min_replicas": 2, "max_replicas": 10},
	"last_change": {"at_ns": now_ns - (10 * minute_ns), "kind": "replicas"},
	"observed": metrics,
	"forecast": metrics,
	"flags": {"maintenance": false, "emergency": false},
}

# base with the top-level keys of `changes` replaced (object.union would merge them deeply).
changed(changes) := object.union(object.remove(base, object.keys(changes)), changes)

with_proposed(action) := changed({"proposed": action})

switches(global, loops, targets) := {"global": global, "loops": loops, "targets": targets}

test_a_factor_within_the_step_acts_with_an_absolute_count if {
	d := guard.decision with input as base
	d.verdict == "act"
	d.action == {"type": "replicas", "absolute": 6}
	[r.code | some r in d.reasons] == ["approved"]
}

test_a_factor_rounds_up_without_float_noise if {
	d := guard.decision with input as changed({
		"proposed": {"type": "replicas", "factor": 1.1},
		"current": {"replicas": 10},
		"limits": {"min_replicas": 1, "max_replicas": 100},
	})
	d.action.absolute == 11
}

test_a_factor_is_clamped_to_the_max_step if {
	d := guard.decision with input as with_proposed({"type": "replicas", "factor": 5})
	d.verdict == "act"
	d.action.absolute == 8
	[r.code | some r in d.reasons] == ["approved", "clamped_max_step"]
}

test_a_scale_down_is_clamped_to_the_max_step if {
	d := guard.decision with input as changed({
		"proposed": {"type": "replicas", "absolute": 1},
		"current": {"replicas": 9},
		"limits": {"min_replicas": 1, "max_replicas": 10},
	})
	d.action.absolute == 5
}

test_replicas_stay_within_min_and_max if {
	up := guard.decision with input as changed({"proposed": {"type": "replicas", "absolute": 7}, "limits": {"min_replicas": 2, "max_replicas": 6}})
	up.action.absolute == 6
	"clamped_max_replicas" in {r.code | some r in up.reasons}

	down := guard.decision with input as changed({"proposed": {"type": "replicas", "factor": 0.5}, "limits": {"min_replicas": 3, "max_replicas": 10}})
	down.action.absolute == 3
	"clamped_min_replicas" in {r.code | some r in down.reasons}
}

# Bounds win over the step: a service below its minimum goes straight to it.
test_bounds_win_over_the_step if {
	d := guard.decision with input as changed({"current": {"replicas": 1}, "limits": {"min_replicas": 5, "max_replicas": 10}})
	d.action.absolute == 5
}

test_a_change_inside_the_cooldown_holds if {
	d := guard.decision with input as changed({"last_change": {"at_ns": now_ns - (30 * 1000000000), "kind": "replicas"}})
	d.verdict == "hold"
	[r.code | some r in d.reasons] == ["cooldown"]
	d.action == {"type": "replicas", "absolute": 6}
}

test_a_scale_down_waits_longer if {
	d := guard.decision with input as changed({
		"proposed": {"type": "replicas", "factor": 0.5},
		"last_change": {"at_ns": now_ns - (2 * minute_ns), "kind": "replicas"},
	})
	d.verdict == "hold"
	d.reasons[0].code == "cooldown"
}

test_a_last_change_in_the_future_is_a_cooldown if {
	d := guard.decision with input as changed({"last_change": {"at_ns": now_ns + minute_ns, "kind": "replicas"}})
	d.verdict == "hold"
}

test_an_emergency_skips_the_cooldown_except_for_a_scale_down if {
	recent := {"at_ns": now_ns - 1000000000, "kind": "replicas"}
	flags := {"maintenance": false, "emergency": true}
	up := guard.decision with input as changed({"last_change": recent, "flags": flags})
	up.verdict == "act"

	down := guard.decision with input as changed({"last_change": recent, "flags": flags, "proposed": {"type": "replicas", "factor": 0.5}})
	down.verdict == "hold"
}

test_no_last_change_means_no_cooldown if {
	d := guard.decision with input as object.remove(base, ["last_change"])
	d.verdict == "act"
}

test_every_kill_switch_blocks if {
	g := guard.decision with input as base with data.setpoint.kill_switches as switches(true, {}, {})
	g.verdict == "block"
	g.reasons[0].code == "kill_switch"

	l := guard.decision with input as base with data.setpoint.kill_switches as switches(false, {"fast-scaling": true}, {})
	l.verdict == "block"
	contains(l.reasons[0].message, "loop fast-scaling")

	s := guard.decision with input as base with data.setpoint.kill_switches as switches(false, {}, {"checkout": true})
	s.verdict == "block"
	contains(s.reasons[0].message, "service checkout")

	other := guard.decision with input as base with data.setpoint.kill_switches as switches(false, {"weekly": true}, {"cart": true})
	other.verdict == "act"
}

test_a_kill_switch_blocks_even_no_action if {
	d := guard.decision with input as with_proposed({"type": "none"}) with data.setpoint.kill_switches as switches(true, {}, {})
	d.verdict == "block"
}

test_no_action_holds if {
	d := guard.decision with input as with_proposed({"type": "none"})
	d.verdict == "hold"
	d.reasons[0].code == "no_change"
}

test_maintenance_holds if {
	d := guard.decision with input as changed({"flags": {"maintenance": true, "emergency": false}})
	d.verdict == "hold"
	d.reasons[0].code == "maintenance"
}

test_missing_forecast_never_scales_down if {
	partial := object.remove(metrics, ["cpu_percent"])
	d := guard.decision with input as changed({"proposed": {"type": "replicas", "factor": 0.5}, "forecast": partial})
	d.verdict == "hold"
	[r.code | some r in d.reasons] == ["missing_data"]
	contains(d.reasons[0].message, "forecast cpu_percent")

	no_forecast := guard.decision with input as object.remove(with_proposed({"type": "replicas", "factor": 0.5}), ["forecast"])
	no_forecast.verdict == "hold"
	count(no_forecast.reasons) == 3
}

test_missing_forecast_does_not_stop_a_scale_up if {
	d := guard.decision with input as object.remove(base, ["forecast"])
	d.verdict == "act"
}

test_unknown_current_replicas_hold if {
	d := guard.decision with input as changed({"current": {"weights": {}}})
	d.verdict == "hold"
	d.reasons[0].code == "missing_data"
}

test_min_above_max_blocks if {
	d := guard.decision with input as changed({"limits": {"min_replicas": 8, "max_replicas": 4}})
	d.verdict == "block"
	d.reasons[0].code == "guardrail_limits"
}

test_a_traffic_shift_moves_at_most_the_max_shift if {
	d := guard.decision with input as with_proposed({"type": "traffic_shift", "weights": {"primary": 0, "secondary": 100}})
	d.verdict == "act"
	d.action.weights == {"primary": 50, "secondary": 50}
	[r.code | some r in d.reasons] == ["approved", "clamped_max_shift"]
}

test_a_clamped_shift_still_sums_to_100 if {
	d := guard.decision with input as changed({
		"proposed": {"type": "traffic_shift", "weights": {"a": 0, "b": 67, "c": 33}},
		"current": {"replicas": 4, "weights": {"a": 100, "b": 0, "c": 0}},
	})
	sum([w | some w in d.action.weights]) == 100
	d.action.weights.a == 50
}

test_a_small_shift_is_not_clamped if {
	d := guard.decision with input as with_proposed({"type": "traffic_shift", "weights": {"primary": 80, "secondary": 20}})
	d.action.weights == {"primary": 80, "secondary": 20}
	[r.code | some r in d.reasons] == ["approved"]
}

test_an_unknown_destination_blocks if {
	d := guard.decision with input as with_proposed({"type": "traffic_shift", "weights": {"primary": 50, "tertiary": 50}})
	d.verdict == "block"
	d.reasons[0].code == "guardrail_destination"
}

test_a_shift_without_current_weights_holds if {
	d := guard.decision with input as changed({
		"proposed": {"type": "traffic_shift", "weights": {"primary": 50, "secondary": 50}},
		"current": {"replicas": 4, "weights": {}},
	})
	d.verdict == "hold"
	d.reasons[0].code == "missing_data"
}

test_a_throttle_admits_at_least_the_min_fraction if {
	ok := guard.decision with input as with_proposed({"type": "throttle", "fraction": 0.8})
	ok.verdict == "act"
	ok.action == {"type": "throttle", "fraction": 0.8}

	clamped := guard.decision with input as with_proposed({"type": "throttle", "fraction": 0.1})
	clamped.action == {"type": "throttle", "fraction": 0.5}
	[r.code | some r in clamped.reasons] == ["approved", "clamped_min_throttle"]

	rate := guard.decision with input as with_proposed({"type": "throttle", "rate": 100})
	rate.action == {"type": "throttle", "rate": 400}
}

test_a_rate_limit_needs_the_observed_rate if {
	d := guard.decision with input as object.remove(with_proposed({"type": "throttle", "rate": 100}), ["observed"])
	d.verdict == "hold"
	d.reasons[0].code == "missing_data"
}

test_an_action_that_changes_nothing_holds if {
	same := guard.decision with input as with_proposed({"type": "replicas", "absolute": 4})
	same.verdict == "hold"
	same.reasons[0].code == "no_change"

	throttle := guard.decision with input as changed({
		"proposed": {"type": "throttle", "fraction": 0.8},
		"current": {"replicas": 4, "weights": {"primary": 100, "secondary": 0}, "throttle": {"fraction": 0.8}},
	})
	throttle.verdict == "hold"
}
