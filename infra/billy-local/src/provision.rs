//! Creates the template's tables, queues (with their redrive policies) and EventBridge rules in the
//! local stack, named `<prefix>-<LogicalId>` so each test run or dev stack is isolated.
//! Idempotent: existing resources are reused.

use crate::template::{Resolver, Template, TemplateError, referenced_resource};
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, GlobalSecondaryIndex, KeySchemaElement, KeyType, Projection, ProjectionType,
    ScalarAttributeType, StreamSpecification, StreamViewType, TimeToLiveSpecification,
};
use aws_sdk_sqs::types::QueueAttributeName;
use billy_aws::AwsClients;
use serde::Deserialize;
use serde_yaml::Value;
use std::collections::BTreeMap;

pub const REGION: &str = "us-east-1";
pub const ACCOUNT: &str = "000000000000";

#[derive(Debug, thiserror::Error)]
pub enum ProvisionError {
    #[error(transparent)]
    Template(#[from] TemplateError),
    #[error("{resource}: {message}")]
    Aws { resource: String, message: String },
}

fn aws_error(resource: &str, err: impl std::fmt::Debug) -> ProvisionError {
    ProvisionError::Aws { resource: resource.to_owned(), message: format!("{err:?}") }
}

/// The physical names of everything provisioned, and a resolver over them.
#[derive(Debug, Clone)]
pub struct Provisioned {
    pub prefix: String,
    pub tables: BTreeMap<String, String>,
    /// logical id → (queue name, queue URL, queue ARN)
    pub queues: BTreeMap<String, (String, String, String)>,
    /// Rule logical id → (rule name, bus name).
    pub rules: BTreeMap<String, (String, String)>,
    /// Bucket logical id → bucket name.
    pub buckets: BTreeMap<String, String>,
    /// KMS key logical id → key id.
    pub keys: BTreeMap<String, String>,
    pub buses: BTreeMap<String, String>,
    /// Table logical id → its stream's ARN.
    pub streams: BTreeMap<String, String>,
    /// (function logical id, event id) → the queue that stands in for a rule's function target,
    /// with the rule's (name, bus).
    pub bridges: BTreeMap<(String, String), Bridge>,
    pub resolver: Resolver,
}

/// LocalStack cannot invoke Lambda here: a rule whose target is a function targets this queue
/// instead, and the runner invokes the function with each event it receives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bridge {
    pub queue_url: String,
    pub rule: String,
    pub bus: String,
}

impl Provisioned {
    pub fn queue_url(&self, logical_id: &str) -> Option<&str> {
        self.queues.get(logical_id).map(|(_, url, _)| url.as_str())
    }

    /// Deletes every table, queue and rule of this prefix (tests clean up after themselves).
    pub async fn teardown(&self, aws: &AwsClients) {
        for name in self.tables.values() {
            let _ = aws.dynamodb.delete_table().table_name(name).send().await;
        }
        for (_, url, _) in self.queues.values() {
            let _ = aws.sqs.delete_queue().queue_url(url).send().await;
        }
        let bridge_rules = self.bridges.values().map(|b| (b.rule.clone(), b.bus.clone()));
        let plain_rules = self.rules.values().cloned();
        for (name, bus) in bridge_rules.chain(plain_rules) {
            if let Ok(targets) = aws.eventbridge.list_targets_by_rule().rule(&name).event_bus_name(&bus).send().await {
                let ids: Vec<String> = targets.targets().iter().map(|t| t.id().to_owned()).collect();
                if !ids.is_empty() {
                    let _ = aws
                        .eventbridge
                        .remove_targets()
                        .rule(&name)
                        .event_bus_name(&bus)
                        .set_ids(Some(ids))
                        .send()
                        .await;
                }
            }
            let _ = aws.eventbridge.delete_rule().name(&name).event_bus_name(&bus).send().await;
        }
        for bridge in self.bridges.values() {
            let _ = aws.sqs.delete_queue().queue_url(&bridge.queue_url).send().await;
        }
        for bus in self.buses.values() {
            let _ = aws.eventbridge.delete_event_bus().name(bus).send().await;
        }
        let s3 = billy_files::local_client(&billy_aws::LocalEndpoints::from_env().localstack);
        for bucket in self.buckets.values() {
            if let Ok(listed) = s3.list_objects_v2().bucket(bucket).send().await {
                for object in listed.contents() {
                    if let Some(key) = object.key() {
                        let _ = s3.delete_object().bucket(bucket).key(key).send().await;
                    }
                }
            }
            let _ = s3.delete_bucket().bucket(bucket).send().await;
        }
        for key in self.keys.values() {
            let _ = aws.kms.schedule_key_deletion().key_id(key).pending_window_in_days(7).send().await;
        }
    }
}

/// Resource types the runner itself plays, or that have no local effect; anything else is an
/// error, so nothing in the template is silently missing locally.
const HOSTED_BY_RUNNER: &[&str] = &[
    "AWS::Serverless::Function",
    "AWS::Serverless::HttpApi",
    "AWS::SQS::QueuePolicy",
    "AWS::IAM::Role",
    "AWS::IAM::Policy",
    "AWS::IAM::ManagedPolicy",
    "AWS::Logs::LogGroup",
    "AWS::CloudWatch::Alarm",
];

pub async fn provision(
    template: &Template,
    prefix: &str,
    parameters: &BTreeMap<String, String>,
    aws: &AwsClients,
) -> Result<Provisioned, ProvisionError> {
    let mut out = Provisioned {
        prefix: prefix.to_owned(),
        tables: BTreeMap::new(),
        queues: BTreeMap::new(),
        rules: BTreeMap::new(),
        buses: BTreeMap::new(),
        streams: BTreeMap::new(),
        buckets: BTreeMap::new(),
        keys: BTreeMap::new(),
        bridges: BTreeMap::new(),
        resolver: Resolver::default(),
    };
    let r = &mut out.resolver;
    r.refs.insert("AWS::Region".into(), REGION.into());
    r.refs.insert("AWS::AccountId".into(), ACCOUNT.into());
    r.refs.insert("AWS::StackName".into(), prefix.into());
    r.refs.insert("AWS::Partition".into(), "aws".into());
    for (name, param) in &template.parameters {
        let value = parameters
            .get(name)
            .cloned()
            .or_else(|| match &param["Default"] {
                serde_yaml::Value::String(s) => Some(s.clone()),
                serde_yaml::Value::Number(n) => Some(n.to_string()),
                _ => None,
            })
            .ok_or_else(|| aws_error(name, "template parameter has no value and no default"))?;
        r.refs.insert(name.clone(), value);
    }
    for (id, resource) in &template.resources {
        if !HOSTED_BY_RUNNER.contains(&resource.kind.as_str())
            && ![
                "AWS::DynamoDB::Table",
                "AWS::SQS::Queue",
                "AWS::Events::Rule",
                "AWS::Events::EventBus",
                "AWS::S3::Bucket",
                "AWS::KMS::Key",
            ]
            .contains(&resource.kind.as_str())
        {
            return Err(aws_error(id, format!("resource type {} has no local equivalent", resource.kind)));
        }
        if resource.kind == "AWS::Serverless::HttpApi" {
            out.resolver.refs.insert(id.clone(), format!("{prefix}-api"));
        }
    }
    for (id, resource) in template.of_type("AWS::Events::EventBus") {
        let name =
            resource.properties["Name"].as_str().map_or_else(|| format!("{prefix}-{id}"), |n| format!("{prefix}-{n}"));
        let exists = aws.eventbridge.describe_event_bus().name(&name).send().await.is_ok();
        if !exists {
            aws.eventbridge
                .create_event_bus()
                .name(&name)
                .send()
                .await
                .map_err(|e| aws_error(id, e.into_service_error()))?;
        }
        out.resolver.refs.insert(id.clone(), name.clone());
        out.resolver.attrs.insert((id.clone(), "Name".into()), name.clone());
        out.resolver
            .attrs
            .insert((id.clone(), "Arn".into()), format!("arn:aws:events:{REGION}:{ACCOUNT}:event-bus/{name}"));
        out.buses.insert(id.clone(), name);
    }
    for (id, resource) in template.of_type("AWS::DynamoDB::Table") {
        let name = format!("{prefix}-{id}");
        create_table(aws, &name, &resource.properties).await.map_err(|e| aws_error(id, e))?;
        if !resource.properties["StreamSpecification"].is_null() {
            let described =
                aws.dynamodb.describe_table().table_name(&name).send().await.map_err(|e| aws_error(id, e))?;
            let arn = described
                .table()
                .and_then(|t| t.latest_stream_arn())
                .ok_or_else(|| aws_error(id, "the table's stream has no ARN"))?;
            out.resolver.attrs.insert((id.clone(), "StreamArn".into()), arn.to_owned());
            out.streams.insert(id.clone(), arn.to_owned());
        }
        out.resolver.refs.insert(id.clone(), name.clone());
        out.resolver
            .attrs
            .insert((id.clone(), "Arn".into()), format!("arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/{name}"));
        out.tables.insert(id.clone(), name);
    }
    let s3 = billy_files::local_client(&billy_aws::LocalEndpoints::from_env().localstack);
    for (id, _) in template.of_type("AWS::S3::Bucket") {
        // Bucket names are lower case, 3 to 63 characters.
        let name: String = format!("{prefix}-{id}").to_lowercase().chars().take(63).collect();
        if let Err(e) = s3.create_bucket().bucket(&name).send().await {
            let e = e.into_service_error();
            if !e.is_bucket_already_owned_by_you() && !e.is_bucket_already_exists() {
                return Err(aws_error(id, e));
            }
        }
        out.resolver.refs.insert(id.clone(), name.clone());
        out.resolver.attrs.insert((id.clone(), "Arn".into()), format!("arn:aws:s3:::{name}"));
        out.buckets.insert(id.clone(), name);
    }
    for (id, resource) in template.of_type("AWS::KMS::Key") {
        let props = &resource.properties;
        let mut create =
            aws.kms.create_key().description(format!("{prefix} {}", props["Description"].as_str().unwrap_or(id)));
        if let Some(spec) = props["KeySpec"].as_str() {
            create = create.key_spec(aws_sdk_kms::types::KeySpec::from(spec));
        }
        if let Some(usage) = props["KeyUsage"].as_str() {
            create = create.key_usage(aws_sdk_kms::types::KeyUsageType::from(usage));
        }
        let created = create.send().await.map_err(|e| aws_error(id, e.into_service_error()))?;
        let meta = created.key_metadata().ok_or_else(|| aws_error(id, "CreateKey answered without metadata"))?;
        out.resolver.refs.insert(id.clone(), meta.key_id().to_owned());
        out.resolver.attrs.insert((id.clone(), "Arn".into()), meta.arn().unwrap_or_default().to_owned());
        out.keys.insert(id.clone(), meta.key_id().to_owned());
    }
    // Dead-letter queues first: a redrive policy names its DLQ's ARN.
    let mut queues: Vec<_> = template.of_type("AWS::SQS::Queue").collect();
    queues.sort_by_key(|(_, q)| !q.properties["RedrivePolicy"].is_null());
    for (id, resource) in queues {
        let (name, url, arn) = create_queue(aws, prefix, id, &resource.properties, &out.resolver).await?;
        out.resolver.refs.insert(id.clone(), url.clone());
        out.resolver.attrs.insert((id.clone(), "Arn".into()), arn.clone());
        out.resolver.attrs.insert((id.clone(), "QueueName".into()), name.clone());
        out.resolver.attrs.insert((id.clone(), "QueueUrl".into()), url.clone());
        out.queues.insert(id.clone(), (name, url, arn));
    }
    for (id, resource) in template.of_type("AWS::Events::Rule") {
        let name = format!("{prefix}-{id}");
        let bus = create_rule(aws, id, &name, &resource.properties, &out).await?;
        out.resolver.refs.insert(id.clone(), name.clone());
        out.resolver.attrs.insert((id.clone(), "Arn".into()), format!("arn:aws:events:{REGION}:{ACCOUNT}:rule/{name}"));
        out.rules.insert(id.clone(), (name, bus));
    }
    // Functions are hosted by the runner: their ARN names them for rule targets.
    for (id, _) in template.of_type("AWS::Serverless::Function") {
        out.resolver.refs.insert(id.clone(), format!("{prefix}-{id}"));
        out.resolver
            .attrs
            .insert((id.clone(), "Arn".into()), format!("arn:aws:lambda:{REGION}:{ACCOUNT}:function:{prefix}-{id}"));
    }
    for def in template.functions()? {
        for (event_id, event) in &def.events {
            if let crate::template::EventSource::Rule { pattern, bus } = event {
                let bus = match bus {
                    Some(b) => out.resolver.resolve(b)?,
                    None => "default".to_owned(),
                };
                let bridge =
                    create_bridge(aws, &format!("{prefix}-{}-{event_id}", def.logical_id), pattern, &bus).await?;
                out.bridges.insert((def.logical_id.clone(), event_id.clone()), bridge);
            }
        }
    }
    Ok(out)
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct KeyDef {
    attribute_name: String,
    key_type: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct AttrDef {
    attribute_name: String,
    attribute_type: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ProjectionDef {
    projection_type: String,
    #[serde(default)]
    non_key_attributes: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct GsiDef {
    index_name: String,
    key_schema: Vec<KeyDef>,
    projection: ProjectionDef,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct TableDef {
    attribute_definitions: Vec<AttrDef>,
    key_schema: Vec<KeyDef>,
    #[serde(default)]
    global_secondary_indexes: Vec<GsiDef>,
    #[serde(default)]
    stream_specification: Option<StreamDef>,
    #[serde(default)]
    time_to_live_specification: Option<TtlDef>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct StreamDef {
    stream_view_type: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct TtlDef {
    attribute_name: String,
    enabled: bool,
}

fn key_schema(keys: &[KeyDef]) -> Result<Vec<KeySchemaElement>, String> {
    keys.iter()
        .map(|k| {
            KeySchemaElement::builder()
                .attribute_name(&k.attribute_name)
                .key_type(KeyType::from(k.key_type.as_str()))
                .build()
                .map_err(|e| e.to_string())
        })
        .collect()
}

/// Properties the local table ignores but AWS honours (billing, PITR, encryption, tags) are
/// accepted here without effect: the key schema, indexes, streams and TTL are what code relies on.
async fn create_table(aws: &AwsClients, name: &str, properties: &Value) -> Result<(), String> {
    let def: TableDef = serde_yaml::from_value(properties.clone()).map_err(|e| e.to_string())?;
    let exists = aws.dynamodb.describe_table().table_name(name).send().await.is_ok();
    if !exists {
        let mut req = aws
            .dynamodb
            .create_table()
            .table_name(name)
            .billing_mode(BillingMode::PayPerRequest)
            .set_key_schema(Some(key_schema(&def.key_schema)?));
        for a in &def.attribute_definitions {
            req = req.attribute_definitions(
                AttributeDefinition::builder()
                    .attribute_name(&a.attribute_name)
                    .attribute_type(ScalarAttributeType::from(a.attribute_type.as_str()))
                    .build()
                    .map_err(|e| e.to_string())?,
            );
        }
        for g in &def.global_secondary_indexes {
            let projection = Projection::builder()
                .projection_type(ProjectionType::from(g.projection.projection_type.as_str()))
                .set_non_key_attributes(
                    (!g.projection.non_key_attributes.is_empty()).then(|| g.projection.non_key_attributes.clone()),
                )
                .build();
            req = req.global_secondary_indexes(
                GlobalSecondaryIndex::builder()
                    .index_name(&g.index_name)
                    .set_key_schema(Some(key_schema(&g.key_schema)?))
                    .projection(projection)
                    .build()
                    .map_err(|e| e.to_string())?,
            );
        }
        if let Some(stream) = &def.stream_specification {
            req = req.stream_specification(
                StreamSpecification::builder()
                    .stream_enabled(true)
                    .stream_view_type(StreamViewType::from(stream.stream_view_type.as_str()))
                    .build()
                    .map_err(|e| e.to_string())?,
            );
        }
        if let Err(e) = req.send().await {
            let e = e.into_service_error();
            if !e.is_resource_in_use_exception() {
                return Err(format!("{e:?}"));
            }
        }
    }
    if let Some(ttl) = def.time_to_live_specification.filter(|t| t.enabled) {
        let current =
            aws.dynamodb.describe_time_to_live().table_name(name).send().await.map_err(|e| format!("{e:?}"))?;
        let enabled =
            current.time_to_live_description().and_then(|d| d.attribute_name()) == Some(ttl.attribute_name.as_str());
        if !enabled {
            aws.dynamodb
                .update_time_to_live()
                .table_name(name)
                .time_to_live_specification(
                    TimeToLiveSpecification::builder()
                        .attribute_name(&ttl.attribute_name)
                        .enabled(true)
                        .build()
                        .map_err(|e| e.to_string())?,
                )
                .send()
                .await
                .map_err(|e| format!("{e:?}"))?;
        }
    }
    Ok(())
}

async fn create_queue(
    aws: &AwsClients,
    prefix: &str,
    id: &str,
    p: &Value,
    resolver: &Resolver,
) -> Result<(String, String, String), ProvisionError> {
    let fifo = p["FifoQueue"].as_bool().unwrap_or(false);
    let mut name = p["QueueName"].as_str().map_or_else(|| format!("{prefix}-{id}"), |n| format!("{prefix}-{n}"));
    if fifo && !name.ends_with(".fifo") {
        name.push_str(".fifo");
    }
    let mut req = aws.sqs.create_queue().queue_name(&name);
    for (prop, attr) in [
        ("VisibilityTimeout", QueueAttributeName::VisibilityTimeout),
        ("MessageRetentionPeriod", QueueAttributeName::MessageRetentionPeriod),
        ("ReceiveMessageWaitTimeSeconds", QueueAttributeName::ReceiveMessageWaitTimeSeconds),
        ("DelaySeconds", QueueAttributeName::DelaySeconds),
        ("MaximumMessageSize", QueueAttributeName::MaximumMessageSize),
        ("FifoQueue", QueueAttributeName::FifoQueue),
        ("ContentBasedDeduplication", QueueAttributeName::ContentBasedDeduplication),
    ] {
        if !p[prop].is_null() {
            req = req.attributes(attr, resolver.resolve(&p[prop])?);
        }
    }
    let redrive = &p["RedrivePolicy"];
    if !redrive.is_null() {
        let dlq_arn = resolver.resolve(&redrive["deadLetterTargetArn"])?;
        let max = resolver.resolve(&redrive["maxReceiveCount"])?;
        let policy = serde_json::json!({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": max});
        req = req.attributes(QueueAttributeName::RedrivePolicy, policy.to_string());
    }
    let url = req.send().await.map_err(|e| aws_error(id, e.into_service_error()))?.queue_url.unwrap_or_default();
    let arn = aws
        .sqs
        .get_queue_attributes()
        .queue_url(&url)
        .attribute_names(QueueAttributeName::QueueArn)
        .send()
        .await
        .map_err(|e| aws_error(id, e.into_service_error()))?
        .attributes
        .and_then(|mut a| a.remove(&QueueAttributeName::QueueArn))
        .unwrap_or_default();
    Ok((name, url, arn))
}

/// Rules that target queues go through LocalStack's EventBridge; targets that are functions are
/// invoked by the runner itself (LocalStack cannot invoke Lambda here), so they are skipped.
async fn create_rule(
    aws: &AwsClients,
    id: &str,
    name: &str,
    p: &Value,
    provisioned: &Provisioned,
) -> Result<String, ProvisionError> {
    let bus = match &p["EventBusName"] {
        Value::Null => "default".to_owned(),
        named => provisioned.resolver.resolve(named)?,
    };
    let mut req = aws.eventbridge.put_rule().name(name).event_bus_name(&bus);
    if let Some(expr) = p["ScheduleExpression"].as_str() {
        req = req.schedule_expression(expr);
    }
    if !p["EventPattern"].is_null() {
        let pattern = serde_json::to_string(&p["EventPattern"]).map_err(|e| aws_error(id, e))?;
        req = req.event_pattern(pattern);
    }
    req.send().await.map_err(|e| aws_error(id, e.into_service_error()))?;
    for target in p["Targets"].as_sequence().cloned().unwrap_or_default() {
        let Some(logical) = referenced_resource(&target["Arn"]) else {
            continue;
        };
        if !provisioned.queues.contains_key(&logical) {
            continue;
        }
        let arn = provisioned.resolver.resolve(&target["Arn"])?;
        let target_id = target["Id"].as_str().unwrap_or(&logical).to_owned();
        let built = aws_sdk_eventbridge::types::Target::builder()
            .id(target_id)
            .arn(arn)
            .build()
            .map_err(|e| aws_error(id, e))?;
        aws.eventbridge
            .put_targets()
            .rule(name)
            .event_bus_name(&bus)
            .targets(built)
            .send()
            .await
            .map_err(|e| aws_error(id, e.into_service_error()))?;
    }
    Ok(bus)
}

async fn create_bridge(
    aws: &AwsClients,
    name: &str,
    pattern: &serde_json::Value,
    bus: &str,
) -> Result<Bridge, ProvisionError> {
    // SQS names are at most 80 characters.
    let queue_name: String = name.chars().take(80).collect();
    let queue_url = aws
        .sqs
        .create_queue()
        .queue_name(&queue_name)
        .attributes(QueueAttributeName::VisibilityTimeout, "5")
        .send()
        .await
        .map_err(|e| aws_error(name, e.into_service_error()))?
        .queue_url
        .unwrap_or_default();
    let arn = aws
        .sqs
        .get_queue_attributes()
        .queue_url(&queue_url)
        .attribute_names(QueueAttributeName::QueueArn)
        .send()
        .await
        .map_err(|e| aws_error(name, e.into_service_error()))?
        .attributes
        .and_then(|mut a| a.remove(&QueueAttributeName::QueueArn))
        .unwrap_or_default();
    let rule: String = name.chars().take(64).collect();
    aws.eventbridge
        .put_rule()
        .name(&rule)
        .event_bus_name(bus)
        .event_pattern(pattern.to_string())
        .send()
        .await
        .map_err(|e| aws_error(name, e.into_service_error()))?;
    let target =
        aws_sdk_eventbridge::types::Target::builder().id("runner").arn(arn).build().map_err(|e| aws_error(name, e))?;
    aws.eventbridge
        .put_targets()
        .rule(&rule)
        .event_bus_name(bus)
        .targets(target)
        .send()
        .await
        .map_err(|e| aws_error(name, e.into_service_error()))?;
    Ok(Bridge { queue_url, rule, bus: bus.to_owned() })
}
