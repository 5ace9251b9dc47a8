# A team's control policy in OPA's v0 syntax, as teams often have them: several complete rules
# for one decision, more than one of which may match the same input. When two match with
# different values the evaluation is a conflict: setpoint holds the service and reports both
# rules (docs/fast-loop-policy.md). Load it with `rego_version: v0` and entry point
# data.control.decision.
package control

default decision = {"type": "NONE"}

decision = {"type": "REPLICAS", "factor": 1.5} {
	input.forecast.latency_p99_ms > 250
	input.now.cpu_percent > 60
}

decision = {"type": "WEIGHTS", "to": "secondary"} {
	input.forecast.region.primary.latency_p99_ms > 300
	input.flags.secondary_has_capacity
}

decision = {"type": "THROTTLE", "limit_fraction": 0.8} {
	input.forecast.error_percent > 5
}
