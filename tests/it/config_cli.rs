//! `setpoint config check` and `setpoint policy test` through the binary: what they refuse,
//! and whether they say where.

use std::path::Path;
use std::process::Output;

use crate::setpoint_binary;

fn setpoint(args: &[&str]) -> Output {
    std::process::Command::new(setpoint_binary())
        .args(args)
        .env_remove("RUST_LOG")
        .env_remove("SETPOINT_CONFIG")
        .output()
        .unwrap()
}

fn policies_dir() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies")
}

/// A copy of the repository's policy bundle (Rego and data, without the golden cases).
fn copy_of_the_policies(to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(policies_dir()).unwrap() {
        let path = entry.unwrap().path();
        if path.is_file() && path.extension().is_some_and(|e| e == "rego" || e == "json") {
            std::fs::copy(&path, to.join(path.file_name().unwrap())).unwrap();
        }
    }
}

#[test]
fn config_check_and_policy_test_refuse_a_call_to_an_undefined_function() {
    let dir = tempfile::tempdir().unwrap();
    let bundle = dir.path().join("policies");
    copy_of_the_policies(&bundle);
    let config = dir.path().join("setpoint.yaml");
    std::fs::write(
        &config,
        format!(
            "state_dir: {}\nloops:\n  - name: pg\n    plugin: builtin:postgres\n    source: {{ kind: simulated }}\n    policies: {}\n",
            dir.path().join("state").display(),
            bundle.display()
        ),
    )
    .unwrap();
    let config = config.display().to_string();
    let bundle_arg = bundle.display().to_string();
    let check = || setpoint(&["--config", &config, "config", "check"]);
    let test = || setpoint(&["policy", "test", &bundle_arg]);

    // The project's own policies pass both: the check does not cry wolf.
    for output in [check(), test()] {
        assert!(output.status.success(), "{output:?}");
    }

    std::fs::write(
        bundle.join("lib.rego"),
        "package setpoint.lib\n\nimport rego.v1\n\nhelper(x) := x\n",
    )
    .unwrap();
    std::fs::write(
        bundle.join("typo.rego"),
        "package setpoint.typo\n\nimport rego.v1\nimport data.setpoint.lib\n\nflag := no_such_fn(1)\n\nother if {\n    lib.helpr(2)\n}\n\nfine := lib.helper(3)\n",
    )
    .unwrap();
    let typo = bundle.join("typo.rego").display().to_string();
    for output in [check(), test()] {
        assert_eq!(output.status.code(), Some(1), "{output:?}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        for needle in [
            format!("{typo}:6:9: call to undefined function no_such_fn"),
            format!("{typo}:9:5: call to undefined function lib.helpr"),
        ] {
            assert!(stderr.contains(&needle), "{needle:?} missing:\n{stderr}");
        }
        assert!(
            !stderr.contains("lib.helper"),
            "a defined function: {stderr}"
        );
    }
    let stderr = String::from_utf8_lossy(&check().stderr).into_owned();
    assert!(stderr.contains("loop pg: policy bundle"), "{stderr}");
}

#[test]
fn a_type_error_inside_source_names_the_field_and_its_line() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("setpoint.yaml");
    for (field, expected) in [
        (
            "timeout: [1, 2]",
            "setpoint.yaml:8:16: loops[0].source.timeout: invalid type: sequence",
        ),
        (
            "retries: \"x\"",
            "setpoint.yaml:8:16: loops[0].source.retries: invalid type: string \"x\", expected u32",
        ),
    ] {
        std::fs::write(
            &config,
            format!(
                "loops:\n  - name: pg\n    plugin: builtin:postgres\n\n    source:\n      kind: prometheus\n      url: http://127.0.0.1:9\n      {field}\n"
            ),
        )
        .unwrap();
        let output = setpoint(&["--config", &config.display().to_string(), "config", "check"]);
        assert_eq!(output.status.code(), Some(1), "{field}: {output:?}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(expected), "{field}: {stderr}");
    }
}
