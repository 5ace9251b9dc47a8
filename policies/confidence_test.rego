package setpoint_test.confidence

import rego.v1

import data.setpoint
import data.setpoint_test.fixtures

test_low_confidence_holds if {
	d := setpoint.decision with input as fixtures.with_patch({"classification": {"confidence": 0.75}})
	d.verdict == "hold"
	d.proposal == "scale_down"
	[r.code | some r in d.reasons] == ["low_confidence"]
	contains(d.reasons[0].message, "confidence 0.75 in scale_down")
	contains(d.reasons[0].message, "minimum 0.8")
}

test_confidence_at_the_minimum_is_enough if {
	d := setpoint.decision with input as fixtures.with_patch({"classification": {"confidence": 0.8}})
	d.verdict == "act"
}

# Precedence (4) over (5) and (6): an unsure classification is not queued for a human.
test_low_confidence_before_cooldown_and_approval if {
	inp := fixtures.with_patch({
		"classification": {"confidence": 0.4},
		"history": {"managed_days": 3, "days_since_last_action": 2},
	})
	d := setpoint.decision with input as inp
	d.verdict == "hold"
	[r.code | some r in d.reasons] == ["low_confidence"]
}
