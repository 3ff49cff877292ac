//! Least privilege, measured: which AWS actions each function really performs on which of the
//! template's resources, recorded at run time, and a check of `template.yaml`'s policies against it.
//!
//! Static reading cannot see which shared code a function reaches, so every function the test
//! stack hosts gets its own SDK clients carrying an [`AccessRecorder`]: each request becomes a line
//! `function <TAB> action <TAB> resource` (the IAM action the request needs, on the template's
//! logical resource: `BillyTable`, `BillyTable/index/GSI1`, `ExportsBucket/exports/…`), appended to
//! the file `BILLY_ACCESS_LOG` names. Every test binary of `make test` appends to the same file;
//! [`check`] then compares the lines with the policies (`billy-local check-access`).

use crate::provision::Provisioned;
use crate::template::{EventSource, Template, TemplateError};
use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::context::BeforeSerializationInterceptorContextRef;
use aws_smithy_runtime_api::client::interceptors::{Intercept, SharedInterceptor};
use aws_smithy_runtime_api::client::orchestrator::Metadata;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::config_bag::ConfigBag;
use serde_yaml::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::sync::{Arc, Mutex};

/// The variable naming the file every recorded access is appended to.
pub const LOG_VARIABLE: &str = "BILLY_ACCESS_LOG";

/// The pseudo-action of a served route: the check needs every route exercised at least once,
/// since a grant only a never-called route needs would otherwise go unnoticed.
const ROUTE: &str = "route";

/// One recorded access: the function, the IAM action, the logical resource.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Access {
    pub function: String,
    pub action: String,
    pub resource: String,
}

impl Access {
    fn line(&self) -> String {
        format!("{}\t{}\t{}\n", self.function, self.action, self.resource)
    }

    /// Reads the lines of a log; a malformed line is an error, not skipped.
    pub fn parse_log(text: &str) -> Result<BTreeSet<Self>, String> {
        text.lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| match l.split('\t').collect::<Vec<_>>()[..] {
                [function, action, resource] => {
                    Ok(Self { function: function.to_owned(), action: action.to_owned(), resource: resource.to_owned() })
                }
                _ => Err(format!("malformed access line '{l}'")),
            })
            .collect()
    }
}

/// The physical names of one provisioned stack, back to the template's logical ids.
#[derive(Debug, Default)]
struct Names {
    tables: BTreeMap<String, String>,
    queues: BTreeMap<String, String>,
    buses: BTreeMap<String, String>,
    keys: BTreeMap<String, String>,
    buckets: BTreeMap<String, String>,
}

impl Names {
    fn of(provisioned: &Provisioned) -> Self {
        let flip = |m: &BTreeMap<String, String>| m.iter().map(|(k, v)| (v.clone(), k.clone())).collect();
        Self {
            tables: flip(&provisioned.tables),
            queues: provisioned.queues.iter().map(|(id, (_, url, _))| (url.clone(), id.clone())).collect(),
            buses: flip(&provisioned.buses),
            keys: flip(&provisioned.keys),
            buckets: flip(&provisioned.buckets),
        }
    }

    /// An unknown physical name is kept, marked: the check then fails on it (no policy names it).
    fn logical(map: &BTreeMap<String, String>, physical: &str) -> String {
        map.get(physical).cloned().unwrap_or_else(|| format!("?{physical}"))
    }

    fn table(&self, name: &str, index: Option<&str>) -> String {
        let table = Self::logical(&self.tables, name);
        index.map_or_else(|| table.clone(), |i| format!("{table}/index/{i}"))
    }
}

/// The accesses this process has written, and the file they go to (one per process, whatever
/// number of stacks it starts: each access is written once).
type Sink = Mutex<(BTreeSet<Access>, std::fs::File)>;

/// The process's sink, opened on first use when `BILLY_ACCESS_LOG` is set.
fn sink() -> Option<&'static Sink> {
    static SINK: std::sync::OnceLock<Option<Sink>> = std::sync::OnceLock::new();
    SINK.get_or_init(|| {
        let path = std::path::PathBuf::from(std::env::var_os(LOG_VARIABLE)?);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).ok()?;
        }
        let file = std::fs::OpenOptions::new().create(true).append(true).open(&path).ok()?;
        Some(Mutex::new((BTreeSet::new(), file)))
    })
    .as_ref()
}

/// Where one stack's recorded accesses go: a file shared by every test process.
#[derive(Debug, Clone)]
pub struct AccessLog {
    names: Arc<Names>,
    sink: &'static Sink,
}

impl AccessLog {
    /// A log for this stack when `BILLY_ACCESS_LOG` is set (`make test` sets it), else `None`.
    pub fn from_env(provisioned: &Provisioned) -> Option<Self> {
        Some(Self { names: Arc::new(Names::of(provisioned)), sink: sink()? })
    }

    /// The interceptor for one function's clients.
    pub fn recorder(&self, function: &str) -> SharedInterceptor {
        SharedInterceptor::new(AccessRecorder { function: function.to_owned(), log: self.clone() })
    }

    /// A route API Gateway served to `function` (method and template path).
    pub fn record_route(&self, function: &str, method: &str, path: &str) {
        self.record(Access {
            function: function.to_owned(),
            action: ROUTE.to_owned(),
            resource: format!("{} {path}", method.to_ascii_uppercase()),
        });
    }

    fn record(&self, access: Access) {
        let mut sink = self.sink.lock().unwrap_or_else(|p| p.into_inner());
        let line = access.line();
        if sink.0.insert(access) {
            // One short write per line with O_APPEND: lines of concurrent test processes never mix.
            let _ = sink.1.write_all(line.as_bytes());
        }
    }
}

/// Records what one function asks of AWS.
#[derive(Debug)]
struct AccessRecorder {
    function: String,
    log: AccessLog,
}

/// The IAM actions and logical resources a request needs (a transaction needs each item's action
/// on each item's table; a batch send needs `sqs:SendMessage`, a batch visibility change
/// `sqs:ChangeMessageVisibility`; a multipart upload `s3:PutObject`).
fn accesses(
    service: &str,
    operation: &str,
    input: &aws_smithy_runtime_api::client::interceptors::context::Input,
    names: &Names,
) -> Vec<(String, String)> {
    use aws_sdk_dynamodb::operation as ddb;
    use aws_sdk_s3::operation as s3;
    use aws_sdk_sqs::operation as sqs;
    let one = |action: &str, resource: String| vec![(action.to_owned(), resource)];
    let queue = |url: Option<&str>| Names::logical(&names.queues, url.unwrap_or("?"));
    let object = |bucket: Option<&str>, key: Option<&str>| {
        format!("{}/{}", Names::logical(&names.buckets, bucket.unwrap_or("?")), key.unwrap_or(""))
    };
    macro_rules! input {
        ($t:ty) => {
            input.downcast_ref::<$t>()
        };
    }
    let found: Option<Vec<(String, String)>> = match (service.to_ascii_lowercase().as_str(), operation) {
        ("dynamodb", "GetItem") => input!(ddb::get_item::GetItemInput)
            .map(|i| one("dynamodb:GetItem", names.table(i.table_name().unwrap_or("?"), None))),
        ("dynamodb", "PutItem") => input!(ddb::put_item::PutItemInput)
            .map(|i| one("dynamodb:PutItem", names.table(i.table_name().unwrap_or("?"), None))),
        ("dynamodb", "UpdateItem") => input!(ddb::update_item::UpdateItemInput)
            .map(|i| one("dynamodb:UpdateItem", names.table(i.table_name().unwrap_or("?"), None))),
        ("dynamodb", "DeleteItem") => input!(ddb::delete_item::DeleteItemInput)
            .map(|i| one("dynamodb:DeleteItem", names.table(i.table_name().unwrap_or("?"), None))),
        ("dynamodb", "DescribeTable") => input!(ddb::describe_table::DescribeTableInput)
            .map(|i| one("dynamodb:DescribeTable", names.table(i.table_name().unwrap_or("?"), None))),
        ("dynamodb", "Query") => input!(ddb::query::QueryInput)
            .map(|i| one("dynamodb:Query", names.table(i.table_name().unwrap_or("?"), i.index_name()))),
        ("dynamodb", "Scan") => input!(ddb::scan::ScanInput)
            .map(|i| one("dynamodb:Scan", names.table(i.table_name().unwrap_or("?"), i.index_name()))),
        ("dynamodb", "BatchGetItem") => input!(ddb::batch_get_item::BatchGetItemInput).map(|i| {
            i.request_items()
                .into_iter()
                .flatten()
                .map(|(t, _)| ("dynamodb:BatchGetItem".to_owned(), names.table(t, None)))
                .collect()
        }),
        ("dynamodb", "BatchWriteItem") => input!(ddb::batch_write_item::BatchWriteItemInput).map(|i| {
            i.request_items()
                .into_iter()
                .flatten()
                .map(|(t, _)| ("dynamodb:BatchWriteItem".to_owned(), names.table(t, None)))
                .collect()
        }),
        ("dynamodb", "TransactGetItems") => input!(ddb::transact_get_items::TransactGetItemsInput).map(|i| {
            i.transact_items()
                .iter()
                .filter_map(|item| item.get())
                .map(|g| ("dynamodb:GetItem".to_owned(), names.table(g.table_name(), None)))
                .collect()
        }),
        ("dynamodb", "TransactWriteItems") => input!(ddb::transact_write_items::TransactWriteItemsInput).map(|i| {
            i.transact_items()
                .iter()
                .filter_map(|item| {
                    if let Some(p) = item.put() {
                        Some(("dynamodb:PutItem", p.table_name()))
                    } else if let Some(u) = item.update() {
                        Some(("dynamodb:UpdateItem", u.table_name()))
                    } else if let Some(d) = item.delete() {
                        Some(("dynamodb:DeleteItem", d.table_name()))
                    } else {
                        item.condition_check().map(|c| ("dynamodb:ConditionCheckItem", c.table_name()))
                    }
                })
                .map(|(action, table)| (action.to_owned(), names.table(table, None)))
                .collect()
        }),
        ("sqs", "SendMessage") => {
            input!(sqs::send_message::SendMessageInput).map(|i| one("sqs:SendMessage", queue(i.queue_url())))
        }
        ("sqs", "SendMessageBatch") => {
            input!(sqs::send_message_batch::SendMessageBatchInput).map(|i| one("sqs:SendMessage", queue(i.queue_url())))
        }
        ("sqs", "ChangeMessageVisibilityBatch") => {
            input!(sqs::change_message_visibility_batch::ChangeMessageVisibilityBatchInput)
                .map(|i| one("sqs:ChangeMessageVisibility", queue(i.queue_url())))
        }
        ("sqs", "GetQueueAttributes") => input!(sqs::get_queue_attributes::GetQueueAttributesInput)
            .map(|i| one("sqs:GetQueueAttributes", queue(i.queue_url()))),
        ("eventbridge", "PutEvents") => input!(aws_sdk_eventbridge::operation::put_events::PutEventsInput).map(|i| {
            i.entries()
                .iter()
                .map(|e| {
                    (
                        "events:PutEvents".to_owned(),
                        Names::logical(&names.buses, e.event_bus_name().unwrap_or("default")),
                    )
                })
                .collect()
        }),
        ("eventbridge", "ListEventBuses") => Some(one("events:ListEventBuses", "*".to_owned())),
        ("kms", "Encrypt") => input!(aws_sdk_kms::operation::encrypt::EncryptInput)
            .map(|i| one("kms:Encrypt", Names::logical(&names.keys, i.key_id().unwrap_or("?")))),
        ("kms", "Decrypt") => input!(aws_sdk_kms::operation::decrypt::DecryptInput)
            .map(|i| one("kms:Decrypt", Names::logical(&names.keys, i.key_id().unwrap_or("?")))),
        ("kms", "GenerateMac") => input!(aws_sdk_kms::operation::generate_mac::GenerateMacInput)
            .map(|i| one("kms:GenerateMac", Names::logical(&names.keys, i.key_id().unwrap_or("?")))),
        ("kms", "VerifyMac") => input!(aws_sdk_kms::operation::verify_mac::VerifyMacInput)
            .map(|i| one("kms:VerifyMac", Names::logical(&names.keys, i.key_id().unwrap_or("?")))),
        ("s3", "PutObject") => {
            input!(s3::put_object::PutObjectInput).map(|i| one("s3:PutObject", object(i.bucket(), i.key())))
        }
        ("s3", "CreateMultipartUpload") => input!(s3::create_multipart_upload::CreateMultipartUploadInput)
            .map(|i| one("s3:PutObject", object(i.bucket(), i.key()))),
        ("s3", "UploadPart") => {
            input!(s3::upload_part::UploadPartInput).map(|i| one("s3:PutObject", object(i.bucket(), i.key())))
        }
        ("s3", "CompleteMultipartUpload") => input!(s3::complete_multipart_upload::CompleteMultipartUploadInput)
            .map(|i| one("s3:PutObject", object(i.bucket(), i.key()))),
        ("s3", "AbortMultipartUpload") => input!(s3::abort_multipart_upload::AbortMultipartUploadInput)
            .map(|i| one("s3:AbortMultipartUpload", object(i.bucket(), i.key()))),
        ("s3", "GetObject") => {
            input!(s3::get_object::GetObjectInput).map(|i| one("s3:GetObject", object(i.bucket(), i.key())))
        }
        _ => None,
    };
    // An operation this list does not know is recorded as such: the check fails on it until the
    // list (and the policy) learn it.
    found.unwrap_or_else(|| one(&format!("{}:{operation}", service.to_ascii_lowercase()), "?unmapped".to_owned()))
}

impl Intercept for AccessRecorder {
    fn name(&self) -> &'static str {
        "AccessRecorder"
    }

    fn read_before_serialization(
        &self,
        context: &BeforeSerializationInterceptorContextRef<'_>,
        _components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let Some(meta) = cfg.load::<Metadata>() else { return Ok(()) };
        for (action, resource) in accesses(meta.service(), meta.name(), context.input(), &self.log.names) {
            self.log.record(Access { function: self.function.clone(), action, resource });
        }
        Ok(())
    }
}

// --- The check -------------------------------------------------------------------------------

/// One Allow or Deny of a policy, with the template's resource expressions made logical.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    pub allow: bool,
    pub action: String,
    /// A logical pattern: `BillyTable`, `BillyTable/index/*`, `ExportsBucket/exports/*`, `*`.
    pub resource: String,
    /// Where it was written, for messages: the function or managed policy.
    pub source: String,
}

/// A resource expression of a policy as a logical pattern: `!GetAtt X.Arn` → `X`,
/// `!GetAtt X.StreamArn` → `X/stream`, `!Sub "${X.Arn}/rest"` → `X/rest`, `"*"` → `*`.
fn resource_pattern(value: &Value) -> Result<String, String> {
    let text = match value {
        Value::String(s) if s == "*" => return Ok("*".to_owned()),
        Value::Tagged(t) if t.tag == "!GetAtt" => t.value.as_str().map(str::to_owned),
        // Exactly one substitution, at the start: `${X.Arn}` or `${X.Arn}/path`.
        Value::Tagged(t) if t.tag == "!Sub" => t.value.as_str().and_then(|s| {
            let (name, path) = s.strip_prefix("${")?.split_once('}')?;
            (!path.contains("${") && (path.is_empty() || path.starts_with('/'))).then(|| format!("{name}{path}"))
        }),
        _ => None,
    }
    .ok_or_else(|| format!("resource {value:?}: write it as !GetAtt X.Arn, !Sub \"${{X.Arn}}/…\" or \"*\""))?;
    let (id, rest) = text.split_once('.').ok_or_else(|| format!("resource '{text}' names no attribute"))?;
    let (attribute, path) = rest.split_once('/').map_or((rest, ""), |(a, p)| (a, p));
    let base = match attribute {
        "Arn" => id.to_owned(),
        "StreamArn" => format!("{id}/stream"),
        other => return Err(format!("resource '{text}': attribute {other} is not an ARN")),
    };
    Ok(if path.is_empty() { base } else { format!("{base}/{path}") })
}

fn strings(value: &Value) -> Vec<Value> {
    match value {
        Value::Sequence(items) => items.clone(),
        other => vec![other.clone()],
    }
}

/// The statements of one policy document (a managed policy's or an inline one).
fn statements(source: &str, statements: &Value) -> Result<Vec<Grant>, String> {
    let mut grants = Vec::new();
    for statement in strings(statements) {
        if statement.get("Condition").is_some() && statement["Effect"] == "Deny" {
            return Err(format!("{source}: a conditional Deny cannot be checked"));
        }
        let allow = match statement["Effect"].as_str() {
            Some("Allow") => true,
            Some("Deny") => false,
            other => return Err(format!("{source}: statement effect {other:?}")),
        };
        for action in strings(&statement["Action"]) {
            let action = action.as_str().ok_or_else(|| format!("{source}: action {action:?}"))?.to_owned();
            if action.contains('*') && allow {
                return Err(format!("{source}: wildcard action {action} grants more than is used"));
            }
            for resource in strings(&statement["Resource"]) {
                let resource = resource_pattern(&resource).map_err(|e| format!("{source}: {e}"))?;
                grants.push(Grant { allow, action: action.clone(), resource, source: source.to_owned() });
            }
        }
    }
    Ok(grants)
}

/// `*` matches any run of characters; everything else literally.
fn glob(pattern: &str, text: &str) -> bool {
    match pattern.split_once('*') {
        None => pattern == text,
        Some((head, tail)) => {
            text.starts_with(head) && (0..=text.len() - head.len()).any(|i| glob(tail, &text[head.len() + i..]))
        }
    }
}

/// What SAM adds to a function's role by itself for its event sources (the poller's reads of its
/// queue or stream, and a stream's on-failure queue): granted, but used by Lambda, not the code.
fn event_source_grants(events: &[(String, EventSource)]) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for (_, event) in events {
        match event {
            EventSource::Sqs { queue, .. } => {
                for action in ["sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueAttributes"] {
                    out.push((action.to_owned(), queue.clone()));
                }
            }
            EventSource::Stream { table, on_failure, .. } => {
                for action in [
                    "dynamodb:DescribeStream",
                    "dynamodb:GetRecords",
                    "dynamodb:GetShardIterator",
                    "dynamodb:ListStreams",
                ] {
                    out.push((action.to_owned(), format!("{table}/stream")));
                }
                if let Some(queue) = on_failure {
                    out.push(("sqs:SendMessage".to_owned(), queue.clone()));
                }
            }
            _ => {}
        }
    }
    out
}

/// One function's figures and findings.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FunctionReport {
    pub function: String,
    /// Distinct (action, resource pattern) pairs its policies allow.
    pub granted: usize,
    /// Of those, the pairs it was seen to use.
    pub used: usize,
    /// Used, but no Allow covers it, or a Deny does.
    pub not_granted: Vec<String>,
    /// Allowed, never used.
    pub never_used: Vec<String>,
    /// Allowed, never used by the suite, and declared so in the function's `Metadata`
    /// (`GrantsNotSeenInTests`) with the reason it is needed.
    pub declared_unused: Vec<String>,
    /// Routes of the template the suite never called (their grants would go unchecked).
    pub routes_never_called: Vec<String>,
    /// Declarations of `GrantsNotSeenInTests` that are not (or no longer) true.
    pub stale_declarations: Vec<String>,
}

impl FunctionReport {
    /// Every finding, as one line each.
    pub fn findings(&self) -> Vec<String> {
        let f = &self.function;
        let lines =
            |what: &str, items: &[String]| items.iter().map(|i| format!("{f}: {what}: {i}")).collect::<Vec<_>>();
        [
            lines("used without a grant", &self.not_granted),
            lines("granted, never used", &self.never_used),
            lines("route never called by the suite", &self.routes_never_called),
            lines("GrantsNotSeenInTests entry is not an unused grant", &self.stale_declarations),
        ]
        .concat()
    }
}

/// Compares the recorded accesses with the policies of every function in `template`.
///
/// A function's policies may be inline statements or `!Ref` of the template's own managed
/// policies (SAM's policy templates grant more than they name, so they are refused here); a
/// managed policy of Deny statements only (the audit journal's) needs no use.
pub fn check(template: &Template, used: &BTreeSet<Access>) -> Result<Vec<FunctionReport>, String> {
    let managed: BTreeMap<String, Vec<Grant>> = template
        .of_type("AWS::IAM::ManagedPolicy")
        .map(|(id, r)| Ok((id.clone(), statements(id, &r.properties["PolicyDocument"]["Statement"])?)))
        .collect::<Result<_, String>>()?;
    let functions = template.functions().map_err(|e: TemplateError| e.to_string())?;
    let known: BTreeSet<&str> = functions.iter().map(|f| f.name.as_str()).collect();
    if let Some(stranger) = used.iter().find(|a| !known.contains(a.function.as_str())) {
        return Err(format!("the log names a function the template lacks: {}", stranger.function));
    }
    let mut reports = Vec::new();
    for def in &functions {
        let policies = &template.resources[&def.logical_id].properties["Policies"];
        let mut grants = Vec::new();
        for policy in strings(policies) {
            match &policy {
                Value::Tagged(t) if t.tag == "!Ref" => {
                    let id = t.value.as_str().unwrap_or_default();
                    grants.extend(
                        managed
                            .get(id)
                            .ok_or_else(|| format!("{}: policy {id} is not in the template", def.name))?
                            .clone(),
                    );
                }
                Value::Mapping(m)
                    if policy.get("Statement").is_some()
                        && m.keys().all(|k| matches!(k.as_str(), Some("Statement" | "Version"))) =>
                {
                    grants.extend(statements(&def.name, &policy["Statement"])?);
                }
                other => {
                    return Err(format!(
                        "{}: policy {other:?} is neither inline statements nor a template managed policy",
                        def.name
                    ));
                }
            }
        }
        let implicit = event_source_grants(&def.events);
        let mine: BTreeSet<(&str, &str)> = used
            .iter()
            .filter(|a| a.function == def.name && a.action != ROUTE)
            .map(|a| (a.action.as_str(), a.resource.as_str()))
            .collect();
        let routes: BTreeSet<&str> =
            used.iter().filter(|a| a.function == def.name && a.action == ROUTE).map(|a| a.resource.as_str()).collect();
        let declared: BTreeMap<String, String> = match &template.resources[&def.logical_id].metadata["GrantsNotSeenInTests"]
        {
            Value::Null => BTreeMap::new(),
            Value::Mapping(m) => m
                .iter()
                .map(|(k, v)| match (k.as_str(), v.as_str()) {
                    (Some(k), Some(v)) if !v.trim().is_empty() => Ok((k.to_owned(), v.to_owned())),
                    _ => Err(format!("{}: GrantsNotSeenInTests maps \"action on resource\" to its reason", def.name)),
                })
                .collect::<Result<_, String>>()?,
            _ => return Err(format!("{}: GrantsNotSeenInTests must be a mapping", def.name)),
        };
        // Actions compare without case, and a Deny's action may be a wildcard (`dynamodb:Delete*`).
        let covers = |g: &Grant, action: &str, resource: &str| {
            glob(&g.action.to_ascii_lowercase(), &action.to_ascii_lowercase()) && glob(&g.resource, resource)
        };
        let mut report = FunctionReport { function: def.name.clone(), ..FunctionReport::default() };
        for (action, resource) in &mine {
            let denied = grants.iter().any(|g| !g.allow && covers(g, action, resource));
            let allowed = grants.iter().any(|g| g.allow && covers(g, action, resource))
                || implicit.iter().any(|(a, r)| a == action && r == resource);
            if denied || !allowed {
                report.not_granted.push(format!("{action} on {resource}{}", if denied { " (denied)" } else { "" }));
            }
        }
        let allows: BTreeSet<(&str, &str)> =
            grants.iter().filter(|g| g.allow).map(|g| (g.action.as_str(), g.resource.as_str())).collect();
        report.granted = allows.len();
        for (action, pattern) in allows {
            if mine.iter().any(|(a, r)| a.eq_ignore_ascii_case(action) && glob(pattern, r)) {
                report.used += 1;
            } else {
                let grant = format!("{action} on {pattern}");
                if declared.contains_key(&grant) {
                    report.declared_unused.push(grant);
                } else {
                    report.never_used.push(grant);
                }
            }
        }
        report.stale_declarations = declared.keys().filter(|k| !report.declared_unused.contains(k)).cloned().collect();
        for (_, event) in &def.events {
            if let EventSource::Http { method, path } = event {
                let route = format!("{} {path}", method.to_ascii_uppercase());
                if !routes.contains(route.as_str()) {
                    report.routes_never_called.push(route);
                }
            }
        }
        reports.push(report);
    }
    Ok(reports)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEMPLATE: &str = r#"
Resources:
  Table: { Type: AWS::DynamoDB::Table, Properties: {} }
  Journal: { Type: AWS::DynamoDB::Table, Properties: {} }
  Queue: { Type: AWS::SQS::Queue }
  NoChanges:
    Type: AWS::IAM::ManagedPolicy
    Properties:
      PolicyDocument:
        Statement:
          - { Effect: Deny, Action: [dynamodb:UpdateItem], Resource: !GetAtt Journal.Arn }
  Reader:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: functions/reader
      Policies:
        - !Ref NoChanges
        - Statement:
            - Effect: Allow
              Action: [dynamodb:GetItem, dynamodb:Query]
              Resource: [!GetAtt Table.Arn, !Sub "${Table.Arn}/index/GSI1"]
            - Effect: Allow
              Action: [dynamodb:UpdateItem]
              Resource: !GetAtt Journal.Arn
      Events:
        Work: { Type: SQS, Properties: { Queue: !GetAtt Queue.Arn } }
"#;

    fn access(action: &str, resource: &str) -> Access {
        Access { function: "reader".into(), action: action.into(), resource: resource.into() }
    }

    #[test]
    fn used_but_not_granted_and_granted_but_never_used_are_both_reported() {
        let template = Template::parse(TEMPLATE).unwrap();
        let used = BTreeSet::from([
            access("dynamodb:GetItem", "Table"),
            access("dynamodb:Query", "Table/index/GSI1"),
            access("dynamodb:Query", "Table"),
            access("dynamodb:PutItem", "Table"),
            access("dynamodb:UpdateItem", "Journal"),
            access("sqs:DeleteMessage", "Queue"),
        ]);
        let report = &check(&template, &used).unwrap()[0];
        assert_eq!(report.function, "reader");
        assert_eq!((report.granted, report.used), (5, 4));
        // The journal's update is allowed inline but denied by the managed policy: deny wins.
        assert_eq!(report.not_granted, ["dynamodb:PutItem on Table", "dynamodb:UpdateItem on Journal (denied)"]);
        assert_eq!(report.never_used, ["dynamodb:GetItem on Table/index/GSI1"]);
    }

    #[test]
    fn everything_used_and_granted_is_clean() {
        let template = Template::parse(TEMPLATE).unwrap();
        let used = BTreeSet::from([
            access("dynamodb:GetItem", "Table"),
            access("dynamodb:GetItem", "Table/index/GSI1"),
            access("dynamodb:Query", "Table/index/GSI1"),
            access("dynamodb:Query", "Table"),
        ]);
        let mut template = template;
        // Without the inline journal grant (its Deny stays and needs no use).
        let reader = template.resources.get_mut("Reader").unwrap();
        let policies = reader.properties["Policies"].as_sequence_mut().unwrap();
        policies[1]["Statement"].as_sequence_mut().unwrap().pop();
        let report = &check(&template, &used).unwrap()[0];
        assert!(report.not_granted.is_empty() && report.never_used.is_empty(), "{report:?}");
    }

    #[test]
    fn routes_never_called_and_untrue_declarations_are_reported_and_a_declared_unused_grant_is_not() {
        // The reader with two routes, and two grants declared unused: one is, one is not.
        let template = TEMPLATE
            .replace(
                "        Work: { Type: SQS, Properties: { Queue: !GetAtt Queue.Arn } }",
                "        Get: { Type: HttpApi, Properties: { Path: \"/v1/things/{id}\", Method: get } }\n        List: { Type: HttpApi, Properties: { Path: /v1/things, Method: get } }",
            )
            .replace(
                "    Type: AWS::Serverless::Function\n",
                "    Type: AWS::Serverless::Function\n    Metadata:\n      GrantsNotSeenInTests:\n        \"dynamodb:UpdateItem on Journal\": an error path\n        \"dynamodb:GetItem on Table\": read on every call\n",
            );
        let template = Template::parse(&template).unwrap();
        let used = BTreeSet::from([
            access("dynamodb:GetItem", "Table"),
            access("dynamodb:Query", "Table"),
            access("dynamodb:Query", "Table/index/GSI1"),
            access("dynamodb:GetItem", "Table/index/GSI1"),
            access(ROUTE, "GET /v1/things"),
        ]);
        let report = &check(&template, &used).unwrap()[0];
        assert_eq!(report.declared_unused, ["dynamodb:UpdateItem on Journal"]);
        assert_eq!(report.stale_declarations, ["dynamodb:GetItem on Table"]);
        assert_eq!(report.routes_never_called, ["GET /v1/things/{id}"]);
        assert!(report.never_used.is_empty() && report.not_granted.is_empty(), "{report:?}");
        assert_eq!(report.used, 4, "a served route is not an AWS action");
        assert_eq!(report.findings().len(), 2);
    }

    #[test]
    fn policy_templates_and_wildcard_actions_are_refused() {
        let with_template = TEMPLATE.replace("- !Ref NoChanges", "- SQSSendMessagePolicy: { QueueName: x }");
        let err = check(&Template::parse(&with_template).unwrap(), &BTreeSet::new()).unwrap_err();
        assert!(err.contains("neither inline statements"), "{err}");
        let wildcard = TEMPLATE.replace("[dynamodb:GetItem, dynamodb:Query]", "[dynamodb:*]");
        let err = check(&Template::parse(&wildcard).unwrap(), &BTreeSet::new()).unwrap_err();
        assert!(err.contains("wildcard action"), "{err}");
    }

    #[test]
    fn resource_expressions_become_logical_patterns() {
        let parse = |s: &str| resource_pattern(&serde_yaml::from_str::<Value>(s).unwrap());
        assert_eq!(parse("!GetAtt BillyTable.Arn").unwrap(), "BillyTable");
        assert_eq!(parse("!GetAtt AuditTable.StreamArn").unwrap(), "AuditTable/stream");
        assert_eq!(parse("!Sub \"${BillyTable.Arn}/index/*\"").unwrap(), "BillyTable/index/*");
        assert_eq!(parse("!Sub \"${ExportsBucket.Arn}/exports/*\"").unwrap(), "ExportsBucket/exports/*");
        assert_eq!(parse("\"*\"").unwrap(), "*");
        assert!(parse("!GetAtt Queue.QueueName").is_err());
        assert!(glob("ExportsBucket/exports/*", "ExportsBucket/exports/t1/x.csv"));
        assert!(!glob("ExportsBucket/exports/*", "ExportsBucket/other/x.csv"));
        assert!(!glob("BillyTable", "BillyTable/index/GSI1"));
    }

    #[test]
    fn log_lines_round_trip_and_bad_lines_are_errors() {
        let a = access("sqs:SendMessage", "Queue");
        assert_eq!(Access::parse_log(&a.line()).unwrap(), BTreeSet::from([a]));
        assert!(Access::parse_log("reader\tsqs:SendMessage\n").is_err());
    }
}
