# Missing data never shrinks anything: a scale_down needs every feature of the fingerprint.
#
# The classifier already refuses to classify without CPU, memory and connections; this rule also
# covers the features it does not require (IOPS, or whatever a plugin adds), so a scale_down
# planned while a metric's query failed, or while a week of it is missing, holds until the data
# is back. Scale-ups are not held: waiting for data does not make a starved target safer.
package setpoint.missing_data

import rego.v1

# Names of the features without a value, sorted.
missing := sort([name | some name, f in input.features; f.value == null])

blocks_scale_down if {
	input.classification.class == "scale_down"
	count(missing) > 0
}

reason := {
	"code": "missing_data",
	"message": sprintf("scale_down needs every feature of the fingerprint; %d missing: %s", [count(missing), concat(", ", missing)]),
}
