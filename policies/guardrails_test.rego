package setpoint_test.guardrails

import rego.v1

import data.setpoint
import data.setpoint_test.fixtures

codes(d) := [r.code | some r in d.reasons]

test_within_bounds_passes if {
	count(data.setpoint.guardrails.violations) == 0 with input as fixtures.base
}

test_below_loop_min_cpu_blocks if {
	# From 1 vCPU, so that only the size (not the step) is at fault.
	inp := object.union(fixtures.base, {"proposals": [object.union(fixtures.scale_down, {
		"before": {"cpu_millicores": 1000},
		"after": {"cpu_millicores": 750, "memory_bytes": 16 * fixtures.gib},
	})]})
	d := setpoint.decision with input as inp
	d.verdict == "block"
	d.proposal == "scale_down"
	codes(d) == ["guardrail_min_size"]
	contains(d.reasons[0].message, "0.75 vCPU")
	contains(d.reasons[0].message, "minimum 1 vCPU of the loop's bounds")
}

test_below_policy_floor_blocks_even_with_lax_loop_bounds if {
	inp := object.union(fixtures.base, {
		"bounds": {"min_memory_bytes": 0},
		"proposals": [object.union(fixtures.scale_down, {
			"before": {"memory_bytes": fixtures.gib},
			"after": {"cpu_millicores": 4000, "memory_bytes": fixtures.gib / 2},
		})],
	})
	d := setpoint.decision with input as inp
	d.verdict == "block"
	codes(d) == ["guardrail_min_size"]
	contains(d.reasons[0].message, "policy's absolute bounds")
	contains(d.reasons[0].message, "0.5 GiB")
}

test_above_loop_max_blocks if {
	inp := object.union(fixtures.base, {
		"classification": {"class": "scale_up"},
		"proposals": [object.union(fixtures.scale_up, {
			"before": {"cpu_millicores": 48000},
			"after": {"cpu_millicores": 96000},
		})],
	})
	d := setpoint.decision with input as inp
	d.verdict == "block"
	d.proposal == "scale_up"
	codes(d) == ["guardrail_max_size"]
	contains(d.reasons[0].message, "96 vCPU")
	contains(d.reasons[0].message, "maximum 64 vCPU")
}

test_step_too_large_blocks if {
	d := setpoint.decision with input as fixtures.with_after(2000, 16 * fixtures.gib)
	d.verdict == "block"
	codes(d) == ["guardrail_max_step"]
	contains(d.reasons[0].message, "from 8 vCPU to 2 vCPU, a factor of 0.25")
}

test_step_of_exactly_the_ratio_passes if {
	# 8 -> 4 vCPU and 32 -> 16 GiB: a factor of 0.5, the limit itself.
	count(data.setpoint.guardrails.violations) == 0 with input as fixtures.base
}

test_step_up_too_large_blocks if {
	inp := object.union(fixtures.base, {
		"classification": {"class": "scale_up"},
		"proposals": [object.union(fixtures.scale_up, {"after": {"memory_bytes": 96 * fixtures.gib}})],
	})
	d := setpoint.decision with input as inp
	d.verdict == "block"
	codes(d) == ["guardrail_max_step"]
	contains(d.reasons[0].message, "memory from 32 GiB to 96 GiB, a factor of 3")
}

test_zero_before_blocks if {
	inp := object.union(fixtures.base, {"proposals": [object.union(fixtures.scale_down, {"before": {"cpu_millicores": 0}})]})
	d := setpoint.decision with input as inp
	d.verdict == "block"
	codes(d) == ["guardrail_max_step"]
}

test_several_violations_are_all_reasons if {
	d := setpoint.decision with input as fixtures.with_after(100, 16 * fixtures.gib)
	d.verdict == "block"
	# 0.1 vCPU: below the loop minimum and the absolute floor, and a step of 1/80.
	codes(d) == ["guardrail_max_step", "guardrail_min_size", "guardrail_min_size"]
}

test_a_configured_ratio_is_honoured if {
	d := setpoint.decision with input as fixtures.base
		with data.setpoint.config.max_step_ratio as 1.5
	d.verdict == "block"
	codes(d) == ["guardrail_max_step", "guardrail_max_step"]
}

# Precedence (3) over (4)..(7): a forbidden plan is blocked whatever its timing.
test_guardrails_before_holds if {
	inp := object.union(fixtures.with_after(2000, 16 * fixtures.gib), {
		"classification": {"confidence": 0.3},
		"history": {"stable_cycles": 1, "managed_days": 3, "days_since_last_action": 2},
	})
	d := setpoint.decision with input as inp
	d.verdict == "block"
	codes(d) == ["guardrail_max_step"]
}

# Only the chosen proposal is judged: a bad scale_up plan does not block a scale_down.
test_only_the_chosen_proposal_is_checked if {
	inp := object.union(fixtures.base, {"proposals": [
		fixtures.scale_down,
		object.union(fixtures.scale_up, {"after": {"cpu_millicores": 999000}}),
	]})
	d := setpoint.decision with input as inp
	d.verdict == "act"
}
