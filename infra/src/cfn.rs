//! The few CloudFormation shapes the template is made of, as typed helpers:
//! intrinsic functions, parameters, resources, IAM statements, alarms. They
//! exist so that `render` reads like the template it produces, and so that a
//! misspelt `Fn::GetAtt` or a statement without `Effect` cannot be written
//! at all (CloudFormation template anatomy:
//! <https://docs.aws.amazon.com/AWSCloudFormation/latest/UserGuide/template-anatomy.html>).
//!
//! Everything here is pure: values in, `serde_json::Value` out.

use serde_json::{json, Map, Value};

/// `{"Ref": name}`: a parameter's value, or a resource's primary identifier.
pub fn reference(name: &str) -> Value {
    json!({ "Ref": name })
}

/// `{"Fn::GetAtt": [resource, attribute]}`.
pub fn get_att(resource: &str, attribute: &str) -> Value {
    json!({ "Fn::GetAtt": [resource, attribute] })
}

/// `{"Fn::Sub": text}`: `${Name}` in `text` is a parameter, a resource or a
/// pseudo parameter such as `${AWS::Region}`.
pub fn sub(text: &str) -> Value {
    json!({ "Fn::Sub": text })
}

/// `{"Fn::If": [condition, then, otherwise]}`.
pub fn if_then(condition: &str, then: Value, otherwise: Value) -> Value {
    json!({ "Fn::If": [condition, then, otherwise] })
}

/// `{"Ref": "AWS::NoValue"}`: removes the property (or list item) it stands for.
pub fn no_value() -> Value {
    reference("AWS::NoValue")
}

/// A property that exists only when `condition` holds.
pub fn only_if(condition: &str, value: Value) -> Value {
    if_then(condition, value, no_value())
}

/// `{"Fn::Equals": [a, b]}`.
pub fn equals(a: Value, b: Value) -> Value {
    json!({ "Fn::Equals": [a, b] })
}

/// `{"Fn::Not": [condition]}`.
pub fn not(condition: Value) -> Value {
    json!({ "Fn::Not": [condition] })
}

/// `{"Fn::Join": [separator, items]}`.
pub fn join(separator: &str, items: Value) -> Value {
    json!({ "Fn::Join": [separator, items] })
}

/// True when the string parameter `name` is not empty.
pub fn is_set(name: &str) -> Value {
    not(equals(reference(name), json!("")))
}

/// True when the list parameter `name` has a non-empty item (an unset
/// `CommaDelimitedList` is `[""]`).
pub fn is_set_list(name: &str) -> Value {
    not(equals(join("", reference(name)), json!("")))
}

/// The ARN of this stack's region and account for `service` and `resource`
/// (`arn:${AWS::Partition}:service:${AWS::Region}:${AWS::AccountId}:resource`).
pub fn arn(service: &str, resource: &str) -> Value {
    sub(&format!(
        "arn:${{AWS::Partition}}:{service}:${{AWS::Region}}:${{AWS::AccountId}}:{resource}"
    ))
}

/// A template parameter.
#[derive(Debug, Clone)]
pub struct Parameter {
    kind: &'static str,
    description: String,
    default: Option<Value>,
    allowed_values: Vec<Value>,
    allowed_pattern: Option<(String, String)>,
    range: Option<(u64, u64)>,
}

impl Parameter {
    fn new(kind: &'static str, description: &str) -> Parameter {
        Parameter {
            kind,
            description: description.to_owned(),
            default: None,
            allowed_values: Vec::new(),
            allowed_pattern: None,
            range: None,
        }
    }

    /// `Type: String`.
    pub fn string(description: &str) -> Parameter {
        Parameter::new("String", description)
    }

    /// `Type: Number`.
    pub fn number(description: &str) -> Parameter {
        Parameter::new("Number", description)
    }

    /// `Type: CommaDelimitedList`.
    pub fn list(description: &str) -> Parameter {
        Parameter::new("CommaDelimitedList", description)
    }

    /// `Default`; numbers stay numbers.
    pub fn default(mut self, value: impl Into<Value>) -> Parameter {
        self.default = Some(value.into());
        self
    }

    /// `AllowedValues`.
    pub fn allowed<T: Into<Value> + Clone>(mut self, values: &[T]) -> Parameter {
        self.allowed_values = values.iter().cloned().map(Into::into).collect();
        self
    }

    /// `AllowedPattern`, and the `ConstraintDescription` CloudFormation shows
    /// when a value does not match.
    pub fn pattern(mut self, pattern: &str, explanation: &str) -> Parameter {
        self.allowed_pattern = Some((pattern.to_owned(), explanation.to_owned()));
        self
    }

    /// `MinValue` and `MaxValue`.
    pub fn range(mut self, min: u64, max: u64) -> Parameter {
        self.range = Some((min, max));
        self
    }

    fn to_json(&self) -> Value {
        let mut out = Map::new();
        out.insert("Type".into(), json!(self.kind));
        out.insert("Description".into(), json!(self.description));
        if let Some(default) = &self.default {
            out.insert("Default".into(), default.clone());
        }
        if !self.allowed_values.is_empty() {
            out.insert("AllowedValues".into(), json!(self.allowed_values));
        }
        if let Some((pattern, explanation)) = &self.allowed_pattern {
            out.insert("AllowedPattern".into(), json!(pattern));
            out.insert("ConstraintDescription".into(), json!(explanation));
        }
        if let Some((min, max)) = self.range {
            out.insert("MinValue".into(), json!(min));
            out.insert("MaxValue".into(), json!(max));
        }
        Value::Object(out)
    }
}

/// A resource: its type, properties and the attributes beside them.
#[derive(Debug, Clone)]
pub struct Resource {
    kind: &'static str,
    properties: Value,
    condition: Option<&'static str>,
    deletion_policy: Option<&'static str>,
}

impl Resource {
    /// `Type: kind`, `Properties: properties`.
    pub fn new(kind: &'static str, properties: Value) -> Resource {
        Resource {
            kind,
            properties,
            condition: None,
            deletion_policy: None,
        }
    }

    /// Created only when `condition` holds.
    pub fn when(mut self, condition: &'static str) -> Resource {
        self.condition = Some(condition);
        self
    }

    /// `DeletionPolicy` and `UpdateReplacePolicy`, both `policy`.
    pub fn on_delete(mut self, policy: &'static str) -> Resource {
        self.deletion_policy = Some(policy);
        self
    }

    fn to_json(&self) -> Value {
        let mut out = Map::new();
        out.insert("Type".into(), json!(self.kind));
        out.insert("Properties".into(), self.properties.clone());
        if let Some(condition) = self.condition {
            out.insert("Condition".into(), json!(condition));
        }
        if let Some(policy) = self.deletion_policy {
            out.insert("DeletionPolicy".into(), json!(policy));
            out.insert("UpdateReplacePolicy".into(), json!(policy));
        }
        Value::Object(out)
    }
}

/// One `Allow` statement of an IAM policy.
#[derive(Debug, Clone)]
pub struct Statement {
    sid: &'static str,
    actions: Vec<&'static str>,
    resources: Value,
    condition: Option<Value>,
}

impl Statement {
    /// Allow `actions`; say on what with [`Statement::on`].
    pub fn allow(sid: &'static str, actions: &[&'static str]) -> Statement {
        Statement {
            sid,
            actions: actions.to_vec(),
            resources: Value::Null,
            condition: None,
        }
    }

    /// `Resource`: one value (an ARN, an intrinsic) or a list of them.
    pub fn on(mut self, resources: Value) -> Statement {
        self.resources = resources;
        self
    }

    /// `Condition`.
    pub fn when(mut self, condition: Value) -> Statement {
        self.condition = Some(condition);
        self
    }

    /// The statement as policy JSON.
    pub fn to_json(&self) -> Value {
        let mut out = Map::new();
        out.insert("Sid".into(), json!(self.sid));
        out.insert("Effect".into(), json!("Allow"));
        out.insert("Action".into(), json!(self.actions));
        out.insert("Resource".into(), self.resources.clone());
        if let Some(condition) = &self.condition {
            out.insert("Condition".into(), condition.clone());
        }
        Value::Object(out)
    }
}

/// An IAM policy document of `statements` (plain or wrapped in `Fn::If`).
pub fn policy_document(statements: Vec<Value>) -> Value {
    json!({ "Version": "2012-10-17", "Statement": statements })
}

/// A metric with all its dimensions, as CloudWatch names it.
#[derive(Debug, Clone)]
pub struct Metric {
    pub namespace: Value,
    pub name: &'static str,
    pub dimensions: Vec<(&'static str, Value)>,
}

impl Metric {
    fn fields(&self) -> Map<String, Value> {
        let mut out = Map::new();
        out.insert("Namespace".into(), self.namespace.clone());
        out.insert("MetricName".into(), json!(self.name));
        out.insert(
            "Dimensions".into(),
            self.dimensions
                .iter()
                .map(|(name, value)| json!({ "Name": name, "Value": value }))
                .collect(),
        );
        out
    }

    fn to_json(&self) -> Value {
        Value::Object(self.fields())
    }
}

/// What an alarm watches.
#[derive(Debug, Clone)]
pub enum Watched {
    /// One metric and a statistic.
    Metric {
        metric: Metric,
        statistic: &'static str,
    },
    /// A metric-math `expression` over named metrics (ids → metric), each
    /// read with `statistic`. Alarms accept up to 10 metrics and no `SEARCH`.
    Math {
        expression: String,
        label: &'static str,
        metrics: Vec<(String, Metric)>,
        statistic: &'static str,
    },
}

/// `>=` or `>` a threshold.
#[derive(Debug, Clone, Copy)]
pub enum Comparison {
    AtLeast,
    Above,
}

/// A CloudWatch alarm into one SNS topic.
#[derive(Debug, Clone)]
pub struct Alarm {
    pub name: Value,
    pub description: String,
    pub watched: Watched,
    pub comparison: Comparison,
    pub threshold: f64,
    pub period_seconds: u32,
    pub topic: Value,
}

impl Alarm {
    /// The `AWS::CloudWatch::Alarm` resource. Missing data is not breaching:
    /// the function emits only when it runs, and no run is not a failure.
    pub fn resource(&self) -> Resource {
        let mut properties = Map::new();
        properties.insert("AlarmName".into(), self.name.clone());
        properties.insert("AlarmDescription".into(), json!(self.description));
        properties.insert("ActionsEnabled".into(), json!(true));
        properties.insert("AlarmActions".into(), json!([self.topic]));
        properties.insert(
            "ComparisonOperator".into(),
            json!(match self.comparison {
                Comparison::AtLeast => "GreaterThanOrEqualToThreshold",
                Comparison::Above => "GreaterThanThreshold",
            }),
        );
        properties.insert("Threshold".into(), json!(self.threshold));
        properties.insert("EvaluationPeriods".into(), json!(1));
        properties.insert("DatapointsToAlarm".into(), json!(1));
        properties.insert("TreatMissingData".into(), json!("notBreaching"));
        match &self.watched {
            Watched::Metric { metric, statistic } => {
                properties.extend(metric.fields());
                properties.insert("Statistic".into(), json!(statistic));
                properties.insert("Period".into(), json!(self.period_seconds));
            }
            Watched::Math {
                expression,
                label,
                metrics,
                statistic,
            } => {
                let mut queries = vec![json!({
                    "Id": "total",
                    "Expression": expression,
                    "Label": label,
                    "ReturnData": true,
                })];
                queries.extend(metrics.iter().map(|(id, metric)| {
                    json!({
                        "Id": id,
                        "MetricStat": {
                            "Metric": metric.to_json(),
                            "Period": self.period_seconds,
                            "Stat": statistic,
                        },
                        "ReturnData": false,
                    })
                }));
                properties.insert("Metrics".into(), json!(queries));
            }
        }
        Resource::new("AWS::CloudWatch::Alarm", Value::Object(properties))
    }
}

/// A template being assembled; [`Template::into_json`] gives the document.
#[derive(Debug, Default)]
pub struct Template {
    description: String,
    parameters: Map<String, Value>,
    parameter_groups: Vec<Value>,
    conditions: Map<String, Value>,
    resources: Map<String, Value>,
    outputs: Map<String, Value>,
}

impl Template {
    /// An empty template with `description`.
    pub fn new(description: &str) -> Template {
        Template {
            description: description.to_owned(),
            ..Template::default()
        }
    }

    /// Parameters shown together, under `label`, in the console.
    pub fn parameter_group(&mut self, label: &str, parameters: Vec<(&str, Parameter)>) {
        let names: Vec<&str> = parameters.iter().map(|(name, _)| *name).collect();
        self.parameter_groups.push(json!({
            "Label": { "default": label },
            "Parameters": names,
        }));
        for (name, parameter) in parameters {
            self.parameters.insert(name.into(), parameter.to_json());
        }
    }

    /// A named condition.
    pub fn condition(&mut self, name: &str, condition: Value) {
        self.conditions.insert(name.into(), condition);
    }

    /// A resource with logical id `name`.
    pub fn resource(&mut self, name: &str, resource: Resource) {
        self.resources.insert(name.into(), resource.to_json());
    }

    /// An output, exported as `${AWS::StackName}-name` for other stacks.
    pub fn output(&mut self, name: &str, description: &str, value: Value) {
        self.outputs.insert(
            name.into(),
            json!({
                "Description": description,
                "Value": value,
                "Export": { "Name": sub(&format!("${{AWS::StackName}}-{name}")) },
            }),
        );
    }

    /// The whole template.
    pub fn into_json(self) -> Value {
        json!({
            "AWSTemplateFormatVersion": "2010-09-09",
            "Description": self.description,
            "Metadata": {
                "AWS::CloudFormation::Interface": { "ParameterGroups": self.parameter_groups },
            },
            "Parameters": self.parameters,
            "Conditions": self.conditions,
            "Resources": self.resources,
            "Outputs": self.outputs,
        })
    }
}

/// `value` with every object's keys in sorted order, whatever map type
/// serde_json was built with (its `preserve_order` feature, turned on by any
/// crate in a build, would otherwise make the file depend on the build).
pub fn canonical(value: &Value) -> Value {
    match value {
        Value::Object(map) => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_by(|a, b| a.0.cmp(b.0));
            Value::Object(
                entries
                    .into_iter()
                    .map(|(k, v)| (k.clone(), canonical(v)))
                    .collect(),
            )
        }
        Value::Array(items) => Value::Array(items.iter().map(canonical).collect()),
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intrinsics_have_cloudformations_spelling() {
        assert_eq!(reference("Topic"), json!({"Ref": "Topic"}));
        assert_eq!(
            get_att("Function", "Arn"),
            json!({"Fn::GetAtt": ["Function", "Arn"]})
        );
        assert_eq!(
            only_if("UseVpc", json!(1)),
            json!({"Fn::If": ["UseVpc", 1, {"Ref": "AWS::NoValue"}]})
        );
        assert_eq!(
            arn("logs", "log-group:x"),
            json!({"Fn::Sub": "arn:${AWS::Partition}:logs:${AWS::Region}:${AWS::AccountId}:log-group:x"})
        );
    }

    #[test]
    fn canonical_sorts_keys_at_every_depth() {
        let value = json!({"b": [{"z": 1, "a": 2}], "a": {"y": 1, "x": 2}});
        let text = serde_json::to_string(&canonical(&value)).unwrap_or_default();
        assert_eq!(text, r#"{"a":{"x":2,"y":1},"b":[{"a":2,"z":1}]}"#);
    }
}
