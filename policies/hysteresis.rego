# Hysteresis: let a target settle after a change (cooldown), and act only on a class that has
# held for several cycles in a row (stable cycles), so that one noisy week changes nothing.
package setpoint.hysteresis

import rego.v1

cfg := data.setpoint.config

history := input.history

# days_since_last_action is null when nothing was ever done; null sorts below every number in
# Rego, so it must be excluded explicitly or every new target would be "in cooldown".
in_cooldown if {
	is_number(history.days_since_last_action)
	history.days_since_last_action < cfg.cooldown_days
}

cooldown_reason := {
	"code": "cooldown",
	"message": sprintf("the last action (%s: %s, at %s) was %v days ago; the cooldown is %v days", [
		object.get(history, ["last_action", "action"], "unknown"),
		object.get(history, ["last_action", "summary"], "unknown"),
		object.get(history, ["last_action", "at"], "unknown"),
		history.days_since_last_action,
		cfg.cooldown_days,
	]),
}

stable if history.stable_cycles >= cfg.min_stable_cycles

unstable_reason := {
	"code": "hysteresis",
	"message": sprintf("class %s has been stable for %v of the %v cycles required before acting", [
		input.classification.class,
		history.stable_cycles,
		cfg.min_stable_cycles,
	]),
}

# During the approval phase a review does not wait for stability (a human judges), but the
# reviewer is told the class is still new.
default informational := []

informational := [{
	"code": "hysteresis",
	"message": sprintf("informational: class %s has been stable for %v of %v cycles; a review does not wait for stability", [
		input.classification.class,
		history.stable_cycles,
		cfg.min_stable_cycles,
	]),
}] if {
	not stable
}
