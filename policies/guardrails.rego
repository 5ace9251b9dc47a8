# Guardrails: hard limits on the size a proposal may go to, and on how far one step may go.
#
# A violation blocks the proposal (it is not a matter of waiting), with one reason per
# violation: guardrail_min_size, guardrail_max_size, guardrail_max_step.
package setpoint.guardrails

import rego.v1

cfg := data.setpoint.config

# The proposal being judged (see decision.rego).
p := data.setpoint.chosen

# Size limits from two sources: the loop's configured bounds (input.bounds) and the policy's
# absolute bounds, which hold whatever a loop is configured with.
limits := [
	{
		"field": "cpu_millicores",
		"min": input.bounds.min_cpu_millicores,
		"max": input.bounds.max_cpu_millicores,
		"source": "the loop's bounds",
	},
	{
		"field": "memory_bytes",
		"min": input.bounds.min_memory_bytes,
		"max": input.bounds.max_memory_bytes,
		"source": "the loop's bounds",
	},
	{
		"field": "cpu_millicores",
		"min": cfg.absolute_bounds.min_cpu_millicores,
		"max": cfg.absolute_bounds.max_cpu_millicores,
		"source": "the policy's absolute bounds",
	},
	{
		"field": "memory_bytes",
		"min": cfg.absolute_bounds.min_memory_bytes,
		"max": cfg.absolute_bounds.max_memory_bytes,
		"source": "the policy's absolute bounds",
	},
]

violations contains v if {
	some l in limits
	after := p.after[l.field]
	after < l.min
	v := {
		"code": "guardrail_min_size",
		"message": sprintf("%s would set %s to %s, below the minimum %s of %s", [
			p.action, _dimension[l.field], human(l.field, after), human(l.field, l.min), l.source,
		]),
	}
}

violations contains v if {
	some l in limits
	after := p.after[l.field]
	after > l.max
	v := {
		"code": "guardrail_max_size",
		"message": sprintf("%s would set %s to %s, above the maximum %s of %s", [
			p.action, _dimension[l.field], human(l.field, after), human(l.field, l.max), l.source,
		]),
	}
}

violations contains v if {
	some field in ["cpu_millicores", "memory_bytes"]
	before := p.before[field]
	after := p.after[field]
	before > 0
	ratio := after / before
	not _within_step(ratio)
	v := {
		"code": "guardrail_max_step",
		"message": sprintf("%s would change %s from %s to %s, a factor of %v; one step may change it by at most a factor of %v", [
			p.action, _dimension[field], human(field, before), human(field, after), round(ratio * 100) / 100, cfg.max_step_ratio,
		]),
	}
}

# A zero "before" size makes the step unbounded: refuse rather than divide by zero.
violations contains v if {
	some field in ["cpu_millicores", "memory_bytes"]
	p.before[field] <= 0
	v := {
		"code": "guardrail_max_step",
		"message": sprintf("%s starts from %s of 0, so the size of the step cannot be checked", [p.action, _dimension[field]]),
	}
}

_within_step(ratio) if {
	ratio <= cfg.max_step_ratio
	ratio >= 1 / cfg.max_step_ratio
}

# Violations in a stable order (sets iterate sorted: by code, then message).
reasons := [v | some v in violations]

_dimension := {"cpu_millicores": "CPU", "memory_bytes": "memory"}

# Sizes as people read them: vCPU and GiB, to two decimals.
human("cpu_millicores", n) := sprintf("%v vCPU", [round(n / 10) / 100])

human("memory_bytes", n) := sprintf("%v GiB", [round((n / 1073741824) * 100) / 100])
