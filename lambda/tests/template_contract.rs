//! The template (infra/) and the function agree: the template sets only
//! variables the function reads, its defaults are values the function
//! accepts, and its alarms add up every `Action` the function emits. Either
//! side changing alone fails here, not in a deploy.

use std::cell::RefCell;
use std::collections::BTreeMap;

use serde_json::Value;
use slipway_infra::{render, StackConfig, FUNCTION_ENVIRONMENT, METRIC_ACTIONS};
use slipway_lambda::config::Config;
use slipway_lambda::event::ACTIONS;
use slipway_lambda::metrics::INVALID_ACTION;

#[test]
fn the_alarms_cover_every_action_the_metrics_carry() {
    let mut emitted: Vec<&str> = ACTIONS.iter().map(|a| a.as_str()).collect();
    emitted.push(INVALID_ACTION);
    assert_eq!(METRIC_ACTIONS.to_vec(), emitted);
}

/// The function's environment as the template renders it with every
/// parameter at its default, and `required` for those without one.
fn environment_with_defaults(required: &[(&str, &str)]) -> BTreeMap<String, String> {
    let template = render(&StackConfig::default());
    let variables = template["Resources"]["MigrationFunction"]["Properties"]["Environment"]
        ["Variables"]
        .as_object()
        .cloned()
        .unwrap_or_default();
    let names: Vec<&str> = variables.keys().map(String::as_str).collect();
    let mut expected = FUNCTION_ENVIRONMENT.to_vec();
    expected.sort_unstable();
    assert_eq!(
        names, expected,
        "infra::FUNCTION_ENVIRONMENT is the template's list"
    );
    variables
        .iter()
        .map(|(name, value)| {
            let parameter = value["Ref"]
                .as_str()
                .unwrap_or_else(|| panic!("{name} is not a parameter: {value}"));
            let default = &template["Parameters"][parameter]["Default"];
            let text = match (required.iter().find(|(p, _)| *p == parameter), default) {
                (Some((_, v)), _) => (*v).to_owned(),
                (None, Value::String(s)) => s.clone(),
                (None, Value::Number(n)) => n.to_string(),
                (None, other) => panic!("{parameter} has no default ({other}) and none was given"),
            };
            (name.clone(), text)
        })
        .collect()
}

#[test]
fn the_function_reads_every_variable_the_template_sets_and_accepts_its_defaults() {
    let env = environment_with_defaults(&[
        (
            "DbSecretArn",
            "arn:aws:secretsmanager:eu-west-1:123456789012:secret:db",
        ),
        ("Environment", "prod"),
    ]);
    let asked = RefCell::new(Vec::new());
    let config = Config::from_lookup(|name| {
        asked.borrow_mut().push(name.to_owned());
        env.get(name).cloned()
    });
    let config = config.unwrap_or_else(|e| panic!("the template's defaults are refused: {e}"));
    for name in FUNCTION_ENVIRONMENT {
        assert!(
            asked.borrow().iter().any(|a| a == name),
            "the template sets {name}, which the function never reads"
        );
    }
    assert_eq!(config.environment, "prod");
    assert_eq!(config.metrics_namespace, "Slipway");
    assert_eq!(config.history_schema, "slipway");
}
