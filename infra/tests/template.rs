//! The template as CloudFormation and an operator will see it: the committed
//! `infra/template.json` is exactly what `render` gives (`UPDATE_EXPECT=1`
//! rewrites it), `cfn-lint` finds nothing in it, and the rules the template
//! exists for hold — least privilege, every alarm into the topic, one
//! migration at a time.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{json, Value};
use slipway_infra::{render, to_file_text, StackConfig, ALARMS, METRIC_ACTIONS};

fn committed_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("template.json")
}

fn template() -> Value {
    render(&StackConfig::default())
}

fn resources(template: &Value) -> Vec<(&String, &Value)> {
    template["Resources"]
        .as_object()
        .map(|r| r.iter().collect())
        .unwrap_or_default()
}

fn of_type<'a>(template: &'a Value, kind: &str) -> Vec<(&'a String, &'a Value)> {
    resources(template)
        .into_iter()
        .filter(|(_, r)| r["Type"] == kind)
        .collect()
}

/// A policy statement and the condition (`Fn::If`) it stands under, if any.
fn statements(template: &Value) -> Vec<(Option<String>, Value)> {
    let mut out = Vec::new();
    for (_, role) in of_type(template, "AWS::IAM::Role") {
        for policy in role["Properties"]["Policies"]
            .as_array()
            .into_iter()
            .flatten()
        {
            for item in policy["PolicyDocument"]["Statement"]
                .as_array()
                .into_iter()
                .flatten()
            {
                match item.get("Fn::If") {
                    Some(branches) => {
                        let condition = branches[0].as_str().map(str::to_owned);
                        assert_eq!(
                            branches[2],
                            json!({"Ref": "AWS::NoValue"}),
                            "a conditional statement grants nothing otherwise: {item}"
                        );
                        out.push((condition, branches[1].clone()));
                    }
                    None => out.push((None, item.clone())),
                }
            }
        }
    }
    out
}

fn strings(value: &Value) -> Vec<String> {
    match value {
        Value::String(s) => vec![s.clone()],
        Value::Array(items) => items.iter().flat_map(strings).collect(),
        _ => Vec::new(),
    }
}

#[test]
fn the_committed_template_is_current() {
    let want = to_file_text(&template());
    let path = committed_path();
    if std::env::var_os("UPDATE_EXPECT").is_some_and(|v| v == "1") {
        std::fs::write(&path, &want).expect("write infra/template.json");
        return;
    }
    let have = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        have == want,
        "infra/template.json is stale: run `make template` (or UPDATE_EXPECT=1 cargo test -p slipway-infra) and commit it"
    );
    // Byte for byte the same on every render.
    assert_eq!(to_file_text(&template()), want);
}

#[test]
fn no_wildcard_action_and_star_resources_only_where_iam_has_no_other() {
    // Actions that take no resource-level permissions, and the condition
    // (parameter or IAM condition key) that confines each.
    let allowed_star: [(&str, Option<&str>); 5] = [
        ("cloudwatch:PutMetricData", None),
        ("ec2:DescribeNetworkInterfaces", Some("UseVpc")),
        ("ec2:DescribeSubnets", Some("UseVpc")),
        (
            "codepipeline:PutJobSuccessResult",
            Some("AnswersCodePipelineJobs"),
        ),
        (
            "codepipeline:PutJobFailureResult",
            Some("AnswersCodePipelineJobs"),
        ),
    ];
    let all = statements(&template());
    assert!(all.len() >= 5, "{all:?}");
    for (condition, statement) in &all {
        assert_eq!(statement["Effect"], "Allow", "{statement}");
        let actions = strings(&statement["Action"]);
        assert!(!actions.is_empty(), "{statement}");
        for action in &actions {
            assert!(
                action != "*" && !action.ends_with(":*"),
                "wildcard action: {statement}"
            );
        }
        assert!(statement.get("NotAction").is_none() && statement.get("NotResource").is_none());
        let resources = &statement["Resource"];
        assert!(!resources.is_null(), "{statement}");
        if strings(resources).iter().any(|r| r == "*") {
            for action in &actions {
                let rule = allowed_star.iter().find(|(a, _)| a == action);
                let Some((_, needed)) = rule else {
                    panic!("Resource \"*\" for {action}: {statement}");
                };
                assert_eq!(condition.as_deref(), *needed, "{statement}");
            }
        }
        if actions.iter().any(|a| a == "cloudwatch:PutMetricData") {
            assert_eq!(
                statement["Condition"]["StringEquals"]["cloudwatch:namespace"],
                json!({"Ref": "MetricsNamespace"}),
                "PutMetricData must be confined to the namespace: {statement}"
            );
        }
    }
    let secret = all
        .iter()
        .find(|(_, s)| strings(&s["Action"]).contains(&"secretsmanager:GetSecretValue".into()))
        .expect("the role reads the secret");
    assert_eq!(secret.1["Resource"], json!({"Ref": "DbSecretArn"}));
    let kms = all
        .iter()
        .find(|(_, s)| strings(&s["Action"]).contains(&"kms:Decrypt".into()))
        .expect("kms:Decrypt for a customer key");
    assert_eq!(kms.0.as_deref(), Some("HasKmsKey"));
    let logs = all
        .iter()
        .find(|(_, s)| strings(&s["Action"]).contains(&"logs:PutLogEvents".into()))
        .expect("the role writes logs");
    assert_eq!(
        logs.1["Resource"],
        json!({"Fn::GetAtt": ["MigrationLogGroup", "Arn"]}),
        "logs only to its own group"
    );
}

#[test]
fn every_alarm_notifies_the_topic_and_names_its_metrics_fully() {
    let t = template();
    let alarms = of_type(&t, "AWS::CloudWatch::Alarm");
    let ids: Vec<&str> = alarms.iter().map(|(id, _)| id.as_str()).collect();
    let mut expected = ALARMS.to_vec();
    expected.sort_unstable();
    assert_eq!(ids, expected);
    for (id, alarm) in alarms {
        let p = &alarm["Properties"];
        assert_eq!(p["AlarmActions"], json!([{"Ref": "AlarmTopic"}]), "{id}");
        assert_eq!(p["TreatMissingData"], "notBreaching", "{id}");
        if let Some(queries) = p["Metrics"].as_array() {
            // CloudWatch: at most 10 metrics per alarm, and no SEARCH.
            assert!(queries.len() <= 10, "{id}");
            let returned: Vec<&Value> =
                queries.iter().filter(|q| q["ReturnData"] == true).collect();
            assert_eq!(returned.len(), 1, "{id}");
            assert!(!returned[0]["Expression"]
                .as_str()
                .unwrap_or_default()
                .contains("SEARCH"));
            let mut actions: Vec<String> = Vec::new();
            for query in queries.iter().filter(|q| q.get("MetricStat").is_some()) {
                let metric = &query["MetricStat"]["Metric"];
                assert_eq!(
                    metric["Namespace"],
                    json!({"Ref": "MetricsNamespace"}),
                    "{id}"
                );
                let dims = metric["Dimensions"].as_array().cloned().unwrap_or_default();
                assert_eq!(dims.len(), 2, "{id}: Environment and Action");
                assert_eq!(
                    dims[0],
                    json!({"Name": "Environment", "Value": {"Ref": "Environment"}})
                );
                assert_eq!(dims[1]["Name"], "Action");
                actions.push(dims[1]["Value"].as_str().unwrap_or_default().to_owned());
                // Every id the expression names is one of the queries.
                let query_id = query["Id"].as_str().unwrap_or_default();
                assert!(returned[0]["Expression"]
                    .as_str()
                    .unwrap_or_default()
                    .contains(query_id));
            }
            assert_eq!(actions, METRIC_ACTIONS, "{id}: every action's series");
        } else {
            assert_eq!(p["Namespace"], "AWS/Lambda", "{id}");
            assert_eq!(
                p["Dimensions"],
                json!([{"Name": "FunctionName", "Value": {"Ref": "MigrationFunction"}}])
            );
        }
    }
    let duration = &t["Resources"]["MigrationDurationAlarm"]["Properties"];
    assert_eq!(duration["Threshold"], json!(300_000.0));
    assert_eq!(duration["ComparisonOperator"], "GreaterThanThreshold");
}

#[test]
fn one_migration_at_a_time_on_the_runtime_the_zip_is_built_for() {
    let t = template();
    let function = &t["Resources"]["MigrationFunction"]["Properties"];
    assert_eq!(function["ReservedConcurrentExecutions"], json!(1));
    assert_eq!(function["Runtime"], "provided.al2023");
    assert_eq!(function["Handler"], "bootstrap");
    assert_eq!(function["Architectures"], json!([{"Ref": "Architecture"}]));
    assert_eq!(t["Parameters"]["Architecture"]["Default"], "arm64");
    assert_eq!(t["Parameters"]["Timeout"]["MaxValue"], json!(900));
    assert_eq!(
        t["Parameters"]["Environment"]["AllowedValues"],
        json!(["dev", "staging", "prod"])
    );
    for output in ["FunctionName", "FunctionArn", "AlarmTopicArn"] {
        assert!(t["Outputs"].get(output).is_some(), "output {output}");
    }
}

#[test]
fn every_reference_resolves() {
    let t = template();
    let mut known: Vec<String> = [
        "AWS::Region",
        "AWS::AccountId",
        "AWS::Partition",
        "AWS::StackName",
        "AWS::NoValue",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    for section in ["Parameters", "Resources"] {
        known.extend(
            t[section]
                .as_object()
                .into_iter()
                .flatten()
                .map(|(k, _)| k.clone()),
        );
    }
    let conditions: Vec<String> = t["Conditions"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(k, _)| k.clone())
        .collect();
    let mut stack = vec![&t];
    let mut checked = 0;
    while let Some(value) = stack.pop() {
        match value {
            Value::Object(map) => {
                if let Some(Value::String(name)) = map.get("Ref") {
                    assert!(known.contains(name), "Ref {name}");
                    checked += 1;
                }
                if let Some(Value::String(text)) = map.get("Fn::Sub") {
                    for piece in text.split("${").skip(1) {
                        let name = piece.split('}').next().unwrap_or_default();
                        let name = name.split('.').next().unwrap_or_default();
                        assert!(known.iter().any(|k| k == name), "${{{name}}} in Fn::Sub");
                        checked += 1;
                    }
                }
                if let Some(Value::Array(branches)) = map.get("Fn::If") {
                    let name = branches[0].as_str().unwrap_or_default();
                    assert!(conditions.iter().any(|c| c == name), "Fn::If {name}");
                }
                if let Some(Value::String(name)) = map.get("Condition") {
                    assert!(conditions.contains(name), "Condition {name}");
                }
                stack.extend(map.values());
            }
            Value::Array(items) => stack.extend(items),
            _ => {}
        }
    }
    assert!(checked > 50, "only {checked} references found");
}

/// cfn-lint (from the project venv) on the committed file. Its exit code is a
/// bitmask: 2 errors, 4 warnings, 8 informational; only 0 or 8 pass.
#[test]
fn cfn_lint_finds_nothing() {
    let venv = std::env::var_os("SLIPWAY_VENV").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("../.venv"),
        PathBuf::from,
    );
    let lint = venv.join("bin/cfn-lint");
    assert!(
        lint.is_file(),
        "{} is missing: run `make test` or `bash scripts/setup.sh`",
        lint.display()
    );
    let output = Command::new(&lint)
        .arg("--")
        .arg(committed_path())
        .output()
        .expect("run cfn-lint");
    let code = output.status.code().unwrap_or(-1);
    assert!(
        code == 0 || code == 8,
        "cfn-lint exit {code}:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}
