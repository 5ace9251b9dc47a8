# A predictive capacity policy (Rego v1, entry point data.control.decision): run the replicas
# that the larger of the present load and the upper bound of the forecast at the horizon needs
# at the target utilisation; move traffic off a region whose latency breaches the SLO while
# the other has room; throttle only when even the maximum replicas cannot carry the forecast.
# setpoint's guard (policies/fast/guard.rego) then bounds the step, applies the cooldowns and
# the kill switches. The quickstart's fast loop and the closed-loop evaluation run it.
package control

import rego.v1

# Share of a replica's capacity to plan for: headroom for the forecast's error and for noise.
# A team sets its own in data.json as {"predictive": {"target_utilisation": …}}.
default target_utilisation := 0.75

target_utilisation := data.predictive.target_utilisation

# The latency objective, in milliseconds ({"predictive": {"slo_latency_ms": …}}).
default slo_latency_ms := 300

slo_latency_ms := data.predictive.slo_latency_ms

capacity := input.limits.capacity_per_replica

needed(rate) := ceil(rate / (capacity * target_utilisation))

# The load to plan for: the forecast's upper bound when there is one, never less than now.
planned_rate := max([input.now.request_rate, input.forecast_interval.request_rate.upper])

planned_rate := input.now.request_rate if not input.forecast_interval.request_rate

want := min([max([needed(planned_rate), input.limits.min_replicas]), input.limits.max_replicas])

default decision := {"type": "NONE"}

decision := {"type": "REPLICAS", "replicas": want} if {
	not degraded_primary
	want != input.current.replicas
}

decision := {"type": "WEIGHTS", "to": "secondary", "share": "most"} if {
	degraded_primary
	input.current.weights.primary > 20
}

decision := {"type": "THROTTLE", "limit_rate": input.limits.max_replicas * capacity} if {
	not degraded_primary
	want == input.limits.max_replicas
	input.current.replicas == input.limits.max_replicas
	needed(planned_rate) > input.limits.max_replicas
}

# The primary breaches the SLO while the secondary does not.
degraded_primary if {
	input.now.region.primary.latency_p99_ms > slo_latency_ms
	input.now.region.secondary.latency_p99_ms < slo_latency_ms / 2
}
