//! Sizes: units, their display, and a ladder of standard sizes to step along.
//!
//! Every adapter resizes in steps and must explain the floors and caps that stopped a step, so
//! stepping, clamping to the loop's bounds and the wording of both live here once. A step goes
//! to the neighbouring rung of a ladder of standard sizes rather than multiplying the current
//! size, so an odd size (6 vCPU) lands back on a size the platform offers (8 vCPU) instead of
//! drifting further off it (12 vCPU).
//!
//! ```
//! use setpoint_sdk::size::{SizeLadder, GIB};
//! use setpoint_sdk::types::{ActionKind, Bounds, Resources};
//!
//! let current = Resources { cpu_millicores: 8000, memory_bytes: 32 * GIB, replicas: 1, parameters: vec![] };
//! let bounds = Bounds {
//!     min_cpu_millicores: 1000, max_cpu_millicores: 64_000,
//!     min_memory_bytes: 2 * GIB, max_memory_bytes: 512 * GIB,
//! };
//! let step = SizeLadder::standard().step(&current, ActionKind::ScaleDown, &bounds).unwrap();
//! assert_eq!((step.cpu_millicores, step.memory_bytes), (4000, 16 * GIB));
//! assert_eq!(step.description, "one step down: half the CPU and memory");
//! ```

use crate::types::{ActionKind, Bounds, Resources};

/// Bytes in a mebibyte.
pub const MIB: u64 = 1024 * 1024;
/// Bytes in a gibibyte.
pub const GIB: u64 = 1024 * MIB;

/// A number with at most two decimals and no trailing zeros: `4`, `0.5`, `1.25`.
pub fn trim(value: f64) -> String {
    let hundredths = (value * 100.0).round();
    if !hundredths.is_finite() || hundredths.abs() >= 1e15 {
        let text = format!("{value:.2}");
        return text.trim_end_matches('0').trim_end_matches('.').to_string();
    }
    let mut out = String::with_capacity(12);
    if hundredths < 0.0 {
        out.push('-');
    }
    // Integer arithmetic: plugins format sizes on every call, and float formatting is by far
    // the costliest part of building a proposal inside the sandbox.
    push_hundredths(&mut out, hundredths.abs() as u64);
    out
}

/// Appends `n` in decimal. Formatting through `core::fmt` costs thousands of instructions per
/// number inside the sandbox, and every proposal formats a dozen sizes.
pub fn push_u64(out: &mut String, n: u64) {
    let mut digits = [0u8; 20];
    let mut start = digits.len();
    let mut rest = n;
    loop {
        start -= 1;
        digits[start] = b'0' + (rest % 10) as u8;
        rest /= 10;
        if rest == 0 {
            break;
        }
    }
    for &d in &digits[start..] {
        out.push(char::from(d));
    }
}

/// Writes `hundredths / 100` with at most two decimals and no trailing zeros.
fn push_hundredths(out: &mut String, hundredths: u64) {
    let (whole, fraction) = (hundredths / 100, hundredths % 100);
    push_u64(out, whole);
    if fraction != 0 {
        out.push('.');
        out.push(char::from(b'0' + (fraction / 10) as u8));
        if fraction % 10 != 0 {
            out.push(char::from(b'0' + (fraction % 10) as u8));
        }
    }
}

/// `numerator / denominator` with at most two decimals, rounded half up, no trailing zeros.
fn ratio_text(numerator: u64, denominator: u64) -> String {
    let mut out = String::with_capacity(16);
    let hundredths = (u128::from(numerator) * 100 + u128::from(denominator) / 2)
        / u128::from(denominator.max(1));
    push_hundredths(&mut out, u64::try_from(hundredths).unwrap_or(u64::MAX));
    out
}

/// CPU for humans: `4 vCPU`, `0.5 vCPU`.
pub fn format_cpu(millicores: u64) -> String {
    let mut out = ratio_text(millicores, 1000);
    out.push_str(" vCPU");
    out
}

/// Memory for humans: `16 GiB`, `1.5 GiB`, `512 MiB`.
pub fn format_bytes(bytes: u64) -> String {
    if bytes >= GIB {
        let mut out = ratio_text(bytes, GIB);
        out.push_str(" GiB");
        out
    } else {
        let mut out = String::with_capacity(12);
        push_u64(&mut out, bytes / MIB);
        out.push_str(" MiB");
        out
    }
}

/// A size in the common config syntax of databases (`8GB`, `512MB` for PostgreSQL, lowercase
/// for Redis): whole gibibytes when exact, else whole mebibytes (rounded down).
pub fn config_size(bytes: u64, gb: &str, mb: &str) -> String {
    let mut out = String::with_capacity(12);
    if bytes.is_multiple_of(GIB) {
        push_u64(&mut out, bytes / GIB);
        out.push_str(gb);
    } else {
        push_u64(&mut out, bytes / MIB);
        out.push_str(mb);
    }
    out
}

/// Parses the sizes [`config_size`] writes, and plain byte counts: `8GB`, `512mb`, `64kB`,
/// `1073741824`. `None` when the text is not a size.
pub fn parse_config_size(text: &str) -> Option<u64> {
    let text = text.trim();
    let digits = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let number: u64 = text[..digits].parse().ok()?;
    let unit = match text[digits..].trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" => 1024,
        "m" | "mb" => MIB,
        "g" | "gb" => GIB,
        "t" | "tb" => 1024 * GIB,
        _ => return None,
    };
    number.checked_mul(unit)
}

/// One dimension's standard sizes, ascending.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ladder {
    rungs: Vec<u64>,
}

impl Ladder {
    /// A ladder of the given sizes (sorted and deduplicated here; zero is dropped).
    pub fn new(mut rungs: Vec<u64>) -> Self {
        rungs.retain(|&r| r > 0);
        rungs.sort_unstable();
        rungs.dedup();
        Self { rungs }
    }

    /// Every power of two times `from`, from `from` up to `to` inclusive.
    pub fn doubling(from: u64, to: u64) -> Self {
        let mut rungs = Vec::new();
        let mut rung = from.max(1);
        while rung <= to {
            rungs.push(rung);
            match rung.checked_mul(2) {
                Some(next) => rung = next,
                None => break,
            }
        }
        Self::new(rungs)
    }

    /// The rungs, ascending.
    pub fn rungs(&self) -> &[u64] {
        &self.rungs
    }

    /// The next rung in `action`'s direction from `value`; `value` itself when the ladder has
    /// no rung that way.
    pub fn step(&self, value: u64, action: ActionKind) -> u64 {
        match action {
            ActionKind::ScaleUp => self.rungs.iter().copied().find(|&r| r > value),
            ActionKind::ScaleDown => self.rungs.iter().rev().copied().find(|&r| r < value),
        }
        .unwrap_or(value)
    }
}

/// Holds `value` within `[min, max]`; when it had to, says so in `notes` (`CPU held at the
/// floor of 1 vCPU`), because a hidden floor is a recommendation nobody can explain.
pub fn clamp(
    value: u64,
    min: u64,
    max: u64,
    what: &str,
    show: impl Fn(u64) -> String,
    notes: &mut Vec<String>,
) -> u64 {
    if value < min {
        notes.push(format!("{what} held at the floor of {}", show(min)));
        min
    } else if value > max {
        notes.push(format!("{what} held at the cap of {}", show(max)));
        max
    } else {
        value
    }
}

/// A node size one step away from the current one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    /// CPU after the step, within the bounds.
    pub cpu_millicores: u64,
    /// Memory after the step, within the bounds.
    pub memory_bytes: u64,
    /// What the step does, in words, for the rationale.
    pub description: String,
    /// The floors and caps that applied, for the rationale.
    pub notes: Vec<String>,
}

/// What a step along the ladder does, in words: `one step down: half the CPU and memory`, or
/// `one step up the size ladder: CPU ×1.33, memory ×1.33` when the rungs are not a doubling.
/// Worded from the rungs, before any clamp: the clamp has its own note.
fn describe(action: ActionKind, from: (u64, u64), to: (u64, u64)) -> String {
    let (direction, word) = match action {
        ActionKind::ScaleDown => ("down", "half"),
        ActionKind::ScaleUp => ("up", "double"),
    };
    let exact = |from: u64, to: u64| match action {
        ActionKind::ScaleDown => from == to.saturating_mul(2),
        ActionKind::ScaleUp => to == from.saturating_mul(2),
    };
    match (
        exact(from.0, to.0),
        exact(from.1, to.1),
        from.0 == to.0,
        from.1 == to.1,
    ) {
        (true, true, _, _) => ["one step ", direction, ": ", word, " the CPU and memory"].concat(),
        (_, true, true, _) => ["one step ", direction, ": ", word, " the memory"].concat(),
        (true, _, _, true) => ["one step ", direction, ": ", word, " the CPU"].concat(),
        _ => {
            let ratio = |from: u64, to: u64| trim(to as f64 / from.max(1) as f64);
            format!(
                "one step {direction} the size ladder: CPU ×{}, memory ×{}",
                ratio(from.0, to.0),
                ratio(from.1, to.1)
            )
        }
    }
}

/// The standard sizes of a node's CPU and memory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SizeLadder {
    /// CPU sizes, millicores.
    pub cpu: Ladder,
    /// Memory sizes, bytes.
    pub memory: Ladder,
}

impl SizeLadder {
    /// Powers of two: 0.25 to 256 vCPU and 256 MiB to 4 TiB, so that a step halves or doubles
    /// both and keeps the node's memory per vCPU. Built once per plugin instance.
    pub fn standard() -> &'static Self {
        static STANDARD: std::sync::LazyLock<SizeLadder> = std::sync::LazyLock::new(|| {
            crate::arena::persistent(|| SizeLadder {
                cpu: Ladder::doubling(250, 256_000),
                memory: Ladder::doubling(256 * MIB, 4096 * GIB),
            })
        });
        &STANDARD
    }

    /// CPU and memory one rung in `action`'s direction, each held within `bounds`; `None` when
    /// the bounds leave both unchanged (nothing feasible that way).
    pub fn step(&self, current: &Resources, action: ActionKind, bounds: &Bounds) -> Option<Step> {
        self.step_dimensions(current, action, bounds, true, true)
    }

    /// Memory one rung in `action`'s direction, CPU unchanged (for memory-bound technologies);
    /// `None` when the bounds leave the memory unchanged.
    pub fn step_memory(
        &self,
        current: &Resources,
        action: ActionKind,
        bounds: &Bounds,
    ) -> Option<Step> {
        self.step_dimensions(current, action, bounds, false, true)
    }

    fn step_dimensions(
        &self,
        current: &Resources,
        action: ActionKind,
        bounds: &Bounds,
        cpu: bool,
        memory: bool,
    ) -> Option<Step> {
        let mut notes = Vec::new();
        let rung_cpu = if cpu {
            self.cpu.step(current.cpu_millicores, action)
        } else {
            current.cpu_millicores
        };
        let rung_memory = if memory {
            self.memory.step(current.memory_bytes, action)
        } else {
            current.memory_bytes
        };
        let description = describe(
            action,
            (current.cpu_millicores, current.memory_bytes),
            (rung_cpu, rung_memory),
        );
        let cpu_millicores = if cpu {
            clamp(
                rung_cpu,
                bounds.min_cpu_millicores,
                bounds.max_cpu_millicores,
                "CPU",
                format_cpu,
                &mut notes,
            )
        } else {
            current.cpu_millicores
        };
        let memory_bytes = if memory {
            clamp(
                rung_memory,
                bounds.min_memory_bytes,
                bounds.max_memory_bytes,
                "memory",
                format_bytes,
                &mut notes,
            )
        } else {
            current.memory_bytes
        };
        if cpu_millicores == current.cpu_millicores && memory_bytes == current.memory_bytes {
            return None;
        }
        Some(Step {
            cpu_millicores,
            memory_bytes,
            description,
            notes,
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn resources(cpu: u64, memory: u64) -> Resources {
        Resources {
            cpu_millicores: cpu,
            memory_bytes: memory,
            replicas: 1,
            parameters: vec![],
        }
    }

    fn bounds() -> Bounds {
        Bounds {
            min_cpu_millicores: 1000,
            max_cpu_millicores: 64_000,
            min_memory_bytes: 2 * GIB,
            max_memory_bytes: 512 * GIB,
        }
    }

    #[test]
    fn ladders_step_to_the_neighbouring_rung() {
        let ladder = Ladder::new(vec![4, 1, 2, 2, 0, 8]);
        assert_eq!(ladder.rungs(), &[1, 2, 4, 8]);
        assert_eq!(ladder.step(2, ActionKind::ScaleUp), 4);
        assert_eq!(ladder.step(3, ActionKind::ScaleUp), 4);
        assert_eq!(ladder.step(3, ActionKind::ScaleDown), 2);
        assert_eq!(ladder.step(8, ActionKind::ScaleUp), 8, "top of the ladder");
        assert_eq!(ladder.step(1, ActionKind::ScaleDown), 1, "bottom");
        assert_eq!(Ladder::doubling(250, 2000).rungs(), &[250, 500, 1000, 2000]);
        assert_eq!(Ladder::doubling(1 << 62, u64::MAX).rungs().len(), 2);
    }

    #[test]
    fn a_step_keeps_the_shape_and_is_clamped_with_notes() {
        let ladder = SizeLadder::standard();
        let up = ladder
            .step(&resources(8000, 32 * GIB), ActionKind::ScaleUp, &bounds())
            .unwrap();
        assert_eq!((up.cpu_millicores, up.memory_bytes), (16_000, 64 * GIB));
        assert_eq!(up.description, "one step up: double the CPU and memory");
        assert!(up.notes.is_empty());

        let floor = ladder
            .step(&resources(1000, 3 * GIB), ActionKind::ScaleDown, &bounds())
            .unwrap();
        assert_eq!((floor.cpu_millicores, floor.memory_bytes), (1000, 2 * GIB));
        assert_eq!(floor.notes, vec!["CPU held at the floor of 1 vCPU"]);

        let odd = ladder
            .step(&resources(6000, 24 * GIB), ActionKind::ScaleUp, &bounds())
            .unwrap();
        assert_eq!((odd.cpu_millicores, odd.memory_bytes), (8000, 32 * GIB));
        assert_eq!(
            odd.description,
            "one step up the size ladder: CPU ×1.33, memory ×1.33"
        );

        assert!(
            ladder
                .step(&resources(1000, 2 * GIB), ActionKind::ScaleDown, &bounds())
                .is_none()
        );
        let memory = ladder
            .step_memory(&resources(2000, 8 * GIB), ActionKind::ScaleUp, &bounds())
            .unwrap();
        assert_eq!(
            (memory.cpu_millicores, memory.memory_bytes),
            (2000, 16 * GIB)
        );
        assert_eq!(memory.description, "one step up: double the memory");
    }

    #[test]
    fn sizes_format_and_parse() {
        assert_eq!(format_cpu(500), "0.5 vCPU");
        assert_eq!(format_cpu(250), "0.25 vCPU");
        assert_eq!(format_cpu(1_005), "1.01 vCPU", "rounded half up");
        assert_eq!(format_cpu(0), "0 vCPU");
        assert_eq!(format_bytes(u64::MAX), "17179869184 GiB");
        assert_eq!(trim(1.333), "1.33");
        assert_eq!(trim(2.0), "2");
        assert_eq!(trim(0.1), "0.1");
        assert_eq!(trim(-0.5), "-0.5");
        assert_eq!(trim(f64::NAN), "NaN");
        let mut digits = String::new();
        for n in [0, 7, 10, 1_234_567_890, u64::MAX] {
            digits.clear();
            push_u64(&mut digits, n);
            assert_eq!(digits, n.to_string());
        }
        assert_eq!(format_cpu(16_000), "16 vCPU");
        assert_eq!(format_bytes(512 * MIB), "512 MiB");
        assert_eq!(format_bytes(3 * GIB / 2), "1.5 GiB");
        assert_eq!(config_size(8 * GIB, "GB", "MB"), "8GB");
        assert_eq!(config_size(3 * GIB / 2, "gb", "mb"), "1536mb");
        assert_eq!(parse_config_size("8GB"), Some(8 * GIB));
        assert_eq!(parse_config_size("1536mb"), Some(1536 * MIB));
        assert_eq!(parse_config_size("64kB"), Some(64 * 1024));
        assert_eq!(parse_config_size("1024"), Some(1024));
        assert_eq!(parse_config_size("lots"), None);
        assert_eq!(parse_config_size("8 parsecs"), None);
        assert_eq!(parse_config_size("99999999999999999999GB"), None);
    }
}
