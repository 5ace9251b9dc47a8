# Kill switches: an operator's stop, global, per loop or per target.
#
# They live in data.setpoint.kill_switches (same shape as the engine's KillSwitches). The engine
# overlays the switches stored in its state at load, so `setpoint kill-switch` takes effect at
# the next cycle without editing this bundle. A switch is on only when its value is `true`.
package setpoint.kill_switch

import rego.v1

# Not object.get(data.setpoint, …): reading the whole package document would include
# data.setpoint.decision itself, a dependency cycle.
default switches := {}

switches := data.setpoint.kill_switches

# Every switch that applies to this target, global first. Non-empty means block.
reasons := array.concat(array.concat(_global, _loop), _target)

_global := [r |
	object.get(switches, "global", false) == true
	r := {
		"code": "kill_switch",
		"message": "the global kill switch is on: no loop may change anything",
	}
]

_loop := [r |
	object.get(switches, ["loops", input.loop.name], false) == true
	r := {
		"code": "kill_switch",
		"message": sprintf("the kill switch for loop %s is on", [input.loop.name]),
	}
]

_target := [r |
	object.get(switches, ["targets", input.target.id], false) == true
	r := {
		"code": "kill_switch",
		"message": sprintf("the kill switch for target %s is on", [input.target.id]),
	}
]
