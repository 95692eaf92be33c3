//! `bootstrap`, the executable the `provided.al2023` runtime starts: builds
//! the configuration, the AWS clients and the embedded migration set once,
//! then serves invocations with [`slipway_lambda::handler()`]. The only place
//! of the function that reads the environment.

use lambda_runtime::{service_fn, LambdaEvent};
use serde_json::Value;
use slipway::MigrationSet;
use slipway_lambda::config::Config;
use slipway_lambda::{handler, State, MIGRATIONS};
use tracing_subscriber::filter::{Directive, EnvFilter};

// One thread: an invocation is one sequential migration, and a second runtime
// thread would only cost cold-start time.
#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_runtime::Error> {
    init_logging();
    let config = Config::from_lookup(|name| std::env::var(name).ok());
    let migrations = MigrationSet::from_embedded(&MIGRATIONS);
    let sdk = slipway::secret::aws_config().await;
    let state = State::new(config, migrations, &sdk).await;
    // Boxed: the handler's future type is deep (SDK, tokio-postgres), and
    // nesting it unboxed inside the runtime's overflows rustc's layout
    // recursion limit.
    lambda_runtime::run(service_fn(|event: LambdaEvent<Value>| {
        Box::pin(handler(&state, event))
    }))
    .await
}

/// JSON lines on stdout, which Lambda ships to CloudWatch Logs; each line
/// carries the runtime's `requestId` span. Level from `SLIPWAY_LOG`
/// (default `info`).
fn init_logging() {
    let mut filter =
        EnvFilter::try_from_env("SLIPWAY_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    // Whatever SLIPWAY_LOG says, the AWS SDK's HTTP layers stay at warn: at
    // debug and trace they log requests and responses, and the response of
    // GetSecretValue is the database password.
    for target in [
        "aws_smithy_runtime",
        "aws_smithy_http_client",
        "aws_sdk_secretsmanager",
        "hyper",
        "hyper_util",
        "h2",
        "rustls",
    ] {
        if let Ok(directive) = format!("{target}=warn").parse::<Directive>() {
            filter = filter.add_directive(directive);
        }
    }
    tracing_subscriber::fmt()
        .json()
        .with_env_filter(filter)
        .with_current_span(true)
        .with_span_list(false)
        .with_target(false)
        .with_ansi(false)
        .init();
}
