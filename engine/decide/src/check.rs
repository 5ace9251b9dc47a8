//! Static checks of a bundle that regorus leaves to evaluation time.
//!
//! regorus' interpreter resolves a function call only when it evaluates it, so a misspelt or
//! missing function passes loading and fails closed (hold) at the first input that reaches it,
//! possibly long after deployment, on a path no test covered. [`undefined_calls`] finds such
//! calls in the parsed modules instead, resolving each name the way the interpreter does
//! (regorus 0.14, `Interpreter::eval_call`):
//!
//! 1. a leading import alias of the call's package (`lib.f` after `import data.lib`), when the
//!    import's target defines the function;
//! 2. a function rule of the bundle, `default` ones included: the name taken relative to the
//!    call's package, or as written when it starts with `data.`;
//! 3. `print`, then the builtins compiled into this build (a builtin of a regorus feature this
//!    workspace does not enable is as undefined here as at run time).
//!
//! Imports are keyed by package, not by file, because that is how the interpreter looks them
//! up: an alias imported by one file of a package resolves in its other files too.
//!
//! regorus 0.14 has no public analysis for this (its RVM compiler reports unknown functions,
//! but it rejects `with`, which the tests use, and is not built here), so this walks the AST that
//! regorus exposes as `unstable` (and `Engine::get_modules`, hidden from its docs). A regorus
//! upgrade may change either; `the_check_agrees_with_the_interpreter` below compares this
//! resolution with the interpreter's on the same calls, so a drift fails a test rather than a
//! deployment.

use std::collections::{BTreeSet, HashMap};

use regorus::unstable::{BUILTINS, Expr, Literal, Module, Query, Ref, Rule, RuleHead, Span};
use regorus::utils::get_path_string;

/// A call to a function that neither the bundle nor regorus defines.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct UndefinedCall {
    /// The file, as the bundle names it.
    pub file: String,
    /// The line of the call, from 1.
    pub line: u32,
    /// The column of the call, from 1.
    pub column: u32,
    /// The function as the call spells it (`no_such_fn`, `lib.helper`).
    pub function: String,
}

impl std::fmt::Display for UndefinedCall {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}:{}:{}: call to undefined function {}",
            self.file, self.line, self.column, self.function
        )
    }
}

/// The functions a bundle defines and the imports its packages declare.
struct Definitions {
    /// Full paths (`data.pkg.f`) of every function rule, `default` ones included.
    functions: BTreeSet<String>,
    /// `(package path, alias)` → the imported path (`data.lib`).
    imports: HashMap<(String, String), String>,
}

impl Definitions {
    fn gather(modules: &[Ref<Module>]) -> Self {
        let mut functions = BTreeSet::new();
        let mut imports = HashMap::new();
        for module in modules {
            let Ok(package) = get_path_string(&module.package.refr, Some("data")) else {
                continue;
            };
            for rule in &module.policy {
                let refr = match rule.as_ref() {
                    Rule::Spec {
                        head: RuleHead::Func { refr, .. },
                        ..
                    } => refr,
                    Rule::Default { refr, args, .. } if !args.is_empty() => refr,
                    _ => continue,
                };
                if let Ok(path) = get_path_string(refr, Some(&package)) {
                    functions.insert(path);
                }
            }
            for import in &module.imports {
                let alias = match (&import.r#as, import.refr.as_ref()) {
                    (Some(alias), _) => alias.text().to_string(),
                    (None, Expr::RefDot { field, .. }) => field.0.text().to_string(),
                    (None, Expr::RefBrack { index, .. }) => match index.as_ref() {
                        Expr::String { value, .. } => match value.as_string() {
                            Ok(s) => s.to_string(),
                            Err(_) => continue,
                        },
                        _ => continue,
                    },
                    // `import input`, `import rego.v1` and the like name no functions.
                    _ => continue,
                };
                if let Ok(target) = get_path_string(&import.refr, None) {
                    imports.insert((package.clone(), alias), target);
                }
            }
        }
        Self { functions, imports }
    }

    /// Whether a call spelt `path` in `package` reaches a function.
    fn resolves(&self, package: &str, path: &str) -> bool {
        let root_end = path.find(['.', '[']).unwrap_or(path.len());
        let (root, rest) = path.split_at(root_end);
        if root != "data"
            && let Some(target) = self.imports.get(&(package.to_string(), root.to_string()))
            && self.functions.contains(&format!("{target}{rest}"))
        {
            return true;
        }
        let full = if root == "data" {
            path.to_string()
        } else {
            format!("{package}.{path}")
        };
        self.functions.contains(&full) || path == "print" || BUILTINS.contains_key(path)
    }
}

/// Where a function name starts: the span of its first component. (regorus starts a call's
/// span at its opening parenthesis, and a `a.b` reference's at its last dot.)
fn name_start(mut fcn: &Expr) -> &Span {
    while let Expr::RefDot { refr, .. } | Expr::RefBrack { refr, .. } = fcn {
        fcn = refr;
    }
    fcn.span()
}

/// A node still to visit.
enum Node<'a> {
    Expr(&'a Expr),
    Query(&'a Query),
}

/// Every call in `modules` to a function that does not resolve, in file and line order.
///
/// A call whose function is not a plain path (`data.fns[x](1)`) is left to the interpreter.
pub(crate) fn undefined_calls(modules: &[Ref<Module>]) -> Vec<UndefinedCall> {
    let definitions = Definitions::gather(modules);
    let mut out = Vec::new();
    for module in modules {
        let Ok(package) = get_path_string(&module.package.refr, Some("data")) else {
            continue;
        };
        // A worklist rather than recursion: a deeply nested policy must not overflow the stack.
        let mut todo: Vec<Node<'_>> = Vec::new();
        for rule in &module.policy {
            match rule.as_ref() {
                Rule::Spec { head, bodies, .. } => {
                    match head {
                        RuleHead::Compr { refr, assign, .. } => {
                            todo.push(Node::Expr(refr));
                            todo.extend(assign.iter().map(|a| Node::Expr(&a.value)));
                        }
                        RuleHead::Set { refr, key, .. } => {
                            todo.push(Node::Expr(refr));
                            todo.extend(key.iter().map(|k| Node::Expr(k)));
                        }
                        RuleHead::Func { args, assign, .. } => {
                            todo.extend(args.iter().map(|a| Node::Expr(a)));
                            todo.extend(assign.iter().map(|a| Node::Expr(&a.value)));
                        }
                    }
                    for body in bodies {
                        todo.extend(body.assign.iter().map(|a| Node::Expr(&a.value)));
                        todo.push(Node::Query(&body.query));
                    }
                }
                Rule::Default { value, .. } => todo.push(Node::Expr(value)),
            }
        }
        while let Some(node) = todo.pop() {
            match node {
                Node::Query(query) => {
                    for stmt in &query.stmts {
                        // The target of `with` names what it replaces; only its value is run.
                        todo.extend(stmt.with_mods.iter().map(|w| Node::Expr(&w.r#as)));
                        match &stmt.literal {
                            Literal::SomeVars { .. } => {}
                            Literal::SomeIn {
                                key,
                                value,
                                collection,
                                ..
                            } => {
                                todo.extend(key.iter().map(|k| Node::Expr(k)));
                                todo.push(Node::Expr(value));
                                todo.push(Node::Expr(collection));
                            }
                            Literal::Expr { expr, .. } | Literal::NotExpr { expr, .. } => {
                                todo.push(Node::Expr(expr));
                            }
                            Literal::Every { domain, query, .. } => {
                                todo.push(Node::Expr(domain));
                                todo.push(Node::Query(query));
                            }
                        }
                    }
                }
                Node::Expr(expr) => match expr {
                    Expr::Call { fcn, params, .. } => {
                        if let Ok(path) = get_path_string(fcn, None)
                            && !definitions.resolves(&package, &path)
                        {
                            let span = name_start(fcn);
                            out.push(UndefinedCall {
                                file: span.source.file().clone(),
                                line: span.line,
                                column: span.col,
                                function: path,
                            });
                        }
                        todo.extend(params.iter().map(|p| Node::Expr(p)));
                    }
                    Expr::Array { items, .. } | Expr::Set { items, .. } => {
                        todo.extend(items.iter().map(|i| Node::Expr(i)));
                    }
                    Expr::Object { fields, .. } => {
                        for (_, key, value) in fields {
                            todo.push(Node::Expr(key));
                            todo.push(Node::Expr(value));
                        }
                    }
                    Expr::ArrayCompr { term, query, .. } | Expr::SetCompr { term, query, .. } => {
                        todo.push(Node::Expr(term));
                        todo.push(Node::Query(query));
                    }
                    Expr::ObjectCompr {
                        key, value, query, ..
                    } => {
                        todo.push(Node::Expr(key));
                        todo.push(Node::Expr(value));
                        todo.push(Node::Query(query));
                    }
                    Expr::UnaryExpr { expr, .. } => todo.push(Node::Expr(expr)),
                    Expr::RefDot { refr, .. } => todo.push(Node::Expr(refr)),
                    Expr::RefBrack { refr, index, .. } => {
                        todo.push(Node::Expr(refr));
                        todo.push(Node::Expr(index));
                    }
                    Expr::BinExpr { lhs, rhs, .. }
                    | Expr::BoolExpr { lhs, rhs, .. }
                    | Expr::ArithExpr { lhs, rhs, .. }
                    | Expr::AssignExpr { lhs, rhs, .. } => {
                        todo.push(Node::Expr(lhs));
                        todo.push(Node::Expr(rhs));
                    }
                    Expr::Membership {
                        key,
                        value,
                        collection,
                        ..
                    } => {
                        todo.extend(key.iter().map(|k| Node::Expr(k)));
                        todo.push(Node::Expr(value));
                        todo.push(Node::Expr(collection));
                    }
                    // Scalars and variables call nothing. (Written as a catch-all so that a
                    // variant behind a regorus feature, e.g. `OrExpr`, still compiles.)
                    _ => {}
                },
            }
        }
    }
    out.sort();
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    /// The undefined calls of a bundle of `(name, text)` files, as `line:function`.
    fn undefined(files: &[(&str, &str)]) -> Vec<String> {
        let mut engine = regorus::Engine::new();
        for (name, text) in files {
            engine
                .add_policy(name.to_string(), text.to_string())
                .unwrap();
        }
        undefined_calls(engine.get_modules())
            .into_iter()
            .map(|c| format!("{}:{}:{}", c.file, c.line, c.function))
            .collect()
    }

    #[test]
    fn a_call_to_nothing_is_named_with_its_file_and_line() {
        let found = undefined(&[(
            "p.rego",
            "package p\n\nx := no_such_fn(1)\n\ny if {\n    foo.bar(2)\n}\n",
        )]);
        assert_eq!(found, ["p.rego:3:no_such_fn", "p.rego:6:foo.bar"]);
    }

    #[test]
    fn functions_of_the_bundle_and_builtins_resolve() {
        let lib =
            "package lib\n\ndouble(x) := 2 * x\n\ndefault fallback(_) := 0\n\nnested.f(x) := x\n";
        let main = r#"package p

import data.lib
import data.lib as l

local(x) := x + 1

a := lib.double(1)
b := l.double(2)
c := data.lib.double(3)
d := local(4)
e := data.p.local(5)
f := lib.fallback(6)
g := lib.nested.f(7)
h := count([1]) + max([1, 2]) + to_number("3")
i := sprintf("%d", [object.get({}, "k", 1)])
j := [y | some y in [1]; local(y) > 0]
k if {
    every v in [1] { local(v) > 0 }
    not local(1) == 0
    print("ok")
}
"#;
        // A second file of package p uses p's import without repeating it, as regorus allows.
        let other = "package p\n\nm := lib.double(8)\n";
        assert_eq!(
            undefined(&[("lib.rego", lib), ("p.rego", main), ("p2.rego", other)]),
            Vec::<String>::new()
        );
    }

    #[test]
    fn a_missing_function_of_an_imported_package_is_found_wherever_it_hides() {
        let lib = "package lib\n\ndouble(x) := 2 * x\n";
        let main = r#"package p

import data.lib

a := lib.tripple(1)
b := data.lib.tripple(2)
c := [x | some x in [1]; helper(x)]
d := {"k": {y | y := [lib.nope(3)][0]}}
e if { every v in [1] { undefined_in_every(v) } }
f := count([1]) if { true } else := oops(1)
test_g if { a with input as make_input(1) }
default h := missing_default_value(1)
i if { some z in [unknown_in_collection(1)]; z }
j := data.lib.double(1) + nested.deep.call(1)
"#;
        assert_eq!(
            undefined(&[("lib.rego", lib), ("p.rego", main)]),
            [
                "p.rego:5:lib.tripple",
                "p.rego:6:data.lib.tripple",
                "p.rego:7:helper",
                "p.rego:8:lib.nope",
                "p.rego:9:undefined_in_every",
                "p.rego:10:oops",
                "p.rego:11:make_input",
                "p.rego:12:missing_default_value",
                "p.rego:13:unknown_in_collection",
                "p.rego:14:nested.deep.call",
            ]
        );
    }

    #[test]
    fn a_value_rule_is_not_a_function() {
        // The interpreter refuses to call a rule that takes no arguments, as OPA does.
        let found = undefined(&[("p.rego", "package p\n\nlimit := 3\n\nx := limit(1)\n")]);
        assert_eq!(found, ["p.rego:5:limit"]);
    }

    #[test]
    fn a_function_of_another_package_needs_its_path() {
        let found = undefined(&[
            ("lib.rego", "package lib\n\ndouble(x) := 2 * x\n"),
            ("p.rego", "package p\n\nx := double(1)\n"),
        ]);
        assert_eq!(found, ["p.rego:3:double"]);
    }

    /// Every name the check accepts must also run: the check may not be more lenient than the
    /// interpreter, nor stricter.
    #[test]
    fn the_check_agrees_with_the_interpreter() {
        let lib = "package lib\n\ndouble(x) := 2 * x\n";
        for (call, defined) in [
            ("lib.double(1)", true),
            ("data.lib.double(1)", true),
            ("count([1])", true),
            ("local(1)", true),
            ("lib.tripple(1)", false),
            ("double(1)", false),
            ("no_such_fn(1)", false),
            ("foo.bar(2)", false),
            // A builtin of a regorus feature this workspace does not enable.
            ("regex.match(\"a\", \"a\")", false),
        ] {
            let main = format!("package p\n\nimport data.lib\n\nlocal(x) := x\n\nx := {call}\n");
            let mut engine = regorus::Engine::new();
            engine.add_policy("lib.rego".into(), lib.into()).unwrap();
            engine.add_policy("p.rego".into(), main).unwrap();
            let runs = engine.eval_rule("data.p.x".into()).is_ok();
            let found = undefined_calls(engine.get_modules());
            assert_eq!(
                runs, defined,
                "{call}: the interpreter disagrees with the table"
            );
            assert_eq!(found.is_empty(), defined, "{call}: {found:?}");
        }
    }
}
