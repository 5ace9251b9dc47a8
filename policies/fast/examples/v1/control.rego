# The v0 example (../v0/control.rego) in Rego v1: the same rules, the same conflicts. Load it
# with entry point data.control.decision (rego_version v1 is the default).
package control

import rego.v1

default decision := {"type": "NONE"}

decision := {"type": "REPLICAS", "factor": 1.5} if {
	input.forecast.latency_p99_ms > 250
	input.now.cpu_percent > 60
}

decision := {"type": "WEIGHTS", "to": "secondary"} if {
	input.forecast.region.primary.latency_p99_ms > 300
	input.flags.secondary_has_capacity
}

decision := {"type": "THROTTLE", "limit_fraction": 0.8} if {
	input.forecast.error_percent > 5
}
