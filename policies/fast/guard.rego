# The fast loop's guard: setpoint's own rules, evaluated after a team's control policy.
#
# The team's policy proposes one typed action per service per tick (input.proposed); this
# policy decides whether it runs (act), waits (hold) or is forbidden (block), and clamps it to
# the guardrails. Every threshold is data (data.setpoint.fast.config, defaults in data.json) and
# the kill switches are the engine's, overlaid on data.setpoint.kill_switches. The entry point
# is data.setpoint.fast.guard.decision; docs/fast-loop-policy.md documents input and output.
package setpoint.fast.guard

import rego.v1

cfg := data.setpoint.fast.config

# Not object.get(data.setpoint, …): that document includes this package, a dependency cycle.
default switches := {}

switches := data.setpoint.kill_switches

p := input.proposed

kind := p.type

# The first rule that applies decides; see docs/fast-loop-policy.md for why in this order.
decision := _out("block", kill_reasons, p) if {
	count(kill_reasons) > 0
} else := _out("hold", [_nothing_proposed], p) if {
	kind == "none"
} else := _out("hold", [_maintenance], p) if {
	_in_maintenance
} else := _out("hold", [r | some r in missing], p) if {
	count(missing) > 0
} else := _out("block", [r | some r in violations], p) if {
	count(violations) > 0
} else := _out("hold", [_unchanged], final) if {
	unchanged
} else := _out("hold", [_cooldown], final) if {
	in_cooldown
} else := _out("act", array.concat([_approved], [r | some r in clamps]), final)

_out(verdict, reasons, action) := {"verdict": verdict, "action": action, "reasons": reasons}

# --- Kill switches: global, this loop, this service. -------------------------------------

kill_reasons := array.concat(array.concat(_kill_global, _kill_loop), _kill_service)

_kill_global := [r |
	object.get(switches, "global", false) == true
	r := {"code": "kill_switch", "message": "the global kill switch is on: no loop may change anything"}
]

_kill_loop := [r |
	object.get(switches, ["loops", input.loop], false) == true
	r := {"code": "kill_switch", "message": sprintf("the kill switch for loop %s is on", [input.loop])}
]

_kill_service := [r |
	object.get(switches, ["targets", input.service], false) == true
	r := {"code": "kill_switch", "message": sprintf("the kill switch for service %s is on", [input.service])}
]

# --- Nothing to do, maintenance. ------------------------------------------------------------

_nothing_proposed := {"code": "no_change", "message": "the control policy proposed no action"}

_in_maintenance if {
	cfg.hold_during_maintenance == true
	input.flags.maintenance == true
}

_maintenance := {
	"code": "maintenance",
	"message": sprintf("%s is in a maintenance window: no %s change", [input.service, kind]),
}

# --- Missing or unusable state: hold, never guess. --------------------------------------------

_present(doc, metric) if is_number(object.get(doc, metric, null))

missing contains r if {
	kind == "replicas"
	not is_number(input.current.replicas)
	r := {"code": "missing_data", "message": "the current replica count is unknown, so no replica change can be sized"}
}

# Fail closed: nothing scales down on partial evidence, observed or forecast.
missing contains r if {
	scales_down
	some where in ["observed", "forecast"]
	some metric in cfg.scale_down_requires
	not _present(object.get(input, where, {}), metric)
	r := {"code": "missing_data", "message": sprintf(
		"%s %s is missing: no scale-down from %v to %v replicas without it",
		[where, metric, input.current.replicas, final_replicas],
	)}
}

missing contains r if {
	kind == "traffic_shift"
	count(object.get(input.current, "weights", {})) == 0
	r := {"code": "missing_data", "message": "the current traffic weights are unknown, so no shift can be bounded"}
}

missing contains r if {
	kind == "traffic_shift"
	count(object.get(input.current, "weights", {})) > 0
	total := sum([w | some w in input.current.weights])
	total != 100
	r := {"code": "missing_data", "message": sprintf("the current traffic weights sum to %v, not 100", [total])}
}

missing contains r if {
	kind == "throttle"
	is_number(p.rate)
	not _present(object.get(input, "observed", {}), "request_rate")
	r := {"code": "missing_data", "message": "the observed request rate is missing, so a rate limit cannot be bounded"}
}

# --- Hard limits: block. ----------------------------------------------------------------------

violations contains r if {
	input.limits.min_replicas > input.limits.max_replicas
	r := {"code": "guardrail_limits", "message": sprintf(
		"min_replicas %v is above max_replicas %v",
		[input.limits.min_replicas, input.limits.max_replicas],
	)}
}

violations contains r if {
	kind == "traffic_shift"
	some d, _ in p.weights
	not d in object.keys(input.current.weights)
	r := {"code": "guardrail_destination", "message": sprintf(
		"%s is not one of the service's destinations (%v)",
		[d, concat(", ", sort(object.keys(input.current.weights)))],
	)}
}

# --- The final action, clamped. ---------------------------------------------------------------

# Float products such as 10 * 1.1 = 11.000000000000002 must not round a whole replica up.
_eps := 0.000001

_ceil(x) := ceil(x - _eps)

_floor(x) := floor(x + _eps)

_trunc(x) := _floor(x) if x >= 0

_trunc(x) := _ceil(x) if x < 0

final := {"type": "replicas", "absolute": final_replicas} if kind == "replicas"

final := {"type": "traffic_shift", "weights": final_weights} if kind == "traffic_shift"

final := {"type": "throttle", "fraction": final_fraction} if {
	kind == "throttle"
	is_number(p.fraction)
}

final := {"type": "throttle", "rate": final_rate} if {
	kind == "throttle"
	is_number(p.rate)
}

# Replicas: a factor rounds up (more capacity when growing, less shrinking when not), then one
# step may multiply or divide by at most max_step_ratio (and always add one), then the service's
# bounds win over the step.
_cur := input.current.replicas

raw_replicas := _ceil(_cur * p.factor) if is_number(p.factor)

raw_replicas := p.absolute if is_number(p.absolute)

_step_up := max([_floor(_cur * cfg.max_step_ratio), _cur + 1])

_step_down := _ceil(_cur / cfg.max_step_ratio)

stepped_replicas := min([max([raw_replicas, _step_down]), _step_up])

final_replicas := min([max([stepped_replicas, input.limits.min_replicas]), input.limits.max_replicas])

scales_down if {
	kind == "replicas"
	final_replicas < _cur
}

# Traffic: move at most max_shift_percent points per step, every destination in proportion;
# rounding leftovers go to the destination that gains most, so the weights still sum to 100.
_cur_w := object.get(input.current, "weights", {})

_dests := {d | some d, _ in _cur_w} | {d | some d, _ in p.weights}

_diff(d) := object.get(p.weights, d, 0) - object.get(_cur_w, d, 0)

_moved := sum([_diff(d) | some d in _dests; _diff(d) > 0])

_scale := 1 if _moved <= cfg.max_shift_percent

_scale := cfg.max_shift_percent / _moved if _moved > cfg.max_shift_percent

_shift(d) := _trunc(_diff(d) * _scale)

_residual := 0 - sum([_shift(d) | some d in _dests])

_gainer := min({d | some d in _dests; _diff(d) == max([_diff(e) | some e in _dests])})

_extra(d) := _residual if d == _gainer

_extra(d) := 0 if d != _gainer

final_weights := {d: w |
	some d in _dests
	w := (object.get(_cur_w, d, 0) + _shift(d)) + _extra(d)
}

# Throttle: never admit less than min_throttle_fraction of the current traffic in one step.
final_fraction := max([p.fraction, cfg.min_throttle_fraction])

final_rate := max([p.rate, cfg.min_throttle_fraction * input.observed.request_rate])

clamps contains r if {
	kind == "replicas"
	stepped_replicas != raw_replicas
	r := {"code": "clamped_max_step", "message": sprintf(
		"%v replicas proposed; one step from %v may go to %v..%v (max_step_ratio %v)",
		[raw_replicas, _cur, _step_down, _step_up, cfg.max_step_ratio],
	)}
}

clamps contains r if {
	kind == "replicas"
	final_replicas > stepped_replicas
	r := {"code": "clamped_min_replicas", "message": sprintf("raised to min_replicas %v", [input.limits.min_replicas])}
}

clamps contains r if {
	kind == "replicas"
	final_replicas < stepped_replicas
	r := {"code": "clamped_max_replicas", "message": sprintf("lowered to max_replicas %v", [input.limits.max_replicas])}
}

clamps contains r if {
	kind == "traffic_shift"
	_scale < 1
	r := {"code": "clamped_max_shift", "message": sprintf(
		"the proposal moves %v points of traffic; one step moves at most %v",
		[_moved, cfg.max_shift_percent],
	)}
}

clamps contains r if {
	kind == "throttle"
	final != p
	r := {"code": "clamped_min_throttle", "message": sprintf(
		"a rate limit may not admit less than %v of the current traffic in one step",
		[cfg.min_throttle_fraction],
	)}
}

# --- Nothing would change; cooldown. -------------------------------------------------------

unchanged if {
	kind == "replicas"
	final_replicas == _cur
}

unchanged if {
	kind == "traffic_shift"
	final_weights == _cur_w
}

unchanged if {
	kind == "throttle"
	object.remove(final, ["type"]) == input.current.throttle
}

_unchanged := {"code": "no_change", "message": sprintf("the %s action after the guardrails leaves the service as it is", [kind])}

# A scale-down waits longer than other changes: capacity removed too early is an outage, capacity
# kept too long only costs money.
_required_seconds := cfg.scale_down_cooldown_seconds if scales_down

_required_seconds := cfg.cooldown_seconds if not scales_down

_since_seconds := (input.at_ns - input.last_change.at_ns) / 1000000000

# A last change dated after `at` (the clock went back) counts as "just now".
in_cooldown if {
	is_number(input.last_change.at_ns)
	not _emergency_skip
	_since_seconds < _required_seconds
}

_emergency_skip if {
	cfg.emergency_skips_cooldown == true
	input.flags.emergency == true
	not scales_down
}

_cooldown := {"code": "cooldown", "message": sprintf(
	"the last change (%s) was %v s ago; a %s change waits %v s",
	[
		object.get(input.last_change, "kind", "unknown"),
		round(_since_seconds),
		kind,
		_required_seconds,
	],
)}

# --- Act. ---------------------------------------------------------------------------------

_approved := {"code": "approved", "message": sprintf("%s: %s", [kind, _summary])}

_summary := sprintf("replicas %v -> %v", [_cur, final_replicas]) if kind == "replicas"

_summary := sprintf("weights %v -> %v", [_cur_w, final_weights]) if kind == "traffic_shift"

_summary := sprintf("admit %v of the current traffic", [final_fraction]) if {
	kind == "throttle"
	is_number(p.fraction)
}

_summary := sprintf("admit at most %v requests/s", [final_rate]) if {
	kind == "throttle"
	is_number(p.rate)
}
