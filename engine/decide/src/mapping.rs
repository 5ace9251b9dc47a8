//! Mapping a team policy's own output shape to a typed [`ControlAction`].
//!
//! Teams write their control policies before setpoint exists, each with its own output shape
//! (`{"type": "REPLICAS", "factor": 1.5}`, `{"action": "scale", "to": 6}`, …). An
//! [`ActionMapping`] says which field holds the type, which type values mean which action and
//! which fields carry the amounts; [`map_output`] applies it. An output that does not fit is a
//! [`MappingError`], which the engine turns into a hold for that service.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value as Json;
use setpoint_core::control::{ActionMapping, ControlAction, ReplicaTarget, ThrottleLimit};

use crate::json_type;

/// Why a policy output does not fit the action mapping.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum MappingError {
    /// The output is not a JSON object.
    #[error("the output must be an object, got {found}")]
    NotAnObject {
        /// The JSON type found.
        found: &'static str,
    },
    /// The output has no type field, or it is not a string.
    #[error("the output has no string field `{field}` naming the action type")]
    NoType {
        /// The configured type field.
        field: String,
    },
    /// The type value is not one the mapping knows.
    #[error("action type {value:?} is not mapped (known: {})", known.join(", "))]
    UnknownType {
        /// The value found.
        value: String,
        /// Every type value the mapping knows.
        known: Vec<String>,
    },
    /// None of the fields that carry the action's amount is present.
    #[error("a {action} action needs one of the fields {}", fields.join(", "))]
    MissingAmount {
        /// The action kind.
        action: &'static str,
        /// The fields that may carry it.
        fields: Vec<String>,
    },
    /// More than one way of giving the amount is present.
    #[error("a {action} action must give only one of the fields {}", fields.join(", "))]
    AmbiguousAmount {
        /// The action kind.
        action: &'static str,
        /// The fields present.
        fields: Vec<String>,
    },
    /// An amount field holds a value the action cannot take.
    #[error("field `{field}`: {problem}")]
    InvalidAmount {
        /// The field.
        field: String,
        /// What is wrong with it.
        problem: String,
    },
}

/// Checks an action mapping, returning every problem.
pub(crate) fn validate_mapping(mapping: &ActionMapping) -> Vec<String> {
    let mut problems = Vec::new();
    let fields = [
        ("type_field", &mapping.type_field),
        ("factor_field", &mapping.factor_field),
        ("replicas_field", &mapping.replicas_field),
        ("weights_field", &mapping.weights_field),
        ("to_field", &mapping.to_field),
        ("share_field", &mapping.share_field),
        ("fraction_field", &mapping.fraction_field),
        ("rate_field", &mapping.rate_field),
    ];
    for (name, value) in fields {
        if value.is_empty() {
            problems.push(format!("{name} must not be empty"));
        }
    }
    for (a, b) in [
        ("factor_field", "replicas_field"),
        ("weights_field", "to_field"),
        ("fraction_field", "rate_field"),
    ] {
        let value = |n: &str| {
            fields
                .iter()
                .find(|(f, _)| *f == n)
                .map(|(_, v)| v.as_str())
        };
        if value(a) == value(b) {
            problems.push(format!("{a} and {b} must differ"));
        }
    }
    let mut seen: BTreeMap<&str, &str> = BTreeMap::new();
    for (name, values) in [
        ("none_types", &mapping.none_types),
        ("replicas_types", &mapping.replicas_types),
        ("traffic_types", &mapping.traffic_types),
        ("throttle_types", &mapping.throttle_types),
    ] {
        for value in values {
            if let Some(other) = seen.insert(value.as_str(), name)
                && other != name
            {
                problems.push(format!("type {value:?} is in both {other} and {name}"));
            }
        }
    }
    if !(1..=100).contains(&mapping.most_percent) {
        problems.push(format!(
            "most_percent must be 1..=100, got {}",
            mapping.most_percent
        ));
    }
    problems
}

/// Maps a policy output to a typed action.
///
/// `destinations` are the service's current traffic weights: a shift of all or most traffic
/// to one destination sends the rest to the others, and sets every other one explicitly.
pub fn map_output(
    output: &Json,
    mapping: &ActionMapping,
    destinations: &BTreeMap<String, u32>,
) -> Result<ControlAction, MappingError> {
    let Json::Object(object) = output else {
        return Err(MappingError::NotAnObject {
            found: json_type(output),
        });
    };
    let Some(kind) = object.get(&mapping.type_field).and_then(Json::as_str) else {
        return Err(MappingError::NoType {
            field: mapping.type_field.clone(),
        });
    };
    let is = |types: &[String]| types.iter().any(|t| t == kind);
    if is(&mapping.none_types) {
        Ok(ControlAction::None)
    } else if is(&mapping.replicas_types) {
        replicas(object, mapping)
    } else if is(&mapping.traffic_types) {
        traffic(object, mapping, destinations)
    } else if is(&mapping.throttle_types) {
        throttle(object, mapping)
    } else {
        let known = [
            &mapping.none_types,
            &mapping.replicas_types,
            &mapping.traffic_types,
            &mapping.throttle_types,
        ]
        .into_iter()
        .flatten()
        .cloned()
        .collect();
        Err(MappingError::UnknownType {
            value: kind.to_string(),
            known,
        })
    }
}

type Object = serde_json::Map<String, Json>;

/// The one amount field of `fields` present in `object`.
fn one_of<'a>(
    object: &'a Object,
    action: &'static str,
    fields: [&String; 2],
) -> Result<(usize, &'a Json), MappingError> {
    let present: Vec<(usize, &Json)> = fields
        .iter()
        .enumerate()
        .filter_map(|(i, f)| object.get(f.as_str()).map(|v| (i, v)))
        .collect();
    match present.as_slice() {
        [one] => Ok(*one),
        [] => Err(MappingError::MissingAmount {
            action,
            fields: fields.iter().map(|f| f.to_string()).collect(),
        }),
        _ => Err(MappingError::AmbiguousAmount {
            action,
            fields: fields.iter().map(|f| f.to_string()).collect(),
        }),
    }
}

fn invalid(field: &str, problem: impl Into<String>) -> MappingError {
    MappingError::InvalidAmount {
        field: field.to_string(),
        problem: problem.into(),
    }
}

/// A finite number, or an error naming `field`.
fn number(field: &str, value: &Json) -> Result<f64, MappingError> {
    value.as_f64().filter(|n| n.is_finite()).ok_or_else(|| {
        invalid(
            field,
            format!("expected a number, got {}", json_type(value)),
        )
    })
}

fn replicas(object: &Object, mapping: &ActionMapping) -> Result<ControlAction, MappingError> {
    let fields = [&mapping.factor_field, &mapping.replicas_field];
    let (which, value) = one_of(object, "replicas", fields)?;
    let field = fields[which].as_str();
    let n = number(field, value)?;
    let target = if which == 0 {
        if n <= 0.0 {
            return Err(invalid(field, format!("a factor must be above 0, got {n}")));
        }
        ReplicaTarget::Factor(n)
    } else {
        if n < 0.0 || n.fract() != 0.0 || n > f64::from(u32::MAX) {
            return Err(invalid(
                field,
                format!("a replica count must be a whole number from 0, got {n}"),
            ));
        }
        // In range and whole, checked above.
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        ReplicaTarget::Absolute(n as u32)
    };
    Ok(ControlAction::Replicas(target))
}

fn throttle(object: &Object, mapping: &ActionMapping) -> Result<ControlAction, MappingError> {
    let fields = [&mapping.fraction_field, &mapping.rate_field];
    let (which, value) = one_of(object, "throttle", fields)?;
    let field = fields[which].as_str();
    let n = number(field, value)?;
    let limit = if which == 0 {
        if !(n > 0.0 && n <= 1.0) {
            return Err(invalid(
                field,
                format!("a fraction of traffic must be above 0 and at most 1, got {n}"),
            ));
        }
        ThrottleLimit::Fraction(n)
    } else {
        if n <= 0.0 {
            return Err(invalid(field, format!("a rate must be above 0, got {n}")));
        }
        ThrottleLimit::Rate(n)
    };
    Ok(ControlAction::Throttle(limit))
}

fn traffic(
    object: &Object,
    mapping: &ActionMapping,
    destinations: &BTreeMap<String, u32>,
) -> Result<ControlAction, MappingError> {
    let fields = [&mapping.weights_field, &mapping.to_field];
    let (which, value) = one_of(object, "traffic shift", fields)?;
    let field = fields[which].as_str();
    let weights = if which == 0 {
        let Json::Object(given) = value else {
            return Err(invalid(
                field,
                format!(
                    "expected an object of weights per destination, got {}",
                    json_type(value)
                ),
            ));
        };
        let mut parts = Vec::with_capacity(given.len());
        for (destination, weight) in given {
            let w = number(&format!("{field}.{destination}"), weight)?;
            if w < 0.0 {
                return Err(invalid(
                    &format!("{field}.{destination}"),
                    format!("a weight must not be negative, got {w}"),
                ));
            }
            parts.push((destination.clone(), w));
        }
        apportion(&parts, 100).ok_or_else(|| invalid(field, "the weights add up to 0"))?
    } else {
        let Some(to) = value.as_str().filter(|s| !s.is_empty()) else {
            return Err(invalid(
                field,
                format!("expected a destination name, got {}", json_type(value)),
            ));
        };
        let share = share(object, mapping)?;
        let others: BTreeSet<&String> = destinations.keys().filter(|d| *d != to).collect();
        let mut parts: Vec<(String, f64)> = vec![(to.to_string(), f64::from(share))];
        if share < 100 {
            if others.is_empty() {
                return Err(invalid(
                    &mapping.share_field,
                    format!(
                        "{share}% to {to} leaves the rest with nowhere to go: the service has no other destination"
                    ),
                ));
            }
            let rest = f64::from(100 - share) / others.len() as f64;
            parts.extend(others.iter().map(|d| ((*d).clone(), rest)));
        } else {
            parts.extend(others.iter().map(|d| ((*d).clone(), 0.0)));
        }
        apportion(&parts, 100).ok_or_else(|| invalid(field, "nothing to shift"))?
    };
    Ok(ControlAction::TrafficShift { weights })
}

/// The percentage a `to` shift sends to its destination.
fn share(object: &Object, mapping: &ActionMapping) -> Result<u32, MappingError> {
    let field = mapping.share_field.as_str();
    match object.get(field) {
        None => Ok(100),
        Some(Json::String(s)) if s == "all" => Ok(100),
        Some(Json::String(s)) if s == "most" => Ok(mapping.most_percent),
        Some(value @ Json::Number(_)) => {
            let n = number(field, value)?;
            if !(0.0..=100.0).contains(&n) {
                return Err(invalid(
                    field,
                    format!("a share is a percentage from 0 to 100, got {n}"),
                ));
            }
            // Within 0..=100, checked above.
            #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
            Ok(n.round() as u32)
        }
        Some(other) => Err(invalid(
            field,
            format!(
                "expected \"all\", \"most\" or a percentage, got {}",
                match other {
                    Json::String(s) => format!("{s:?}"),
                    other => json_type(other).to_string(),
                }
            ),
        )),
    }
}

/// Splits `total` in proportion to `parts` in whole numbers that add up to `total` exactly
/// (largest remainders; ties to the earlier name). `None` when the parts add up to 0.
fn apportion(parts: &[(String, f64)], total: u32) -> Option<BTreeMap<String, u32>> {
    let sum: f64 = parts.iter().map(|(_, w)| w).sum();
    if !(sum > 0.0 && sum.is_finite()) {
        return None;
    }
    let mut out = BTreeMap::new();
    let mut remainders = Vec::with_capacity(parts.len());
    let mut given: u32 = 0;
    for (name, w) in parts {
        let quota = w / sum * f64::from(total);
        // 0 <= quota <= total, so the floor fits.
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let whole = quota.floor() as u32;
        given += whole;
        out.insert(name.clone(), whole);
        remainders.push((quota - quota.floor(), name.clone()));
    }
    remainders.sort_by(|a, b| b.0.total_cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
    for (_, name) in remainders.iter().take(total.saturating_sub(given) as usize) {
        if let Some(w) = out.get_mut(name) {
            *w += 1;
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use serde_json::json;

    fn map(output: Json) -> Result<ControlAction, MappingError> {
        let destinations = BTreeMap::from([("primary".into(), 100), ("secondary".into(), 0)]);
        map_output(&output, &ActionMapping::default(), &destinations)
    }

    fn weights(pairs: &[(&str, u32)]) -> ControlAction {
        ControlAction::TrafficShift {
            weights: pairs.iter().map(|(d, w)| (d.to_string(), *w)).collect(),
        }
    }

    #[test]
    fn the_default_mapping_fits_the_example_policy() {
        assert_eq!(map(json!({"type": "NONE"})).unwrap(), ControlAction::None);
        assert_eq!(
            map(json!({"type": "REPLICAS", "factor": 1.5})).unwrap(),
            ControlAction::Replicas(ReplicaTarget::Factor(1.5))
        );
        assert_eq!(
            map(json!({"type": "REPLICAS", "replicas": 6})).unwrap(),
            ControlAction::Replicas(ReplicaTarget::Absolute(6))
        );
        assert_eq!(
            map(json!({"type": "WEIGHTS", "to": "secondary"})).unwrap(),
            weights(&[("primary", 0), ("secondary", 100)])
        );
        assert_eq!(
            map(json!({"type": "WEIGHTS", "to": "secondary", "share": "most"})).unwrap(),
            weights(&[("primary", 10), ("secondary", 90)])
        );
        assert_eq!(
            map(json!({"type": "WEIGHTS", "weights": {"primary": 1, "secondary": 3}})).unwrap(),
            weights(&[("primary", 25), ("secondary", 75)])
        );
        assert_eq!(
            map(json!({"type": "THROTTLE", "limit_fraction": 0.8})).unwrap(),
            ControlAction::Throttle(ThrottleLimit::Fraction(0.8))
        );
        assert_eq!(
            map(json!({"type": "THROTTLE", "limit_rate": 250})).unwrap(),
            ControlAction::Throttle(ThrottleLimit::Rate(250.0))
        );
    }

    #[test]
    fn a_configured_mapping_reads_other_shapes() {
        let mapping: ActionMapping = serde_json::from_value(json!({
            "type_field": "action",
            "none_types": ["hold", "noop"],
            "replicas_types": ["scale"],
            "replicas_field": "to",
            "traffic_types": ["drain"],
            "to_field": "destination",
        }))
        .unwrap();
        assert!(validate_mapping(&mapping).is_empty());
        let dests = BTreeMap::from([("a".to_string(), 50), ("b".to_string(), 50)]);
        let m = |v: Json| map_output(&v, &mapping, &dests);
        assert_eq!(m(json!({"action": "noop"})).unwrap(), ControlAction::None);
        assert_eq!(
            m(json!({"action": "scale", "to": 3})).unwrap(),
            ControlAction::Replicas(ReplicaTarget::Absolute(3))
        );
        assert_eq!(
            m(json!({"action": "drain", "destination": "b", "share": 70})).unwrap(),
            weights(&[("a", 30), ("b", 70)])
        );
        assert!(matches!(
            m(json!({"type": "NONE"})),
            Err(MappingError::NoType { .. })
        ));
    }

    #[test]
    fn outputs_that_do_not_fit_are_typed_errors() {
        let cases = [
            (json!("NONE"), "NotAnObject"),
            (json!([{"type": "NONE"}]), "NotAnObject"),
            (json!({"kind": "NONE"}), "NoType"),
            (json!({"type": 3}), "NoType"),
            (json!({"type": "SCALE"}), "UnknownType"),
            (json!({"type": "REPLICAS"}), "MissingAmount"),
            (
                json!({"type": "REPLICAS", "factor": 2, "replicas": 4}),
                "AmbiguousAmount",
            ),
            (json!({"type": "REPLICAS", "factor": 0}), "InvalidAmount"),
            (json!({"type": "REPLICAS", "factor": "2"}), "InvalidAmount"),
            (
                json!({"type": "REPLICAS", "replicas": 2.5}),
                "InvalidAmount",
            ),
            (json!({"type": "REPLICAS", "replicas": -1}), "InvalidAmount"),
            (
                json!({"type": "THROTTLE", "limit_fraction": 1.5}),
                "InvalidAmount",
            ),
            (
                json!({"type": "THROTTLE", "limit_rate": 0}),
                "InvalidAmount",
            ),
            (
                json!({"type": "WEIGHTS", "weights": {"a": 0}}),
                "InvalidAmount",
            ),
            (
                json!({"type": "WEIGHTS", "weights": {"a": -1, "b": 2}}),
                "InvalidAmount",
            ),
            (
                json!({"type": "WEIGHTS", "weights": [1, 2]}),
                "InvalidAmount",
            ),
            (json!({"type": "WEIGHTS", "to": ""}), "InvalidAmount"),
            (
                json!({"type": "WEIGHTS", "to": "a", "share": "lots"}),
                "InvalidAmount",
            ),
            (
                json!({"type": "WEIGHTS", "to": "a", "weights": {"a": 1}}),
                "AmbiguousAmount",
            ),
        ];
        for (output, expected) in cases {
            let err = map(output.clone()).unwrap_err();
            let got = format!("{err:?}");
            assert!(got.starts_with(expected), "{output}: {got}");
            assert!(!err.to_string().is_empty());
        }
    }

    #[test]
    fn most_to_a_lone_destination_has_nowhere_for_the_rest() {
        let err = map_output(
            &json!({"type": "WEIGHTS", "to": "a", "share": "most"}),
            &ActionMapping::default(),
            &BTreeMap::new(),
        )
        .unwrap_err();
        assert!(err.to_string().contains("no other destination"), "{err}");
        // All of it is fine: there is nothing else to set.
        assert_eq!(
            map_output(
                &json!({"type": "WEIGHTS", "to": "a"}),
                &ActionMapping::default(),
                &BTreeMap::new()
            )
            .unwrap(),
            weights(&[("a", 100)])
        );
    }

    #[test]
    fn apportioned_weights_always_sum_to_the_total() {
        let parts: Vec<(String, f64)> = ["a", "b", "c"]
            .iter()
            .map(|n| (n.to_string(), 1.0))
            .collect();
        let w = apportion(&parts, 100).unwrap();
        assert_eq!(w.values().sum::<u32>(), 100);
        assert_eq!(w["a"], 34, "the leftover goes to the earlier name");
        let most = map_output(
            &json!({"type": "WEIGHTS", "to": "a", "share": "most"}),
            &ActionMapping::default(),
            &BTreeMap::from([
                ("a".to_string(), 0),
                ("b".to_string(), 50),
                ("c".to_string(), 25),
                ("d".to_string(), 25),
            ]),
        )
        .unwrap();
        assert_eq!(most, weights(&[("a", 90), ("b", 4), ("c", 3), ("d", 3)]));
    }

    #[test]
    fn a_bad_mapping_is_refused_with_every_problem() {
        let mapping = ActionMapping {
            type_field: String::new(),
            rate_field: "limit_fraction".into(),
            traffic_types: vec!["REPLICAS".into()],
            most_percent: 0,
            ..ActionMapping::default()
        };
        let problems = validate_mapping(&mapping);
        assert_eq!(problems.len(), 4, "{problems:?}");
    }
}
