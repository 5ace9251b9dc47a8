//! Building proposals: the operations of a plan, its before and after, and its one-line summary.
//!
//! Every adapter's plan is some of: resize the nodes, set parameters that follow the size,
//! change the node count, rebalance data, restart. [`ProposalBuilder`] records each change once
//! and derives from it the operation, the `after` resources, the summary
//! (`8 vCPU / 32 GiB → 4 vCPU / 16 GiB, shared_buffers 8GB → 4GB`) and the risk, so the four
//! cannot disagree.
//!
//! ```
//! use setpoint_sdk::proposal::ProposalBuilder;
//! use setpoint_sdk::size::GIB;
//! use setpoint_sdk::types::{ActionKind, Resources};
//!
//! let current = Resources {
//!     cpu_millicores: 8000, memory_bytes: 32 * GIB, replicas: 1,
//!     parameters: vec![("shared_buffers".into(), "8GB".into())],
//! };
//! let mut plan = ProposalBuilder::new(ActionKind::ScaleDown, &current);
//! plan.resize(4000, 16 * GIB);
//! plan.set_parameter("shared_buffers", "4GB", true);
//! let proposal = plan.build("one step down");
//! assert_eq!(proposal.summary, "8 vCPU / 32 GiB → 4 vCPU / 16 GiB, shared_buffers 8GB → 4GB");
//! ```

use crate::size::{format_bytes, format_cpu};
use crate::types::{
    ActionKind, Operation, ParameterOp, Proposal, RebalanceOp, ReplicasOp, ResizeOp, Resources,
    RestartOp, Risk,
};

/// A parameter's value in `resources`, if set.
pub fn parameter<'a>(resources: &'a Resources, name: &str) -> Option<&'a str> {
    resources
        .parameters
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// Sets a parameter in `resources`, adding it when absent.
pub fn set_parameter(resources: &mut Resources, name: &str, value: &str) {
    match resources.parameters.iter_mut().find(|(k, _)| k == name) {
        Some(entry) => entry.1 = value.to_string(),
        None => resources
            .parameters
            .push((name.to_string(), value.to_string())),
    }
}

/// What `proposal`'s operations make of `before`: the size after, as the host derives it (a
/// resize sets CPU and memory, a set-replicas the node count, a set-parameter its value).
pub fn after(before: &Resources, proposal: &Proposal) -> Resources {
    let mut out = before.clone();
    for op in &proposal.operations {
        match op {
            Operation::Resize(r) => {
                out.cpu_millicores = r.cpu_millicores;
                out.memory_bytes = r.memory_bytes;
            }
            Operation::SetParameter(p) => set_parameter(&mut out, &p.name, &p.value),
            Operation::SetReplicas(r) => out.replicas = r.replicas,
            Operation::Restart(_) | Operation::Rebalance(_) => {}
        }
    }
    out
}

fn risk_rank(risk: Risk) -> u8 {
    match risk {
        Risk::Low => 0,
        Risk::Medium => 1,
        Risk::High => 2,
    }
}

/// A proposal under construction. Changes are applied in the order they are made, and the
/// operations keep that order: it is the order an actuator runs them in.
#[derive(Debug, Clone)]
pub struct ProposalBuilder<'a> {
    action: ActionKind,
    before: &'a Resources,
    /// CPU, memory and node count after the changes made so far; parameters after them are in
    /// `operations` (no copy of the resources: a plan is built on every call, in the sandbox).
    cpu_millicores: u64,
    memory_bytes: u64,
    replicas: u32,
    operations: Vec<Operation>,
    /// Summary parts after the size: `shared_buffers 8GB → 4GB`, `3 brokers → 4 brokers`.
    changes: Vec<String>,
    notes: Vec<String>,
    risk: Risk,
    restart_needed: bool,
}

impl<'a> ProposalBuilder<'a> {
    /// A plan for `action` starting from `before`; with no change it is empty and low-risk.
    pub fn new(action: ActionKind, before: &'a Resources) -> Self {
        Self {
            action,
            before,
            cpu_millicores: before.cpu_millicores,
            memory_bytes: before.memory_bytes,
            replicas: before.replicas,
            operations: Vec::with_capacity(6),
            changes: Vec::new(),
            notes: Vec::new(),
            risk: Risk::Low,
            restart_needed: false,
        }
    }

    /// A parameter's value after the changes made so far, if set.
    pub fn parameter(&self, name: &str) -> Option<&str> {
        self.operations
            .iter()
            .rev()
            .find_map(|op| match op {
                Operation::SetParameter(p) if p.name == name => Some(p.value.as_str()),
                _ => None,
            })
            .or_else(|| parameter(self.before, name))
    }

    /// Resizes every node to `cpu_millicores` and `memory_bytes`.
    pub fn resize(&mut self, cpu_millicores: u64, memory_bytes: u64) -> &mut Self {
        self.cpu_millicores = cpu_millicores;
        self.memory_bytes = memory_bytes;
        self.operations.push(Operation::Resize(ResizeOp {
            cpu_millicores,
            memory_bytes,
        }));
        self
    }

    /// Sets a parameter, named in the summary. Returns whether it changed: setting the value it
    /// already has is no operation at all.
    pub fn set_parameter(&mut self, name: &str, value: &str, requires_restart: bool) -> bool {
        self.change_parameter(name, value, requires_restart, true)
    }

    /// Sets a parameter without naming it in the summary (a planner hint that would crowd the
    /// one line); it is still an operation and in `after`. Returns whether it changed.
    pub fn set_parameter_quietly(
        &mut self,
        name: &str,
        value: &str,
        requires_restart: bool,
    ) -> bool {
        self.change_parameter(name, value, requires_restart, false)
    }

    fn change_parameter(
        &mut self,
        name: &str,
        value: &str,
        requires_restart: bool,
        shown: bool,
    ) -> bool {
        let before = parameter(self.before, name);
        if before == Some(value) {
            return false;
        }
        if shown {
            let before = before.unwrap_or("unset");
            let mut change = String::with_capacity(name.len() + before.len() + value.len() + 6);
            change.push_str(name);
            change.push(' ');
            change.push_str(before);
            change.push_str(" → ");
            change.push_str(value);
            self.changes.push(change);
        }
        self.operations.push(Operation::SetParameter(ParameterOp {
            name: name.to_string(),
            value: value.to_string(),
            requires_restart,
        }));
        if requires_restart {
            self.restart_needed = true;
            self.raise_risk(Risk::Medium);
        }
        true
    }

    /// Whether a parameter set so far takes effect only after a restart.
    pub fn restart_needed(&self) -> bool {
        self.restart_needed
    }

    /// Changes the node count; `noun` names the nodes in the summary (`brokers`).
    pub fn set_replicas(&mut self, replicas: u32, noun: &str) -> &mut Self {
        self.changes.push(format!(
            "{} {noun} → {replicas} {noun}",
            self.before.replicas
        ));
        self.replicas = replicas;
        self.operations
            .push(Operation::SetReplicas(ReplicasOp { replicas }));
        self
    }

    /// Moves data (partitions, shards) between nodes.
    pub fn rebalance(&mut self, reason: &str) -> &mut Self {
        self.operations.push(Operation::Rebalance(RebalanceOp {
            reason: reason.to_string(),
        }));
        self
    }

    /// Restarts the nodes so the parameters set take effect.
    pub fn restart(&mut self, reason: &str) -> &mut Self {
        self.operations.push(Operation::Restart(RestartOp {
            reason: reason.to_string(),
        }));
        self.raise_risk(Risk::Medium);
        self
    }

    /// Adds a note to the rationale (a floor, a cap, the evidence behind a parameter).
    pub fn note(&mut self, note: impl Into<String>) -> &mut Self {
        self.notes.push(note.into());
        self
    }

    /// Raises the risk to at least `risk` (a restart already makes it medium).
    pub fn raise_risk(&mut self, risk: Risk) -> &mut Self {
        if risk_rank(risk) > risk_rank(self.risk) {
            self.risk = risk;
        }
        self
    }

    /// The summary: the size change when there is one, then every shown change, in order.
    pub fn summary(&self) -> String {
        let mut out = String::with_capacity(96);
        if self.cpu_millicores != self.before.cpu_millicores
            || self.memory_bytes != self.before.memory_bytes
        {
            out.push_str(&format_cpu(self.before.cpu_millicores));
            out.push_str(" / ");
            out.push_str(&format_bytes(self.before.memory_bytes));
            out.push_str(" → ");
            out.push_str(&format_cpu(self.cpu_millicores));
            out.push_str(" / ");
            out.push_str(&format_bytes(self.memory_bytes));
        }
        for change in &self.changes {
            if !out.is_empty() {
                out.push_str(", ");
            }
            out.push_str(change);
        }
        out
    }

    /// The proposal, with `why` followed by the notes as its rationale.
    pub fn build(self, why: &str) -> Proposal {
        let summary = self.summary();
        let notes: usize = self.notes.iter().map(|n| n.len() + 2).sum();
        let mut rationale = String::with_capacity(why.len() + notes);
        rationale.push_str(why);
        for note in &self.notes {
            rationale.push_str("; ");
            rationale.push_str(note);
        }
        Proposal {
            action: self.action,
            summary,
            operations: self.operations,
            risk: self.risk,
            rationale,
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::size::GIB;

    fn node() -> Resources {
        Resources {
            cpu_millicores: 4000,
            memory_bytes: 16 * GIB,
            replicas: 3,
            parameters: vec![("maxmemory".into(), "11gb".into())],
        }
    }

    #[test]
    fn unchanged_parameters_are_no_operation() {
        let node = node();
        let mut plan = ProposalBuilder::new(ActionKind::ScaleUp, &node);
        assert!(!plan.set_parameter("maxmemory", "11gb", false));
        assert!(plan.set_parameter("maxclients", "15000", false));
        let p = plan.build("why");
        assert_eq!(p.summary, "maxclients unset → 15000");
        assert_eq!(p.operations.len(), 1);
        assert_eq!(p.risk, Risk::Low);
        assert_eq!(after(&node, &p).parameters.len(), 2);
    }

    #[test]
    fn replicas_and_rebalance_in_order_with_notes() {
        let node = node();
        let mut plan = ProposalBuilder::new(ActionKind::ScaleUp, &node);
        plan.set_replicas(4, "brokers")
            .rebalance("spread partitions")
            .raise_risk(Risk::Medium)
            .raise_risk(Risk::Low)
            .note("lag grew every week");
        let p = plan.build("add a broker");
        assert_eq!(p.summary, "3 brokers → 4 brokers");
        assert_eq!(after(&node, &p).replicas, 4);
        assert!(matches!(
            p.operations[0],
            Operation::SetReplicas(ReplicasOp { replicas: 4 })
        ));
        assert!(matches!(p.operations[1], Operation::Rebalance(_)));
        assert_eq!(p.risk, Risk::Medium);
        assert_eq!(p.rationale, "add a broker; lag grew every week");
    }

    #[test]
    fn restart_parameters_raise_the_risk_and_quiet_ones_stay_out_of_the_summary() {
        let node = node();
        let mut plan = ProposalBuilder::new(ActionKind::ScaleDown, &node);
        plan.resize(2000, 8 * GIB);
        plan.set_parameter_quietly("hint", "1", false);
        plan.set_parameter("maxmemory", "5gb", true);
        assert!(plan.restart_needed());
        let p = plan.build("down");
        assert_eq!(
            p.summary,
            "4 vCPU / 16 GiB → 2 vCPU / 8 GiB, maxmemory 11gb → 5gb"
        );
        assert_eq!(p.risk, Risk::Medium);
        let after = after(&node, &p);
        assert_eq!(parameter(&after, "hint"), Some("1"));
        assert_eq!((after.cpu_millicores, after.memory_bytes), (2000, 8 * GIB));
        assert_eq!(p.operations.len(), 3);
    }
}
