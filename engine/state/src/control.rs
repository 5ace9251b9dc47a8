//! The fast loops' decision log: one [`ControlRecord`] per service and journalled tick.
//!
//! | table | key | value |
//! |---|---|---|
//! | `control` | `loop ␟ service ␟ time` (milliseconds since the epoch, zero-padded) | [`ControlRecord`] (JSON) |
//! | `control_intents` | as `control` | the [`ControlRecord`] of an action being carried out |
//! | `control_changes` | `loop ␟ service` | [`ControlChange`]: the last action that may have changed it |
//!
//! A fast loop decides every few seconds for every service, so it does not journal every
//! tick of every service: the runtime records the ticks that decided something (any verdict
//! but a plain "nothing to change") and, between them, one tick per service every few minutes,
//! and prunes what is older than the loop's retention. Keys sort by time within a service, so
//! `explain <service> --at <time>` is one range read.
//!
//! The two small tables are the fast loops' intent journal, kept by [`Store::record_control`]
//! in the same transaction as the record itself: a record whose outcome is
//! [`ControlOutcome::Pending`] is also in `control_intents` until its outcome replaces it, so
//! a restarted loop finds what it left half done with one short read
//! ([`Store::control_pending`]); and every outcome that may have changed a service updates
//! its `control_changes` entry, from which a restarted loop counts its cooldowns
//! ([`Store::control_changes`]).

use chrono::{DateTime, Utc};
use redb::ReadableTable;
use setpoint_core::control::{ControlChange, ControlOutcome, ControlRecord};

use crate::{Result, Store, check_name};

pub(crate) const CONTROL: redb::TableDefinition<&str, &[u8]> =
    redb::TableDefinition::new("control");
pub(crate) const CONTROL_INTENTS: redb::TableDefinition<&str, &[u8]> =
    redb::TableDefinition::new("control_intents");
pub(crate) const CONTROL_CHANGES: redb::TableDefinition<&str, &[u8]> =
    redb::TableDefinition::new("control_changes");

/// Milliseconds since the epoch, zero-padded so that keys sort by time (times before the
/// epoch, which no tick has, sort first).
fn time_part(at: DateTime<Utc>) -> String {
    format!(
        "{:015}",
        at.timestamp_millis().clamp(0, 999_999_999_999_999)
    )
}

fn record_key(loop_name: &str, service: &str, at: DateTime<Utc>) -> String {
    crate::key(&[loop_name, service, &time_part(at)])
}

impl Store {
    /// Journals records (one tick's, of one loop) in one transaction, replacing a record of
    /// the same loop, service and time; keeps the intent journal with them (see the module).
    pub fn record_control(&self, records: &[ControlRecord]) -> Result<()> {
        if records.is_empty() {
            return Ok(());
        }
        let mut encoded = Vec::with_capacity(records.len());
        for record in records {
            check_name(&record.loop_name)?;
            check_name(record.service())?;
            let change = record
                .outcome
                .may_have_changed()
                .then(|| {
                    self.encode(&ControlChange {
                        service: record.service().to_string(),
                        at: record.at(),
                        action: record.decision.action.clone(),
                    })
                })
                .transpose()?;
            encoded.push((
                record_key(&record.loop_name, record.service(), record.at()),
                self.encode(record)?,
                matches!(record.outcome, ControlOutcome::Pending { .. }),
                change.map(|c| (crate::key(&[&record.loop_name, record.service()]), c)),
            ));
        }
        let txn = self.db.begin_write().map_err(|e| self.storage(e))?;
        {
            let mut table = txn.open_table(CONTROL).map_err(|e| self.storage(e))?;
            let mut intents = txn
                .open_table(CONTROL_INTENTS)
                .map_err(|e| self.storage(e))?;
            let mut changes = txn
                .open_table(CONTROL_CHANGES)
                .map_err(|e| self.storage(e))?;
            for (key, value, pending, change) in &encoded {
                table
                    .insert(key.as_str(), value.as_slice())
                    .map_err(|e| self.storage(e))?;
                if *pending {
                    intents
                        .insert(key.as_str(), value.as_slice())
                        .map_err(|e| self.storage(e))?;
                } else {
                    intents.remove(key.as_str()).map_err(|e| self.storage(e))?;
                }
                if let Some((service_key, change)) = change {
                    changes
                        .insert(service_key.as_str(), change.as_slice())
                        .map_err(|e| self.storage(e))?;
                }
            }
        }
        txn.commit().map_err(|e| self.storage(e))
    }

    /// The records of `loop_name` journalled [`ControlOutcome::Pending`] whose outcome was
    /// never recorded, oldest first per service.
    pub fn control_pending(&self, loop_name: &str) -> Result<Vec<ControlRecord>> {
        check_name(loop_name)?;
        self.scan(CONTROL_INTENTS, &crate::key(&[loop_name, ""]))
    }

    /// The last change that may have been made to each service of `loop_name`, by service.
    pub fn control_changes(&self, loop_name: &str) -> Result<Vec<ControlChange>> {
        check_name(loop_name)?;
        self.scan(CONTROL_CHANGES, &crate::key(&[loop_name, ""]))
    }

    /// Deletes the records of `loop_name` from before `before`; returns how many.
    pub fn prune_control(&self, loop_name: &str, before: DateTime<Utc>) -> Result<usize> {
        check_name(loop_name)?;
        let prefix = crate::key(&[loop_name, ""]);
        let cutoff = time_part(before);
        let txn = self.db.begin_write().map_err(|e| self.storage(e))?;
        let removed = {
            let mut table = txn.open_table(CONTROL).map_err(|e| self.storage(e))?;
            let mut old = Vec::new();
            for item in table
                .range(prefix.as_str()..)
                .map_err(|e| self.storage(e))?
            {
                let (key, _) = item.map_err(|e| self.storage(e))?;
                let key = key.value();
                let Some(rest) = key.strip_prefix(&prefix) else {
                    break;
                };
                if rest
                    .rsplit(crate::SEP)
                    .next()
                    .is_some_and(|time| time < cutoff.as_str())
                {
                    old.push(key.to_string());
                }
            }
            for key in &old {
                table.remove(key.as_str()).map_err(|e| self.storage(e))?;
            }
            old.len()
        };
        txn.commit().map_err(|e| self.storage(e))?;
        Ok(removed)
    }

    /// The records of `service` in `loop_name` from `from` (inclusive) to `to` (exclusive),
    /// oldest first.
    pub fn control_records(
        &self,
        loop_name: &str,
        service: &str,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<ControlRecord>> {
        let start = record_key(loop_name, service, from);
        let end = record_key(loop_name, service, to);
        let txn = self.db.begin_read().map_err(|e| self.storage(e))?;
        let table = txn.open_table(CONTROL).map_err(|e| self.storage(e))?;
        let mut out = Vec::new();
        for item in table
            .range(start.as_str()..end.as_str())
            .map_err(|e| self.storage(e))?
        {
            let (key, value) = item.map_err(|e| self.storage(e))?;
            out.push(self.decode(key.value(), value.value())?);
        }
        Ok(out)
    }

    /// The latest record of `service` at or before `at` (the latest of all without it), in
    /// any fast loop (the loop whose record is the latest, when several decide the service).
    pub fn control_at(
        &self,
        service: &str,
        at: Option<DateTime<Utc>>,
    ) -> Result<Option<ControlRecord>> {
        let mut best: Option<ControlRecord> = None;
        for loop_name in self.control_loops()? {
            let start = crate::key(&[&loop_name, service, ""]);
            let end = match at {
                Some(at) => record_key(&loop_name, service, at),
                None => crate::key(&[&loop_name, service, "\u{7f}"]),
            };
            let txn = self.db.begin_read().map_err(|e| self.storage(e))?;
            let table = txn.open_table(CONTROL).map_err(|e| self.storage(e))?;
            let last = table
                .range(start.as_str()..=end.as_str())
                .map_err(|e| self.storage(e))?
                .next_back();
            if let Some(item) = last {
                let (key, value) = item.map_err(|e| self.storage(e))?;
                let record: ControlRecord = self.decode(key.value(), value.value())?;
                if best.as_ref().is_none_or(|b| b.at() < record.at()) {
                    best = Some(record);
                }
            }
        }
        Ok(best)
    }

    /// The fast loops with records, by name.
    pub fn control_loops(&self) -> Result<Vec<String>> {
        self.control_names("")
    }

    /// The services with records in `loop_name`, by name.
    pub fn control_services(&self, loop_name: &str) -> Result<Vec<String>> {
        self.control_names(&crate::key(&[loop_name, ""]))
    }

    /// The distinct key parts after `prefix`, reading one key per part: after a part is
    /// found, the read skips to `prefix part` + U+0020, the least character a name may hold
    /// after it (control characters, the separator among them, are refused in names).
    fn control_names(&self, prefix: &str) -> Result<Vec<String>> {
        let txn = self.db.begin_read().map_err(|e| self.storage(e))?;
        let table = txn.open_table(CONTROL).map_err(|e| self.storage(e))?;
        let mut out: Vec<String> = Vec::new();
        let mut from = prefix.to_string();
        loop {
            let mut range = table.range(from.as_str()..).map_err(|e| self.storage(e))?;
            let Some(item) = range.next() else {
                break;
            };
            let (key, _) = item.map_err(|e| self.storage(e))?;
            let Some(rest) = key.value().strip_prefix(prefix) else {
                break;
            };
            let name = rest
                .split(crate::SEP)
                .next()
                .unwrap_or_default()
                .to_string();
            from = format!("{prefix}{name}\u{20}");
            out.push(name);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use chrono::{TimeDelta, TimeZone};
    use setpoint_core::Verdict;
    use setpoint_core::control::{ControlAction, ControlDecision, ControlInput, ControlOutcome};

    use super::*;

    fn record(loop_name: &str, service: &str, at: DateTime<Utc>) -> ControlRecord {
        let input: ControlInput = serde_json::from_value(serde_json::json!({
            "service": service,
            "loop": {"name": loop_name, "tick": 1},
            "at": at,
            "at_ns": 0,
            "now": {},
            "limits": {"min_replicas": 1, "max_replicas": 10},
            "horizon_seconds": 900,
            "mode": "dry-run",
        }))
        .unwrap();
        ControlRecord {
            loop_name: loop_name.to_string(),
            tick: 1,
            input,
            decision: ControlDecision {
                service: service.to_string(),
                verdict: Verdict::Hold,
                action: ControlAction::None,
                proposed: None,
                reasons: Vec::new(),
                policy_output: None,
                guard_output: None,
                entry_point: "data.control.decision".to_string(),
                policy_hash: String::new(),
            },
            forecast_problems: Vec::new(),
            outcome: ControlOutcome::NothingToDo,
        }
    }

    #[test]
    fn records_are_found_at_or_before_a_time_listed_and_pruned() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let t0 = Utc.with_ymd_and_hms(2026, 11, 24, 7, 0, 0).unwrap();
        let at = |s: i64| t0 + TimeDelta::seconds(s);
        store
            .record_control(&[
                record("fast", "checkout", at(0)),
                record("fast", "search", at(0)),
            ])
            .unwrap();
        store
            .record_control(&[record("fast", "checkout", at(15))])
            .unwrap();
        store
            .record_control(&[record("edge", "checkout", at(20))])
            .unwrap();
        store
            .record_control(&[record("fast b", "cart", at(5))])
            .unwrap();

        assert_eq!(store.control_loops().unwrap(), ["edge", "fast", "fast b"]);
        assert_eq!(
            store.control_services("fast").unwrap(),
            ["checkout", "search"]
        );
        assert_eq!(
            store
                .control_at("checkout", Some(at(14)))
                .unwrap()
                .unwrap()
                .at(),
            at(0)
        );
        let latest = store.control_at("checkout", Some(at(60))).unwrap().unwrap();
        assert_eq!((latest.loop_name.as_str(), latest.at()), ("edge", at(20)));
        assert_eq!(
            store
                .control_at("checkout", Some(at(15)))
                .unwrap()
                .unwrap()
                .at(),
            at(15)
        );
        assert!(
            store
                .control_at("checkout", Some(at(-1)))
                .unwrap()
                .is_none()
        );
        assert!(store.control_at("nobody", None).unwrap().is_none());
        assert_eq!(
            store
                .control_records("fast", "checkout", at(0), at(15))
                .unwrap()
                .len(),
            1
        );

        assert_eq!(store.prune_control("fast", at(10)).unwrap(), 2);
        assert_eq!(store.control_services("fast").unwrap(), ["checkout"]);
        assert_eq!(store.control_services("fast b").unwrap(), ["cart"]);
    }

    #[test]
    fn a_pending_action_stays_in_the_intent_journal_until_its_outcome_replaces_it() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let t0 = Utc.with_ymd_and_hms(2026, 11, 24, 7, 0, 0).unwrap();
        let with = |service: &str, at: DateTime<Utc>, outcome: ControlOutcome| {
            let mut r = record("fast", service, at);
            r.decision.action =
                ControlAction::Replicas(setpoint_core::control::ReplicaTarget::Absolute(6));
            r.outcome = outcome;
            r
        };
        let writes = vec!["Deployment shop/checkout (scale) spec.replicas: 4 -> 6".to_string()];
        store
            .record_control(&[
                with(
                    "checkout",
                    t0,
                    ControlOutcome::Pending {
                        writes: writes.clone(),
                    },
                ),
                with(
                    "search",
                    t0,
                    ControlOutcome::Pending {
                        writes: writes.clone(),
                    },
                ),
                record("fast b", "checkout", t0),
            ])
            .unwrap();
        let pending = store.control_pending("fast").unwrap();
        assert_eq!(pending.len(), 2);
        assert!(store.control_pending("fast b").unwrap().is_empty());

        // The outcome replaces the pending record, in the log and in the journal.
        store
            .record_control(&[with(
                "checkout",
                t0,
                ControlOutcome::Applied {
                    detail: "spec.replicas 4 -> 6".to_string(),
                },
            )])
            .unwrap();
        let pending = store.control_pending("fast").unwrap();
        assert_eq!(pending.len(), 1);
        assert_eq!(pending[0].service(), "search");
        let log = store.control_records("fast", "checkout", t0, t0 + TimeDelta::seconds(1));
        assert!(matches!(
            log.unwrap()[..],
            [ControlRecord {
                outcome: ControlOutcome::Applied { .. },
                ..
            }]
        ));

        // Both may have changed their service; a failure or a hold changes no cooldown.
        store
            .record_control(&[with(
                "checkout",
                t0 + TimeDelta::seconds(15),
                ControlOutcome::Failed {
                    error: "refused".to_string(),
                },
            )])
            .unwrap();
        let changes = store.control_changes("fast").unwrap();
        let seen: Vec<(&str, DateTime<Utc>)> =
            changes.iter().map(|c| (c.service.as_str(), c.at)).collect();
        assert_eq!(seen, [("checkout", t0), ("search", t0)]);
        assert!(store.control_changes("fast b").unwrap().is_empty());
    }
}
