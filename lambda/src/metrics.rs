//! CloudWatch metrics of one invocation (docs/DESIGN.md, "AWS side"):
//! `MigrationSuccess`, `MigrationFailure`, `MigrationDuration` (ms) and
//! `DatabaseConnectionErrors`, with dimensions `Environment` and `Action`, in
//! one PutMetricData call.
//!
//! Every invocation sends all four, the counters as 0 or 1, so a Sum over any
//! period is the number of events and a missing data point means the function
//! did not run, not that nothing failed. A failed PutMetricData is logged as a
//! warning and never changes the report: metrics are about a migration, they
//! must not decide one.

use aws_sdk_cloudwatch::error::DisplayErrorContext;
use aws_sdk_cloudwatch::types::{Dimension, MetricDatum, StandardUnit};
use slipway::{ErrorCode, Report};

/// The `Action` dimension of a request that could not be parsed.
pub const INVALID_ACTION: &str = "invalid";

/// The report error codes that mean "could not get a working connection".
const CONNECTION_CODES: [ErrorCode; 3] = [ErrorCode::Connection, ErrorCode::Auth, ErrorCode::Tls];

/// The data points of one invocation; `action` is the `Action` dimension
/// (`invalid` for a request that could not be parsed, so user input never
/// becomes a dimension value).
pub fn datums(report: &Report, environment: &str, action: &str) -> Vec<MetricDatum> {
    let dimensions = vec![
        Dimension::builder()
            .name("Environment")
            .value(environment)
            .build(),
        Dimension::builder().name("Action").value(action).build(),
    ];
    let connection_error = report
        .error
        .as_ref()
        .is_some_and(|e| CONNECTION_CODES.contains(&e.code));
    let flag = |on: bool| if on { 1.0 } else { 0.0 };
    let datum = |name: &str, value: f64, unit: StandardUnit| {
        MetricDatum::builder()
            .metric_name(name)
            .set_dimensions(Some(dimensions.clone()))
            .value(value)
            .unit(unit)
            .build()
    };
    // u64 -> f64 loses precision only above 2^53 ms, some 285,000 years.
    #[allow(clippy::cast_precision_loss)]
    let duration = report.duration_ms as f64;
    vec![
        datum(
            "MigrationSuccess",
            flag(report.success),
            StandardUnit::Count,
        ),
        datum(
            "MigrationFailure",
            flag(!report.success),
            StandardUnit::Count,
        ),
        datum("MigrationDuration", duration, StandardUnit::Milliseconds),
        datum(
            "DatabaseConnectionErrors",
            flag(connection_error),
            StandardUnit::Count,
        ),
    ]
}

/// Send the invocation's metrics; log, never fail.
pub async fn publish(
    client: &aws_sdk_cloudwatch::Client,
    namespace: &str,
    environment: &str,
    action: &str,
    report: &Report,
) {
    let result = client
        .put_metric_data()
        .namespace(namespace)
        .set_metric_data(Some(datums(report, environment, action)))
        .send()
        .await;
    match result {
        Ok(_) => tracing::debug!(namespace, "metrics sent"),
        Err(e) => tracing::warn!(
            namespace,
            error = %DisplayErrorContext(&e),
            "could not send the metrics to CloudWatch; the report stands"
        ),
    }
}

#[cfg(test)]
mod tests {
    use slipway::Error;

    use super::*;

    fn values(report: &Report) -> Vec<(String, f64)> {
        datums(report, "prod", "apply")
            .iter()
            .map(|d| {
                (
                    d.metric_name().unwrap_or_default().to_owned(),
                    d.value().unwrap_or(-1.0),
                )
            })
            .collect()
    }

    #[test]
    fn a_success() {
        let mut report = Report::new("apply", false);
        report.success = true;
        report.duration_ms = 41;
        assert_eq!(
            values(&report),
            [
                ("MigrationSuccess".to_owned(), 1.0),
                ("MigrationFailure".to_owned(), 0.0),
                ("MigrationDuration".to_owned(), 41.0),
                ("DatabaseConnectionErrors".to_owned(), 0.0),
            ]
        );
        for datum in datums(&report, "prod", "apply") {
            let dims: Vec<(&str, &str)> = datum
                .dimensions()
                .iter()
                .map(|d| (d.name().unwrap_or(""), d.value().unwrap_or("")))
                .collect();
            assert_eq!(dims, [("Environment", "prod"), ("Action", "apply")]);
        }
    }

    #[test]
    fn connection_errors_are_counted_other_failures_not() {
        let cases = [
            (Error::Auth("x".into()), 1.0),
            (Error::Tls("x".into()), 1.0),
            (Error::Connection("x".into()), 1.0),
            (Error::Secret("x".into()), 0.0),
            (Error::BadRequest("x".into()), 0.0),
        ];
        for (error, connection) in cases {
            let report = Report::failure("apply", false, &error);
            let v = values(&report);
            assert_eq!(v[0].1, 0.0, "{error}");
            assert_eq!(v[1].1, 1.0, "{error}");
            assert_eq!(v[3].1, connection, "{error}");
        }
    }
}
