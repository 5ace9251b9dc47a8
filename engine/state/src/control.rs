//! The fast loops' decision log: one [`ControlRecord`] per service and journalled tick.
//!
//! | table | key | value |
//! |---|---|---|
//! | `control` | `loop ␟ service ␟ time` (milliseconds since the epoch, zero-padded) | [`ControlRecord`] (JSON) |
//!
//! A fast loop decides every few seconds for every service, so it does not journal every
//! tick of every service: the runtime records the ticks that decided something (any verdict
//! but a plain "nothing to change") and, between them, one tick per service every few minutes,
//! and prunes what is older than the loop's retention. Keys sort by time within a service, so
//! `explain <service> --at <time>` is one range read.

use chrono::{DateTime, Utc};
use redb::ReadableTable;
use setpoint_core::control::ControlRecord;

use crate::{Result, Store, check_name};

pub(crate) const CONTROL: redb::TableDefinition<&str, &[u8]> =
    redb::TableDefinition::new("control");

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
    /// Journals one tick's records (of one loop) in one transaction.
    pub fn record_control(&self, records: &[ControlRecord]) -> Result<()> {
        if records.is_empty() {
            return Ok(());
        }
        let mut encoded = Vec::with_capacity(records.len());
        for record in records {
            check_name(&record.loop_name)?;
            check_name(record.service())?;
            encoded.push((
                record_key(&record.loop_name, record.service(), record.at()),
                self.encode(record)?,
            ));
        }
        let txn = self.db.begin_write().map_err(|e| self.storage(e))?;
        {
            let mut table = txn.open_table(CONTROL).map_err(|e| self.storage(e))?;
            for (key, value) in &encoded {
                table
                    .insert(key.as_str(), value.as_slice())
                    .map_err(|e| self.storage(e))?;
            }
        }
        txn.commit().map_err(|e| self.storage(e))
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
}
