package setpoint_test.kill_switch

import rego.v1

import data.setpoint
import data.setpoint_test.fixtures

switches(global, loops, targets) := {"global": global, "loops": loops, "targets": targets}

test_no_switch_no_reasons if {
	count(data.setpoint.kill_switch.reasons) == 0 with input as fixtures.base
}

test_global_blocks if {
	d := setpoint.decision with input as fixtures.base
		with data.setpoint.kill_switches as switches(true, {}, {})
	d.verdict == "block"
	d.reasons[0].code == "kill_switch"
	contains(d.reasons[0].message, "global")
}

test_loop_blocks_only_that_loop if {
	d := setpoint.decision with input as fixtures.base
		with data.setpoint.kill_switches as switches(false, {"weekly-rightsizing": true}, {})
	d.verdict == "block"
	contains(d.reasons[0].message, "loop weekly-rightsizing")

	other := setpoint.decision with input as fixtures.base
		with data.setpoint.kill_switches as switches(false, {"fast-scaling": true}, {})
	other.verdict == "act"
}

test_target_blocks_only_that_target if {
	d := setpoint.decision with input as fixtures.base
		with data.setpoint.kill_switches as switches(false, {}, {"pg-reporting-a": true})
	d.verdict == "block"
	contains(d.reasons[0].message, "target pg-reporting-a")

	other := setpoint.decision with input as fixtures.base
		with data.setpoint.kill_switches as switches(false, {}, {"pg-other": true})
	other.verdict == "act"
}

test_switch_set_to_false_is_off if {
	d := setpoint.decision with input as fixtures.base
		with data.setpoint.kill_switches as switches(false, {"weekly-rightsizing": false}, {"pg-reporting-a": false})
	d.verdict == "act"
}

test_every_switch_that_applies_is_a_reason if {
	d := setpoint.decision with input as fixtures.base
		with data.setpoint.kill_switches as switches(true, {"weekly-rightsizing": true}, {"pg-reporting-a": true})
	[r.code | some r in d.reasons] == ["kill_switch", "kill_switch", "kill_switch"]
	contains(d.reasons[0].message, "global")
	contains(d.reasons[1].message, "loop")
	contains(d.reasons[2].message, "target")
}

# Precedence (1): a kill switch blocks even a target that would not change.
test_kill_switch_applies_to_remain if {
	inp := fixtures.with_patch({"classification": {"class": "remain", "explanation": {"code": "insufficient_data"}}})
	d := setpoint.decision with input as inp
		with data.setpoint.kill_switches as switches(true, {}, {})
	d.verdict == "block"
	d.proposal == null
}

# Precedence (1) over (3): a kill switch wins over a guardrail violation.
test_kill_switch_before_guardrails if {
	d := setpoint.decision with input as fixtures.with_after(100, 16 * fixtures.gib)
		with data.setpoint.kill_switches as switches(true, {}, {})
	d.verdict == "block"
	[r.code | some r in d.reasons] == ["kill_switch"]
}
