package control_test

import rego.v1

import data.control

quiet := {
	"now": {"cpu_percent": 30, "latency_p99_ms": 100},
	"forecast": {"latency_p99_ms": 110, "error_percent": 0.1, "region": {"primary": {"latency_p99_ms": 110}}},
	"flags": {"secondary_has_capacity": true},
}

test_quiet_does_nothing if {
	control.decision == {"type": "NONE"} with input as quiet
}

test_slow_and_busy_scales_out if {
	control.decision == {"type": "REPLICAS", "factor": 1.5} with input as {
		"now": {"cpu_percent": 75},
		"forecast": {"latency_p99_ms": 300, "error_percent": 0.1},
	}
}

test_slow_primary_shifts_to_secondary if {
	control.decision == {"type": "WEIGHTS", "to": "secondary"} with input as {
		"now": {"cpu_percent": 30},
		"forecast": {"latency_p99_ms": 200, "region": {"primary": {"latency_p99_ms": 400}}},
		"flags": {"secondary_has_capacity": true},
	}
}

test_no_secondary_capacity_no_shift if {
	control.decision == {"type": "NONE"} with input as {
		"now": {"cpu_percent": 30},
		"forecast": {"latency_p99_ms": 200, "region": {"primary": {"latency_p99_ms": 400}}},
		"flags": {"secondary_has_capacity": false},
	}
}

test_errors_throttle if {
	control.decision == {"type": "THROTTLE", "limit_fraction": 0.8} with input as {
		"now": {"cpu_percent": 30},
		"forecast": {"latency_p99_ms": 100, "error_percent": 9},
	}
}
