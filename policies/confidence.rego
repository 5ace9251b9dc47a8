# Confidence: do not act on (or ask a human about) a classification the classifier is unsure of.
package setpoint.confidence

import rego.v1

cfg := data.setpoint.config

low if input.classification.confidence < cfg.min_confidence

# The confidence rounded for messages (sprintf has no precision control that works for both
# integers and floats).
shown := round(input.classification.confidence * 100) / 100

reason := {
	"code": "low_confidence",
	"message": sprintf("confidence %v in %s (model %s, version %s) is below the minimum %v", [
		shown,
		input.classification.class,
		input.classification.model,
		input.classification.model_version,
		cfg.min_confidence,
	]),
}
