//! The tamper-evident chain over the decision journal and the review queue.
//!
//! Every write of a journal record or a review appends a link, in the same transaction: the
//! record's key, the SHA-256 of the bytes written, and a hash over the previous link's hash and
//! those, so that editing a record (an approver's name, a comment, a plan), deleting it, adding
//! one, or editing a link shows. The chain starts from a baseline — the digests of every record
//! there when it began — made when the store is opened without one, and again when an operator
//! acknowledges a break (`setpoint journal acknowledge`): verification checks the links from
//! the latest baseline on. The head (its sequence number and hash) is what an operator keeps
//! elsewhere to tell a rewritten store from the one they saw.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use redb::{ReadableTable, TableDefinition, WriteTransaction};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::{JOURNAL, Result, StateError, Store, cycle_part};

/// Links by zero-padded sequence number, the head under [`HEAD_KEY`], each baseline's record
/// digests under `baseline␟<seq>`.
pub(crate) const CHAIN: TableDefinition<&str, &[u8]> = TableDefinition::new("chain");

const HEAD_KEY: &str = "head";
const BASELINE_PREFIX: &str = "baseline\u{1f}";

/// What a link records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LinkKind {
    /// A journal record was written.
    Journal,
    /// A review was queued or decided.
    Review,
    /// The digests of every record at that point: where verification starts.
    Baseline,
}

impl LinkKind {
    fn as_str(self) -> &'static str {
        match self {
            LinkKind::Journal => "journal",
            LinkKind::Review => "review",
            LinkKind::Baseline => "baseline",
        }
    }
}

/// One link of the chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Link {
    /// Its place in the chain, from 0.
    pub seq: u64,
    /// The previous link's hash (empty for the first).
    pub prev: String,
    /// What it records.
    pub kind: LinkKind,
    /// The record's key (a baseline's: who made it and why).
    pub key: String,
    /// The SHA-256 of the record's bytes as written (a baseline's: of its digests).
    pub digest: String,
    /// The SHA-256 over `prev`, `seq`, `kind`, `key` and `digest`.
    pub hash: String,
}

impl Link {
    fn new(seq: u64, prev: &str, kind: LinkKind, key: &str, digest: String) -> Self {
        let hash = link_hash(seq, prev, kind, key, &digest);
        Self {
            seq,
            prev: prev.to_string(),
            kind,
            key: key.to_string(),
            digest,
            hash,
        }
    }
}

/// The chain's last link: what to compare against a copy kept elsewhere.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChainHead {
    /// Its sequence number.
    pub seq: u64,
    /// Its hash.
    pub hash: String,
}

impl std::fmt::Display for ChainHead {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "#{} {}", self.seq, self.hash)
    }
}

/// The first thing verification found wrong.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ChainBreak {
    /// The link at or after which the chain no longer holds, when one is to blame.
    pub seq: Option<u64>,
    /// The record concerned (`journal:<key>` or `review:<id>`), when one is.
    pub record: Option<String>,
    /// What is wrong.
    pub problem: String,
}

impl std::fmt::Display for ChainBreak {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (&self.record, self.seq) {
            (Some(record), Some(seq)) => {
                write!(f, "record {record} (link #{seq}): {}", self.problem)
            }
            (Some(record), None) => write!(f, "record {record}: {}", self.problem),
            (None, Some(seq)) => write!(f, "link #{seq}: {}", self.problem),
            (None, None) => f.write_str(&self.problem),
        }
    }
}

/// What verifying the chain found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ChainReport {
    /// The head, when there is a chain.
    pub head: Option<ChainHead>,
    /// Links checked (from the latest baseline on).
    pub links_checked: u64,
    /// Records whose digest was checked.
    pub records_checked: u64,
    /// The first problem, if any.
    pub broken: Option<ChainBreak>,
}

fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn link_hash(seq: u64, prev: &str, kind: LinkKind, key: &str, digest: &str) -> String {
    sha256_hex(format!("{prev}\n{seq}\n{}\n{key}\n{digest}", kind.as_str()).as_bytes())
}

/// `journal:<key>` / `review:<key>`, keys shown with `/` between their parts.
fn record_name(kind: LinkKind, key: &str) -> String {
    format!("{}:{}", kind.as_str(), key.replace('\u{1f}', "/"))
}

impl Store {
    /// Appends a link for `bytes` written under `key`, in the caller's transaction (which must
    /// not have the chain table open).
    pub(crate) fn append_link(
        &self,
        txn: &WriteTransaction,
        kind: LinkKind,
        key: &str,
        bytes: &[u8],
    ) -> Result<()> {
        let mut chain = txn.open_table(CHAIN).map_err(|e| self.storage(e))?;
        let head: Option<ChainHead> = chain
            .get(HEAD_KEY)
            .map_err(|e| self.storage(e))?
            .map(|v| self.decode(HEAD_KEY, v.value()))
            .transpose()?;
        let (seq, prev) = match head {
            Some(head) => (head.seq + 1, head.hash),
            None => (0, String::new()),
        };
        let link = Link::new(seq, &prev, kind, key, sha256_hex(bytes));
        chain
            .insert(cycle_part(seq).as_str(), self.encode(&link)?.as_slice())
            .map_err(|e| self.storage(e))?;
        let head = ChainHead {
            seq,
            hash: link.hash,
        };
        chain
            .insert(HEAD_KEY, self.encode(&head)?.as_slice())
            .map_err(|e| self.storage(e))?;
        Ok(())
    }

    /// The digest of every journal record and review as stored now.
    fn record_digests(&self) -> Result<BTreeMap<String, String>> {
        let txn = self.db.begin_read().map_err(|e| self.storage(e))?;
        let mut out = BTreeMap::new();
        for (kind, table) in [
            (LinkKind::Journal, JOURNAL),
            (LinkKind::Review, crate::reviews::REVIEWS),
        ] {
            let table = txn.open_table(table).map_err(|e| self.storage(e))?;
            for item in table.iter().map_err(|e| self.storage(e))? {
                let (k, v) = item.map_err(|e| self.storage(e))?;
                out.insert(record_name(kind, k.value()), sha256_hex(v.value()));
            }
        }
        Ok(out)
    }

    /// Starts the chain from what the store holds when it has none (a new store, or one from
    /// before the chain).
    pub(crate) fn start_chain(&self) -> Result<()> {
        if self.chain_head()?.is_some() {
            return Ok(());
        }
        self.append_baseline("start")
    }

    /// Appends a baseline of every record's digest: verification starts there.
    fn append_baseline(&self, why: &str) -> Result<()> {
        let digests = self.record_digests()?;
        let bytes = self.encode(&digests)?;
        let txn = self.db.begin_write().map_err(|e| self.storage(e))?;
        let seq = {
            let chain = txn.open_table(CHAIN).map_err(|e| self.storage(e))?;
            chain
                .get(HEAD_KEY)
                .map_err(|e| self.storage(e))?
                .map(|v| self.decode::<ChainHead>(HEAD_KEY, v.value()))
                .transpose()?
                .map_or(0, |h| h.seq + 1)
        };
        {
            let mut chain = txn.open_table(CHAIN).map_err(|e| self.storage(e))?;
            chain
                .insert(
                    format!("{BASELINE_PREFIX}{}", cycle_part(seq)).as_str(),
                    bytes.as_slice(),
                )
                .map_err(|e| self.storage(e))?;
        }
        self.append_link(&txn, LinkKind::Baseline, why, &bytes)?;
        txn.commit().map_err(|e| self.storage(e))
    }

    /// The chain's head, when it has started.
    pub fn chain_head(&self) -> Result<Option<ChainHead>> {
        // A store from before the chain, read before a writer of this version opened it, has
        // no chain table yet: no head, rather than an error on the page that shows it.
        let txn = self.db.begin_read().map_err(|e| self.storage(e))?;
        let table = match txn.open_table(CHAIN) {
            Ok(table) => table,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
            Err(e) => return Err(self.storage(e)),
        };
        let value = table.get(HEAD_KEY).map_err(|e| self.storage(e))?;
        value.map(|v| self.decode(HEAD_KEY, v.value())).transpose()
    }

    /// Checks the chain from its latest baseline: every link's hash and its link to the one
    /// before, the head, and that every journal record and review is exactly as its latest
    /// link (or the baseline) says — none changed, gone or added outside setpoint.
    pub fn verify_chain(&self) -> Result<ChainReport> {
        let head = self.chain_head()?;
        let mut links: Vec<Link> = Vec::new();
        {
            let txn = self.db.begin_read().map_err(|e| self.storage(e))?;
            let table = txn.open_table(CHAIN).map_err(|e| self.storage(e))?;
            for item in table.iter().map_err(|e| self.storage(e))? {
                let (k, v) = item.map_err(|e| self.storage(e))?;
                if k.value().bytes().all(|b| b.is_ascii_digit()) {
                    links.push(self.decode(k.value(), v.value())?);
                }
            }
        }
        let mut report = ChainReport {
            head: head.clone(),
            links_checked: 0,
            records_checked: 0,
            broken: None,
        };
        let broken = |seq: Option<u64>, record: Option<String>, problem: String| ChainBreak {
            seq,
            record,
            problem,
        };
        let Some(start) = links.iter().rposition(|l| l.kind == LinkKind::Baseline) else {
            report.broken = Some(broken(None, None, "the chain has no baseline".to_string()));
            return Ok(report);
        };
        let mut expected: BTreeMap<String, (Option<u64>, String)> = BTreeMap::new();
        for (i, link) in links.iter().enumerate().skip(start) {
            report.links_checked += 1;
            let seq = Some(link.seq);
            if link.hash != link_hash(link.seq, &link.prev, link.kind, &link.key, &link.digest) {
                report.broken = Some(broken(
                    seq,
                    None,
                    "its hash does not match its contents".into(),
                ));
                return Ok(report);
            }
            if i > start && (link.prev != links[i - 1].hash || link.seq != links[i - 1].seq + 1) {
                report.broken = Some(broken(
                    seq,
                    None,
                    "it does not follow the link before it".into(),
                ));
                return Ok(report);
            }
            if link.kind == LinkKind::Baseline {
                let key = format!("{BASELINE_PREFIX}{}", cycle_part(link.seq));
                let txn = self.db.begin_read().map_err(|e| self.storage(e))?;
                let table = txn.open_table(CHAIN).map_err(|e| self.storage(e))?;
                let Some(bytes) = table.get(key.as_str()).map_err(|e| self.storage(e))? else {
                    report.broken = Some(broken(seq, None, "its baseline is gone".into()));
                    return Ok(report);
                };
                if sha256_hex(bytes.value()) != link.digest {
                    report.broken = Some(broken(seq, None, "its baseline was changed".into()));
                    return Ok(report);
                }
                let digests: BTreeMap<String, String> = self.decode(&key, bytes.value())?;
                expected = digests.into_iter().map(|(k, d)| (k, (seq, d))).collect();
            } else {
                expected.insert(
                    record_name(link.kind, &link.key),
                    (seq, link.digest.clone()),
                );
            }
        }
        let last = links.last().map(|l| ChainHead {
            seq: l.seq,
            hash: l.hash.clone(),
        });
        if last != head {
            report.broken = Some(broken(
                last.as_ref().map(|l| l.seq),
                None,
                "the head does not name the last link".into(),
            ));
            return Ok(report);
        }
        let actual = self.record_digests()?;
        report.records_checked = actual.len() as u64;
        let mut problems: Vec<ChainBreak> = Vec::new();
        for (record, (seq, digest)) in &expected {
            match actual.get(record) {
                None => problems.push(broken(*seq, Some(record.clone()), "it is gone".into())),
                Some(d) if d != digest => problems.push(broken(
                    *seq,
                    Some(record.clone()),
                    "it was changed outside setpoint".into(),
                )),
                Some(_) => {}
            }
        }
        for record in actual.keys().filter(|r| !expected.contains_key(*r)) {
            problems.push(broken(
                None,
                Some(record.clone()),
                "it was added outside setpoint".into(),
            ));
        }
        // The earliest link to blame first; records no link covers last.
        problems.sort_by_key(|b| (b.seq.is_none(), b.seq));
        report.broken = problems.into_iter().next();
        Ok(report)
    }

    /// Accepts the store as it is after a break: a new baseline, recorded as acknowledged by
    /// `by` at `at`, from which verification starts again. Returns the new head.
    pub fn acknowledge_chain(&self, by: &str, at: DateTime<Utc>) -> Result<ChainHead> {
        crate::check_name(by)?;
        self.append_baseline(&format!("acknowledged by {by} at {}", at.to_rfc3339()))?;
        self.chain_head()?.ok_or_else(|| StateError::Storage {
            path: self.path.clone(),
            message: "the chain has no head after a baseline".to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::tests::{at, entry};
    use setpoint_core::TargetHistory;

    /// A store with three journal records and one decided review.
    fn store(dir: &std::path::Path) -> Store {
        let store = Store::open(dir).unwrap();
        for _ in 0..3 {
            let cycle = store.begin_cycle("weekly", at()).unwrap();
            store
                .record_target(&entry("pg-1", cycle, at()), &TargetHistory::new(at()))
                .unwrap();
        }
        let item = crate::reviews::tests::item("pg-1", at());
        let id = store.queue_review(&item).unwrap();
        store
            .decide_review(id, true, "carol", Some("looks right"), at())
            .unwrap();
        store
    }

    /// Overwrites one stored value as someone with the file would.
    fn tamper(store: &Store, table: TableDefinition<&str, &[u8]>, edit: impl Fn(&str) -> String) {
        let txn = store.db.begin_write().unwrap();
        {
            let mut t = txn.open_table(table).unwrap();
            let (k, v) = {
                let (k, v) = t.first().unwrap().unwrap();
                (
                    k.value().to_string(),
                    String::from_utf8(v.value().to_vec()).unwrap(),
                )
            };
            t.insert(k.as_str(), edit(&v).as_bytes()).unwrap();
        }
        txn.commit().unwrap();
    }

    #[test]
    fn an_untouched_store_verifies() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(dir.path());
        let report = store.verify_chain().unwrap();
        assert_eq!(report.broken, None);
        assert_eq!(report.records_checked, 4);
        // The baseline, three journal records, the review queued and decided.
        assert_eq!(report.head.unwrap().seq, 5);
    }

    #[test]
    fn an_edited_approver_names_the_review() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(dir.path());
        tamper(&store, crate::reviews::REVIEWS, |v| {
            v.replace("carol", "mallory")
        });
        let broken = store.verify_chain().unwrap().broken.unwrap();
        assert_eq!(
            broken.record.as_deref(),
            Some("review:00000000000000000001")
        );
        assert_eq!(broken.problem, "it was changed outside setpoint");
        assert_eq!(broken.seq, Some(5));
    }

    #[test]
    fn an_edited_plan_a_deleted_record_and_an_added_one_all_show() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(dir.path());
        tamper(&store, JOURNAL, |v| v.replace("pg-1", "pg-2"));
        let broken = store.verify_chain().unwrap().broken.unwrap();
        assert!(
            broken
                .record
                .as_deref()
                .unwrap()
                .starts_with("journal:pg-1/weekly/"),
            "{broken:?}"
        );

        let dir = tempfile::tempdir().unwrap();
        let store = self::store(dir.path());
        let txn = store.db.begin_write().unwrap();
        {
            let mut t = txn.open_table(JOURNAL).unwrap();
            let k = t.first().unwrap().unwrap().0.value().to_string();
            t.remove(k.as_str()).unwrap();
            t.insert("pg-9\u{1f}weekly\u{1f}1", b"{}".as_slice())
                .unwrap();
        }
        txn.commit().unwrap();
        let broken = store.verify_chain().unwrap().broken.unwrap();
        assert_eq!(
            broken.problem, "it is gone",
            "the earliest link first: {broken:?}"
        );
    }

    #[test]
    fn an_edited_link_breaks_the_chain_there_and_an_acknowledgement_restarts_it() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(dir.path());
        let txn = store.db.begin_write().unwrap();
        {
            let mut t = txn.open_table(CHAIN).unwrap();
            let key = cycle_part(2);
            let mut link: Link =
                serde_json::from_slice(t.get(key.as_str()).unwrap().unwrap().value()).unwrap();
            link.digest = "0".repeat(64);
            t.insert(key.as_str(), serde_json::to_vec(&link).unwrap().as_slice())
                .unwrap();
        }
        txn.commit().unwrap();
        let broken = store.verify_chain().unwrap().broken.unwrap();
        assert_eq!(broken.seq, Some(2));
        assert_eq!(broken.problem, "its hash does not match its contents");

        let head = store.acknowledge_chain("dana", at()).unwrap();
        assert_eq!(head.seq, 6);
        assert_eq!(store.verify_chain().unwrap().broken, None);
        // And what is written after goes on from there.
        let cycle = store.begin_cycle("weekly", at()).unwrap();
        store
            .record_target(&entry("pg-1", cycle, at()), &TargetHistory::new(at()))
            .unwrap();
        let report = store.verify_chain().unwrap();
        assert_eq!(report.broken, None);
        assert_eq!(report.links_checked, 2);
    }
}
