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

# Float products such as 10 * 1.1 = 11.000000000000002 must not round a whole replica up.
_ceil(x) := ceil(x - 0.000001)

# The replicas a load needs by the capacity model.
_capacity_needed(rate) := _ceil(rate / (capacity * target_utilisation))

# The replicas a load needs: by the capacity model, and never fewer than keep the latency
# within its budget.
needed(rate) := max([_capacity_needed(rate), regions_needed(rate)]) if _by_region

needed(rate) := max([_capacity_needed(rate), latency_needed(rate)]) if not _by_region

# Latency grows as 1 / (1 − utilisation) (a queue: latency = service time / (1 − ρ)), so the
# present's latency and utilisation give the service time, and with it the utilisation at
# which latency stays within latency_headroom of the SLO ({"predictive":
# {"latency_headroom": …}}, default 0.8). A service that the capacity model plans at 70 %
# while its latency crosses the SLO at 72 % gets the replicas its latency needs; one whose
# service time alone uses the budget cannot be helped by replicas (no term, and no
# scale-down: see holding_latency).
default latency_headroom := 0.8

latency_headroom := data.predictive.latency_headroom

# Each of these reads one observation `m`: the service's (input.now) or one region's
# (input.now.region.<name>).
_service_time_ms(m) := m.latency_p99_ms * (1 - (m.cpu_percent / 100)) if {
	m.cpu_percent > 0
	m.cpu_percent < saturated_cpu_percent
}

# Beyond this utilisation a queue is saturated: its latency measures the backlog, not the
# service time ({"predictive": {"saturated_cpu_percent": …}}, default 90).
default saturated_cpu_percent := 90

saturated_cpu_percent := data.predictive.saturated_cpu_percent

_safe_utilisation(m) := u if {
	u := 1 - _service_time_ms(m) / (latency_headroom * slo_latency_ms)
	u > 0.05
}

# The busy replicas now (the ready ones × their utilisation; replicas still starting serve
# nothing yet), grown with the load, at the safe utilisation.
# None when the latency says nothing (no load, no safe utilisation).
default _latency_needed(_, _) := 0

_latency_needed(m, rate) := _ceil((((m.replicas * m.cpu_percent) / 100) * (rate / m.request_rate)) / _safe_utilisation(m)) if {
	m.request_rate > 0
}

latency_needed(rate) := _latency_needed(input.now, rate)

# Fewer replicas would push a service (or a region carrying traffic) whose service time alone
# nearly uses its latency budget over it.
holding_latency if {
	some m in array.concat([input.now], [input.now.region[r] | some r, _ in _regions])
	_service_time_ms(m)
	not _safe_utilisation(m)
}

# Per destination (input.current.weights, percent): a service spread over regions is only as
# fast as its busiest one, and each region carries its share of the load on its own
# replicas (a replica idle in one region serves nothing in the other). With each region's
# replicas, CPU and latency in input.now.region, every region is planned for its share, by
# the capacity model and its own latency, never below its own minimum, and the service needs
# their sum; without them, 0.
default regions_needed(_) := 0

_regions := {r: w | some r, w in input.current.weights; w > 0}

regions_needed(rate) := sum([_region_at_least(r, _region_needed(r, rate * (w / 100))) | some r, w in _regions]) + _idle_regions if {
	_by_region
}

# A region keeps its minimum (input.limits.region.<name>.min_replicas) whatever its share.
_region_at_least(r, n) := max([n, object.get(input.limits, ["region", r, "min_replicas"], 0)])

# Regions that carry no traffic still run their minimum.
_idle_regions := sum([b.min_replicas | some r, b in input.limits.region; not _regions[r]])

_by_region if {
	count(_regions) > 1
	every r, _ in _regions {
		input.now.region[r].replicas
		input.now.region[r].cpu_percent
	}
}

_region_needed(r, rate) := max([_capacity_needed(rate), _region_busy_needed(r, rate), _latency_needed(input.now.region[r], rate)])

# The HPA's own rule, from the region's ready replicas and their CPU, grown with its load: it
# holds where the capacity model is wrong (a degraded region serves fewer requests per
# replica) and where latency says nothing (saturation).
default _region_busy_needed(_, _) := 0

_region_busy_needed(r, rate) := _ceil(((input.now.region[r].replicas * input.now.region[r].cpu_percent) / target_cpu_percent) * (rate / input.now.region[r].request_rate)) if {
	input.now.region[r].request_rate > 0
}

# The load to plan for, never less than now: the forecast at the horizon, and its upper bound
# while the load is rising towards it (when falling short costs a breach until new pods start).
planned_rate := max([input.now.request_rate, input.forecast.request_rate]) if {
	input.forecast.request_rate <= input.now.request_rate
}

planned_rate := input.now.request_rate + ((input.forecast.request_rate - input.now.request_rate) * _lead_share) if {
	input.forecast.request_rate > input.now.request_rate
}

default lead_seconds := 300

lead_seconds := data.predictive.lead_seconds

default _lead_share := 1

_lead_share := min([1, lead_seconds / input.horizon_seconds]) if input.horizon_seconds > 0

planned_rate := input.now.request_rate if not input.forecast.request_rate

want := _bounded(needed(planned_rate))

_bounded(n) := min([max([n, input.limits.min_replicas]), input.limits.max_replicas])

default decision := {"type": "NONE"}

# Up as soon as the planned load needs more replicas than run (the planned load already holds
# the forecast's headroom, and a replica short stays short until new pods start); down only
# past a tolerance, as the HPA's, so noise around a level does not move replicas back and
# forth.
default tolerance := 0.1

tolerance := data.predictive.tolerance

decision := {"type": "REPLICAS", "replicas": want} if {
	not shifting
	not rebalancing
	_bounded(needed(planned_rate / (1 + tolerance))) > input.current.replicas
}

# Down never on a load the seasonal model did not expect (a dip flagged as an anomaly): it may
# come back within the time new pods need to start.
decision := {"type": "REPLICAS", "replicas": want} if {
	not degraded_primary
	not degraded_secondary
	not _unexpected_dip
	not holding_latency
	_bounded(needed(planned_rate * (1 + tolerance))) < input.current.replicas
}

# A dip the detector flags: the request rate is anomalous and below its expected band (a rate
# above it is a surge, which needs no rule to hold replicas).
_unexpected_dip if {
	input.anomaly.request_rate.anomalous
	not input.now.request_rate > input.anomaly.request_rate.expected.upper
}

decision := {"type": "WEIGHTS", "to": "secondary", "share": secondary_share} if shifting

# Traffic moves off a degraded primary, step by step, until it carries what "most" leaves it
# (10 %); replicas follow the traffic, and may grow meanwhile, but not shrink. Each step moves
# no more than the secondary's ready replicas carry short of saturation (its requests now ×
# saturated_cpu_percent / its CPU): traffic that arrives before its new replicas serve would
# fail there instead. When it carries 90 % or more, or without its CPU, "most" at once.
shifting if {
	degraded_primary
	input.current.weights.primary > 10
	_gains_share
}

default secondary_share := "most"

secondary_share := share if {
	input.now.request_rate > 0
	share := floor((100 * _secondary_carries) / input.now.request_rate)
	share < 90
}

_secondary_carries := (input.now.region.secondary.request_rate * saturated_cpu_percent) / input.now.region.secondary.cpu_percent if {
	input.now.region.secondary.cpu_percent > 0
}

_gains_share if secondary_share == "most"

_gains_share if secondary_share > input.current.weights.secondary

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
	not explained_by_load("secondary", "primary")
}

# The primary breaches the SLO while the secondary does not, and not because it is busier.
degraded_primary if {
	input.now.region.primary.latency_p99_ms > slo_latency_ms
	input.now.region.secondary.latency_p99_ms < slo_latency_ms / 2
	not explained_by_load("primary", "secondary")
}

# A region is degraded when it serves slower than the other at the same utilisation, or
# spends more CPU on each request: its service time (latency × (1 − utilisation)) or its
# CPU per request (replicas × utilisation / requests) is more than degraded_ratio times the
# other's ({"predictive": {"degraded_ratio": …}}, default 1.3). A region that is only
# busier (a surge, a replica short) serves as fast per request: it needs replicas, not fewer
# requests, and moving its traffic would overload the other before the replicas follow.
# Without per-region CPU and replicas the latencies alone decide.
default degraded_ratio := 1.3

degraded_ratio := data.predictive.degraded_ratio

_cpu_per_request(r) := (input.now.region[r].replicas * input.now.region[r].cpu_percent) / input.now.region[r].request_rate if {
	input.now.region[r].request_rate > 0
}

_slower(slow, other) if {
	_service_time_ms(input.now.region[slow]) > degraded_ratio * _service_time_ms(input.now.region[other])
}

_slower(slow, other) if {
	_cpu_per_request(slow) > degraded_ratio * _cpu_per_request(other)
}

explained_by_load(slow, other) if {
	_cpu_per_request(slow)
	_cpu_per_request(other)
	not _slower(slow, other)
}
