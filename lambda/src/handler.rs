//! The handler: event in, library call, report out — plus the metrics and,
//! for a CodePipeline job, the job result. Everything a migration does lives
//! in the `slipway` library; this module only adapts.
//!
//! [`State`] is built once per cold start and lives across warm invocations:
//! the AWS clients, the embedded migrations, the secret cache. A bad setting
//! does not crash the cold start (Lambda would only say `Runtime.ExitError`);
//! it is kept and answered, with a `config` report, on every invocation.

use aws_config::SdkConfig;
use lambda_runtime::{Diagnostic, LambdaEvent};
use serde_json::Value;
use slipway::credentials::{Credentials, Resolve};
use slipway::runner::{ConnectTimeout, Runner};
use slipway::{Error, MigrationSet, Report, Request};

use crate::codepipeline;
use crate::config::Config;
use crate::event::{self, Invocation};
use crate::metrics;

/// What lives across invocations.
pub struct State {
    setup: Result<Setup, Error>,
    cloudwatch: aws_sdk_cloudwatch::Client,
    codepipeline: aws_sdk_codepipeline::Client,
}

struct Setup {
    config: Config,
    runner: Runner,
}

impl State {
    /// Build the state from the configuration and the migration set (either
    /// may have failed; see the module docs) and the AWS settings.
    pub async fn new(
        config: Result<Config, Error>,
        migrations: Result<MigrationSet, Error>,
        sdk: &SdkConfig,
    ) -> State {
        let setup = match (config, migrations) {
            (Ok(config), Ok(migrations)) => {
                let resolve = Resolve {
                    sdk: Some(sdk),
                    ..Resolve::default()
                };
                Credentials::resolve(&config.database, resolve)
                    .await
                    .map_err(|e| match &config.database {
                        slipway::config::DatabaseSource::Url(_) => {
                            Error::Config(format!("DATABASE_URL: {e}"))
                        }
                        _ => e,
                    })
                    .map(|credentials| Setup {
                        runner: Runner {
                            migrations,
                            credentials,
                            settings: config.settings.clone(),
                            history_schema: config.history_schema.clone(),
                            check_drift: true,
                            run_by: format!("lambda:{}", config.function_name),
                            tls: config.tls.clone(),
                            connect_timeout: Some(ConnectTimeout::Configured(
                                config.connect_timeout,
                            )),
                        },
                        config,
                    })
            }
            (Err(error), _) | (_, Err(error)) => Err(error),
        };
        if let Err(error) = &setup {
            tracing::error!(
                code = error.code().as_str(),
                "{error}; every invocation will answer with this error"
            );
        }
        State {
            setup,
            cloudwatch: aws_sdk_cloudwatch::Client::new(sdk),
            codepipeline: aws_sdk_codepipeline::Client::new(sdk),
        }
    }

    async fn run(&self, request: &Request) -> Report {
        match &self.setup {
            Ok(setup) => setup.runner.run(request).await,
            Err(error) => request.failure(error),
        }
    }
}

/// Answer one invocation. The response is the report (compact JSON, so that
/// `grep '"schema_valid":false'` works on it), also when the run failed. The
/// only error is a CodePipeline job whose result could not be delivered:
/// Lambda then retries the (asynchronous) invocation, which re-runs an
/// idempotent action and tries again, instead of leaving the pipeline to wait.
pub async fn handler(state: &State, event: LambdaEvent<Value>) -> Result<Report, Diagnostic> {
    let (payload, context) = event.into_parts();
    let (job_id, request) = match event::parse(&payload) {
        Ok(Invocation::Direct(request)) => (None, Ok(request)),
        Ok(Invocation::CodePipeline { job_id, request }) => (Some(job_id), request),
        Err(bad) => (None, Err(bad)),
    };
    let (report, metric_action) = match &request {
        Ok(request) => (state.run(request).await, request.action().as_str()),
        Err(bad) => (
            Report::failure(bad.action.as_str(), bad.dry_run, &bad.to_error()),
            metrics::INVALID_ACTION,
        ),
    };
    log_outcome(&context.request_id, job_id.as_deref(), &report);
    if let Ok(setup) = &state.setup {
        metrics::publish(
            &state.cloudwatch,
            &setup.config.metrics_namespace,
            &setup.config.environment,
            metric_action,
            &report,
        )
        .await;
    }
    if let Some(job_id) = job_id {
        let outcome = codepipeline::outcome(&report);
        codepipeline::put_outcome(&state.codepipeline, &job_id, &outcome, &context.request_id)
            .await
            .map_err(|message| {
                tracing::error!(job_id, "{message}");
                Diagnostic {
                    error_type: "CodePipelineResultNotDelivered".into(),
                    error_message: message,
                }
            })?;
        tracing::info!(job_id, ?outcome, "reported the job to CodePipeline");
    }
    Ok(report)
}

fn log_outcome(request_id: &str, job_id: Option<&str>, report: &Report) {
    let applied: Vec<&str> = report
        .applied
        .iter()
        .map(|m| m.version.as_deref().unwrap_or(m.script.as_str()))
        .collect();
    let rolled_back: Vec<&str> = report
        .rolled_back
        .iter()
        .flatten()
        .filter_map(|m| m.version.as_deref())
        .collect();
    let error_code = report.error.as_ref().map(|e| e.code.as_str());
    if report.success {
        tracing::info!(
            request_id,
            job_id,
            action = %report.action,
            dry_run = report.dry_run,
            success = report.success,
            schema_valid = report.schema_valid,
            current_version = report.current_version.as_deref(),
            applied = ?applied,
            rolled_back = ?rolled_back,
            pending = report.pending.len(),
            duration_ms = report.duration_ms,
            "invocation finished"
        );
    } else {
        tracing::error!(
            request_id,
            job_id,
            action = %report.action,
            dry_run = report.dry_run,
            success = report.success,
            error_code,
            error = report.error.as_ref().map(|e| e.message.as_str()),
            duration_ms = report.duration_ms,
            "invocation failed"
        );
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use lambda_runtime::Context;
    use serde_json::json;
    use slipway::ErrorCode;

    use super::*;

    /// AWS settings that can reach nothing: these tests never get as far as
    /// a call that must succeed (metrics failures are only logged).
    async fn offline_sdk() -> SdkConfig {
        use aws_sdk_cloudwatch::config::{Credentials, Region};
        slipway::secret::aws_config_loader()
            .region(Region::new("us-east-1"))
            .credentials_provider(Credentials::new("test", "test", None, None, "test"))
            // Port 9 (discard) on loopback: refused at once, no waiting.
            .endpoint_url("http://127.0.0.1:9")
            .load()
            .await
    }

    fn config(vars: &[(&str, &str)]) -> Result<Config, Error> {
        let map: HashMap<&str, &str> = vars.iter().copied().collect();
        Config::from_lookup(|name| map.get(name).map(|v| (*v).to_owned()))
    }

    async fn state(config: Result<Config, Error>) -> State {
        let migrations = MigrationSet::from_files(Vec::new());
        State::new(config, migrations, &offline_sdk().await).await
    }

    async fn invoke(state: &State, payload: Value) -> Report {
        handler(state, LambdaEvent::new(payload, Context::default()))
            .await
            .expect("a direct invocation always answers with a report")
    }

    fn code(report: &Report) -> Option<ErrorCode> {
        report.error.as_ref().map(|e| e.code)
    }

    #[tokio::test]
    async fn malformed_events_are_answered_with_bad_request_reports() {
        let state = state(config(&[
            ("DATABASE_URL", "postgresql://app@127.0.0.1:9/tutor"),
            ("SLIPWAY_ENVIRONMENT", "test"),
        ]))
        .await;
        for (payload, action) in [
            (json!({"action":"explode"}), "explode"),
            (json!({"action":"apply","dryrun":true}), "apply"),
            (json!({"dry_run":true}), "unknown"),
            (json!("validate"), "unknown"),
            (json!({"action":"rollback"}), "rollback"),
            (json!({"action":"verify-permissions"}), "verify-permissions"),
        ] {
            let report = invoke(&state, payload.clone()).await;
            assert!(!report.success, "{payload}");
            assert_eq!(
                code(&report),
                Some(ErrorCode::BadRequest),
                "{payload}: {report:?}"
            );
            assert_eq!(report.action.as_str(), action, "{payload}");
            // The response is compact JSON that starts like every report.
            assert!(report.to_json().starts_with("{\"success\":false,"));
        }
    }

    #[tokio::test]
    async fn a_bad_setting_is_answered_with_a_config_report_naming_it() {
        let state = state(config(&[("SLIPWAY_ENVIRONMENT", "test")])).await;
        let report = invoke(&state, json!({"action":"validate"})).await;
        assert_eq!(code(&report), Some(ErrorCode::Config));
        assert!(
            report
                .error
                .as_ref()
                .unwrap()
                .message
                .contains("DB_SECRET_ARN"),
            "{report:?}"
        );
        let state = state_with_url("postgres://app:hunter2secret@host:notaport/db").await;
        let report = invoke(&state, json!({"action":"validate"})).await;
        assert_eq!(code(&report), Some(ErrorCode::Config));
        let json = report.to_json();
        assert!(json.contains("DATABASE_URL"), "{json}");
        assert!(!json.contains("hunter2secret"), "{json}");
    }

    async fn state_with_url(url: &str) -> State {
        state(config(&[
            ("DATABASE_URL", url),
            ("SLIPWAY_ENVIRONMENT", "test"),
        ]))
        .await
    }

    #[tokio::test]
    async fn an_unreachable_database_is_a_connection_report() {
        let state = state(config(&[
            (
                "DATABASE_URL",
                "postgresql://app:hunter2secret@127.0.0.1:9/tutor",
            ),
            ("SLIPWAY_ENVIRONMENT", "test"),
            ("CONNECT_TIMEOUT", "2s"),
        ]))
        .await;
        let report = invoke(&state, json!({"action":"validate"})).await;
        assert_eq!(code(&report), Some(ErrorCode::Connection), "{report:?}");
        assert!(!report.to_json().contains("hunter2secret"));
    }
}
