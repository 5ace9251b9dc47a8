//! The model registry: every trained classifier a loop could use, and which one it does.
//!
//! Three tables:
//!
//! | table | key | value |
//! |---|---|---|
//! | `models` | `loop ␟ version` | [`ModelRecord`] (JSON, the artifact included) |
//! | `promoted` | `loop` | the promoted version |
//! | `promotions` | `loop ␟ sequence` | [`Promotion`] (JSON): the audit trail |
//!
//! A version is the content hash of the model's artifact, so registering the same model twice
//! is one record, and a recommendation's `model_version` names exactly one set of weights.
//! Promoting writes the pointer and the audit entry in one transaction; rolling back promotes
//! the version that was promoted before the current one, and says so in the trail.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use redb::ReadableTable;
use serde::{Deserialize, Serialize};

use crate::{Result, SEP, StateError, Store, check_name, cycle_part, key};

pub(crate) const MODELS: redb::TableDefinition<&str, &[u8]> = redb::TableDefinition::new("models");
pub(crate) const PROMOTED: redb::TableDefinition<&str, &[u8]> =
    redb::TableDefinition::new("promoted");
pub(crate) const PROMOTIONS: redb::TableDefinition<&str, &[u8]> =
    redb::TableDefinition::new("promotions");

/// One registered model version of one loop.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelRecord {
    /// The loop it was trained for.
    pub loop_name: String,
    /// Content hash of `artifact` (SHA-256, hex): the version recommendations cite.
    pub version: String,
    /// The model's kind, e.g. `gbdt`.
    pub kind: String,
    /// When it was registered.
    pub created_at: DateTime<Utc>,
    /// Version of the feature schema it reads.
    pub schema_version: String,
    /// The features it reads, in order.
    pub features: Vec<String>,
    /// Fingerprint of the training data (SHA-256 of its rows).
    pub data_fingerprint: String,
    /// Training parameters (seed, trees, depth, label source, …).
    pub parameters: BTreeMap<String, String>,
    /// Evaluation figures (cross-validated accuracy, macro-F1, per-class recall, …).
    pub metrics: BTreeMap<String, f64>,
    /// Where else it was recorded (an MLflow run and model version), when it was.
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    /// The model itself, as the classifier reads it back.
    pub artifact: String,
}

/// What a promotion did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PromotionKind {
    /// A version was chosen.
    Promote,
    /// The previous version was restored.
    Rollback,
}

/// One entry of a loop's promotion trail.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Promotion {
    /// The loop.
    pub loop_name: String,
    /// Position in the loop's trail, from 1.
    pub sequence: u64,
    /// Promote or roll back.
    pub kind: PromotionKind,
    /// The version promoted by this entry.
    pub version: String,
    /// The version it replaced, if any.
    pub replaced: Option<String>,
    /// When.
    pub at: DateTime<Utc>,
    /// Who (a user name, or `setpoint` for automatic promotions).
    pub by: String,
    /// Why, in the operator's words.
    pub reason: Option<String>,
}

impl Store {
    /// Registers a model version. Returns `false` when that exact version was already
    /// registered for the loop (the record is left as it was).
    pub fn register_model(&self, record: &ModelRecord) -> Result<bool> {
        check_name(&record.loop_name)?;
        check_name(&record.version)?;
        let k = key(&[&record.loop_name, &record.version]);
        let txn = self.db.begin_write().map_err(|e| self.storage(e))?;
        let added = {
            let mut models = txn.open_table(MODELS).map_err(|e| self.storage(e))?;
            let exists = models
                .get(k.as_str())
                .map_err(|e| self.storage(e))?
                .is_some();
            if !exists {
                models
                    .insert(k.as_str(), self.encode(record)?.as_slice())
                    .map_err(|e| self.storage(e))?;
            }
            !exists
        };
        txn.commit().map_err(|e| self.storage(e))?;
        Ok(added)
    }

    /// The loop's registered versions, oldest first.
    pub fn models(&self, loop_name: &str) -> Result<Vec<ModelRecord>> {
        let mut models: Vec<ModelRecord> = self.scan(MODELS, &key(&[loop_name, ""]))?;
        models.sort_by_key(|m| m.created_at);
        Ok(models)
    }

    /// The loops that have at least one registered model, sorted.
    pub fn model_loops(&self) -> Result<Vec<String>> {
        let txn = self.db.begin_read().map_err(|e| self.storage(e))?;
        let table = txn.open_table(MODELS).map_err(|e| self.storage(e))?;
        let mut out: Vec<String> = Vec::new();
        for item in table.iter().map_err(|e| self.storage(e))? {
            let (k, _) = item.map_err(|e| self.storage(e))?;
            if let Some(name) = k.value().split(SEP).next()
                && out.last().map(String::as_str) != Some(name)
            {
                out.push(name.to_string());
            }
        }
        Ok(out)
    }

    /// The version of the loop's model whose hash starts with `version` (at least 6
    /// characters, as people type them from `models list`).
    pub fn model(&self, loop_name: &str, version: &str) -> Result<ModelRecord> {
        let unknown = || StateError::UnknownModel {
            loop_name: loop_name.to_string(),
            version: version.to_string(),
        };
        if version.len() < 6 {
            return Err(StateError::AmbiguousModel {
                loop_name: loop_name.to_string(),
                version: version.to_string(),
                matches: Vec::new(),
            });
        }
        let mut matches: Vec<ModelRecord> = self
            .models(loop_name)?
            .into_iter()
            .filter(|m| m.version.starts_with(version))
            .collect();
        match matches.len() {
            0 => Err(unknown()),
            1 => matches.pop().ok_or_else(unknown),
            _ => Err(StateError::AmbiguousModel {
                loop_name: loop_name.to_string(),
                version: version.to_string(),
                matches: matches.into_iter().map(|m| m.version).collect(),
            }),
        }
    }

    /// The loop's promoted model, if one is.
    pub fn promoted_model(&self, loop_name: &str) -> Result<Option<ModelRecord>> {
        let Some(version) = self.get::<String>(PROMOTED, loop_name)? else {
            return Ok(None);
        };
        self.get(MODELS, &key(&[loop_name, &version]))?
            .map(Some)
            .ok_or_else(|| StateError::UnknownModel {
                loop_name: loop_name.to_string(),
                version,
            })
    }

    /// The loop's promotion trail, oldest first.
    pub fn promotions(&self, loop_name: &str) -> Result<Vec<Promotion>> {
        self.scan(PROMOTIONS, &key(&[loop_name, ""]))
    }

    /// Promotes a registered version (a full hash or a unique prefix) for the loop.
    pub fn promote_model(
        &self,
        loop_name: &str,
        version: &str,
        by: &str,
        reason: Option<&str>,
        at: DateTime<Utc>,
    ) -> Result<Promotion> {
        let record = self.model(loop_name, version)?;
        self.write_promotion(
            loop_name,
            PromotionKind::Promote,
            &record.version,
            by,
            reason,
            at,
        )
    }

    /// Restores the version that was promoted before the current one.
    pub fn rollback_model(
        &self,
        loop_name: &str,
        by: &str,
        reason: Option<&str>,
        at: DateTime<Utc>,
    ) -> Result<Promotion> {
        let trail = self.promotions(loop_name)?;
        let current = self.get::<String>(PROMOTED, loop_name)?;
        let last = trail
            .iter()
            .rev()
            .find(|p| Some(&p.version) == current.as_ref());
        let Some(previous) = last.and_then(|p| p.replaced.clone()) else {
            return Err(StateError::NothingToRollBack {
                loop_name: loop_name.to_string(),
            });
        };
        self.write_promotion(
            loop_name,
            PromotionKind::Rollback,
            &previous,
            by,
            reason,
            at,
        )
    }

    fn write_promotion(
        &self,
        loop_name: &str,
        kind: PromotionKind,
        version: &str,
        by: &str,
        reason: Option<&str>,
        at: DateTime<Utc>,
    ) -> Result<Promotion> {
        check_name(loop_name)?;
        let txn = self.db.begin_write().map_err(|e| self.storage(e))?;
        let promotion = {
            let mut promoted = txn.open_table(PROMOTED).map_err(|e| self.storage(e))?;
            let replaced: Option<String> =
                match promoted.get(loop_name).map_err(|e| self.storage(e))? {
                    Some(v) => Some(self.decode(loop_name, v.value())?),
                    None => None,
                };
            let mut trail = txn.open_table(PROMOTIONS).map_err(|e| self.storage(e))?;
            let prefix = key(&[loop_name, ""]);
            let mut sequence = 1;
            for item in trail
                .range(prefix.as_str()..)
                .map_err(|e| self.storage(e))?
            {
                let (k, _) = item.map_err(|e| self.storage(e))?;
                if !k.value().starts_with(&prefix) {
                    break;
                }
                sequence += 1;
            }
            let promotion = Promotion {
                loop_name: loop_name.to_string(),
                sequence,
                kind,
                version: version.to_string(),
                replaced,
                at,
                by: by.to_string(),
                reason: reason.map(str::to_string),
            };
            let k = key(&[loop_name, &cycle_part(sequence)]);
            trail
                .insert(k.as_str(), self.encode(&promotion)?.as_slice())
                .map_err(|e| self.storage(e))?;
            promoted
                .insert(loop_name, self.encode(&version)?.as_slice())
                .map_err(|e| self.storage(e))?;
            promotion
        };
        txn.commit().map_err(|e| self.storage(e))?;
        Ok(promotion)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn record(loop_name: &str, version: &str, minute: u32) -> ModelRecord {
        ModelRecord {
            loop_name: loop_name.into(),
            version: version.into(),
            kind: "gbdt".into(),
            created_at: DateTime::parse_from_rfc3339(&format!("2026-11-23T06:{minute:02}:00Z"))
                .unwrap()
                .with_timezone(&Utc),
            schema_version: "fingerprint-v1".into(),
            features: vec!["cpu_w4".into()],
            data_fingerprint: "d".into(),
            parameters: BTreeMap::from([("seed".into(), "7".into())]),
            metrics: BTreeMap::from([("macro_f1".into(), 0.93)]),
            tags: BTreeMap::new(),
            artifact: format!("{{\"v\":\"{version}\"}}"),
        }
    }

    #[test]
    fn promote_survives_reopen_and_rollback_restores_the_previous_version() {
        let dir = tempfile::tempdir().unwrap();
        let now = Utc::now();
        {
            let store = Store::open(dir.path()).unwrap();
            assert!(store.register_model(&record("pg", "aaaaaa11", 1)).unwrap());
            assert!(!store.register_model(&record("pg", "aaaaaa11", 1)).unwrap());
            assert!(store.register_model(&record("pg", "bbbbbb22", 2)).unwrap());
            assert!(
                store
                    .register_model(&record("redis", "cccccc33", 3))
                    .unwrap()
            );
            assert_eq!(store.promoted_model("pg").unwrap(), None);
            assert!(matches!(
                store.rollback_model("pg", "ops", None, now),
                Err(StateError::NothingToRollBack { .. })
            ));
            let first = store
                .promote_model("pg", "aaaaaa", "ops", Some("first"), now)
                .unwrap();
            assert_eq!((first.sequence, first.replaced.clone()), (1, None));
            let second = store
                .promote_model("pg", "bbbbbb22", "ops", None, now)
                .unwrap();
            assert_eq!(second.replaced.as_deref(), Some("aaaaaa11"));
        }
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(
            store.promoted_model("pg").unwrap().unwrap().version,
            "bbbbbb22"
        );
        assert_eq!(store.model_loops().unwrap(), vec!["pg", "redis"]);
        let back = store
            .rollback_model("pg", "ops", Some("regressed"), now)
            .unwrap();
        assert_eq!(back.kind, PromotionKind::Rollback);
        assert_eq!(back.version, "aaaaaa11");
        assert_eq!(
            store.promoted_model("pg").unwrap().unwrap().version,
            "aaaaaa11"
        );
        let trail = store.promotions("pg").unwrap();
        assert_eq!(trail.len(), 3);
        assert_eq!(trail[2].reason.as_deref(), Some("regressed"));
        assert_eq!(store.promoted_model("redis").unwrap(), None);
    }

    #[test]
    fn unknown_and_ambiguous_versions_are_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        store.register_model(&record("pg", "abcdef01", 1)).unwrap();
        store.register_model(&record("pg", "abcdef02", 2)).unwrap();
        let error = store.model("pg", "abcdef").unwrap_err();
        assert!(
            matches!(&error, StateError::AmbiguousModel { matches, .. } if matches.len() == 2),
            "{error}"
        );
        assert!(error.to_string().contains("abcdef01"), "{error}");
        let error = store
            .promote_model("pg", "ffffff", "ops", None, Utc::now())
            .unwrap_err();
        assert!(error.to_string().contains("ffffff"), "{error}");
        assert!(matches!(
            store.model("pg", "abc"),
            Err(StateError::AmbiguousModel { .. })
        ));
        assert_eq!(store.model("pg", "abcdef02").unwrap().version, "abcdef02");
        assert_eq!(store.models("pg").unwrap().len(), 2);
    }
}
