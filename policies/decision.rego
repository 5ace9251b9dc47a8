# The entry point of the default setpoint policy bundle: data.setpoint.decision.
#
# One evaluation per target per cycle. The rules below are tried in order and the first that
# applies decides; policies/README.md explains the order. Each stage's checks live in their
# own file (kill_switch, guardrails, confidence, hysteresis, approval) and only report facts
# and reasons; this file alone turns them into a verdict.
package setpoint

import rego.v1

import data.setpoint.approval
import data.setpoint.confidence
import data.setpoint.guardrails
import data.setpoint.hysteresis
import data.setpoint.kill_switch
import data.setpoint.missing_data

# The class the classifier gave this cycle: scale_down, remain or scale_up.
class := input.classification.class

# The proposal that carries the class out: the first one whose action is the class.
# Undefined for `remain`, and when the plugin made no plan for the class.
chosen := [p | some p in input.proposals; p.action == class][0]

# Every decision names the proposal it is about (null when there is none), so that a report
# can show what was held or blocked, not only what was approved.
default chosen_action := null

chosen_action := chosen.action

decision := _decide("block", kill_switch.reasons) if {
	count(kill_switch.reasons) > 0
} else := _decide("hold", [no_change_reason]) if {
	not chosen
} else := _decide("hold", [missing_data.reason]) if {
	missing_data.blocks_scale_down
} else := _decide("block", guardrails.reasons) if {
	count(guardrails.reasons) > 0
} else := _decide("hold", [confidence.reason]) if {
	confidence.low
} else := _decide("hold", [hysteresis.cooldown_reason]) if {
	hysteresis.in_cooldown
} else := _decide("hold", [approval.rejected_reason]) if {
	approval.rejected
} else := _decide("act", [approval.approved_reason]) if {
	approval.approved
} else := _decide("review", array.concat([approval.reason], hysteresis.informational)) if {
	approval.required
} else := _decide("hold", [hysteresis.unstable_reason]) if {
	not hysteresis.stable
} else := _decide("act", [approved_reason])

_decide(verdict, reasons) := {
	"verdict": verdict,
	"proposal": chosen_action,
	"reasons": reasons,
}

# Why nothing changes: the classifier said remain (its explanation code says why, e.g.
# insufficient_data), or it asked for a change the plugin could not plan.
no_change_reason := {
	"code": "no_change",
	"message": sprintf("classified remain (%s); nothing to change", [input.classification.explanation.code]),
} if {
	class == "remain"
}

no_change_reason := {
	"code": "no_change",
	"message": sprintf("classified %s (%s) but the plugin proposed no %s plan; nothing to change", [
		class,
		input.classification.explanation.code,
		class,
	]),
} if {
	class != "remain"
}

approved_reason := {
	"code": "approved_by_policy",
	"message": sprintf(
		"%s approved: %s; confidence %v >= %v, class stable for %v cycles (>= %v), managed for %v days (>= %v), %s, guardrails passed",
		[
			class,
			chosen.summary,
			confidence.shown,
			data.setpoint.config.min_confidence,
			input.history.stable_cycles,
			data.setpoint.config.min_stable_cycles,
			input.history.managed_days,
			data.setpoint.config.approval_days,
			approval.basis,
		],
	),
}
