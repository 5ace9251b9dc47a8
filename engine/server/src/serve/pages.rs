//! The review web page: this cycle's recommendations, one target's detail, the queue, the
//! kill switches with forms to turn them on and off. Server-rendered HTML with no scripts, from
//! askama templates under `templates/` (checked when this crate compiles): the template engine
//! escapes every value from the store; only the chart, itself a template, is inserted as markup.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::path::Path;

use askama::Template;
use chrono::{DateTime, Utc};
use setpoint_core::{
    JournalEntry, KillSwitches, Proposal, Resources, ReviewItem, format_bytes, format_cpu,
};
use setpoint_state::{KillSwitchScope, StateError, Store};

use super::Filters;
use super::auth::{Role, User, Via};
use crate::html::{Chart, Reason};

/// What the index page shows.
pub struct IndexData {
    /// Each target's latest journal entry, by target id.
    pub entries: Vec<JournalEntry>,
    /// Each entry's chart, drawn once when the data is read rather than on every view.
    pub charts: Vec<String>,
    /// Every review, newest last.
    pub reviews: Vec<ReviewItem>,
    /// The kill switches.
    pub switches: KillSwitches,
    /// The head of the journal's chain, to compare with a copy kept elsewhere.
    pub chain_head: Option<setpoint_state::ChainHead>,
}

impl IndexData {
    /// Reads the page's data from the store and the state directory.
    pub fn load(store: &Store, dir: &Path) -> Result<Self, StateError> {
        let mut entries = Vec::new();
        for target in store.targets()? {
            if let Some(entry) = store.last_entry(&target)? {
                entries.push(entry);
            }
        }
        entries.sort_by(|a, b| a.target.id.cmp(&b.target.id));
        let charts = entries
            .iter()
            .map(|e| {
                Chart::new(&e.features, 160, 48, false)
                    .render()
                    .unwrap_or_else(|error| {
                        tracing::error!(target = %e.target.id, %error, "chart not drawn");
                        String::new()
                    })
            })
            .collect();
        Ok(Self {
            entries,
            charts,
            reviews: store.reviews()?,
            switches: setpoint_state::read_kill_switches(dir)?,
            chain_head: store.chain_head()?,
        })
    }
}

/// What a target's page shows.
pub struct TargetData {
    /// The latest journal entry.
    pub entry: JournalEntry,
    /// The reviews of this target, newest first.
    pub reviews: Vec<ReviewItem>,
    /// The time the page is drawn at: which reviews still wait.
    pub now: DateTime<Utc>,
}

impl TargetData {
    /// Reads a target's data; `None` when nothing was recorded for it.
    pub fn load(
        store: &Store,
        target: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<Self>, StateError> {
        let Some(entry) = store.last_entry(target)? else {
            return Ok(None);
        };
        let mut reviews: Vec<ReviewItem> = store
            .reviews()?
            .into_iter()
            .filter(|r| r.target == target)
            .collect();
        reviews.reverse();
        Ok(Some(Self {
            entry,
            reviews,
            now,
        }))
    }
}

/// Percent-encodes text for a URL path segment or a cookie value.
pub fn url_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// Decodes [`url_escape`]d text (invalid sequences are kept as they are).
pub fn url_unescape(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let Some(hex) = text.get(i + 1..i + 3)
            && let Ok(b) = u8::from_str_radix(hex, 16)
        {
            out.push(b);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Every page extends `base.html`, which needs `title` and `user` (who is signed in, for the
/// header; `None` on pages drawn before anyone is).
#[derive(Template)]
#[template(path = "message.html")]
struct MessagePage<'a> {
    title: &'a str,
    user: Option<&'a User>,
    status: u16,
    message: &'a str,
}

/// A page that only says something (errors).
pub fn message_page(status: u16, message: &str) -> askama::Result<String> {
    MessagePage {
        title: "setpoint",
        user: None,
        status,
        message,
    }
    .render()
}

#[derive(Template)]
#[template(path = "login.html")]
struct LoginPage<'a> {
    title: &'a str,
    user: Option<&'a User>,
    configured: bool,
    error: Option<&'a str>,
}

/// The sign-in form.
pub fn login_page(configured: bool, error: Option<&str>) -> askama::Result<String> {
    LoginPage {
        title: "setpoint: sign in",
        user: None,
        configured,
        error,
    }
    .render()
}

fn class_of(entry: &JournalEntry) -> String {
    entry
        .classification
        .as_ref()
        .map_or("none".to_string(), |c| c.class.to_string())
}

fn verdict_of(entry: &JournalEntry) -> String {
    entry
        .decision
        .as_ref()
        .map_or("failed".to_string(), |d| d.verdict.to_string())
}

/// One target's row of the recommendations.
struct IndexRow<'a> {
    id: &'a str,
    url: String,
    technology: &'a str,
    loop_name: &'a str,
    cycle: u64,
    class: String,
    confidence: String,
    verdict: String,
    change: &'a str,
    reason: Reason,
    chart: &'a str,
}

/// Who turned a kill switch on, and when.
struct SetBy<'a> {
    by: &'a str,
    at: String,
}

/// A kill switch that is on.
struct SwitchRow<'a> {
    label: String,
    key: String,
    set_by: Option<SetBy<'a>>,
}

#[derive(Template)]
#[template(path = "index.html")]
struct IndexPage<'a> {
    title: &'a str,
    user: Option<&'a User>,
    flash: Option<&'a str>,
    approver: bool,
    csrf: &'a str,
    filters: &'a Filters,
    technologies: BTreeSet<String>,
    classes: BTreeSet<String>,
    verdicts: BTreeSet<String>,
    total: usize,
    rows: Vec<IndexRow<'a>>,
    pending: Vec<&'a ReviewItem>,
    switches: Vec<SwitchRow<'a>>,
    chain_head: String,
}

/// The kill switches that are on, global first, then loops and targets.
fn switches_on(switches: &KillSwitches) -> Vec<SwitchRow<'_>> {
    let mut on: Vec<(String, String)> = Vec::new();
    if switches.global {
        on.push(("global".into(), "global".into()));
    }
    on.extend(
        switches
            .loops
            .iter()
            .filter(|(_, v)| **v)
            .map(|(l, _)| (format!("loop {l}"), KillSwitchScope::Loop(l.clone()).key())),
    );
    on.extend(switches.targets.iter().filter(|(_, v)| **v).map(|(t, _)| {
        (
            format!("target {t}"),
            KillSwitchScope::Target(t.clone()).key(),
        )
    }));
    on.into_iter()
        .map(|(label, key)| SwitchRow {
            set_by: switches.set_by.get(&key).map(|s| SetBy {
                by: &s.by,
                at: s.at.format("%Y-%m-%d %H:%M UTC").to_string(),
            }),
            label,
            key,
        })
        .collect()
}

/// The index page at `now` (which reviews still wait): recommendations (filtered), the review
/// queue, the kill switches (with forms to turn them on and off for approvers; the CLI's
/// `setpoint kill-switch` does the same).
pub fn index(
    data: &IndexData,
    filters: &Filters,
    user: &User,
    flash: Option<&str>,
    now: DateTime<Utc>,
) -> askama::Result<String> {
    let rows = data
        .entries
        .iter()
        .zip(&data.charts)
        .filter(|(e, _)| filters.technology.is_empty() || e.target.technology == filters.technology)
        .filter(|(e, _)| filters.class.is_empty() || class_of(e) == filters.class)
        .filter(|(e, _)| filters.verdict.is_empty() || verdict_of(e) == filters.verdict)
        .map(|(e, chart)| IndexRow {
            id: &e.target.id,
            url: url_escape(&e.target.id),
            technology: &e.target.technology,
            loop_name: &e.loop_name,
            cycle: e.cycle,
            class: class_of(e),
            confidence: e
                .classification
                .as_ref()
                .map(|c| format!("{:.2}", c.confidence))
                .unwrap_or_default(),
            verdict: verdict_of(e),
            change: e
                .decision
                .as_ref()
                .and_then(|d| d.proposal)
                .and_then(|a| e.proposals.iter().find(|p| p.action == a))
                .map_or("—", |p| p.summary.as_str()),
            reason: match (
                &e.error,
                e.decision.as_ref().and_then(|d| d.reasons.first()),
            ) {
                (Some(error), _) => Reason::Error(error.message.clone()),
                (None, Some(r)) => Reason::Code(r.code.clone(), r.message.clone()),
                (None, None) => Reason::None,
            },
            chart,
        })
        .collect();
    IndexPage {
        title: "setpoint review",
        user: Some(user),
        flash: flash.filter(|f| !f.is_empty()),
        approver: user.role >= Role::Approver,
        csrf: &user.csrf,
        filters,
        technologies: data
            .entries
            .iter()
            .map(|e| e.target.technology.clone())
            .collect(),
        classes: data.entries.iter().map(class_of).collect(),
        verdicts: data.entries.iter().map(verdict_of).collect(),
        total: data.entries.len(),
        rows,
        pending: data
            .reviews
            .iter()
            .filter(|r| r.awaits_decision(now))
            .collect(),
        switches: switches_on(&data.switches),
        chain_head: data
            .chain_head
            .as_ref()
            .map_or("none yet".to_string(), ToString::to_string),
    }
    .render()
}

/// A row of a proposal's before/after table.
struct ResourceRow {
    name: String,
    before: String,
    after: String,
}

fn resources_rows(before: &Resources, after: &Resources) -> Vec<ResourceRow> {
    let mut rows = vec![
        ResourceRow {
            name: "CPU".to_string(),
            before: format_cpu(before.cpu_millicores),
            after: format_cpu(after.cpu_millicores),
        },
        ResourceRow {
            name: "memory".to_string(),
            before: format_bytes(before.memory_bytes),
            after: format_bytes(after.memory_bytes),
        },
        ResourceRow {
            name: "replicas".to_string(),
            before: before.replicas.to_string(),
            after: after.replicas.to_string(),
        },
    ];
    let names: BTreeSet<&String> = before
        .parameters
        .keys()
        .chain(after.parameters.keys())
        .collect();
    for name in names {
        rows.push(ResourceRow {
            name: name.clone(),
            before: before.parameters.get(name).cloned().unwrap_or("—".into()),
            after: after.parameters.get(name).cloned().unwrap_or("—".into()),
        });
    }
    rows
}

/// A proposal with its before/after rows, and whether the policy chose it.
struct ProposalView<'a> {
    proposal: &'a Proposal,
    chosen: bool,
    rows: Vec<ResourceRow>,
}

#[derive(Template)]
#[template(path = "target.html")]
struct TargetPage<'a> {
    title: String,
    user: Option<&'a User>,
    flash: Option<&'a str>,
    approver: bool,
    csrf: &'a str,
    e: &'a JournalEntry,
    chart: Chart,
    proposals: Vec<ProposalView<'a>>,
    pending: Vec<&'a ReviewItem>,
    decided: Vec<&'a ReviewItem>,
    trace: String,
    policy_json: Vec<(&'static str, String)>,
}

/// One target's page: the chart and the classifier's view, the proposals as before/after
/// diffs, the policy's reasons, its reviews, the full trace.
pub fn target(data: &TargetData, user: &User, flash: Option<&str>) -> askama::Result<String> {
    let e = &data.entry;
    let chosen = e.decision.as_ref().and_then(|d| d.proposal);
    let (pending, decided) = data
        .reviews
        .iter()
        .partition(|r| r.awaits_decision(data.now));
    TargetPage {
        title: format!("setpoint: {}", e.target.id),
        user: Some(user),
        flash: flash.filter(|f| !f.is_empty()),
        approver: user.role >= Role::Approver,
        csrf: &user.csrf,
        e,
        chart: Chart::new(&e.features, 640, 240, true),
        proposals: e
            .proposals
            .iter()
            .map(|p| ProposalView {
                proposal: p,
                chosen: Some(p.action) == chosen,
                rows: resources_rows(&p.before, &p.after),
            })
            .collect(),
        pending,
        decided,
        trace: crate::explain::render(e),
        policy_json: [
            ("policy input", &e.policy_input),
            ("policy output", &e.policy_output),
        ]
        .into_iter()
        .filter_map(|(title, value)| {
            value
                .as_ref()
                .map(|v| (title, serde_json::to_string_pretty(v).unwrap_or_default()))
        })
        .collect(),
    }
    .render()
}
