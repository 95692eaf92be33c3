//! `slipway-infra`: the CloudFormation template that deploys the migration
//! function, rendered from Rust (docs/DESIGN.md, "AWS side") — no CDK, no Node,
//! nothing to install but cargo. [`render`] is pure: the same
//! [`StackConfig`] always gives the same JSON, which `make template` writes
//! to `infra/template.json` and `make test` checks is committed and current.
//!
//! What it holds: the function (`provided.al2023`, one run at a time), a
//! least-privilege role, the log group, the alarms and their SNS topic, a
//! dashboard, and parameters per environment. Operators read the alarms'
//! meaning and what to do in the README ("Deploy to AWS").
//!
//! **Architecture invariant:** nothing here does I/O; only the binary
//! (src/main.rs) writes the file.

pub mod cfn;

use serde_json::{json, Value};

use cfn::{
    arn, get_att, is_set, is_set_list, only_if, policy_document, reference, sub, Alarm, Comparison,
    Metric, Parameter, Resource, Statement, Template, Watched,
};

/// Values of the `Action` metric dimension the function emits
/// (lambda/src/metrics.rs): its actions, and `invalid` for a request it could
/// not parse. The alarms add them all up; a test in lambda/ pins this list to
/// the function's own.
pub const METRIC_ACTIONS: [&str; 6] = [
    "validate",
    "apply",
    "rollback",
    "status",
    "verify-permissions",
    "invalid",
];

/// The environment variables the template gives the function; a test in
/// lambda/ checks that lambda/src/config.rs reads each of them.
pub const FUNCTION_ENVIRONMENT: [&str; 9] = [
    "DB_SECRET_ARN",
    "SLIPWAY_ENVIRONMENT",
    "METRICS_NAMESPACE",
    "DB_SSLMODE",
    "DB_CA_BUNDLE",
    "LOCK_TIMEOUT",
    "STATEMENT_TIMEOUT",
    "CONNECT_TIMEOUT",
    "HISTORY_SCHEMA",
];

/// What the template is rendered from: the defaults of its parameters and
/// the thresholds of its alarms. Anything that differs per environment is a
/// parameter instead, so one template serves dev, staging and prod.
#[derive(Debug, Clone)]
pub struct StackConfig {
    /// CloudWatch namespace the function writes to unless told otherwise.
    pub metrics_namespace: String,
    /// `MigrationDuration` above this many milliseconds raises an alarm.
    pub duration_alarm_ms: u64,
    /// Default memory of the function, MB.
    pub memory_mb: u32,
    /// Default timeout of the function, seconds (Lambda allows 900 at most).
    pub timeout_seconds: u32,
    /// Default log retention, days.
    pub log_retention_days: u32,
}

impl Default for StackConfig {
    fn default() -> StackConfig {
        StackConfig {
            metrics_namespace: "Slipway".into(),
            duration_alarm_ms: 300_000,
            memory_mb: 512,
            timeout_seconds: 900,
            log_retention_days: 90,
        }
    }
}

/// The retention periods CloudWatch Logs accepts (`PutRetentionPolicy`).
const RETENTION_DAYS: [u32; 22] = [
    1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922,
    3288, 3653,
];

/// Settings slipway reads as durations: `500ms`, `5s`, `15m`, `1h`
/// (lambda/src/config.rs, `parse_duration`).
const DURATION_PATTERN: &str = "^[0-9]+(ms|s|m|min|h)?$";
const DURATION_HELP: &str = "a duration like 500ms, 5s or 15m";

// Logical ids, named once: a typo is a compile error, not a broken reference.
const FUNCTION: &str = "MigrationFunction";
const ROLE: &str = "MigrationFunctionRole";
const LOG_GROUP: &str = "MigrationLogGroup";
const TOPIC: &str = "AlarmTopic";
const SUBSCRIPTION: &str = "AlarmEmailSubscription";
const DASHBOARD: &str = "Dashboard";

// Conditions.
const USE_VPC: &str = "UseVpc";
const HAS_KMS_KEY: &str = "HasKmsKey";
const HAS_ALARM_EMAIL: &str = "HasAlarmEmail";
const CODEPIPELINE_JOBS: &str = "AnswersCodePipelineJobs";

/// The alarms: logical id, what it means (its description, also the
/// runbook's heading in the README).
const ALARM_FAILURE: &str = "MigrationFailureAlarm";
const ALARM_DURATION: &str = "MigrationDurationAlarm";
const ALARM_CONNECTION: &str = "DatabaseConnectionErrorsAlarm";
const ALARM_ERRORS: &str = "FunctionErrorsAlarm";
const ALARM_THROTTLES: &str = "FunctionThrottlesAlarm";

/// Every alarm's logical id, in dashboard order.
pub const ALARMS: [&str; 5] = [
    ALARM_FAILURE,
    ALARM_DURATION,
    ALARM_CONNECTION,
    ALARM_ERRORS,
    ALARM_THROTTLES,
];

/// Render the template.
pub fn render(config: &StackConfig) -> Value {
    let mut template = Template::new(
        "slipway: the schema migration function (validate, then apply in one transaction), \
         its least-privilege role, logs, alarms into an SNS topic, and a dashboard.",
    );
    parameters(&mut template, config);
    conditions(&mut template);
    logs_and_role(&mut template);
    function(&mut template);
    alarms(&mut template, config);
    dashboard(&mut template);
    outputs(&mut template);
    cfn::canonical(&template.into_json())
}

/// The template as the committed file: two-space indented JSON, keys sorted,
/// a final newline.
pub fn to_file_text(template: &Value) -> String {
    let mut text = serde_json::to_string_pretty(&cfn::canonical(template)).unwrap_or_default();
    text.push('\n');
    text
}

fn parameters(t: &mut Template, config: &StackConfig) {
    t.parameter_group(
        "Environment",
        vec![(
            "Environment",
            Parameter::string("The environment this stack serves: the Environment dimension of the metrics, and the alarms' filter.")
                .allowed(&["dev", "staging", "prod"])
                .default("dev"),
        )],
    );
    t.parameter_group(
        "Function code",
        vec![
            (
                "CodeS3Bucket",
                Parameter::string("S3 bucket holding the function's zip (make lambda, uploaded by the buildspec).")
                    .pattern("^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$", "an S3 bucket name"),
            ),
            (
                "CodeS3Key",
                Parameter::string("S3 key of the zip; the buildspec names it by commit, so a build is never overwritten.")
                    .pattern("^.+\\.zip$", "the key of a .zip file"),
            ),
            (
                "Architecture",
                Parameter::string("The instruction set the zip was built for.")
                    .allowed(&["arm64", "x86_64"])
                    .default("arm64"),
            ),
            (
                "MemorySize",
                Parameter::number("Memory of the function, MB.")
                    .range(128, 10240)
                    .default(config.memory_mb),
            ),
            (
                "Timeout",
                Parameter::number("Seconds an invocation may run; a long migration needs the most (900).")
                    .range(30, 900)
                    .default(config.timeout_seconds),
            ),
        ],
    );
    t.parameter_group(
        "Database",
        vec![
            (
                "DbSecretArn",
                Parameter::string("ARN of the Secrets Manager secret with the database credentials (RDS format: engine, host, port, username, password, dbname).")
                    .pattern("^arn:aws[a-z-]*:secretsmanager:[a-z0-9-]+:[0-9]{12}:secret:.+$", "the ARN of a Secrets Manager secret"),
            ),
            (
                "SecretKmsKeyArn",
                Parameter::string("ARN of the customer-managed KMS key that encrypts the secret; empty for the AWS-managed key.")
                    .pattern("^(arn:aws[a-z-]*:kms:[a-z0-9-]+:[0-9]{12}:key/.+)?$", "empty, or the ARN of a KMS key")
                    .default(""),
            ),
            (
                "DbSslMode",
                Parameter::string("TLS to the database, as libpq means it (verify-full needs DbCaBundle or the system CAs).")
                    .allowed(&["require", "verify-full", "disable"])
                    .default("require"),
            ),
            (
                "DbCaBundle",
                Parameter::string("Path, inside the deployment (a layer: /opt/...), of the CA bundle for verify-full; empty for none.")
                    .default(""),
            ),
            (
                "HistorySchema",
                Parameter::string("Schema of slipway's history table.")
                    .pattern("^[a-z_][a-z0-9_]*$", "a lower-case SQL identifier")
                    .default("slipway"),
            ),
            (
                "LockTimeout",
                Parameter::string("How long a migration statement may wait for a table lock before the batch is rolled back and retried.")
                    .pattern(DURATION_PATTERN, DURATION_HELP)
                    .default("5s"),
            ),
            (
                "StatementTimeout",
                Parameter::string("How long one migration statement may run.")
                    .pattern(DURATION_PATTERN, DURATION_HELP)
                    .default("15m"),
            ),
            (
                "ConnectTimeout",
                Parameter::string("How long connecting to the database may take.")
                    .pattern(DURATION_PATTERN, DURATION_HELP)
                    .default("10s"),
            ),
        ],
    );
    t.parameter_group(
        "Network",
        vec![
            (
                "SubnetIds",
                Parameter::list("Private subnets with a route to the database and to Secrets Manager and CloudWatch (NAT or VPC endpoints); empty to run outside a VPC.")
                    .default(""),
            ),
            (
                "SecurityGroupIds",
                Parameter::list("Security groups of the function (needed with SubnetIds).")
                    .default(""),
            ),
        ],
    );
    t.parameter_group(
        "Operations",
        vec![
            (
                "MetricsNamespace",
                Parameter::string("CloudWatch namespace of the migration metrics.")
                    .pattern("^(?!AWS/)[^:].*$", "a custom namespace: not starting with AWS/ or ':'")
                    .default(config.metrics_namespace.as_str()),
            ),
            (
                "LogRetentionDays",
                Parameter::number("Days the function's logs are kept.")
                    .allowed(&RETENTION_DAYS)
                    .default(config.log_retention_days),
            ),
            (
                "AlarmEmail",
                Parameter::string("E-mail address subscribed to the alarm topic; empty for none.")
                    .pattern("^([^@\\s]+@[^@\\s]+)?$", "empty, or an e-mail address")
                    .default(""),
            ),
            (
                "AllowCodePipelineJobs",
                Parameter::string("Let the function report CodePipeline jobs (PutJobSuccessResult / PutJobFailureResult), for use as a pipeline's Invoke action.")
                    .allowed(&["true", "false"])
                    .default("false"),
            ),
        ],
    );
}

fn conditions(t: &mut Template) {
    t.condition(USE_VPC, is_set_list("SubnetIds"));
    t.condition(HAS_KMS_KEY, is_set("SecretKmsKeyArn"));
    t.condition(HAS_ALARM_EMAIL, is_set("AlarmEmail"));
    t.condition(
        CODEPIPELINE_JOBS,
        cfn::equals(reference("AllowCodePipelineJobs"), json!("true")),
    );
}

fn logs_and_role(t: &mut Template) {
    // Created here, not by Lambda on first write, so that it has a retention
    // and the role can be limited to it.
    t.resource(
        LOG_GROUP,
        Resource::new(
            "AWS::Logs::LogGroup",
            json!({
                "LogGroupName": sub("/aws/lambda/${AWS::StackName}"),
                "RetentionInDays": reference("LogRetentionDays"),
            }),
        )
        .on_delete("Delete"),
    );

    let statements = vec![
        Statement::allow(
            "WriteOwnLogs",
            &["logs:CreateLogStream", "logs:PutLogEvents"],
        )
        .on(get_att(LOG_GROUP, "Arn"))
        .to_json(),
        Statement::allow("ReadDatabaseSecret", &["secretsmanager:GetSecretValue"])
            .on(reference("DbSecretArn"))
            .to_json(),
        only_if(
            HAS_KMS_KEY,
            Statement::allow("DecryptDatabaseSecret", &["kms:Decrypt"])
                .on(reference("SecretKmsKeyArn"))
                // Only when Secrets Manager asks on the function's behalf.
                .when(json!({
                    "StringEquals": {
                        "kms:ViaService": sub("secretsmanager.${AWS::Region}.amazonaws.com"),
                    }
                }))
                .to_json(),
        ),
        // PutMetricData has no resource-level permissions (Service
        // Authorization Reference, CloudWatch): "*" is the only resource, and
        // the namespace condition is what limits it.
        Statement::allow("PutMigrationMetrics", &["cloudwatch:PutMetricData"])
            .on(json!("*"))
            .when(json!({
                "StringEquals": { "cloudwatch:namespace": reference("MetricsNamespace") }
            }))
            .to_json(),
        // Lambda creates the function's network interfaces with its role
        // (Lambda developer guide, "Giving Lambda functions access to a VPC").
        only_if(
            USE_VPC,
            Statement::allow(
                "ManageVpcNetworkInterfaces",
                &[
                    "ec2:CreateNetworkInterface",
                    "ec2:DeleteNetworkInterface",
                    "ec2:AssignPrivateIpAddresses",
                    "ec2:UnassignPrivateIpAddresses",
                ],
            )
            .on(arn("ec2", "*/*"))
            .to_json(),
        ),
        // Describe* actions have no resource-level permissions: "*" only.
        only_if(
            USE_VPC,
            Statement::allow(
                "DescribeVpcNetworkInterfaces",
                &["ec2:DescribeNetworkInterfaces", "ec2:DescribeSubnets"],
            )
            .on(json!("*"))
            .to_json(),
        ),
        // A pipeline job is not a resource IAM can name: PutJobSuccessResult
        // and PutJobFailureResult take "*" only (Service Authorization
        // Reference, CodePipeline). Hence off unless asked for.
        only_if(
            CODEPIPELINE_JOBS,
            Statement::allow(
                "ReportCodePipelineJobs",
                &[
                    "codepipeline:PutJobSuccessResult",
                    "codepipeline:PutJobFailureResult",
                ],
            )
            .on(json!("*"))
            .to_json(),
        ),
    ];
    t.resource(
        ROLE,
        Resource::new(
            "AWS::IAM::Role",
            json!({
                "Description": sub("Runs the slipway migration function of ${AWS::StackName}"),
                "AssumeRolePolicyDocument": policy_document(vec![json!({
                    "Effect": "Allow",
                    "Principal": { "Service": "lambda.amazonaws.com" },
                    "Action": ["sts:AssumeRole"],
                })]),
                "Policies": [{
                    "PolicyName": "slipway-migration",
                    "PolicyDocument": policy_document(statements),
                }],
            }),
        ),
    );
}

fn function(t: &mut Template) {
    let environment: Vec<(&str, Value)> = vec![
        ("DB_SECRET_ARN", reference("DbSecretArn")),
        ("SLIPWAY_ENVIRONMENT", reference("Environment")),
        ("METRICS_NAMESPACE", reference("MetricsNamespace")),
        ("DB_SSLMODE", reference("DbSslMode")),
        // Empty means unset to the function (lambda/src/config.rs).
        ("DB_CA_BUNDLE", reference("DbCaBundle")),
        ("LOCK_TIMEOUT", reference("LockTimeout")),
        ("STATEMENT_TIMEOUT", reference("StatementTimeout")),
        ("CONNECT_TIMEOUT", reference("ConnectTimeout")),
        ("HISTORY_SCHEMA", reference("HistorySchema")),
    ];
    debug_assert!(environment
        .iter()
        .map(|(name, _)| *name)
        .eq(FUNCTION_ENVIRONMENT));
    let variables: serde_json::Map<String, Value> = environment
        .into_iter()
        .map(|(name, value)| (name.to_owned(), value))
        .collect();
    t.resource(
        FUNCTION,
        Resource::new(
            "AWS::Lambda::Function",
            json!({
                "FunctionName": sub("${AWS::StackName}"),
                "Description": sub("slipway schema migrations (${Environment}): validate, apply"),
                "Runtime": "provided.al2023",
                "Handler": "bootstrap",
                "Architectures": [reference("Architecture")],
                "Code": {
                    "S3Bucket": reference("CodeS3Bucket"),
                    "S3Key": reference("CodeS3Key"),
                },
                "MemorySize": reference("MemorySize"),
                "Timeout": reference("Timeout"),
                // Migrations never run twice at once: a second invocation is
                // throttled (and alarms) instead of queueing on the advisory lock.
                "ReservedConcurrentExecutions": 1,
                "Role": get_att(ROLE, "Arn"),
                "LoggingConfig": { "LogGroup": reference(LOG_GROUP) },
                "Environment": { "Variables": variables },
                "VpcConfig": only_if(USE_VPC, json!({
                    "SubnetIds": reference("SubnetIds"),
                    "SecurityGroupIds": reference("SecurityGroupIds"),
                })),
                "Tags": [{ "Key": "slipway:environment", "Value": reference("Environment") }],
            }),
        ),
    );
}

/// One of the function's metrics, for one action, in this environment.
fn migration_metric(name: &'static str, action: &str) -> Metric {
    Metric {
        namespace: reference("MetricsNamespace"),
        name,
        dimensions: vec![
            ("Environment", reference("Environment")),
            ("Action", json!(action)),
        ],
    }
}

/// A metric-math id for an action (ids are `[a-z][a-zA-Z0-9_]*`).
fn metric_id(action: &str) -> String {
    action.replace('-', "_")
}

/// `function(metric)` over every action: an alarm must name each metric with
/// all its dimensions (no `SEARCH` in alarms), and the function emits one
/// series per action, so the alarm lists them all and combines them.
fn over_all_actions(function: &str, name: &'static str, statistic: &'static str) -> Watched {
    let ids: Vec<String> = METRIC_ACTIONS.iter().map(|a| metric_id(a)).collect();
    Watched::Math {
        expression: format!("{function}([{}])", ids.join(", ")),
        label: name,
        metrics: METRIC_ACTIONS
            .iter()
            .zip(ids)
            .map(|(action, id)| (id, migration_metric(name, action)))
            .collect(),
        statistic,
    }
}

fn lambda_metric(name: &'static str) -> Watched {
    Watched::Metric {
        metric: Metric {
            namespace: json!("AWS/Lambda"),
            name,
            dimensions: vec![("FunctionName", reference(FUNCTION))],
        },
        statistic: "Sum",
    }
}

fn alarms(t: &mut Template, config: &StackConfig) {
    // Metrics arrive once per invocation; with one evaluation period of a
    // minute an alarm fires within about a minute of the run that broke.
    let alarm = |suffix: &str, description: &str, watched: Watched, comparison, threshold| Alarm {
        name: sub(&format!("${{AWS::StackName}}-{suffix}")),
        description: description.to_owned(),
        watched,
        comparison,
        threshold,
        period_seconds: 60,
        topic: reference(TOPIC),
    };
    #[allow(clippy::cast_precision_loss)] // thresholds are far below 2^53
    let duration_ms = config.duration_alarm_ms as f64;
    let list = [
        (
            ALARM_FAILURE,
            alarm(
                "migration-failure",
                "A migration run failed (success:false): a migration error, a refused apply (checksum, unknown version, drift), a bad request or a configuration error. The database was left as it was. Read the report in the function's logs.",
                over_all_actions("SUM", "MigrationFailure", "Sum"),
                Comparison::AtLeast,
                1.0,
            ),
        ),
        (
            ALARM_DURATION,
            alarm(
                "migration-duration",
                &format!("A migration run took longer than {} ms: a long migration, or one waiting on locks. The function times out at its Timeout.", config.duration_alarm_ms),
                over_all_actions("MAX", "MigrationDuration", "Maximum"),
                Comparison::Above,
                duration_ms,
            ),
        ),
        (
            ALARM_CONNECTION,
            alarm(
                "database-connection-errors",
                "The function could not connect to the database (connection, authentication or TLS error): network path, security groups, the secret, or the database itself.",
                over_all_actions("SUM", "DatabaseConnectionErrors", "Sum"),
                Comparison::AtLeast,
                1.0,
            ),
        ),
        (
            ALARM_ERRORS,
            alarm(
                "function-errors",
                "The function failed without a report (timeout, crash, out of memory): no metric of its own was sent. Read its logs.",
                lambda_metric("Errors"),
                Comparison::AtLeast,
                1.0,
            ),
        ),
        (
            ALARM_THROTTLES,
            alarm(
                "function-throttles",
                "An invocation was refused because another migration was running (reserved concurrency 1). Two pipelines, or a retry, overlapped.",
                lambda_metric("Throttles"),
                Comparison::AtLeast,
                1.0,
            ),
        ),
    ];
    for (id, alarm) in list {
        t.resource(id, alarm.resource());
    }

    t.resource(
        TOPIC,
        Resource::new(
            "AWS::SNS::Topic",
            json!({ "DisplayName": sub("slipway alarms (${Environment})") }),
        ),
    );
    t.resource(
        SUBSCRIPTION,
        Resource::new(
            "AWS::SNS::Subscription",
            json!({
                "TopicArn": reference(TOPIC),
                "Protocol": "email",
                "Endpoint": reference("AlarmEmail"),
            }),
        )
        .when(HAS_ALARM_EMAIL),
    );
}

/// A graph of `metric` summed per action, for every action that ran. Unlike
/// alarms, dashboards may `SEARCH`, so new actions show up by themselves.
fn migration_graph(title: &str, metric: &str, statistic: &str, x: u32, y: u32) -> Value {
    let search = format!(
        "SEARCH('{{${{MetricsNamespace}},Environment,Action}} MetricName=\"{metric}\" Environment=\"${{Environment}}\"', '{statistic}', 300)"
    );
    json!({
        "type": "metric",
        "x": x, "y": y, "width": 12, "height": 6,
        "properties": {
            "title": title,
            "region": "${AWS::Region}",
            "view": "timeSeries",
            "stat": statistic,
            "period": 300,
            "metrics": [[{ "expression": search, "id": "e1" }]],
        }
    })
}

fn dashboard(t: &mut Template) {
    let alarm_arns: Vec<String> = ALARMS.iter().map(|id| format!("${{{id}.Arn}}")).collect();
    let body = json!({
        "widgets": [
            {
                "type": "alarm",
                "x": 0, "y": 0, "width": 24, "height": 3,
                "properties": { "title": "Alarms", "alarms": alarm_arns },
            },
            migration_graph("Successful runs", "MigrationSuccess", "Sum", 0, 3),
            migration_graph("Failed runs", "MigrationFailure", "Sum", 12, 3),
            migration_graph("Run duration (ms, max)", "MigrationDuration", "Maximum", 0, 9),
            migration_graph("Database connection errors", "DatabaseConnectionErrors", "Sum", 12, 9),
            {
                "type": "metric",
                "x": 0, "y": 15, "width": 24, "height": 6,
                "properties": {
                    "title": "Function: invocations, errors, throttles",
                    "region": "${AWS::Region}",
                    "view": "timeSeries",
                    "stat": "Sum",
                    "period": 300,
                    "metrics": [
                        ["AWS/Lambda", "Invocations", "FunctionName", "${MigrationFunction}"],
                        ["AWS/Lambda", "Errors", "FunctionName", "${MigrationFunction}"],
                        ["AWS/Lambda", "Throttles", "FunctionName", "${MigrationFunction}"],
                    ],
                },
            },
        ]
    });
    // The body is a JSON string; Fn::Sub fills in the region, the function,
    // the namespace and the alarms' ARNs.
    let text = serde_json::to_string(&cfn::canonical(&body)).unwrap_or_default();
    t.resource(
        DASHBOARD,
        Resource::new(
            "AWS::CloudWatch::Dashboard",
            json!({
                "DashboardName": sub("${AWS::StackName}"),
                "DashboardBody": sub(&text),
            }),
        ),
    );
}

fn outputs(t: &mut Template) {
    t.output(
        "FunctionName",
        "The migration function (SLIPWAY_FUNCTION for scripts/invoke-migration.sh).",
        reference(FUNCTION),
    );
    t.output(
        "FunctionArn",
        "ARN of the migration function.",
        get_att(FUNCTION, "Arn"),
    );
    t.output(
        "AlarmTopicArn",
        "SNS topic the alarms publish to.",
        reference(TOPIC),
    );
    t.output(
        "DashboardName",
        "CloudWatch dashboard of the migrations.",
        reference(DASHBOARD),
    );
}
