//! What the function is asked to do: a direct event
//! `{"action":..., "dry_run":bool, "to":"0005"}` (docs/DESIGN.md, "Interfaces") or a
//! CodePipeline job whose user parameters carry the same request.
//!
//! Parsing is strict on purpose. An unknown action, a field of the wrong type
//! or an unknown field (`"dryrun":true`, a typo that would otherwise apply for
//! real) is a `bad_request`: the function never falls back to a default
//! action. Pure functions of the JSON, unit-tested here.

use serde::Deserialize;
use serde_json::Value;
use slipway::request::{RequestError as OptionError, RequestOption};
use slipway::{Action, Error, Request, RequestOptions};

/// The actions an event may ask for: the contract's, in its order (verify
/// and snapshot need a server to create databases on, which the function
/// does not offer).
pub const ACTIONS: [Action; 5] = [
    Action::Validate,
    Action::Apply,
    Action::Rollback,
    Action::Status,
    Action::VerifyPermissions,
];

fn parse_action(text: &str) -> Option<Action> {
    ACTIONS.into_iter().find(|a| a.as_str() == text)
}

/// How the function was invoked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Invocation {
    /// By CodeBuild, the CLI or a person: the response is the report.
    Direct(Request),
    /// As a CodePipeline action: the outcome must also be sent back with
    /// PutJobSuccessResult / PutJobFailureResult, or the pipeline waits until
    /// its timeout.
    CodePipeline {
        job_id: String,
        request: Result<Request, RequestError>,
    },
}

/// A request that could not be understood, with what the report should say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestError {
    /// The action to put in the report: the one asked for when it was a
    /// string (cut short), else `unknown`.
    pub action: String,
    pub dry_run: bool,
    pub message: String,
}

impl RequestError {
    /// The library error (`bad_request`) for the report.
    pub fn to_error(&self) -> Error {
        Error::BadRequest(self.message.clone())
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRequest {
    action: String,
    #[serde(default)]
    dry_run: bool,
    #[serde(default)]
    to: Option<String>,
    #[serde(default)]
    allow_drift: bool,
}

const EXPECTED: &str = r#"expected {"action":"validate"|"apply"|"rollback"|"status"|"verify-permissions", "dry_run":false, "to":"0005", "allow_drift":false}"#;

/// Parse the invocation event.
pub fn parse(event: &Value) -> Result<Invocation, RequestError> {
    if let Some(job) = event.get("CodePipeline.job") {
        let job_id = job
            .get("id")
            .and_then(Value::as_str)
            .filter(|id| !id.is_empty())
            .ok_or_else(|| RequestError {
                action: "unknown".into(),
                dry_run: false,
                message: "CodePipeline.job has no id".into(),
            })?;
        return Ok(Invocation::CodePipeline {
            job_id: job_id.to_owned(),
            request: parse_user_parameters(job),
        });
    }
    parse_request(event).map(Invocation::Direct)
}

/// Parse a direct request.
pub fn parse_request(event: &Value) -> Result<Request, RequestError> {
    let action_hint = event
        .get("action")
        .and_then(Value::as_str)
        .map_or_else(|| "unknown".to_owned(), |a| a.chars().take(40).collect());
    let dry_run_hint = event
        .get("dry_run")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let error = |message: String| RequestError {
        action: action_hint.clone(),
        dry_run: dry_run_hint,
        message,
    };
    if !event.is_object() {
        return Err(error(format!("the event is not a JSON object; {EXPECTED}")));
    }
    let raw: RawRequest = serde_json::from_value(event.clone())
        .map_err(|e| error(format!("malformed event ({e}); {EXPECTED}")))?;
    let action = parse_action(&raw.action).ok_or_else(|| {
        error(format!(
            "unknown action '{}'; {EXPECTED}",
            raw.action.chars().take(40).collect::<String>()
        ))
    })?;
    if let Some(to) = &raw.to {
        if to.is_empty() || !to.bytes().all(|b| b.is_ascii_digit()) {
            return Err(error(format!(
                "\"to\" must be a version made of digits like \"0005\", not '{}'",
                to.chars().take(40).collect::<String>()
            )));
        }
    }
    let options = RequestOptions {
        dry_run: raw.dry_run,
        to: raw.to,
        allow_drift: raw.allow_drift,
        ..RequestOptions::default()
    };
    Request::new(action, options).map_err(|e| error(describe(e)))
}

/// A request the option table refuses, in the event's spelling.
fn describe(error: OptionError) -> String {
    let name = |option| match option {
        RequestOption::DryRun => "dry_run",
        RequestOption::To => "\"to\"",
        RequestOption::AllowDrift => "allow_drift",
        RequestOption::Out => "out",
        RequestOption::Check => "check",
    };
    match error {
        OptionError::NotAccepted { option, action } => {
            let taking: Vec<&str> = Action::taking(option)
                .into_iter()
                .map(Action::as_str)
                .collect();
            format!(
                "{} applies to {}, not to {action}",
                name(option),
                taking.join(" and ")
            )
        }
        OptionError::Missing { option, action } => {
            format!(
                "{action} needs {}: the version to roll back to",
                name(option)
            )
        }
    }
}

/// The request inside a CodePipeline job: `UserParameters` holds either the
/// JSON of a direct event or just an action name (`apply`).
fn parse_user_parameters(job: &Value) -> Result<Request, RequestError> {
    let parameters = job
        .pointer("/data/actionConfiguration/configuration/UserParameters")
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .ok_or_else(|| RequestError {
            action: "unknown".into(),
            dry_run: false,
            message: format!(
                "the CodePipeline action has no UserParameters; set them to an action (validate, apply) or to {EXPECTED}"
            ),
        })?;
    if parameters.starts_with('{') {
        let value: Value = serde_json::from_str(parameters).map_err(|e| RequestError {
            action: "unknown".into(),
            dry_run: false,
            message: format!("UserParameters is not JSON ({e}); {EXPECTED}"),
        })?;
        parse_request(&value)
    } else {
        parse_request(&serde_json::json!({ "action": parameters }))
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn direct(event: Value) -> Result<Request, RequestError> {
        match parse(&event)? {
            Invocation::Direct(request) => Ok(request),
            other => panic!("{event} parsed as {other:?}"),
        }
    }

    #[test]
    fn good_events() {
        let cases = [
            (json!({"action":"validate"}), Action::Validate, false, None),
            (
                json!({"action":"apply","dry_run":false}),
                Action::Apply,
                false,
                None,
            ),
            (
                json!({"action":"apply","dry_run":true,"to":"0004"}),
                Action::Apply,
                true,
                Some("0004"),
            ),
            (
                json!({"action":"apply","to":null}),
                Action::Apply,
                false,
                None,
            ),
            (json!({"action":"status"}), Action::Status, false, None),
            (
                json!({"action":"verify-permissions"}),
                Action::VerifyPermissions,
                false,
                None,
            ),
            (
                json!({"action":"rollback","to":"0003"}),
                Action::Rollback,
                false,
                Some("0003"),
            ),
            (
                json!({"action":"rollback","to":"0","dry_run":true}),
                Action::Rollback,
                true,
                Some("0"),
            ),
        ];
        for (event, action, dry_run, to) in cases {
            let request = direct(event.clone()).unwrap_or_else(|e| panic!("{event}: {e:?}"));
            assert_eq!(request.action(), action, "{event}");
            assert_eq!(request.options().dry_run, dry_run, "{event}");
            assert_eq!(request.options().to.as_deref(), to, "{event}");
            assert!(!request.options().allow_drift, "{event}");
        }
    }

    #[test]
    fn allow_drift_is_read_for_apply_and_rollback_only() {
        let request = direct(json!({"action":"apply","allow_drift":true})).expect("apply");
        assert!(request.options().allow_drift);
        let request = direct(json!({"action":"apply","allow_drift":false})).expect("apply");
        assert!(!request.options().allow_drift);
        let err = direct(json!({"action":"validate","allow_drift":true})).expect_err("validate");
        assert!(
            err.message.contains("allow_drift applies to apply"),
            "{}",
            err.message
        );
        let err = direct(json!({"action":"apply","allow_drift":"yes"})).expect_err("string");
        assert!(err.message.contains("malformed event"), "{}", err.message);
    }

    #[test]
    fn malformed_events_are_bad_requests_never_a_default() {
        let cases = [
            (json!({}), "missing field `action`", "unknown"),
            (
                json!({"action":"migrate"}),
                "unknown action 'migrate'",
                "migrate",
            ),
            (json!({"action":"APPLY"}), "unknown action", "APPLY"),
            (json!({"action":42}), "malformed event", "unknown"),
            (
                json!({"action":"apply","dryrun":true}),
                "unknown field `dryrun`",
                "apply",
            ),
            (
                json!({"action":"apply","dry_run":"yes"}),
                "malformed event",
                "apply",
            ),
            (json!({"action":"apply","to":5}), "malformed event", "apply"),
            (
                json!({"action":"apply","to":"v5"}),
                "made of digits",
                "apply",
            ),
            (
                json!({"action":"validate","dry_run":true}),
                "dry_run applies to apply",
                "validate",
            ),
            (
                json!({"action":"status","to":"0002"}),
                "\"to\" applies",
                "status",
            ),
            (json!({"action":"rollback"}), "needs \"to\"", "rollback"),
            (
                json!({"action":"rollback","to":null}),
                "needs \"to\"",
                "rollback",
            ),
            (
                json!({"action":"rollback","to":"v3"}),
                "made of digits",
                "rollback",
            ),
            (
                json!({"action":"rollback","to":3}),
                "malformed event",
                "rollback",
            ),
            (json!("apply"), "not a JSON object", "unknown"),
            (json!(null), "not a JSON object", "unknown"),
            (json!([{"action":"apply"}]), "not a JSON object", "unknown"),
        ];
        for (event, message, action) in cases {
            let err = direct(event.clone()).expect_err(&event.to_string());
            assert!(err.message.contains(message), "{event}: {}", err.message);
            assert_eq!(err.action, action, "{event}");
            assert_eq!(err.to_error().code().as_str(), "bad_request");
        }
    }

    fn job(parameters: Value) -> Value {
        json!({
            "CodePipeline.job": {
                "id": "11111111-abcd-1111-abcd-111111abcdef",
                "accountId": "111111111111",
                "data": {
                    "actionConfiguration": {
                        "configuration": {
                            "FunctionName": "tutor-migrate",
                            "UserParameters": parameters
                        }
                    },
                    "inputArtifacts": [],
                    "outputArtifacts": []
                }
            }
        })
    }

    #[test]
    fn codepipeline_jobs_take_the_request_from_user_parameters() {
        let cases = [
            (json!("apply"), Action::Apply, false),
            (json!(" validate "), Action::Validate, false),
            (
                json!(r#"{"action":"apply","dry_run":true}"#),
                Action::Apply,
                true,
            ),
        ];
        for (parameters, action, dry_run) in cases {
            let Invocation::CodePipeline { job_id, request } =
                parse(&job(parameters.clone())).unwrap()
            else {
                panic!("{parameters} is not a job");
            };
            assert_eq!(job_id, "11111111-abcd-1111-abcd-111111abcdef");
            let request = request.unwrap();
            assert_eq!(
                (request.action(), request.options().dry_run),
                (action, dry_run)
            );
        }
    }

    #[test]
    fn bad_user_parameters_still_yield_the_job_id() {
        for (parameters, message) in [
            (json!("deploy"), "unknown action 'deploy'"),
            (json!("{\"action\":"), "UserParameters is not JSON"),
            (json!(""), "no UserParameters"),
            (json!(7), "no UserParameters"),
        ] {
            let Invocation::CodePipeline { job_id, request } =
                parse(&job(parameters.clone())).unwrap()
            else {
                panic!("{parameters} is not a job");
            };
            assert!(!job_id.is_empty());
            let err = request.expect_err(&parameters.to_string());
            assert!(
                err.message.contains(message),
                "{parameters}: {}",
                err.message
            );
        }
    }

    /// What every outcome of `parse` must be: a request that keeps the
    /// contract's rules, or a typed `bad_request`.
    fn check_outcome(event: &Value) {
        match parse(event) {
            Ok(Invocation::Direct(request)) => check_request(event, &request),
            Ok(Invocation::CodePipeline { job_id, request }) => {
                assert!(!job_id.is_empty(), "{event}");
                match request {
                    Ok(request) => check_request(event, &request),
                    Err(e) => check_error(event, &e),
                }
            }
            Err(e) => check_error(event, &e),
        }
    }

    fn check_request(event: &Value, request: &Request) {
        let options_allowed = matches!(request.action(), Action::Apply | Action::Rollback);
        assert!(
            options_allowed || !request.options().dry_run,
            "{event}: {request:?}"
        );
        assert!(
            options_allowed || !request.options().allow_drift,
            "{event}: {request:?}"
        );
        assert!(
            options_allowed || request.options().to.is_none(),
            "{event}: {request:?}"
        );
        assert!(
            request.action() != Action::Rollback || request.options().to.is_some(),
            "{event}: {request:?}"
        );
        if let Some(to) = &request.options().to {
            assert!(
                !to.is_empty() && to.bytes().all(|b| b.is_ascii_digit()),
                "{event}: {request:?}"
            );
        }
    }

    fn check_error(event: &Value, error: &RequestError) {
        assert_eq!(
            error.to_error().code().as_str(),
            "bad_request",
            "{event}: {error:?}"
        );
        assert!(!error.message.is_empty(), "{event}");
        assert!(error.action.chars().count() <= 40, "{event}: {error:?}");
    }

    mod properties {
        use proptest::prelude::*;
        use serde_json::{json, Map, Value};

        use super::{check_outcome, job};

        /// Any JSON value, nested a few levels.
        fn any_json() -> impl Strategy<Value = Value> {
            let leaf = prop_oneof![
                Just(Value::Null),
                any::<bool>().prop_map(Value::Bool),
                any::<i64>().prop_map(Value::from),
                any::<f64>().prop_map(Value::from),
                ".*".prop_map(Value::String),
                field_value_text().prop_map(Value::String),
            ];
            leaf.prop_recursive(3, 24, 6, |inner| {
                prop_oneof![
                    prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                    prop::collection::vec((key(), inner), 0..6)
                        .prop_map(|pairs| Value::Object(pairs.into_iter().collect())),
                ]
            })
        }

        /// Strings a field of the event plausibly holds: the actions, digit
        /// versions, near misses, and anything at all.
        fn field_value_text() -> impl Strategy<Value = String> {
            prop_oneof![
                prop::sample::select(vec![
                    "validate",
                    "apply",
                    "rollback",
                    "status",
                    "verify-permissions",
                    "APPLY",
                    " apply",
                    "",
                    "0",
                    "0005",
                    "v5",
                    "{\"action\":\"apply\"}",
                ])
                .prop_map(str::to_owned),
                "[0-9]{0,6}",
                "\\PC{0,60}",
            ]
        }

        /// The event's own keys, near misses, and anything at all.
        fn key() -> impl Strategy<Value = String> {
            prop_oneof![
                prop::sample::select(vec![
                    "action",
                    "dry_run",
                    "to",
                    "allow_drift",
                    "dryrun",
                    "CodePipeline.job",
                    "id",
                    "data",
                ])
                .prop_map(str::to_owned),
                ".{0,12}",
            ]
        }

        /// A value for one of the event's fields: mostly the right type.
        fn field_value() -> impl Strategy<Value = Value> {
            prop_oneof![
                3 => field_value_text().prop_map(Value::String),
                2 => any::<bool>().prop_map(Value::Bool),
                1 => Just(Value::Null),
                1 => any_json(),
            ]
        }

        /// Objects of the event's shape: some of its keys, maybe an extra.
        fn event_shaped() -> impl Strategy<Value = Value> {
            (
                prop::option::of(field_value()),
                prop::option::of(field_value()),
                prop::option::of(field_value()),
                prop::option::of(field_value()),
                prop::option::of((key(), field_value())),
            )
                .prop_map(|(action, dry_run, to, allow_drift, extra)| {
                    let mut object = Map::new();
                    for (name, value) in [
                        ("action", action),
                        ("dry_run", dry_run),
                        ("to", to),
                        ("allow_drift", allow_drift),
                    ] {
                        if let Some(value) = value {
                            object.insert(name.to_owned(), value);
                        }
                    }
                    if let Some((name, value)) = extra {
                        object.insert(name, value);
                    }
                    Value::Object(object)
                })
        }

        proptest! {
            #[test]
            fn any_string_is_a_request_or_a_bad_request(text in "\\PC*") {
                check_outcome(&Value::String(text.clone()));
                if let Ok(value) = serde_json::from_str::<Value>(&text) {
                    check_outcome(&value);
                }
                check_outcome(&job(Value::String(text)));
            }

            #[test]
            fn any_json_is_a_request_or_a_bad_request(value in any_json()) {
                check_outcome(&value);
                check_outcome(&job(value.clone()));
                check_outcome(&json!({ "CodePipeline.job": value }));
            }

            #[test]
            fn event_shaped_objects_are_a_request_or_a_bad_request(event in event_shaped()) {
                check_outcome(&event);
                // The same request as a CodePipeline job's UserParameters.
                check_outcome(&job(Value::String(event.to_string())));
            }

            #[test]
            fn codepipeline_envelopes_are_a_job_or_a_bad_request(
                id in prop::option::of(field_value()),
                data in prop::option::of(any_json()),
                parameters in prop::option::of(field_value()),
                configuration in prop::option::of(any_json()),
            ) {
                let mut job = Map::new();
                if let Some(id) = id {
                    job.insert("id".into(), id);
                }
                if let Some(data) = data {
                    job.insert("data".into(), data);
                }
                if parameters.is_some() || configuration.is_some() {
                    let mut config = match configuration {
                        Some(Value::Object(config)) => config,
                        _ => Map::new(),
                    };
                    if let Some(parameters) = parameters {
                        config.insert("UserParameters".into(), parameters);
                    }
                    job.insert(
                        "data".into(),
                        json!({ "actionConfiguration": { "configuration": config } }),
                    );
                }
                check_outcome(&json!({ "CodePipeline.job": job }));
            }
        }
    }

    #[test]
    fn a_job_without_id_is_a_bad_request() {
        let err = parse(&json!({"CodePipeline.job": {"data": {}}})).unwrap_err();
        assert!(err.message.contains("no id"), "{}", err.message);
    }
}
