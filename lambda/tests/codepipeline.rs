//! The CodePipeline path: a job event in, the migration run against a real
//! PostgreSQL server, and the job's result sent with the real AWS SDK.
//!
//! Neither moto nor any emulator we can install implements
//! PutJobSuccessResult / PutJobFailureResult, so the SDK talks to
//! [`Recorder`]: a small loopback HTTP endpoint inside this test that answers
//! CodePipeline's JSON protocol (and CloudWatch's PutMetricData) with a
//! canned success and **records the calls**. It is not an emulator: it checks
//! nothing and stores nothing beyond the requests it saw; the assertions on
//! those requests are the test.

mod support;

use std::sync::{Arc, Mutex};

use lambda_runtime::{Context, LambdaEvent};
use serde_json::{json, Value};
use slipway::{ErrorCode, MigrationSet};
use slipway_lambda::config::Config;
use slipway_lambda::{handler, State, MIGRATIONS};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

/// A job id for which the recorder answers JobNotFoundException, to see the
/// handler fail loudly when the result cannot be delivered.
const UNDELIVERABLE: &str = "job-that-codepipeline-forgot";

/// One request the recorder saw.
#[derive(Debug, Clone)]
struct Call {
    /// `X-Amz-Target` (CodePipeline's JSON protocol) or the form's
    /// `Action=` (CloudWatch's query protocol).
    operation: String,
    body: String,
}

/// Records calls; see the module docs.
struct Recorder {
    url: String,
    calls: Arc<Mutex<Vec<Call>>>,
}

impl Recorder {
    async fn start() -> Recorder {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the recorder");
        let url = format!("http://{}", listener.local_addr().expect("local addr"));
        let calls = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&calls);
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let sink = Arc::clone(&sink);
                tokio::spawn(async move {
                    let _ = serve(stream, sink).await;
                });
            }
        });
        Recorder { url, calls }
    }

    fn calls(&self, operation: &str) -> Vec<Value> {
        self.calls
            .lock()
            .expect("calls lock")
            .iter()
            .filter(|c| c.operation == operation)
            .map(|c| serde_json::from_str(&c.body).unwrap_or(Value::String(c.body.clone())))
            .collect()
    }
}

/// Serve HTTP/1.1 requests on one (kept-alive) connection.
async fn serve(stream: tokio::net::TcpStream, calls: Arc<Mutex<Vec<Call>>>) -> std::io::Result<()> {
    let mut stream = BufReader::new(stream);
    loop {
        let mut length = 0usize;
        let mut target = None;
        let mut line = String::new();
        if stream.read_line(&mut line).await? == 0 {
            return Ok(());
        }
        loop {
            line.clear();
            stream.read_line(&mut line).await?;
            let header = line.trim_end();
            if header.is_empty() {
                break;
            }
            if let Some((name, value)) = header.split_once(':') {
                match name.trim().to_ascii_lowercase().as_str() {
                    "content-length" => length = value.trim().parse().unwrap_or(0),
                    "x-amz-target" => target = Some(value.trim().to_owned()),
                    _ => {}
                }
            }
        }
        let mut body = vec![0; length];
        stream.read_exact(&mut body).await?;
        let body = String::from_utf8_lossy(&body).into_owned();
        let operation = target.unwrap_or_else(|| {
            body.split('&')
                .find_map(|kv| kv.strip_prefix("Action="))
                .unwrap_or("unknown")
                .to_owned()
        });
        let (status, content_type, response) = if operation == "PutMetricData" {
            (
                "200 OK",
                "text/xml",
                "<PutMetricDataResponse xmlns=\"http://monitoring.amazonaws.com/doc/2010-08-01/\">\
                 <ResponseMetadata><RequestId>recorded</RequestId></ResponseMetadata>\
                 </PutMetricDataResponse>"
                    .to_owned(),
            )
        } else if body.contains(UNDELIVERABLE) {
            (
                "400 Bad Request",
                "application/x-amz-json-1.1",
                json!({"__type": "JobNotFoundException", "message": "no such job"}).to_string(),
            )
        } else {
            ("200 OK", "application/x-amz-json-1.1", "{}".to_owned())
        };
        calls
            .lock()
            .expect("calls lock")
            .push(Call { operation, body });
        let head = format!(
            "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nx-amzn-RequestId: recorded\r\n\r\n",
            response.len()
        );
        stream.get_mut().write_all(head.as_bytes()).await?;
        stream.get_mut().write_all(response.as_bytes()).await?;
    }
}

fn job(id: &str, user_parameters: &str) -> Value {
    json!({
        "CodePipeline.job": {
            "id": id,
            "accountId": "111111111111",
            "data": {
                "actionConfiguration": {
                    "configuration": {
                        "FunctionName": "tutor-migrate",
                        "UserParameters": user_parameters
                    }
                },
                "inputArtifacts": [],
                "outputArtifacts": []
            }
        }
    })
}

async fn invoke(
    state: &State,
    payload: Value,
    request_id: &str,
) -> Result<slipway::Report, lambda_runtime::Diagnostic> {
    let mut context = Context::default();
    context.request_id = request_id.to_owned();
    handler(state, LambdaEvent::new(payload, context)).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn codepipeline_jobs_are_reported_with_the_real_sdk() {
    let postgres = tokio::task::spawn_blocking(support::Postgres::start)
        .await
        .expect("start PostgreSQL");
    postgres
        .cluster
        .ensure_database("pipeline")
        .await
        .expect("create the database");
    let recorder = Recorder::start().await;

    let url = postgres.cluster.url("pipeline");
    let config = Config::from_lookup(|name| match name {
        "DATABASE_URL" => Some(url.clone()),
        "SLIPWAY_ENVIRONMENT" => Some("pipeline-test".into()),
        _ => None,
    });
    let sdk = {
        use aws_sdk_codepipeline::config::{Credentials, Region};
        slipway::secret::aws_config_loader()
            .region(Region::new("us-east-1"))
            .credentials_provider(Credentials::new("test", "test", None, None, "test"))
            .endpoint_url(&recorder.url)
            .load()
            .await
    };
    let state = State::new(config, MigrationSet::from_embedded(&MIGRATIONS), &sdk).await;

    // apply from a bare action name, then validate from JSON: both succeed.
    let report = invoke(&state, job("job-apply", "apply"), "req-apply")
        .await
        .expect("delivered");
    assert!(report.success && !report.applied.is_empty(), "{report:?}");
    let report = invoke(
        &state,
        job("job-validate", r#"{"action":"validate"}"#),
        "req-validate",
    )
    .await
    .expect("delivered");
    assert!(report.success && report.schema_valid, "{report:?}");

    let successes = recorder.calls("CodePipeline_20150709.PutJobSuccessResult");
    assert_eq!(successes.len(), 2, "{successes:?}");
    assert_eq!(successes[0]["jobId"], "job-apply");
    let summary = successes[0]["executionDetails"]["summary"]
        .as_str()
        .unwrap_or_default();
    assert!(summary.starts_with("applied "), "{summary}");
    assert_eq!(
        successes[0]["executionDetails"]["externalExecutionId"],
        "req-apply"
    );
    assert_eq!(successes[1]["jobId"], "job-validate");

    // Parameters that are no request: the job fails, it is not left hanging.
    let report = invoke(&state, job("job-bad", "deploy"), "req-bad")
        .await
        .expect("delivered");
    assert_eq!(
        report.error.as_ref().map(|e| e.code),
        Some(ErrorCode::BadRequest)
    );
    let failures = recorder.calls("CodePipeline_20150709.PutJobFailureResult");
    assert_eq!(failures.len(), 1, "{failures:?}");
    assert_eq!(failures[0]["jobId"], "job-bad");
    assert_eq!(failures[0]["failureDetails"]["type"], "JobFailed");
    let message = failures[0]["failureDetails"]["message"]
        .as_str()
        .unwrap_or_default();
    assert!(
        message.starts_with("[bad_request]") && message.contains("deploy"),
        "{message}"
    );

    // A result CodePipeline refuses: the invocation errors, so that Lambda
    // retries it rather than the pipeline waiting for its timeout.
    let diagnostic = invoke(&state, job(UNDELIVERABLE, "validate"), "req-lost")
        .await
        .expect_err("an undeliverable result must fail the invocation");
    assert_eq!(diagnostic.error_type, "CodePipelineResultNotDelivered");
    assert!(
        diagnostic.error_message.contains(UNDELIVERABLE),
        "{}",
        diagnostic.error_message
    );

    // One PutMetricData per invocation, CodePipeline or not.
    let metrics = recorder.calls("PutMetricData");
    assert_eq!(metrics.len(), 4, "{metrics:?}");
    let first = metrics[0].as_str().unwrap_or_default();
    assert!(
        first.contains("MigrationSuccess") && first.contains("pipeline-test"),
        "{first}"
    );
}
