package setpoint_test.missing_data

import rego.v1

import data.setpoint
import data.setpoint_test.fixtures

without_iops := {
	"cpu_w1": {"value": 0.10, "coverage": 1.0},
	"iops_w2": {"value": null, "coverage": 0.3},
	"iops_w1": {"value": null, "coverage": 0.0},
}

test_a_scale_down_with_a_missing_feature_holds if {
	d := setpoint.decision with input as object.union(fixtures.base, {"features": without_iops})
	d.verdict == "hold"
	d.proposal == "scale_down"
	[r.code | some r in d.reasons] == ["missing_data"]
	d.reasons[0].message == "scale_down needs every feature of the fingerprint; 2 missing: iops_w1, iops_w2"
}

test_a_scale_up_with_a_missing_feature_is_not_held_for_it if {
	inp := object.union(fixtures.base, {"features": without_iops, "classification": {"class": "scale_up"}})
	d := setpoint.decision with input as inp
	d.verdict == "review"
	[r.code | some r in d.reasons] == ["approval_required"]
	d.proposal == "scale_up"
}

test_complete_data_passes if {
	d := setpoint.decision with input as fixtures.base
	d.verdict == "act"
}

# Precedence: after kill switches and no-change, before guardrails.
test_kill_switch_beats_missing_data if {
	d := setpoint.decision with input as object.union(fixtures.base, {"features": without_iops})
		with data.setpoint.kill_switches.global as true
	d.verdict == "block"
	[r.code | some r in d.reasons] == ["kill_switch"]
}

test_missing_data_beats_guardrails if {
	broken := object.union(fixtures.scale_down, {"after": {"cpu_millicores": 100}})
	inp := object.union(fixtures.base, {"features": without_iops, "proposals": [broken]})
	d := setpoint.decision with input as inp
	d.verdict == "hold"
	[r.code | some r in d.reasons] == ["missing_data"]
}
