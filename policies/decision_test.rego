package setpoint_test.decision

import rego.v1

import data.setpoint
import data.setpoint_test.fixtures

test_base_acts if {
	d := setpoint.decision with input as fixtures.base
	d == {
		"verdict": "act",
		"proposal": "scale_down",
		"reasons": [{
			"code": "approved_by_policy",
			"message": "scale_down approved: 8 vCPU / 32 GiB -> 4 vCPU / 16 GiB, shared_buffers 8GB -> 4GB; confidence 0.9 >= 0.8, class stable for 4 cycles (>= 3), managed for 90 days (>= 60), scale_down of risk low runs on its own after 60 days, guardrails passed",
		}],
	}
}

test_remain_holds_with_the_explanation if {
	inp := fixtures.with_patch({"classification": {
		"class": "remain",
		"confidence": 0.3,
		"explanation": {"code": "insufficient_data", "rule": "coverage below 0.8 in week W-2"},
	}})
	d := setpoint.decision with input as inp
	d.verdict == "hold"
	d.proposal == null
	[r.code | some r in d.reasons] == ["no_change"]
	contains(d.reasons[0].message, "insufficient_data")
}

test_class_without_a_proposal_holds if {
	inp := fixtures.with_patch({"proposals": [fixtures.scale_up]})
	d := setpoint.decision with input as inp
	d.verdict == "hold"
	d.proposal == null
	[r.code | some r in d.reasons] == ["no_change"]
	contains(d.reasons[0].message, "no scale_down plan")
}

# Precedence (2) over (3)..(7): with nothing to change, nothing else is checked.
test_no_change_before_everything_but_kill_switches if {
	inp := fixtures.with_patch({
		"classification": {"class": "remain", "confidence": 0.1},
		"history": {"managed_days": 1, "stable_cycles": 1, "days_since_last_action": 1},
		"proposals": [object.union(fixtures.scale_down, {"after": {"cpu_millicores": 1}})],
	})
	d := setpoint.decision with input as inp
	d.verdict == "hold"
	[r.code | some r in d.reasons] == ["no_change"]
}

test_scale_up_picks_the_scale_up_proposal if {
	d := setpoint.decision with input as fixtures.with_patch({"classification": {"class": "scale_up"}})
	d.verdict == "review"
	d.proposal == "scale_up"
}

# Decisions depend on input.now only through the host's derived figures; two runs at different
# times with the same history decide the same.
test_decision_does_not_read_the_clock if {
	a := setpoint.decision with input as fixtures.base
	b := setpoint.decision with input as fixtures.with_patch({"now": "2030-01-01T00:00:00Z", "now_ns": 1893456000000000000})
	a == b
}
