//! Reads `template.yaml`, the one source of truth for resources, functions and their events, and
//! resolves its intrinsic functions (`!Ref`, `!GetAtt`, `!Sub`) against the local stack's names.

use serde::Deserialize;
use serde_yaml::Value;
use std::collections::BTreeMap;
use std::path::Path;

#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    #[error("cannot read {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("template is not valid YAML: {0}")]
    Yaml(#[from] serde_yaml::Error),
    #[error("resource {resource}: {message}")]
    Resource { resource: String, message: String },
    #[error("cannot resolve {0}")]
    Unresolved(String),
}

fn resource_error(resource: &str, message: impl Into<String>) -> TemplateError {
    TemplateError::Resource { resource: resource.to_owned(), message: message.into() }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Resource {
    #[serde(rename = "Type")]
    pub kind: String,
    #[serde(default)]
    pub properties: Value,
    #[serde(default)]
    pub metadata: Value,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Raw {
    #[serde(default)]
    parameters: BTreeMap<String, Value>,
    #[serde(default)]
    globals: Value,
    resources: BTreeMap<String, Resource>,
}

/// What the local runner wires for one function event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventSource {
    Http {
        method: String,
        path: String,
    },
    Sqs {
        queue: String,
        batch_size: usize,
        batching_window_secs: u64,
        report_failures: bool,
    },
    Schedule {
        expression: String,
    },
    /// An EventBridge rule on a bus (`None`: the default bus) whose target is the function.
    Rule {
        pattern: serde_json::Value,
        bus: Option<Value>,
    },
    /// A DynamoDB table's stream, read from its start, with partial batch responses; a batch that
    /// keeps failing is reported to the `on_failure` queue after `max_retries` and skipped.
    Stream {
        table: String,
        batch_size: usize,
        report_failures: bool,
        max_retries: u32,
        on_failure: Option<String>,
        /// The mapping has a tumbling window (`TumblingWindowInSeconds`): Lambda then names the
        /// batch's shard.
        windowed: bool,
    },
}

#[derive(Debug, Clone)]
pub struct FunctionDef {
    pub logical_id: String,
    /// The folder under `functions/` (= package = binary name).
    pub name: String,
    /// Environment variables before resolution (Globals merged with the function's own).
    pub environment: BTreeMap<String, Value>,
    pub timeout_secs: u64,
    pub events: Vec<(String, EventSource)>,
}

#[derive(Debug, Clone)]
pub struct Template {
    pub parameters: BTreeMap<String, Value>,
    pub resources: BTreeMap<String, Resource>,
    globals: Value,
}

impl Template {
    pub fn load(path: &Path) -> Result<Self, TemplateError> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| TemplateError::Read { path: path.display().to_string(), source })?;
        Self::parse(&text)
    }

    pub fn parse(text: &str) -> Result<Self, TemplateError> {
        let raw: Raw = serde_yaml::from_str(text)?;
        Ok(Self { parameters: raw.parameters, resources: raw.resources, globals: raw.globals })
    }

    pub fn of_type<'a>(&'a self, kind: &'a str) -> impl Iterator<Item = (&'a String, &'a Resource)> + 'a {
        self.resources.iter().filter(move |(_, r)| r.kind == kind)
    }

    pub fn functions(&self) -> Result<Vec<FunctionDef>, TemplateError> {
        let global = &self.globals["Function"];
        self.of_type("AWS::Serverless::Function").map(|(id, r)| function_def(id, r, global)).collect()
    }
}

fn function_def(id: &str, r: &Resource, global: &Value) -> Result<FunctionDef, TemplateError> {
    let p = &r.properties;
    let name = p["CodeUri"]
        .as_str()
        .and_then(|u| u.trim_end_matches('/').rsplit('/').next())
        .ok_or_else(|| resource_error(id, "CodeUri must be functions/<name>"))?
        .to_owned();
    let mut environment = BTreeMap::new();
    for vars in [&global["Environment"]["Variables"], &p["Environment"]["Variables"]] {
        if let Value::Mapping(map) = vars {
            for (k, v) in map {
                let key = k.as_str().ok_or_else(|| resource_error(id, "variable names must be strings"))?;
                environment.insert(key.to_owned(), v.clone());
            }
        }
    }
    let timeout_secs = p["Timeout"].as_u64().or_else(|| global["Timeout"].as_u64()).unwrap_or(3);
    let mut events = Vec::new();
    if let Value::Mapping(map) = &p["Events"] {
        for (event_id, event) in map {
            let event_id = event_id.as_str().unwrap_or_default().to_owned();
            events.push((event_id.clone(), event_source(id, &event_id, event)?));
        }
    }
    Ok(FunctionDef { logical_id: id.to_owned(), name, environment, timeout_secs, events })
}

fn event_source(function: &str, event_id: &str, event: &Value) -> Result<EventSource, TemplateError> {
    let props = &event["Properties"];
    let where_ = format!("{function}.Events.{event_id}");
    match event["Type"].as_str() {
        Some("HttpApi") => Ok(EventSource::Http {
            method: props["Method"].as_str().unwrap_or("ANY").to_uppercase(),
            path: props["Path"]
                .as_str()
                .ok_or_else(|| resource_error(&where_, "HttpApi event needs a Path"))?
                .to_owned(),
        }),
        Some("SQS") => Ok(EventSource::Sqs {
            queue: referenced_resource(&props["Queue"])
                .ok_or_else(|| resource_error(&where_, "SQS event Queue must be !GetAtt <Queue>.Arn"))?,
            batch_size: props["BatchSize"].as_u64().map_or(10, |b| usize::try_from(b).unwrap_or(10)),
            batching_window_secs: props["MaximumBatchingWindowInSeconds"].as_u64().unwrap_or(0),
            report_failures: props["FunctionResponseTypes"]
                .as_sequence()
                .is_some_and(|s| s.iter().any(|t| t.as_str() == Some("ReportBatchItemFailures"))),
        }),
        Some("Schedule" | "ScheduleV2") => Ok(EventSource::Schedule {
            expression: props["Schedule"]
                .as_str()
                .or_else(|| props["ScheduleExpression"].as_str())
                .ok_or_else(|| resource_error(&where_, "schedule needs an expression"))?
                .to_owned(),
        }),
        Some("EventBridgeRule" | "CloudWatchEvent") => Ok(EventSource::Rule {
            pattern: serde_json::to_value(&props["Pattern"]).map_err(|e| resource_error(&where_, e.to_string()))?,
            bus: (!props["EventBusName"].is_null()).then(|| props["EventBusName"].clone()),
        }),
        Some("DynamoDB") => {
            if props["StartingPosition"].as_str() != Some("TRIM_HORIZON") {
                return Err(resource_error(&where_, "the local runner reads streams from TRIM_HORIZON only"));
            }
            Ok(EventSource::Stream {
                table: referenced_resource(&props["Stream"]).ok_or_else(|| {
                    resource_error(&where_, "DynamoDB event Stream must be !GetAtt <Table>.StreamArn")
                })?,
                batch_size: props["BatchSize"].as_u64().map_or(100, |b| usize::try_from(b).unwrap_or(100)),
                report_failures: props["FunctionResponseTypes"]
                    .as_sequence()
                    .is_some_and(|s| s.iter().any(|t| t.as_str() == Some("ReportBatchItemFailures"))),
                max_retries: props["MaximumRetryAttempts"]
                    .as_u64()
                    .map_or(u32::MAX, |r| u32::try_from(r).unwrap_or(u32::MAX)),
                on_failure: referenced_resource(&props["DestinationConfig"]["OnFailure"]["Destination"]),
                windowed: props["TumblingWindowInSeconds"].as_u64().is_some_and(|w| w > 0),
            })
        }
        other => Err(resource_error(&where_, format!("event type {other:?} is not supported by the local runner"))),
    }
}

/// The logical id a `!GetAtt X.Arn`, `!Ref X` or their long forms point at.
pub fn referenced_resource(value: &Value) -> Option<String> {
    match intrinsic(value)? {
        ("Ref", Value::String(id)) => Some(id.clone()),
        ("GetAtt", Value::String(s)) => s.split('.').next().map(str::to_owned),
        ("GetAtt", Value::Sequence(parts)) => parts.first()?.as_str().map(str::to_owned),
        _ => None,
    }
}

/// Splits `!Tag value` and `{ "Fn::Tag": value }` / `{ Ref: value }` into (name, argument).
fn intrinsic(value: &Value) -> Option<(&str, &Value)> {
    match value {
        Value::Tagged(t) => {
            let tag = t.tag.to_string();
            let name = tag.trim_start_matches('!');
            let name = name.strip_prefix("Fn::").unwrap_or(name);
            // `tag` is a temporary; map back to a static name for the known intrinsics.
            ["Ref", "GetAtt", "Sub", "Join", "Select", "If"]
                .into_iter()
                .find(|known| *known == name)
                .map(|known| (known, &t.value))
        }
        Value::Mapping(m) if m.len() == 1 => {
            let (k, v) = m.iter().next()?;
            let k = k.as_str()?;
            let name = k.strip_prefix("Fn::").unwrap_or(k);
            ["Ref", "GetAtt", "Sub", "Join", "Select", "If"]
                .into_iter()
                .find(|known| *known == name)
                .map(|known| (known, v))
        }
        _ => None,
    }
}

/// Resolves intrinsics with the local stack's physical names: `refs` answers `!Ref X`,
/// `attrs` answers `!GetAtt X.Attr`.
#[derive(Debug, Clone, Default)]
pub struct Resolver {
    pub refs: BTreeMap<String, String>,
    pub attrs: BTreeMap<(String, String), String>,
}

impl Resolver {
    pub fn resolve(&self, value: &Value) -> Result<String, TemplateError> {
        if let Some((name, arg)) = intrinsic(value) {
            return match (name, arg) {
                ("Ref", Value::String(id)) => self.reference(id),
                ("GetAtt", Value::String(s)) => {
                    let (id, attr) = s.split_once('.').ok_or_else(|| TemplateError::Unresolved(s.clone()))?;
                    self.attribute(id, attr)
                }
                ("GetAtt", Value::Sequence(parts)) => {
                    let id = parts.first().and_then(Value::as_str).unwrap_or_default();
                    let attr = parts.get(1).and_then(Value::as_str).unwrap_or_default();
                    self.attribute(id, attr)
                }
                ("Sub", Value::String(s)) => self.substitute(s),
                ("Join", Value::Sequence(parts)) if parts.len() == 2 => {
                    let sep = parts[0].as_str().unwrap_or_default();
                    let items = parts[1].as_sequence().cloned().unwrap_or_default();
                    let resolved: Result<Vec<String>, _> = items.iter().map(|i| self.resolve(i)).collect();
                    Ok(resolved?.join(sep))
                }
                _ => Err(TemplateError::Unresolved(format!("{name} {arg:?}"))),
            };
        }
        match value {
            Value::String(s) => Ok(s.clone()),
            Value::Number(n) => Ok(n.to_string()),
            Value::Bool(b) => Ok(b.to_string()),
            other => Err(TemplateError::Unresolved(format!("{other:?}"))),
        }
    }

    fn reference(&self, id: &str) -> Result<String, TemplateError> {
        self.refs.get(id).cloned().ok_or_else(|| TemplateError::Unresolved(format!("!Ref {id}")))
    }

    fn attribute(&self, id: &str, attr: &str) -> Result<String, TemplateError> {
        self.attrs
            .get(&(id.to_owned(), attr.to_owned()))
            .cloned()
            .ok_or_else(|| TemplateError::Unresolved(format!("!GetAtt {id}.{attr}")))
    }

    /// `${Name}` is a Ref, `${Name.Attr}` a GetAtt, `${AWS::Region}` a pseudo parameter.
    fn substitute(&self, text: &str) -> Result<String, TemplateError> {
        let mut out = String::new();
        let mut rest = text;
        while let Some(start) = rest.find("${") {
            out.push_str(&rest[..start]);
            let end = rest[start..].find('}').ok_or_else(|| TemplateError::Unresolved(text.to_owned()))? + start;
            let name = &rest[start + 2..end];
            out.push_str(&match name.split_once('.') {
                Some((id, attr)) if !name.starts_with("AWS::") => self.attribute(id, attr)?,
                _ => self.reference(name)?,
            });
            rest = &rest[end + 1..];
        }
        out.push_str(rest);
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = r#"
Parameters:
  Token: { Type: String }
Globals:
  Function:
    Timeout: 9
    Environment:
      Variables:
        TABLE: !Ref Table
Resources:
  Table: { Type: AWS::DynamoDB::Table, Properties: {} }
  Queue: { Type: AWS::SQS::Queue }
  Fn:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: functions/do-thing
      Environment: { Variables: { QUEUE_ARN: !GetAtt Queue.Arn, ARN_SUB: !Sub "${Table.Arn}/index/*", TOKEN: { Ref: Token } } }
      Events:
        Get: { Type: HttpApi, Properties: { Path: "/v1/things/{id}", Method: get } }
        Work: { Type: SQS, Properties: { Queue: !GetAtt Queue.Arn, BatchSize: 5, FunctionResponseTypes: [ReportBatchItemFailures] } }
"#;

    #[test]
    fn functions_merge_globals_and_read_their_events() {
        let t = Template::parse(SAMPLE).unwrap();
        let f = &t.functions().unwrap()[0];
        assert_eq!(f.name, "do-thing");
        assert_eq!(f.timeout_secs, 9);
        assert_eq!(f.environment.len(), 4);
        assert!(
            f.events
                .contains(&("Get".into(), EventSource::Http { method: "GET".into(), path: "/v1/things/{id}".into() }))
        );
        assert!(f.events.contains(&(
            "Work".into(),
            EventSource::Sqs { queue: "Queue".into(), batch_size: 5, batching_window_secs: 0, report_failures: true }
        )));
    }

    #[test]
    fn intrinsics_resolve_to_local_names() {
        let t = Template::parse(SAMPLE).unwrap();
        let f = &t.functions().unwrap()[0];
        let mut r = Resolver::default();
        r.refs.insert("Table".into(), "p-Table".into());
        r.refs.insert("Token".into(), "secret".into());
        r.attrs.insert(("Queue".into(), "Arn".into()), "arn:q".into());
        r.attrs.insert(("Table".into(), "Arn".into()), "arn:t".into());
        assert_eq!(r.resolve(&f.environment["TABLE"]).unwrap(), "p-Table");
        assert_eq!(r.resolve(&f.environment["QUEUE_ARN"]).unwrap(), "arn:q");
        assert_eq!(r.resolve(&f.environment["ARN_SUB"]).unwrap(), "arn:t/index/*");
        assert_eq!(r.resolve(&f.environment["TOKEN"]).unwrap(), "secret");
        assert!(
            r.resolve(&Value::Tagged(Box::new(serde_yaml::value::TaggedValue {
                tag: serde_yaml::value::Tag::new("Ref"),
                value: Value::String("Missing".into()),
            })))
            .is_err()
        );
    }

    #[test]
    fn unsupported_event_types_are_errors_not_silently_skipped() {
        let text = SAMPLE.replace("Type: HttpApi", "Type: Kinesis");
        assert!(Template::parse(&text).unwrap().functions().is_err());
    }
}
