# Staged autonomy: who has to agree before a change runs.
#
# 1. For the first approval_days a target is managed, every change goes to a human: trust is
#    earned per target, and a new target (or a newly deployed setpoint) never acts on its own.
# 2. After that, changes of the kinds in autonomy.auto_actions (default: scale_down) whose risk
#    is at most autonomy.auto_max_risk (default: low — online, no restart) run on their own.
# 3. Anything else — a scale-up, a plan that needs a restart — still needs a human, unless the
#    classifier is very sure (confidence >= autonomy.trusted_confidence) about a target managed
#    for autonomy.trusted_days or more.
# Platform teams move these lines in data.json, or rewrite this file.
package setpoint.approval

import rego.v1

cfg := data.setpoint.config

autonomy := cfg.autonomy

# The plan the decision is about (as in data.setpoint.chosen).
chosen := [p | some p in input.proposals; p.action == input.classification.class][0]

risk_rank := {"low": 0, "medium": 1, "high": 2}

in_approval_phase if input.history.managed_days < cfg.approval_days

routine if {
	chosen.action in autonomy.auto_actions
	risk_rank[chosen.risk] <= risk_rank[autonomy.auto_max_risk]
}

trusted if {
	input.classification.confidence >= autonomy.trusted_confidence
	input.history.managed_days >= autonomy.trusted_days
}

required if in_approval_phase

required if {
	not in_approval_phase
	not routine
	not trusted
}

# Why the change may run without a human, for the act verdict's message.
basis := sprintf("%s of risk %s runs on its own after %v days", [chosen.action, chosen.risk, cfg.approval_days]) if {
	routine
} else := sprintf("confidence %v >= %v after %v days managed (>= %v)", [
	input.classification.confidence,
	autonomy.trusted_confidence,
	input.history.managed_days,
	autonomy.trusted_days,
])

reason := {
	"code": "approval_required",
	"message": sprintf("%s needs a human approval: %s has been managed for %v days, and every change needs one during the first %v days", [
		input.classification.class,
		input.target.id,
		input.history.managed_days,
		cfg.approval_days,
	]),
} if {
	in_approval_phase
} else := {
	"code": "approval_required",
	"message": sprintf("%s of risk %s needs a human approval: only %s of risk %s or less run on their own, unless confidence >= %v after %v days managed (here %v after %v days)", [
		input.classification.class,
		chosen.risk,
		concat(", ", autonomy.auto_actions),
		autonomy.auto_max_risk,
		autonomy.trusted_confidence,
		autonomy.trusted_days,
		input.classification.confidence,
		input.history.managed_days,
	]),
}

# A reviewer's decision on this target's plan, still in force (input.review, set by the engine
# from the review queue). Everything before approval in decision.rego — kill switches,
# guardrails, confidence, cooldown — is checked again on this cycle's data first: the world may
# have changed since the approval.
approved if {
	input.review.status == "approved"
	input.review.action == chosen.action
}

rejected if {
	input.review.status == "rejected"
	input.review.action == chosen.action
}

_comment := sprintf(": %s", [input.review.comment]) if {
	is_string(input.review.comment)
	input.review.comment != ""
} else := ""

approved_reason := {
	"code": "approved_by_reviewer",
	"message": sprintf("%s approved by %s at %s (review %v)%s; re-checked on this cycle's data", [
		chosen.action,
		input.review.by,
		input.review.at,
		input.review.id,
		_comment,
	]),
}

rejected_reason := {
	"code": "rejected_by_reviewer",
	"message": sprintf("%s rejected by %s at %s (review %v)%s; held until the rejection expires", [
		chosen.action,
		input.review.by,
		input.review.at,
		input.review.id,
		_comment,
	]),
}
