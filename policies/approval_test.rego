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

# Past the approval phase: a low-risk scale-down runs on its own; a scale-up or a plan that
# needs a restart waits for a human unless the classifier is very sure about a long-managed
# target.
test_after_the_approval_phase_a_scale_up_is_reviewed if {
	d := setpoint.decision with input as fixtures.with_patch({"classification": {"class": "scale_up"}})
	d.verdict == "review"
	[r.code | some r in d.reasons] == ["approval_required"]
	contains(d.reasons[0].message, "scale_up of risk medium needs a human approval")
	contains(d.reasons[0].message, "only scale_down of risk low or less run on their own")
	contains(d.reasons[0].message, "here 0.9 after 90 days")
}

test_after_the_approval_phase_a_restart_is_reviewed if {
	restarting := object.union(fixtures.scale_down, {"risk": "medium"})
	d := setpoint.decision with input as fixtures.with_patch({"proposals": [restarting, fixtures.scale_up]})
	d.verdict == "review"
	contains(d.reasons[0].message, "scale_down of risk medium needs a human approval")
}

test_high_confidence_and_tenure_earn_autonomy if {
	inp := fixtures.with_patch({
		"classification": {"class": "scale_up", "confidence": 0.97},
		"history": {"managed_days": 200},
	})
	d := setpoint.decision with input as inp
	d.verdict == "act"
	d.proposal == "scale_up"
	contains(d.reasons[0].message, "confidence 0.97 >= 0.95 after 200 days managed (>= 180)")
}

test_confidence_alone_does_not_earn_autonomy if {
	inp := fixtures.with_patch({
		"classification": {"class": "scale_up", "confidence": 0.99},
		"history": {"managed_days": 120},
	})
	d := setpoint.decision with input as inp
	d.verdict == "review"
}

test_platform_teams_move_the_lines_in_data if {
	d := setpoint.decision with input as fixtures.with_patch({"classification": {"class": "scale_up"}})
		with data.setpoint.config.autonomy.auto_actions as ["scale_down", "scale_up"]
		with data.setpoint.config.autonomy.auto_max_risk as "medium"
	d.verdict == "act"
}

approval_of(status) := {"review": {
	"id": 7,
	"status": status,
	"action": "scale_down",
	"by": "alice",
	"at": "2025-03-30T10:00:00Z",
	"comment": "reporting is idle at night",
}}

test_an_approval_acts_in_the_approval_phase if {
	inp := object.union(fixtures.with_patch({"history": {"managed_days": 12, "stable_cycles": 1}}), approval_of("approved"))
	d := setpoint.decision with input as inp
	d.verdict == "act"
	d.proposal == "scale_down"
	[r.code | some r in d.reasons] == ["approved_by_reviewer"]
	contains(d.reasons[0].message, "approved by alice at 2025-03-30T10:00:00Z (review 7): reporting is idle at night")
}

test_an_approval_is_rechecked_on_fresh_data if {
	inp := object.union(fixtures.with_patch({"history": {"managed_days": 12}, "classification": {"confidence": 0.5}}), approval_of("approved"))
	d := setpoint.decision with input as inp
	d.verdict == "hold"
	[r.code | some r in d.reasons] == ["low_confidence"]
}

test_an_approval_of_another_action_does_not_count if {
	inp := object.union(fixtures.with_patch({"history": {"managed_days": 12}, "classification": {"class": "scale_up"}}), approval_of("approved"))
	d := setpoint.decision with input as inp
	d.verdict == "review"
}

test_a_rejection_holds if {
	inp := object.union(fixtures.with_patch({"history": {"managed_days": 12}}), approval_of("rejected"))
	d := setpoint.decision with input as inp
	d.verdict == "hold"
	[r.code | some r in d.reasons] == ["rejected_by_reviewer"]
	contains(d.reasons[0].message, "rejected by alice")
}

test_a_kill_switch_beats_an_approval if {
	inp := object.union(fixtures.with_patch({"history": {"managed_days": 12}}), approval_of("approved"))
	d := setpoint.decision with input as inp with data.setpoint.kill_switches.global as true
	d.verdict == "block"
}
