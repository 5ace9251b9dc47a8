//! Inventory files: a loop's targets listed in a CSV, YAML or JSON file (`inventory:`) rather
//! than by hand under `targets:`.
//!
//! A fleet's inventory usually exists already — a CMDB export, a Terraform output, a generated
//! list — so setpoint reads it as it is instead of asking for it to be pasted into the config.
//! Every problem names the file and line (and the CSV column), and one bad file refuses the whole
//! configuration: a loop never starts on part of its fleet.

use std::collections::BTreeMap;

use super::*;

/// Where a target is declared: in the config's `targets:` or on a line of an inventory file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Place {
    /// An entry of a loop's `targets:`, by its path (`loops[0].targets[2]`).
    Config(String),
    /// A line of an inventory file.
    File(Location),
}

impl fmt::Display for Place {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Place::Config(path) => f.write_str(path),
            Place::File(at) => write!(f, "{}:{}", at.file.display(), at.line),
        }
    }
}

/// A position in an inventory file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    /// The file, as the config names it (resolved against the config's directory).
    pub file: PathBuf,
    /// 1-based line: of the CSV record, of the YAML/JSON value the parser stopped at, or of
    /// the target's entry.
    pub line: usize,
    /// The CSV column or the YAML/JSON field concerned, when there is one.
    pub key: Option<Key>,
}

/// What a [`Location`] points at within its line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Key {
    /// A CSV column, by its header name.
    Column(String),
    /// A field of a YAML/JSON target (`resources.cpu`).
    Field(String),
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.file.display(), self.line)?;
        match &self.key {
            Some(Key::Column(name)) => write!(f, ": column {name}"),
            Some(Key::Field(name)) => write!(f, ": {name}"),
            None => Ok(()),
        }
    }
}

/// A problem with an inventory file.
#[derive(Debug, thiserror::Error)]
pub enum InventoryError {
    /// The file could not be read.
    #[error("{}: cannot read inventory: {source}", file.display())]
    Read {
        /// The file.
        file: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The file's extension names no format setpoint reads.
    #[error("{}: unknown inventory format: name the file .csv, .yaml, .yml or .json", file.display())]
    UnknownFormat {
        /// The file.
        file: PathBuf,
    },
    /// Something at a line of the file.
    #[error("{at}: {problem}")]
    At {
        /// Where.
        at: Location,
        /// What is wrong there.
        problem: Problem,
    },
}

/// What is wrong at a [`Location`] of an inventory file.
#[derive(Debug, Clone, PartialEq)]
pub enum Problem {
    /// The parser refused the text: malformed, an unknown or missing field, a value of the
    /// wrong type. The parser's own message.
    Syntax(String),
    /// A CSV header names a column that is no inventory field.
    UnknownColumn,
    /// A CSV header names a column twice.
    DuplicateColumn,
    /// The CSV header has no `id` column.
    NoIdColumn,
    /// A CSV record has another number of fields than the header.
    FieldCount {
        /// Fields in the header.
        expected: usize,
        /// Fields in the record.
        found: usize,
    },
    /// An empty id, or one with control characters.
    BadId,
    /// A value that must be a number is not one.
    NotANumber {
        /// The value as written.
        value: String,
        /// Whether a whole number is needed.
        whole: bool,
    },
    /// A size that must be positive is not.
    NotPositive {
        /// The value as written.
        value: String,
    },
    /// Only one of `cpu` and `memory_gib` is given, or parameters without either: a size is
    /// both or neither.
    PartialSize,
    /// `provisioned_iops` given both as the field and as a label.
    IopsTwice,
    /// The id or alias already names another target of the loop.
    Duplicate {
        /// The id or alias.
        name: String,
        /// Where it was first declared.
        first: Box<Place>,
    },
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Problem::Syntax(message) => f.write_str(message),
            Problem::UnknownColumn => write!(
                f,
                "unknown column: the columns are id, aliases, cpu, memory_gib, provisioned_iops, \
                 label.<name> and param.<name>"
            ),
            Problem::DuplicateColumn => f.write_str("the header names this column twice"),
            Problem::NoIdColumn => f.write_str("the header has no id column"),
            Problem::FieldCount { expected, found } => write!(
                f,
                "{found} field(s) where the header has {expected} (quote a value that contains a comma)"
            ),
            Problem::BadId => f.write_str("the id must be non-empty without control characters"),
            Problem::NotANumber { value, whole } => {
                let kind = if *whole { "a whole number" } else { "a number" };
                write!(f, "{value:?} is not {kind}")
            }
            Problem::NotPositive { value } => write!(f, "must be positive, got {value}"),
            Problem::PartialSize => f.write_str(
                "a size needs both cpu and memory_gib (parameters go with them), or neither",
            ),
            Problem::IopsTwice => write!(
                f,
                "provisioned_iops is given twice, as a field and as the label {PROVISIONED_IOPS_LABEL}"
            ),
            Problem::Duplicate { name, first } => {
                write!(f, "{name:?} already names the target declared at {first}")
            }
        }
    }
}

/// Reads a loop's inventory `files` (paths already resolved) and checks their targets against
/// each other and against `declared`, the loop's `targets:` (whose path is `loop_path`).
/// Returns the inventory's targets in file order, or every problem found: a file that cannot
/// be read or parsed stops at its first problem, the others are still read.
pub fn read_inventory(
    files: &[PathBuf],
    declared: &[StaticTarget],
    loop_path: &str,
) -> Result<Vec<StaticTarget>, Vec<InventoryError>> {
    let mut errors = Vec::new();
    let mut names: BTreeMap<String, Place> = BTreeMap::new();
    for (j, target) in declared.iter().enumerate() {
        for name in std::iter::once(&target.id).chain(&target.aliases) {
            // Duplicates within `targets:` are `Config::problems`' to report.
            names
                .entry(name.clone())
                .or_insert_with(|| Place::Config(format!("{loop_path}.targets[{j}]")));
        }
    }
    let mut out = Vec::new();
    for file in files {
        let entries = match read_file(file) {
            Ok(entries) => entries,
            Err(error) => {
                errors.push(error);
                continue;
            }
        };
        for (target, line) in entries {
            let at = |key: Option<Key>| Location {
                file: file.clone(),
                line,
                key,
            };
            let before = errors.len();
            for name in std::iter::once(&target.id).chain(&target.aliases) {
                match names.get(name) {
                    Some(first) => errors.push(InventoryError::At {
                        at: at(None),
                        problem: Problem::Duplicate {
                            name: name.clone(),
                            first: Box::new(first.clone()),
                        },
                    }),
                    None => {
                        names.insert(name.clone(), Place::File(at(None)));
                    }
                }
            }
            if errors.len() == before {
                out.push(target);
            }
        }
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(errors)
    }
}

/// One file's targets, each with the line of its entry, checked one by one.
fn read_file(file: &Path) -> Result<Vec<(StaticTarget, usize)>, InventoryError> {
    let extension = file
        .extension()
        .map(|e| e.to_string_lossy().to_ascii_lowercase());
    let parse = match extension.as_deref() {
        Some("csv") => parse_csv,
        Some("yaml" | "yml") => parse_yaml,
        Some("json") => parse_json,
        _ => {
            return Err(InventoryError::UnknownFormat {
                file: file.to_path_buf(),
            });
        }
    };
    let text = std::fs::read_to_string(file).map_err(|source| InventoryError::Read {
        file: file.to_path_buf(),
        source,
    })?;
    let at = |line: usize, key: Option<Key>| Location {
        file: file.to_path_buf(),
        line,
        key,
    };
    let entries = parse(&text).map_err(|(line, key, problem)| InventoryError::At {
        at: at(line, key),
        problem,
    })?;
    for (target, line) in &entries {
        if let Some((key, problem)) = check(target) {
            return Err(InventoryError::At {
                at: at(*line, key),
                problem,
            });
        }
    }
    Ok(entries)
}

/// What parsing a file found wrong: the line, the column or field, the problem.
type Refusal = (usize, Option<Key>, Problem);

/// The checks every target gets, whatever its file's format.
fn check(target: &StaticTarget) -> Option<(Option<Key>, Problem)> {
    let field = |name: &str| Some(Key::Field(name.to_string()));
    if !valid_id(&target.id) {
        return Some((field("id"), Problem::BadId));
    }
    if let Some(r) = &target.resources {
        for (name, value) in [
            ("resources.cpu", r.cpu),
            ("resources.memory_gib", r.memory_gib),
        ] {
            if !(value.is_finite() && value > 0.0) {
                let value = value.to_string();
                return Some((field(name), Problem::NotPositive { value }));
            }
        }
    }
    target
        .iops_problem()
        .map(|p| (field("provisioned_iops"), p))
}

/// Whether `id` can name a target: non-empty, without control characters.
pub(super) fn valid_id(id: &str) -> bool {
    !id.trim().is_empty() && !id.chars().any(char::is_control)
}

impl StaticTarget {
    /// What is wrong with the target's `provisioned_iops`, if anything.
    pub(super) fn iops_problem(&self) -> Option<Problem> {
        match self.provisioned_iops {
            Some(0) => Some(Problem::NotPositive { value: "0".into() }),
            Some(_) if self.labels.contains_key(PROVISIONED_IOPS_LABEL) => Some(Problem::IopsTwice),
            _ => None,
        }
    }
}

/// The targets of a YAML or JSON document: a list, or a mapping whose only key is `targets`.
struct Listed(Vec<StaticTarget>);

impl<'de> Deserialize<'de> for Listed {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(ListedVisitor)
    }
}

struct ListedVisitor;

impl<'de> serde::de::Visitor<'de> for ListedVisitor {
    type Value = Listed;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a list of targets, or a mapping with a `targets` list")
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Listed, A::Error> {
        let mut targets = Vec::new();
        while let Some(target) = seq.next_element()? {
            targets.push(target);
        }
        Ok(Listed(targets))
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Listed, A::Error> {
        let mut targets = None;
        while let Some(key) = map.next_key::<String>()? {
            if key != "targets" {
                return Err(serde::de::Error::unknown_field(&key, &["targets"]));
            }
            if targets.is_some() {
                return Err(serde::de::Error::duplicate_field("targets"));
            }
            targets = Some(map.next_value()?);
        }
        targets
            .map(Listed)
            .ok_or_else(|| serde::de::Error::missing_field("targets"))
    }

    // An empty YAML file is an empty inventory.
    fn visit_unit<E: serde::de::Error>(self) -> Result<Listed, E> {
        Ok(Listed(Vec::new()))
    }
}

/// The path serde_path_to_error saw as a field key, when it names one.
fn field_of(path: &serde_path_to_error::Path) -> Option<Key> {
    let path = path.to_string();
    // `[3].resources.cpu` or `targets[3].resources.cpu`: the part after the target's index.
    let field = path.split_once("].").map(|(_, field)| field.to_string())?;
    Some(Key::Field(field))
}

fn parse_yaml(text: &str) -> Result<Vec<(StaticTarget, usize)>, Refusal> {
    let deserializer = serde_yaml::Deserializer::from_str(text);
    let listed: Listed = serde_path_to_error::deserialize(deserializer).map_err(|error| {
        let key = field_of(error.path());
        let inner = error.into_inner();
        let line = inner.location().map_or(1, |l| l.line());
        let message = inner.to_string();
        // serde_yaml appends " at line L column C" and may prefix the path (`targets[0]: `);
        // the line is said once, up front, and the field beside it.
        let message = message.split(" at line ").next().unwrap_or(&message);
        let message = match message.split_once(": ") {
            Some((prefix, rest)) if !prefix.contains(' ') => rest,
            _ => message,
        };
        (line, key, Problem::Syntax(message.to_string()))
    })?;
    Ok(with_lines(listed.0, yaml_item_lines(text), text))
}

fn parse_json(text: &str) -> Result<Vec<(StaticTarget, usize)>, Refusal> {
    let mut deserializer = serde_json::Deserializer::from_str(text);
    let listed: Listed = serde_path_to_error::deserialize(&mut deserializer).map_err(|error| {
        let key = field_of(error.path());
        let inner = error.into_inner();
        let message = inner.to_string();
        let message = message.split(" at line ").next().unwrap_or(&message);
        (
            inner.line().max(1),
            key,
            Problem::Syntax(message.to_string()),
        )
    })?;
    deserializer.end().map_err(|error| {
        (
            error.line().max(1),
            None,
            Problem::Syntax(error.to_string()),
        )
    })?;
    Ok(with_lines(listed.0, json_item_lines(text), text))
}

/// Pairs each target with the line its entry starts on. When the scan of the text found
/// another number of entries than the parser (a YAML list written inline), every target gets
/// the line the document starts on.
fn with_lines(
    targets: Vec<StaticTarget>,
    lines: Vec<usize>,
    text: &str,
) -> Vec<(StaticTarget, usize)> {
    if lines.len() == targets.len() {
        return targets.into_iter().zip(lines).collect();
    }
    let first = text
        .lines()
        .position(|l| {
            let l = l.trim();
            !l.is_empty() && !l.starts_with('#')
        })
        .map_or(1, |i| i + 1);
    targets.into_iter().map(|t| (t, first)).collect()
}

/// The lines of a YAML document's block-list entries (`- id: …`) at the outermost list's
/// indentation: the targets. A nested list (`aliases:` written as a block) is indented deeper.
fn yaml_item_lines(text: &str) -> Vec<usize> {
    let dashes: Vec<(usize, usize)> = text
        .lines()
        .enumerate()
        .filter_map(|(i, line)| {
            let trimmed = line.trim_start();
            let entry = trimmed == "-" || trimmed.starts_with("- ") || trimmed.starts_with("-\t");
            entry.then(|| (i + 1, line.len() - trimmed.len()))
        })
        .collect();
    let Some(outer) = dashes.iter().map(|&(_, indent)| indent).min() else {
        return Vec::new();
    };
    dashes
        .into_iter()
        .filter(|&(_, indent)| indent == outer)
        .map(|(line, _)| line)
        .collect()
}

/// The lines of the objects in a JSON document's target list: the top-level array's, or the
/// array under the top-level object's `targets` (its only key).
fn json_item_lines(text: &str) -> Vec<usize> {
    let mut lines = Vec::new();
    let mut stack: Vec<char> = Vec::new();
    let (mut line, mut in_string, mut escaped) = (1, false, false);
    for c in text.chars() {
        if c == '\n' {
            line += 1;
        }
        if in_string {
            match (escaped, c) {
                (true, _) => escaped = false,
                (false, '\\') => escaped = true,
                (false, '"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match c {
            '"' => in_string = true,
            '{' | '[' => {
                let entry = c == '{' && matches!(stack.as_slice(), ['['] | ['{', '[']);
                if entry {
                    lines.push(line);
                }
                stack.push(c);
            }
            '}' | ']' => {
                stack.pop();
            }
            _ => {}
        }
    }
    lines
}

fn parse_csv(text: &str) -> Result<Vec<(StaticTarget, usize)>, Refusal> {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .comment(Some(b'#'))
        .flexible(true)
        .trim(csv::Trim::All)
        .from_reader(text.as_bytes());
    let mut header: Option<(Vec<Column>, Vec<String>)> = None;
    let mut out = Vec::new();
    for record in reader.records() {
        let record = record.map_err(|error| {
            let line = error.position().map_or(1, |p| p.line() as usize);
            (line, None, Problem::Syntax(error.to_string()))
        })?;
        let line = record.position().map_or(1, |p| p.line() as usize);
        // A line of spaces is blank too.
        if record.iter().all(str::is_empty) {
            continue;
        }
        let Some((columns, names)) = &header else {
            header = Some(csv_header(&record, line)?);
            continue;
        };
        if record.len() != columns.len() {
            let problem = Problem::FieldCount {
                expected: columns.len(),
                found: record.len(),
            };
            return Err((line, None, problem));
        }
        out.push((csv_target(columns, names, &record, line)?, line));
    }
    Ok(out)
}

/// What a CSV column holds.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Column {
    Id,
    Aliases,
    Cpu,
    MemoryGib,
    ProvisionedIops,
    Label(String),
    Param(String),
}

fn csv_header(
    record: &csv::StringRecord,
    line: usize,
) -> Result<(Vec<Column>, Vec<String>), Refusal> {
    let mut columns = Vec::new();
    let names: Vec<String> = record.iter().map(str::to_string).collect();
    for name in &names {
        let refuse = |problem| (line, Some(Key::Column(name.clone())), problem);
        let column = match name.as_str() {
            "id" => Column::Id,
            "aliases" => Column::Aliases,
            "cpu" => Column::Cpu,
            "memory_gib" => Column::MemoryGib,
            "provisioned_iops" => Column::ProvisionedIops,
            other => match (other.strip_prefix("label."), other.strip_prefix("param.")) {
                (Some(label), _) if !label.is_empty() => Column::Label(label.to_string()),
                (_, Some(param)) if !param.is_empty() => Column::Param(param.to_string()),
                _ => return Err(refuse(Problem::UnknownColumn)),
            },
        };
        if columns.contains(&column) {
            return Err(refuse(Problem::DuplicateColumn));
        }
        columns.push(column);
    }
    if !columns.contains(&Column::Id) {
        return Err((line, None, Problem::NoIdColumn));
    }
    Ok((columns, names))
}

fn csv_target(
    columns: &[Column],
    names: &[String],
    record: &csv::StringRecord,
    line: usize,
) -> Result<StaticTarget, Refusal> {
    let mut target = StaticTarget {
        id: String::new(),
        aliases: Vec::new(),
        resources: None,
        labels: BTreeMap::new(),
        provisioned_iops: None,
    };
    let (mut cpu, mut memory) = (None, None);
    let mut parameters = BTreeMap::new();
    for ((column, name), value) in columns.iter().zip(names).zip(record.iter()) {
        let refuse = |problem| (line, Some(Key::Column(name.clone())), problem);
        let number = |whole: bool| {
            let not_a_number = || {
                refuse(Problem::NotANumber {
                    value: value.to_string(),
                    whole,
                })
            };
            value.parse::<f64>().map_err(|_| not_a_number())
        };
        if value.is_empty() {
            if *column == Column::Id {
                return Err(refuse(Problem::BadId));
            }
            // An empty cell gives nothing: sparse label and parameter columns are the point.
            continue;
        }
        match column {
            Column::Id => target.id = value.to_string(),
            Column::Aliases => {
                target.aliases = value
                    .split(';')
                    .map(str::trim)
                    .filter(|a| !a.is_empty())
                    .map(str::to_string)
                    .collect();
            }
            Column::Cpu | Column::MemoryGib => {
                let n = number(false)?;
                if !(n.is_finite() && n > 0.0) {
                    let value = value.to_string();
                    return Err(refuse(Problem::NotPositive { value }));
                }
                if *column == Column::Cpu {
                    cpu = Some(n);
                } else {
                    memory = Some(n);
                }
            }
            Column::ProvisionedIops => {
                let n = value.parse::<u64>().map_err(|_| {
                    refuse(Problem::NotANumber {
                        value: value.to_string(),
                        whole: true,
                    })
                })?;
                target.provisioned_iops = Some(n);
            }
            Column::Label(label) => {
                target.labels.insert(label.clone(), value.to_string());
            }
            Column::Param(param) => {
                parameters.insert(param.clone(), value.to_string());
            }
        }
    }
    target.resources = match (cpu, memory) {
        (Some(cpu), Some(memory_gib)) => Some(ResourcesConfig {
            cpu,
            memory_gib,
            parameters,
        }),
        (None, None) if parameters.is_empty() => None,
        _ => return Err((line, None, Problem::PartialSize)),
    };
    Ok(target)
}

/// Deserialises `inventory:`, one path or a list of them.
pub(super) fn one_or_many<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Vec<PathBuf>, D::Error> {
    struct Paths;
    impl<'de> serde::de::Visitor<'de> for Paths {
        type Value = Vec<PathBuf>;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a path to an inventory file, or a list of them")
        }

        fn visit_str<E: serde::de::Error>(self, path: &str) -> Result<Vec<PathBuf>, E> {
            if path.is_empty() {
                return Err(E::custom("empty inventory path"));
            }
            Ok(vec![PathBuf::from(path)])
        }

        fn visit_seq<A: serde::de::SeqAccess<'de>>(
            self,
            mut seq: A,
        ) -> Result<Vec<PathBuf>, A::Error> {
            let mut paths = Vec::new();
            while let Some(path) = seq.next_element::<String>()? {
                paths.extend(Paths.visit_str::<A::Error>(&path)?);
            }
            Ok(paths)
        }
    }
    deserializer.deserialize_any(Paths)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    /// A config file with one loop reading `inventory`, and the inventory files beside it.
    fn load(inventory: &str, targets: &str, files: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let dir = tempfile::tempdir().unwrap();
        for (name, text) in files {
            std::fs::write(dir.path().join(name), text).unwrap();
        }
        let config = format!("loops:\n  - name: w\n    inventory: {inventory}\n{targets}");
        let path = dir.path().join("setpoint.yaml");
        std::fs::write(&path, config).unwrap();
        Config::load(&path)
    }

    /// The one inventory problem of a refused config, and its message.
    fn refusal(result: Result<Config, ConfigError>) -> (Location, Problem, String) {
        let error = result.expect_err("the inventory should be refused");
        let message = error.to_string();
        let ConfigError::Inventory { path, mut errors } = error else {
            panic!("not an inventory error: {message}");
        };
        assert_eq!(path, "loops[0].inventory");
        assert_eq!(errors.len(), 1, "{message}");
        match errors.remove(0) {
            InventoryError::At { at, problem } => (at, problem, message),
            other => panic!("not at a line: {other}"),
        }
    }

    fn file_name(at: &Location) -> String {
        at.file.file_name().unwrap().to_string_lossy().to_string()
    }

    const CSV: &str = "\
# exported from the CMDB
id,aliases,cpu,memory_gib,provisioned_iops,label.team,param.shared_buffers

pg-a,10.0.0.5:9187;10.0.0.5:9100,8,32,3000,payments,8GB
\"pg,b\",,2,8,,\"search, west\",
pg-c,,,,,,
";

    #[test]
    fn csv_targets_are_read_with_every_column() {
        let config = load("hosts.csv", "", &[("hosts.csv", CSV)]).unwrap();
        let targets = &config.loops[0].inventoried;
        assert_eq!(targets.len(), 3);
        let a = &targets[0];
        assert_eq!(a.id, "pg-a");
        assert_eq!(a.aliases, ["10.0.0.5:9187", "10.0.0.5:9100"]);
        let r = a.resources.as_ref().unwrap();
        assert_eq!((r.cpu, r.memory_gib), (8.0, 32.0));
        assert_eq!(r.parameters["shared_buffers"], "8GB");
        assert_eq!(a.provisioned_iops, Some(3000));
        assert_eq!(a.labels["team"], "payments");
        // RFC 4180 quoting: a comma inside quotes is part of the value.
        let b = &targets[1];
        assert_eq!(b.id, "pg,b");
        assert_eq!(b.labels["team"], "search, west");
        assert!(b.aliases.is_empty() && b.provisioned_iops.is_none());
        assert!(b.resources.as_ref().unwrap().parameters.is_empty());
        // Empty cells give nothing: no size, no label.
        assert_eq!(targets[2].resources, None);
        assert!(targets[2].labels.is_empty());
        // The files are read at every load, never written back into the config.
        let written = serde_yaml::to_string(&config).unwrap();
        assert!(!written.contains("pg-a"), "{written}");
        assert!(written.contains("hosts.csv"), "{written}");
    }

    #[test]
    fn yaml_targets_are_a_list_or_a_targets_mapping() {
        let list = "- id: pg-a\n  aliases: [\"10.0.0.5:9187\"]\n  resources: { cpu: 4, memory_gib: 16 }\n  provisioned_iops: 6000\n- id: pg-b\n";
        // fleetgen's inventory.yaml: comments, then a `targets:` block.
        let mapping = "# fleetgen inventory\ntargets:\n  - id: pg-c\n    resources:\n      cpu: 2\n      memory_gib: 8\n      parameters:\n        shared_buffers: 2GB\n    labels: { fleet: fleetgen }\n";
        let config = load(
            "[a.yaml, b.yml]",
            "",
            &[("a.yaml", list), ("b.yml", mapping)],
        )
        .unwrap();
        let ids: Vec<&str> = config.loops[0]
            .inventoried
            .iter()
            .map(|t| t.id.as_str())
            .collect();
        assert_eq!(ids, ["pg-a", "pg-b", "pg-c"]);
        assert_eq!(config.loops[0].inventoried[0].provisioned_iops, Some(6000));
        assert_eq!(config.loops[0].inventoried[2].labels["fleet"], "fleetgen");
    }

    #[test]
    fn json_targets_are_a_list_or_a_targets_mapping() {
        let list = r#"[{"id": "pg-a", "resources": {"cpu": 4, "memory_gib": 16}, "labels": {"tier": "gold"}}]"#;
        let mapping = "{\n  \"targets\": [\n    {\"id\": \"pg-b\", \"aliases\": [\"x:9187\"], \"provisioned_iops\": 12000}\n  ]\n}\n";
        let config = load(
            "[a.json, b.json]",
            "",
            &[("a.json", list), ("b.json", mapping)],
        )
        .unwrap();
        let targets = &config.loops[0].inventoried;
        assert_eq!(targets[0].labels["tier"], "gold");
        assert_eq!(targets[1].aliases, ["x:9187"]);
        assert_eq!(targets[1].provisioned_iops, Some(12000));
    }

    #[test]
    fn inventory_merges_with_declared_targets() {
        let targets = "    targets:\n      - id: pg-declared\n        provisioned_iops: 500\n";
        let config = load("hosts.csv", targets, &[("hosts.csv", CSV)]).unwrap();
        let ids: Vec<&str> = config.loops[0]
            .declared_targets()
            .map(|t| t.id.as_str())
            .collect();
        assert_eq!(ids, ["pg-declared", "pg-a", "pg,b", "pg-c"]);
    }

    #[test]
    fn a_csv_error_names_file_line_and_column() {
        let cases: [(&str, usize, Option<&str>, Problem); 7] = [
            (
                "id,cpu,memroy_gib\n",
                1,
                Some("memroy_gib"),
                Problem::UnknownColumn,
            ),
            (
                "# hosts\nid,cpu,memory_gib\npg-a,eight,32\n",
                3,
                Some("cpu"),
                Problem::NotANumber {
                    value: "eight".into(),
                    whole: false,
                },
            ),
            (
                "id,provisioned_iops\npg-a,1.5\n",
                2,
                Some("provisioned_iops"),
                Problem::NotANumber {
                    value: "1.5".into(),
                    whole: true,
                },
            ),
            (
                "id,cpu,memory_gib\n\npg-a,4,16\n,4,16\n",
                4,
                Some("id"),
                Problem::BadId,
            ),
            ("cpu,memory_gib\n4,16\n", 1, None, Problem::NoIdColumn),
            (
                "id,cpu,memory_gib\npg-a,4,16,extra\n",
                2,
                None,
                Problem::FieldCount {
                    expected: 3,
                    found: 4,
                },
            ),
            (
                "id,cpu,memory_gib\npg-a,4,\n",
                2,
                None,
                Problem::PartialSize,
            ),
        ];
        for (text, line, column, expected) in cases {
            let (at, problem, message) = refusal(load("hosts.csv", "", &[("hosts.csv", text)]));
            assert_eq!(problem, expected, "{text}");
            assert_eq!(at.line, line, "{message}");
            assert_eq!(at.key, column.map(|c| Key::Column(c.into())), "{message}");
            let place = format!("hosts.csv:{line}");
            assert!(message.contains(&place), "{message} should name {place}");
            if let Some(column) = column {
                assert!(message.contains(&format!("column {column}")), "{message}");
            }
        }
    }

    #[test]
    fn a_yaml_or_json_error_names_file_and_line() {
        for (file, text, line, problem_is) in [
            (
                "t.yaml",
                "targets:\n  - id: pg-a\n  - id: pg-b\n    resoruces: { cpu: 1 }\n",
                4,
                "syntax",
            ),
            (
                "t.yaml",
                "- id: pg-a\n- id: pg-b\n  resources: { cpu: four, memory_gib: 8 }\n",
                3,
                "syntax",
            ),
            ("t.yaml", "- aliases: [x]\n", 1, "syntax"),
            (
                "t.yaml",
                "- id: pg-a\n- id: pg-b\n  resources: { cpu: 0, memory_gib: 8 }\n",
                2,
                "positive",
            ),
            (
                "t.json",
                "[\n  {\"id\": \"pg-a\"},\n  {\"id\": \"pg-b\", \"provisioned_iops\": -3}\n]\n",
                3,
                "syntax",
            ),
            (
                "t.json",
                "[\n  {\"id\": \"pg-a\"},\n  {\"id\": \"\"}\n]\n",
                3,
                "id",
            ),
            ("t.json", "[\n  {\"id\": \"pg-a\"},\n", 3, "syntax"),
        ] {
            let (at, problem, message) = refusal(load(file, "", &[(file, text)]));
            assert_eq!(file_name(&at), file);
            assert_eq!(at.line, line, "{message}");
            assert!(
                message.contains(&format!("{file}:{line}")),
                "{message} should name {file}:{line}"
            );
            let kind = match problem {
                Problem::Syntax(_) => "syntax",
                Problem::NotPositive { .. } => "positive",
                Problem::BadId => "id",
                other => panic!("{other}"),
            };
            assert_eq!(kind, problem_is, "{message}");
        }
    }

    #[test]
    fn a_duplicate_names_both_places() {
        // Within one file.
        let text = "id,aliases\npg-a,10.0.0.5:9187\npg-b,10.0.0.5:9187\n";
        let (at, problem, message) = refusal(load("h.csv", "", &[("h.csv", text)]));
        assert_eq!(at.line, 3);
        let Problem::Duplicate { name, first } = problem else {
            panic!("{message}");
        };
        assert_eq!(name, "10.0.0.5:9187");
        let Place::File(first) = *first else {
            panic!("{message}");
        };
        assert_eq!((file_name(&first), first.line), ("h.csv".into(), 2));
        assert!(
            message.contains("h.csv:3") && message.contains("h.csv:2"),
            "{message}"
        );

        // Across two files.
        let (at, problem, message) = refusal(load(
            "[a.csv, b.yaml]",
            "",
            &[
                ("a.csv", "id\npg-a\n"),
                ("b.yaml", "# b\n- id: pg-b\n- id: pg-a\n"),
            ],
        ));
        assert_eq!((file_name(&at), at.line), ("b.yaml".into(), 3));
        assert!(
            matches!(problem, Problem::Duplicate { ref first, .. } if matches!(**first, Place::File(ref f) if f.line == 2))
        );
        assert!(message.contains("a.csv:2"), "{message}");

        // Across the inventory and `targets:`.
        let targets = "    targets:\n      - id: pg-x\n      - id: pg-a\n";
        let (at, problem, message) = refusal(load("a.csv", targets, &[("a.csv", "id\npg-a\n")]));
        assert_eq!(at.line, 2);
        assert_eq!(
            problem,
            Problem::Duplicate {
                name: "pg-a".into(),
                first: Box::new(Place::Config("loops[0].targets[1]".into())),
            }
        );
        assert!(message.contains("loops[0].targets[1]"), "{message}");
    }

    #[test]
    fn unreadable_and_unknown_files_are_refused_by_name() {
        let error = load("missing.csv", "", &[]).unwrap_err();
        let message = error.to_string();
        let ConfigError::Inventory { errors, .. } = error else {
            panic!("{message}");
        };
        assert!(
            matches!(&errors[..], [InventoryError::Read { file, .. }] if file.ends_with("missing.csv"))
        );
        assert!(
            message.contains("missing.csv: cannot read inventory"),
            "{message}"
        );

        let error = load("hosts.txt", "", &[("hosts.txt", "id\npg-a\n")]).unwrap_err();
        let ConfigError::Inventory { errors, .. } = error else {
            panic!("not an inventory error");
        };
        assert!(matches!(
            &errors[..],
            [InventoryError::UnknownFormat { .. }]
        ));
    }

    #[test]
    fn provisioned_iops_is_given_once() {
        let text = "id,provisioned_iops,label.provisioned_iops\npg-a,3000,3000\n";
        let (at, problem, _) = refusal(load("h.csv", "", &[("h.csv", text)]));
        assert_eq!((at.line, problem), (2, Problem::IopsTwice));
        let declared =
            "loops:\n  - name: w\n    targets:\n      - id: a\n        provisioned_iops: 0\n";
        let error = Config::parse(declared, "t.yaml").unwrap_err().to_string();
        assert!(
            error.contains("loops[0].targets[0].provisioned_iops: must be positive, got 0"),
            "{error}"
        );
    }

    #[test]
    fn inventory_is_one_path_or_a_list() {
        let one = Config::parse("loops:\n  - name: w\n    inventory: a.csv\n", "t.yaml").unwrap();
        assert_eq!(one.loops[0].inventory, [PathBuf::from("a.csv")]);
        let many = Config::parse(
            "loops:\n  - name: w\n    inventory: [a.csv, b.json]\n",
            "t.yaml",
        )
        .unwrap();
        assert_eq!(many.loops[0].inventory.len(), 2);
        let error = Config::parse("loops:\n  - name: w\n    inventory: 3\n", "t.yaml")
            .unwrap_err()
            .to_string();
        assert!(error.starts_with("t.yaml:3:"), "{error}");
        assert!(error.contains("loops[0].inventory"), "{error}");
    }
}
