package setpoint_test.hysteresis

import rego.v1

import data.setpoint
import data.setpoint_test.fixtures

last_action := {"at": "2025-03-29T00:00:00Z", "action": "scale_up", "summary": "4 vCPU / 16 GiB -> 8 vCPU / 32 GiB"}

test_cooldown_holds if {
	inp := fixtures.with_patch({"history": {"last_action": last_action, "days_since_last_action": 3}})
	d := setpoint.decision with input as inp
	d.verdict == "hold"
	d.proposal == "scale_down"
	[r.code | some r in d.reasons] == ["cooldown"]
	contains(d.reasons[0].message, "3 days ago")
	contains(d.reasons[0].message, "cooldown is 14 days")
	contains(d.reasons[0].message, "scale_up: 4 vCPU / 16 GiB -> 8 vCPU / 32 GiB")
}

test_cooldown_over_acts if {
	inp := fixtures.with_patch({"history": {"last_action": last_action, "days_since_last_action": 14}})
	d := setpoint.decision with input as inp
	d.verdict == "act"
}

test_never_acted_is_not_in_cooldown if {
	not data.setpoint.hysteresis.in_cooldown with input as fixtures.base
}

# Precedence (5) over (6): a target just changed is not queued for review.
test_cooldown_before_approval if {
	inp := fixtures.with_patch({"history": {"managed_days": 10, "last_action": last_action, "days_since_last_action": 3}})
	d := setpoint.decision with input as inp
	d.verdict == "hold"
	[r.code | some r in d.reasons] == ["cooldown"]
}

test_unstable_past_approval_holds if {
	d := setpoint.decision with input as fixtures.with_patch({"history": {"stable_cycles": 2}})
	d.verdict == "hold"
	d.proposal == "scale_down"
	[r.code | some r in d.reasons] == ["hysteresis"]
	contains(d.reasons[0].message, "stable for 2 of the 3 cycles")
}

test_stable_past_approval_acts if {
	d := setpoint.decision with input as fixtures.with_patch({"history": {"stable_cycles": 3}})
	d.verdict == "act"
	d.proposal == "scale_down"
	[r.code | some r in d.reasons] == ["approved_by_policy"]
}
