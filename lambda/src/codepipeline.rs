//! Telling CodePipeline how its job went. A Lambda invoked as a pipeline
//! action must call PutJobSuccessResult or PutJobFailureResult itself; its
//! return value is ignored, and without the call the pipeline waits until the
//! action's timeout (CodePipeline docs, "Invoke an AWS Lambda function in a
//! pipeline").
//!
//! The job succeeds exactly when the CLI would exit 0: the run succeeded and,
//! for `validate`, the schema is valid.

use aws_sdk_codepipeline::error::DisplayErrorContext;
use aws_sdk_codepipeline::types::{ExecutionDetails, FailureDetails, FailureType};
use slipway::Report;

/// CodePipeline's limits on the texts (API reference: `ExecutionDetails.summary`
/// 2048 characters, `FailureDetails.message` 5000).
const SUMMARY_LIMIT: usize = 2048;
const MESSAGE_LIMIT: usize = 5000;

/// The outcome the job is given for `report`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Success { summary: String },
    Failure { message: String },
}

/// Decide the job's outcome from the report.
pub fn outcome(report: &Report) -> Outcome {
    if report.exit_code() == 0 {
        let summary = if report.action == slipway::Action::Apply && !report.dry_run {
            format!(
                "applied {} migration(s); schema at version {}",
                report.applied.len(),
                report.current_version.as_deref().unwrap_or("none")
            )
        } else {
            format!(
                "{}{} ok; schema at version {}",
                report.action,
                if report.dry_run { " (dry run)" } else { "" },
                report.current_version.as_deref().unwrap_or("none")
            )
        };
        return Outcome::Success {
            summary: truncate(&summary, SUMMARY_LIMIT),
        };
    }
    let message = match &report.error {
        Some(error) => format!("[{}] {}", error.code, error.message),
        None => format!(
            "{}: schema not valid: {} pending, {} modified, {} unknown, {} drifted",
            report.action,
            report.pending.len(),
            report.checksum_mismatches.len(),
            report.unknown_versions.len(),
            report.drift.len()
        ),
    };
    Outcome::Failure {
        message: truncate(&message, MESSAGE_LIMIT),
    }
}

/// Send the job's outcome; `execution_id` (the Lambda request id) lets an
/// operator find the function's logs from the pipeline console.
pub async fn put_outcome(
    client: &aws_sdk_codepipeline::Client,
    job_id: &str,
    outcome: &Outcome,
    execution_id: &str,
) -> Result<(), String> {
    let result = match outcome {
        Outcome::Success { summary } => client
            .put_job_success_result()
            .job_id(job_id)
            .execution_details(
                ExecutionDetails::builder()
                    .summary(summary)
                    .external_execution_id(execution_id)
                    .build(),
            )
            .send()
            .await
            .map(|_| ())
            .map_err(|e| DisplayErrorContext(e).to_string()),
        Outcome::Failure { message } => {
            let details = FailureDetails::builder()
                .r#type(FailureType::JobFailed)
                .message(message)
                .external_execution_id(execution_id)
                .build()
                .map_err(|e| format!("cannot build the failure details: {e}"))?;
            client
                .put_job_failure_result()
                .job_id(job_id)
                .failure_details(details)
                .send()
                .await
                .map(|_| ())
                .map_err(|e| DisplayErrorContext(e).to_string())
        }
    };
    result.map_err(|e| format!("cannot report job {job_id} to CodePipeline: {e}"))
}

fn truncate(text: &str, limit: usize) -> String {
    if text.chars().count() <= limit {
        return text.to_owned();
    }
    let mut out: String = text.chars().take(limit - 1).collect();
    out.push('…');
    out
}

#[cfg(test)]
mod tests {
    use slipway::Error;

    use super::*;

    #[test]
    fn outcomes_follow_the_cli_exit_code() {
        let mut apply = Report::new("apply", false);
        apply.success = true;
        apply.current_version = Some("0005".into());
        assert_eq!(
            outcome(&apply),
            Outcome::Success {
                summary: "applied 0 migration(s); schema at version 0005".into()
            }
        );

        let mut valid = Report::new("validate", false);
        valid.success = true;
        valid.schema_valid = true;
        assert!(matches!(outcome(&valid), Outcome::Success { .. }));

        let mut pending = valid.clone();
        pending.schema_valid = false;
        let Outcome::Failure { message } = outcome(&pending) else {
            panic!("a validate that found pending migrations succeeded");
        };
        assert!(message.contains("schema not valid"), "{message}");

        let failed = Report::failure("apply", false, &Error::Auth("password rejected".into()));
        let Outcome::Failure { message } = outcome(&failed) else {
            panic!("a failed apply succeeded");
        };
        assert!(
            message.starts_with("[auth] authentication failed"),
            "{message}"
        );
    }

    #[test]
    fn long_texts_are_cut_to_the_api_limits() {
        let long = "x".repeat(10_000);
        let failed = Report::failure("apply", false, &Error::Internal(long));
        let Outcome::Failure { message } = outcome(&failed) else {
            panic!()
        };
        assert_eq!(message.chars().count(), MESSAGE_LIMIT);
        assert!(message.ends_with('…'));
    }
}
