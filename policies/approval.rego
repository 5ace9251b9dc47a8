# Approval phase: for the first approval_days a target is managed, every change goes to a human.
# Trust is earned per target: a new target (or a newly deployed setpoint) never acts on its own.
package setpoint.approval

import rego.v1

cfg := data.setpoint.config

required if input.history.managed_days < cfg.approval_days

reason := {
	"code": "approval_required",
	"message": sprintf("%s needs a human approval: %s has been managed for %v days, and every change needs one during the first %v days", [
		input.classification.class,
		input.target.id,
		input.history.managed_days,
		cfg.approval_days,
	]),
}
