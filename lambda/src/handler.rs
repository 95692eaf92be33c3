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
use slipway::secret::{with_secret, SecretSource};
use slipway::{
    ApplyOptions, ConnectOptions, Error, MigrationSet, Migrator, Report, RollbackOptions, Target,
};

use crate::codepipeline;
use crate::config::{Config, Database};
use crate::event::{self, Action, Invocation, Request};
use crate::metrics;

/// What lives across invocations.
pub struct State {
    setup: Result<Setup, Error>,
    cloudwatch: aws_sdk_cloudwatch::Client,
    codepipeline: aws_sdk_codepipeline::Client,
}

struct Setup {
    config: Config,
    migrations: MigrationSet,
    database: Source,
}

enum Source {
    Secret(SecretSource),
    // Boxed: one per process, and it keeps the enum small (clippy).
    Url(Box<ConnectOptions>),
}

impl State {
    /// Build the state from the configuration and the migration set (either
    /// may have failed; see the module docs) and the AWS settings.
    pub fn new(
        config: Result<Config, Error>,
        migrations: Result<MigrationSet, Error>,
        sdk: &SdkConfig,
    ) -> State {
        let setup = config.and_then(|config| {
            let migrations = migrations?;
            let database = match &config.database {
                Database::Secret { secret_id, ttl } => {
                    Source::Secret(SecretSource::new(sdk, secret_id.clone(), *ttl))
                }
                Database::Url(url) => Source::Url(Box::new(
                    ConnectOptions::from_url(url)
                        .map_err(|e| Error::Config(format!("DATABASE_URL: {e}")))?,
                )),
            };
            Ok(Setup {
                config,
                migrations,
                database,
            })
        });
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
        let action = request.action.as_str();
        let setup = match &self.setup {
            Ok(setup) => setup,
            Err(error) => return Report::failure(action, request.dry_run, error),
        };
        if request.action == Action::VerifyPermissions {
            return Report::failure(
                action,
                request.dry_run,
                &Error::BadRequest(format!(
                    "{action} is not available in this version of slipway; use validate, apply, rollback or status"
                )),
            );
        }
        match &setup.database {
            Source::Secret(source) => {
                with_secret(source, action, request.dry_run, |config| {
                    let migrator = setup.migrator(ConnectOptions::new(config));
                    async move { run_action(&migrator, request).await }
                })
                .await
            }
            Source::Url(options) => {
                run_action(&setup.migrator(options.as_ref().clone()), request).await
            }
        }
    }
}

impl Setup {
    fn migrator(&self, mut connect: ConnectOptions) -> Migrator {
        connect.connect_timeout = self.config.connect_timeout;
        connect.tls = self.config.tls.clone();
        let mut target = Target::new(connect, format!("lambda:{}", self.config.function_name));
        target.history_schema = self.config.history_schema.clone();
        Migrator::new(
            self.migrations.clone(),
            target,
            self.config.settings.clone(),
        )
    }
}

async fn run_action(migrator: &Migrator, request: &Request) -> Report {
    match request.action {
        Action::Validate => migrator.validate().await,
        Action::Status => migrator.status().await,
        Action::Rollback => {
            // The event parser guarantees `to` for a rollback.
            let options = RollbackOptions {
                to: request.to.clone().unwrap_or_default(),
                dry_run: request.dry_run,
                allow_drift: request.allow_drift,
            };
            migrator.rollback(&options).await
        }
        _ => {
            let options = ApplyOptions {
                dry_run: request.dry_run,
                target: request.to.clone(),
                allow_drift: request.allow_drift,
            };
            migrator.apply(&options).await
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
        Ok(request) => (state.run(request).await, request.action.as_str()),
        Err(bad) => (
            Report::failure(&bad.action, bad.dry_run, &bad.to_error()),
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
        State::new(config, migrations, &offline_sdk().await)
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
            assert_eq!(report.action, action, "{payload}");
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
