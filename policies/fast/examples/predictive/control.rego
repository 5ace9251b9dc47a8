# A predictive capacity policy (Rego v1, entry point data.control.decision): run the replicas
# that the larger of the present load and the upper bound of the forecast at the horizon needs
# at the target utilisation; move traffic off a region whose latency breaches the SLO while
# the other has room; throttle only when even the maximum replicas cannot carry the forecast.
# setpoint's guard (policies/fast/guard.rego) then bounds the step, applies the cooldowns and
# the kill switches. The quickstart's fast loop and the closed-loop evaluation run it.
package control

import rego.v1

# Share of a replica's capacity (input.limits.capacity_per_replica: what one replica serves at
# its target load) to plan for. The forecast's upper bound is already the headroom for its
# error; below 1 adds more. A team sets its own in data.json as
# {"predictive": {"target_utilisation": …}}.
default target_utilisation := 1

target_utilisation := data.predictive.target_utilisation

# The latency objective, in milliseconds ({"predictive": {"slo_latency_ms": …}}).
default slo_latency_ms := 300

slo_latency_ms := data.predictive.slo_latency_ms

# What one replica serves at its target load: configured (limits.capacity_per_replica), or
# read off the present as the HPA does, from the CPU the replicas use for the load they serve
# ({"predictive": {"target_cpu_percent": …}}, default 70).
default target_cpu_percent := 70

target_cpu_percent := data.predictive.target_cpu_percent

capacity := input.limits.capacity_per_replica

capacity := (input.now.request_rate * target_cpu_percent) / (input.now.replicas * input.now.cpu_percent) if {
	not input.limits.capacity_per_replica
	input.now.replicas > 0
	input.now.cpu_percent > 0
}

needed(rate) := ceil(rate / (capacity * target_utilisation))

# The load to plan for, never less than now: the forecast at the horizon, and its upper bound
# while the load is rising towards it (when falling short costs a breach until new pods start).
planned_rate := max([input.now.request_rate, input.forecast.request_rate]) if {
	input.forecast.request_rate <= input.now.request_rate
}

planned_rate := max([input.now.request_rate, input.forecast_interval.request_rate.upper]) if {
	input.forecast.request_rate > input.now.request_rate
}

planned_rate := input.now.request_rate if not input.forecast.request_rate

want := min([max([needed(planned_rate), input.limits.min_replicas]), input.limits.max_replicas])

default decision := {"type": "NONE"}

# Replicas change only past a tolerance either way, as the HPA's: noise around a level must
# not move them back and forth (each way up waits for pods to start).
default tolerance := 0.1

tolerance := data.predictive.tolerance

decision := {"type": "REPLICAS", "replicas": want} if {
	not shifting
	not rebalancing
	want > input.current.replicas * (1 + tolerance)
}

# Down never on a load the seasonal model did not expect (a dip flagged as an anomaly): it may
# come back within the time new pods need to start.
decision := {"type": "REPLICAS", "replicas": want} if {
	not degraded_primary
	not degraded_secondary
	not input.anomaly.request_rate.anomalous
	want < input.current.replicas * (1 - tolerance)
}

decision := {"type": "WEIGHTS", "to": "secondary", "share": "most"} if shifting

# Traffic moves off a degraded primary, step by step, until it carries what "most" leaves it
# (10 %); replicas follow the traffic, and may grow meanwhile, but not shrink.
shifting if {
	degraded_primary
	input.current.weights.primary > 10
}

decision := {"type": "THROTTLE", "limit_rate": input.limits.max_replicas * capacity} if {
	not degraded_primary
	want == input.limits.max_replicas
	input.current.replicas == input.limits.max_replicas
	needed(planned_rate) > input.limits.max_replicas
}

# Traffic comes back from a secondary that breaches the SLO while the primary has room (after
# the primary recovered, or when the secondary cannot carry what was moved to it): half of it,
# in one step, then replicas follow.
decision := {"type": "WEIGHTS", "to": "primary", "share": 50} if rebalancing

rebalancing if {
	degraded_secondary
	input.current.weights.primary < 50
}

degraded_secondary if {
	input.now.region.secondary.latency_p99_ms > slo_latency_ms
	input.now.region.primary.latency_p99_ms < slo_latency_ms / 2
}

# The primary breaches the SLO while the secondary does not.
degraded_primary if {
	input.now.region.primary.latency_p99_ms > slo_latency_ms
	input.now.region.secondary.latency_p99_ms < slo_latency_ms / 2
}
