package setpoint_test.approval

import rego.v1

import data.setpoint
import data.setpoint_test.fixtures

test_approval_phase_reviews if {
	d := setpoint.decision with input as fixtures.with_patch({"history": {"managed_days": 12}})
	d.verdict == "review"
	d.proposal == "scale_down"
	[r.code | some r in d.reasons] == ["approval_required"]
	contains(d.reasons[0].message, "pg-reporting-a has been managed for 12 days")
	contains(d.reasons[0].message, "first 60 days")
}

# Precedence (6) over (7): a review does not wait for stability, but says the class is new.
test_approval_phase_does_not_wait_for_hysteresis if {
	d := setpoint.decision with input as fixtures.with_patch({"history": {"managed_days": 12, "stable_cycles": 1}})
	d.verdict == "review"
	[r.code | some r in d.reasons] == ["approval_required", "hysteresis"]
	contains(d.reasons[1].message, "stable for 1 of 3 cycles")
}

test_last_day_of_approval_still_reviews if {
	d := setpoint.decision with input as fixtures.with_patch({"history": {"managed_days": 59}})
	d.verdict == "review"
}

test_approval_over_acts if {
	d := setpoint.decision with input as fixtures.with_patch({"history": {"managed_days": 60}})
	d.verdict == "act"
}
