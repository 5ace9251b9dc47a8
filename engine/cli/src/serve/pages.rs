//! The review web page: this cycle's recommendations, one target's detail, the queue, the
//! kill switches with forms to turn them on and off. Server-rendered HTML with no scripts; every
//! value from the store is escaped.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::path::Path;

use anyhow::Result;
use chrono::{DateTime, Utc};
use setpoint_core::{JournalEntry, KillSwitches, Resources, ReviewItem, format_bytes, format_cpu};
use setpoint_state::{KillSwitchScope, Store};

use super::Filters;
use super::auth::{Role, User, Via};
use crate::html::{STYLE, chart_svg, escape};

/// The page's own additions to the report's style sheet.
const PAGE_STYLE: &str = "header{display:flex;justify-content:space-between;align-items:center;border-bottom:1px solid #ddd;padding-bottom:.5em}\
header a{margin-left:1em}form.inline{display:inline}.flash{background:#eef7ee;border:1px solid #9c9;padding:.6em;white-space:pre-wrap}\
.diff td.changed{background:#fff4d6;font-weight:600}pre{background:#f7f7f7;padding:.8em;overflow-x:auto;font-size:12px}\
.filters label{margin-right:1em}textarea{width:22em;height:2.4em;vertical-align:middle}button{margin:2px}";

/// What the index page shows.
pub struct IndexData {
    /// Each target's latest journal entry, by target id.
    pub entries: Vec<JournalEntry>,
    /// Every review, newest last.
    pub reviews: Vec<ReviewItem>,
    /// The kill switches.
    pub switches: KillSwitches,
    /// The time the page is drawn at: which reviews still wait.
    pub now: DateTime<Utc>,
}

impl IndexData {
    /// Reads the page's data from the store and the state directory.
    pub fn load(store: &Store, dir: &Path, now: DateTime<Utc>) -> Result<Self> {
        let mut entries = Vec::new();
        for target in store.targets()? {
            if let Some(entry) = store.last_entry(&target)? {
                entries.push(entry);
            }
        }
        entries.sort_by(|a, b| a.target.id.cmp(&b.target.id));
        Ok(Self {
            entries,
            reviews: store.reviews()?,
            switches: setpoint_state::read_kill_switches(dir)?,
            now,
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
    pub fn load(store: &Store, target: &str, now: DateTime<Utc>) -> Result<Option<Self>> {
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

fn shell(title: &str, user: Option<&User>, body: &str) -> String {
    let who = match user {
        Some(u) if u.via == Via::Anonymous => {
            "<span class=\"muted\">anonymous viewer</span> <a href=\"/login\">sign in</a>"
                .to_string()
        }
        Some(u) => {
            let logout = if u.via == Via::Cookie {
                "<form class=\"inline\" method=\"post\" action=\"/logout\"><button>sign out</button></form>"
            } else {
                ""
            };
            format!(
                "<span id=\"user\">{} · {}</span> {logout}",
                escape(&u.name),
                u.role.as_str()
            )
        }
        None => String::new(),
    };
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{}</title><style>{STYLE}{PAGE_STYLE}</style></head><body><header><div><a href=\"/\"><strong>setpoint</strong></a> review</div><div>{who}</div></header>{body}</body></html>",
        escape(title)
    )
}

/// A page that only says something (errors).
pub fn message_page(status: u16, message: &str) -> String {
    shell(
        "setpoint",
        None,
        &format!(
            "<h1>{status}</h1><p class=\"error\" id=\"message\">{}</p><p><a href=\"/\">back</a></p>",
            escape(message)
        ),
    )
}

/// The sign-in form.
pub fn login_page(configured: bool, error: Option<&str>) -> String {
    let mut body = String::from("<h1>Sign in</h1>");
    if let Some(error) = error {
        let _ = write!(body, "<p class=\"error\">{}</p>", escape(error));
    }
    if !configured {
        body.push_str("<p class=\"muted\">No tokens are configured (serve.tokens_file): everyone may view, nobody may approve.</p>");
    }
    body.push_str("<form method=\"post\" action=\"/login\"><label>Access token <input type=\"password\" name=\"token\" id=\"token\" autocomplete=\"current-password\"></label> <button id=\"sign-in\">sign in</button></form>");
    shell("setpoint: sign in", None, &body)
}

fn flash_html(flash: Option<&str>) -> String {
    flash
        .filter(|f| !f.is_empty())
        .map(|f| format!("<div class=\"flash\" id=\"flash\">{}</div>", escape(f)))
        .unwrap_or_default()
}

fn option_list(name: &str, values: &BTreeSet<String>, selected: &str) -> String {
    let mut out = format!(
        "<label>{name} <select name=\"{name}\" id=\"filter-{name}\"><option value=\"\">all</option>"
    );
    for v in values {
        let sel = if v == selected { " selected" } else { "" };
        let _ = write!(out, "<option value=\"{0}\"{sel}>{0}</option>", escape(v));
    }
    out.push_str("</select></label>");
    out
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

fn verdict_html(verdict: &str) -> String {
    if verdict == "failed" {
        "<span class=\"error\">failed</span>".to_string()
    } else {
        format!("<span class=\"verdict-{0}\">{0}</span>", escape(verdict))
    }
}

/// Approve and reject forms for a pending review (approvers only).
fn decision_forms(review: &ReviewItem, user: &User) -> String {
    if user.role < Role::Approver {
        return "<span class=\"muted\">approvers decide</span>".to_string();
    }
    let csrf = escape(&user.csrf);
    format!(
        "<form class=\"inline\" method=\"post\" action=\"/reviews/{id}/approve\"><input type=\"hidden\" name=\"csrf\" value=\"{csrf}\"><textarea name=\"comment\" id=\"comment-{id}\" placeholder=\"comment\"></textarea><button id=\"approve-{id}\" formaction=\"/reviews/{id}/approve\">approve</button><button id=\"reject-{id}\" formaction=\"/reviews/{id}/reject\">reject</button></form>",
        id = review.id
    )
}

fn queue_table(reviews: &[&ReviewItem], user: &User, with_target: bool) -> String {
    if reviews.is_empty() {
        return "<p class=\"muted\" id=\"queue-empty\">nothing waits for review</p>".to_string();
    }
    let mut out = String::from("<table id=\"queue\"><thead><tr><th>id</th>");
    if with_target {
        out.push_str("<th>target</th>");
    }
    out.push_str("<th>loop</th><th>action</th><th>plan</th><th>conf</th><th>expires</th><th>decide</th></tr></thead><tbody>");
    for r in reviews {
        let _ = write!(
            out,
            "<tr class=\"review\" data-review=\"{}\"><td>{}</td>",
            r.id, r.id
        );
        if with_target {
            let _ = write!(
                out,
                "<td><a href=\"/targets/{}\">{}</a></td>",
                url_escape(&r.target),
                escape(&r.target)
            );
        }
        let _ = write!(
            out,
            "<td>{}</td><td>{}</td><td>{}</td><td>{:.2}</td><td>{}</td><td>{}</td></tr>",
            escape(&r.loop_name),
            escape(&r.action.to_string()),
            escape(&r.proposal.summary),
            r.classification.confidence,
            r.expires_at.format("%Y-%m-%d %H:%M UTC"),
            decision_forms(r, user)
        );
    }
    out.push_str("</tbody></table>");
    out
}

/// The kill switches that are on, each with a form to turn it off, and a form to turn one on
/// (approvers only; the CLI's `setpoint kill-switch` does the same).
fn switches_html(switches: &KillSwitches, user: &User) -> String {
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
    let approver = user.role >= Role::Approver;
    let csrf = escape(&user.csrf);
    let turn_on = if approver {
        format!(
            "<form id=\"kill-switch-on\" class=\"inline\" method=\"post\" action=\"/kill-switches\"><input type=\"hidden\" name=\"csrf\" value=\"{csrf}\"><input type=\"hidden\" name=\"state\" value=\"on\"><input name=\"switch\" id=\"kill-switch-name\" value=\"global\" title=\"global, loop:NAME or target:ID\"><button id=\"kill-switch-on-button\">turn on</button></form>"
        )
    } else {
        String::new()
    };
    if on.is_empty() {
        return format!(
            "<p id=\"kill-switches\" class=\"muted\">no kill switch is on</p>{turn_on}"
        );
    }
    let mut out = String::from(
        "<table id=\"kill-switches\"><thead><tr><th>switch</th><th>set by</th><th>at</th><th></th></tr></thead><tbody>",
    );
    for (label, key) in on {
        let (by, at) = switches
            .set_by
            .get(&key)
            .map(|s| (escape(&s.by), s.at.format("%Y-%m-%d %H:%M UTC").to_string()))
            .unwrap_or_else(|| {
                (
                    "<span class=\"muted\">not recorded</span>".into(),
                    String::new(),
                )
            });
        let turn_off = if approver {
            format!(
                "<form class=\"inline\" method=\"post\" action=\"/kill-switches\"><input type=\"hidden\" name=\"csrf\" value=\"{csrf}\"><input type=\"hidden\" name=\"state\" value=\"off\"><input type=\"hidden\" name=\"switch\" value=\"{key}\"><button>turn off</button></form>",
                key = escape(&key)
            )
        } else {
            String::new()
        };
        let _ = write!(
            out,
            "<tr><td class=\"verdict-block\">{}</td><td>{by}</td><td>{at}</td><td>{turn_off}</td></tr>",
            escape(&label)
        );
    }
    out.push_str("</tbody></table>");
    out.push_str(&turn_on);
    out
}

/// The index page: recommendations (filtered), the review queue, the kill switches.
pub fn index(data: &IndexData, filters: &Filters, user: &User, flash: Option<&str>) -> String {
    let technologies: BTreeSet<String> = data
        .entries
        .iter()
        .map(|e| e.target.technology.clone())
        .collect();
    let classes: BTreeSet<String> = data.entries.iter().map(class_of).collect();
    let verdicts: BTreeSet<String> = data.entries.iter().map(verdict_of).collect();
    let mut body = flash_html(flash);
    body.push_str("<h1>Recommendations</h1>");
    let _ = write!(
        body,
        "<form class=\"filters\" method=\"get\" action=\"/\">{}{}{}<button id=\"apply-filters\">filter</button> <a href=\"/\">clear</a></form>",
        option_list("technology", &technologies, &filters.technology),
        option_list("class", &classes, &filters.class),
        option_list("verdict", &verdicts, &filters.verdict)
    );
    let shown: Vec<&JournalEntry> = data
        .entries
        .iter()
        .filter(|e| filters.technology.is_empty() || e.target.technology == filters.technology)
        .filter(|e| filters.class.is_empty() || class_of(e) == filters.class)
        .filter(|e| filters.verdict.is_empty() || verdict_of(e) == filters.verdict)
        .collect();
    let _ = write!(
        body,
        "<p class=\"muted\" id=\"shown\">{} of {} targets</p>",
        shown.len(),
        data.entries.len()
    );
    body.push_str("<table id=\"recommendations\"><thead><tr><th>target</th><th>tech</th><th>loop · cycle</th><th>class</th><th>conf</th><th>verdict</th><th>proposed change</th><th>top reason</th><th>four weeks</th></tr></thead><tbody>");
    for e in &shown {
        let confidence = e
            .classification
            .as_ref()
            .map(|c| format!("{:.2}", c.confidence))
            .unwrap_or_default();
        let change = e
            .decision
            .as_ref()
            .and_then(|d| d.proposal)
            .and_then(|a| e.proposals.iter().find(|p| p.action == a))
            .map(|p| escape(&p.summary))
            .unwrap_or_else(|| "—".into());
        let reason = match (
            &e.error,
            e.decision.as_ref().and_then(|d| d.reasons.first()),
        ) {
            (Some(error), _) => format!("<span class=\"error\">{}</span>", escape(&error.message)),
            (None, Some(r)) => format!("<code>{}</code> {}", escape(&r.code), escape(&r.message)),
            (None, None) => "—".into(),
        };
        let _ = write!(
            body,
            "<tr class=\"target\" data-target=\"{id}\"><td><a href=\"/targets/{url}\">{id}</a></td><td>{}</td><td>{} · {}</td><td>{}</td><td>{confidence}</td><td>{}</td><td>{change}</td><td>{reason}</td><td>{}</td></tr>",
            escape(&e.target.technology),
            escape(&e.loop_name),
            e.cycle,
            escape(&class_of(e)),
            verdict_html(&verdict_of(e)),
            chart_svg(&e.features, 160, 48, false),
            id = escape(&e.target.id),
            url = url_escape(&e.target.id),
        );
    }
    body.push_str("</tbody></table>");
    let pending: Vec<&ReviewItem> = data
        .reviews
        .iter()
        .filter(|r| r.awaits_decision(data.now))
        .collect();
    let _ = write!(
        body,
        "<h2>Review queue (<span id=\"queue-depth\">{}</span>)</h2>",
        pending.len()
    );
    body.push_str(&queue_table(&pending, user, true));
    body.push_str("<h2>Kill switches</h2>");
    body.push_str(&switches_html(&data.switches, user));
    shell("setpoint review", Some(user), &body)
}

fn resources_rows(before: &Resources, after: &Resources) -> String {
    let mut rows = vec![
        (
            "CPU".to_string(),
            format_cpu(before.cpu_millicores),
            format_cpu(after.cpu_millicores),
        ),
        (
            "memory".to_string(),
            format_bytes(before.memory_bytes),
            format_bytes(after.memory_bytes),
        ),
        (
            "replicas".to_string(),
            before.replicas.to_string(),
            after.replicas.to_string(),
        ),
    ];
    let names: BTreeSet<&String> = before
        .parameters
        .keys()
        .chain(after.parameters.keys())
        .collect();
    for name in names {
        rows.push((
            name.clone(),
            before.parameters.get(name).cloned().unwrap_or("—".into()),
            after.parameters.get(name).cloned().unwrap_or("—".into()),
        ));
    }
    let mut out = String::new();
    for (name, b, a) in rows {
        let changed = if a != b { " class=\"changed\"" } else { "" };
        let _ = write!(
            out,
            "<tr><td>{}</td><td>{}</td><td{changed}>{}</td></tr>",
            escape(&name),
            escape(&b),
            escape(&a)
        );
    }
    out
}

/// One target's page: the chart and the classifier's view, the proposals as before/after
/// diffs, the policy's reasons, its reviews, the full trace.
pub fn target(data: &TargetData, user: &User, flash: Option<&str>) -> String {
    let e = &data.entry;
    let mut body = flash_html(flash);
    let _ = write!(
        body,
        "<h1 id=\"target-id\">{}</h1><p class=\"muted\">{} · loop {} · cycle {} · {} · plugin {}</p>",
        escape(&e.target.id),
        escape(&e.target.technology),
        escape(&e.loop_name),
        e.cycle,
        e.at.format("%Y-%m-%d %H:%M UTC"),
        escape(&e.plugin)
    );
    if let Some(error) = &e.error {
        let _ = write!(
            body,
            "<p class=\"error\">failed at {:?}: {}</p>",
            error.stage,
            escape(&error.message)
        );
    }
    body.push_str("<h2>Four weeks</h2>");
    body.push_str(&chart_svg(&e.features, 640, 240, true));
    body.push_str("<h2>Classifier</h2>");
    match &e.classification {
        Some(c) => {
            let _ = write!(
                body,
                "<p id=\"classification\"><strong>{}</strong> · confidence {:.2} · {} {} · stable for {} cycle(s)</p><p><code>{}</code> {}</p>",
                escape(&c.class.to_string()),
                c.confidence,
                escape(&c.model),
                escape(&c.model_version),
                e.stable_cycles,
                escape(&c.explanation.code),
                escape(&c.explanation.rule)
            );
            if !c.explanation.evidence.is_empty() {
                body.push_str("<table><thead><tr><th>feature</th><th>value</th><th>test</th><th>held</th></tr></thead><tbody>");
                for ev in &c.explanation.evidence {
                    let _ = write!(
                        body,
                        "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                        escape(&ev.feature),
                        ev.value
                            .map(|v| format!("{v:.3}"))
                            .unwrap_or("missing".into()),
                        escape(&ev.test),
                        if ev.held { "yes" } else { "no" }
                    );
                }
                body.push_str("</tbody></table>");
            }
        }
        None => body.push_str("<p class=\"muted\">not reached</p>"),
    }
    body.push_str("<h2>Proposals</h2>");
    if e.proposals.is_empty() {
        body.push_str("<p class=\"muted\">none</p>");
    }
    let chosen = e.decision.as_ref().and_then(|d| d.proposal);
    for p in &e.proposals {
        let mark = if Some(p.action) == chosen {
            " <span class=\"verdict-act\">(chosen by the policy)</span>"
        } else {
            ""
        };
        let _ = write!(
            body,
            "<h3>{}{mark}</h3><p>{} · risk {:?}</p><p class=\"muted\">{}</p><table class=\"diff\"><thead><tr><th></th><th>before</th><th>after</th></tr></thead><tbody>{}</tbody></table><ol>",
            escape(&p.action.to_string()),
            escape(&p.summary),
            p.risk,
            escape(&p.rationale),
            resources_rows(&p.before, &p.after)
        );
        for op in &p.operations {
            let _ = write!(body, "<li>{}</li>", escape(&op.to_string()));
        }
        body.push_str("</ol>");
    }
    body.push_str("<h2>Policy</h2>");
    match &e.decision {
        Some(d) => {
            let _ = write!(
                body,
                "<p>verdict {}</p><ul id=\"reasons\">",
                verdict_html(&d.verdict.to_string())
            );
            for r in &d.reasons {
                let _ = write!(
                    body,
                    "<li><code>{}</code> {}</li>",
                    escape(&r.code),
                    escape(&r.message)
                );
            }
            body.push_str("</ul>");
        }
        None => body.push_str("<p class=\"muted\">not reached</p>"),
    }
    body.push_str("<h2>Reviews</h2>");
    let pending: Vec<&ReviewItem> = data
        .reviews
        .iter()
        .filter(|r| r.awaits_decision(data.now))
        .collect();
    body.push_str(&queue_table(&pending, user, false));
    let decided: Vec<&ReviewItem> = data
        .reviews
        .iter()
        .filter(|r| !r.awaits_decision(data.now))
        .collect();
    if !decided.is_empty() {
        body.push_str("<table id=\"decided\"><thead><tr><th>id</th><th>action</th><th>status</th><th>by</th><th>at</th><th>comment</th></tr></thead><tbody>");
        for r in decided {
            let _ = write!(
                body,
                "<tr><td>{}</td><td>{}</td><td class=\"status\">{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                r.id,
                escape(&r.action.to_string()),
                escape(&r.status.to_string()),
                escape(r.decided_by.as_deref().unwrap_or("")),
                r.decided_at
                    .map(|a| a.format("%Y-%m-%d %H:%M UTC").to_string())
                    .unwrap_or_default(),
                escape(r.comment.as_deref().unwrap_or(""))
            );
        }
        body.push_str("</tbody></table>");
    }
    body.push_str("<h2>Full trace</h2>");
    let _ = write!(
        body,
        "<pre id=\"trace\">{}</pre>",
        escape(&crate::explain::render(e))
    );
    for (title, value) in [
        ("policy input", &e.policy_input),
        ("policy output", &e.policy_output),
    ] {
        if let Some(value) = value {
            let text = serde_json::to_string_pretty(value).unwrap_or_default();
            let _ = write!(
                body,
                "<details><summary>{title}</summary><pre>{}</pre></details>",
                escape(&text)
            );
        }
    }
    shell(&format!("setpoint: {}", e.target.id), Some(user), &body)
}
