//! buildspec.yml, read as CodeBuild reads it (YAML, parsed by PyYAML from
//! the project venv, which the AWS CLI brings): the phases are there, the
//! build makes the zip for arm64 and the template, the deploy passes the
//! parameters the template has no default for, and the last command is the
//! migrate step that scripts/pipeline-local.sh runs in `make test`.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;
use slipway_infra::{render, StackConfig};

/// The pipeline's one step after a deploy (scripts/invoke-migration.sh).
const MIGRATE_STEP: &str = "bash scripts/invoke-migration.sh migrate";

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("infra/ has a parent")
        .to_path_buf()
}

fn buildspec() -> Value {
    let venv =
        std::env::var_os("SLIPWAY_VENV").map_or_else(|| workspace().join(".venv"), PathBuf::from);
    let python = venv.join("bin/python");
    assert!(
        python.is_file(),
        "{} is missing: run `make test` or `bash scripts/setup.sh`",
        python.display()
    );
    let output = Command::new(&python)
        .arg("-c")
        .arg("import json, sys, yaml; print(json.dumps(yaml.safe_load(open(sys.argv[1], encoding='utf-8'))))")
        .arg(workspace().join("buildspec.yml"))
        .output()
        .expect("run python");
    assert!(
        output.status.success(),
        "buildspec.yml does not parse:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("PyYAML's JSON")
}

fn commands(spec: &Value, phase: &str) -> Vec<String> {
    spec["phases"][phase]["commands"]
        .as_array()
        .unwrap_or_else(|| panic!("phase {phase} has no commands"))
        .iter()
        .map(|c| {
            c.as_str()
                .unwrap_or_else(|| panic!("{c} is not a string"))
                .to_owned()
        })
        .collect()
}

#[test]
fn the_phases_build_test_deploy_and_migrate() {
    let spec = buildspec();
    assert_eq!(spec["version"], 0.2);
    for phase in ["install", "pre_build", "build"] {
        assert_eq!(
            spec["phases"][phase]["on-failure"], "ABORT",
            "a failed {phase} must not go on to deploy"
        );
    }
    let install = commands(&spec, "install").join("\n");
    assert!(install.contains("scripts/setup.sh"), "{install}");
    assert_eq!(commands(&spec, "pre_build"), ["make test"]);
    assert_eq!(
        commands(&spec, "build"),
        ["make lambda LAMBDA_FLAGS=--arm64", "make template"]
    );

    let post = commands(&spec, "post_build");
    assert_eq!(
        post.last().map(String::as_str),
        Some(MIGRATE_STEP),
        "the migrate step comes last"
    );
    let deploy = post
        .iter()
        .find(|c| c.starts_with("aws cloudformation deploy"))
        .expect("a deploy command");
    assert!(
        deploy.contains("--template-file infra/template.json"),
        "{deploy}"
    );
    assert!(deploy.contains("--capabilities CAPABILITY_IAM"), "{deploy}");
    // Every parameter without a default is given.
    let template = render(&StackConfig::default());
    for (name, parameter) in template["Parameters"].as_object().into_iter().flatten() {
        if parameter.get("Default").is_none() {
            assert!(
                deploy.contains(&format!("\"{name}=")),
                "{name} is not passed: {deploy}"
            );
        }
    }
    let invokes: Vec<&String> = post
        .iter()
        .filter(|c| c.contains("invoke-migration.sh"))
        .collect();
    assert_eq!(invokes.len(), 1, "one migrate step: {invokes:?}");
}

#[test]
fn the_local_pipeline_runs_the_buildspecs_migrate_step() {
    let script = std::fs::read_to_string(workspace().join("scripts/pipeline-local.sh"))
        .expect("read scripts/pipeline-local.sh");
    // It takes the step from buildspec.yml rather than spelling it again.
    assert!(
        script.contains("buildspec.yml"),
        "pipeline-local.sh reads buildspec.yml"
    );
    assert!(script.contains("eval \"$migrate_step\""));
    assert!(!script.contains(MIGRATE_STEP));
}
