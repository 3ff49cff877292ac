//! DynamoDB stream event sources, played as Lambda's event source mapping plays them: every shard
//! read from its start, batches handed to the function in order (naming their shard when the
//! mapping has a tumbling window), a partial batch failure resumed from the first failed record,
//! and a batch that keeps failing reported to the on-failure queue after its retries and skipped.

use aws_lambda_events::event::dynamodb::{Event as DynamoDbEvent, EventRecord, StreamRecord};
use aws_sdk_dynamodbstreams::types::{AttributeValue, Record, ShardIteratorType};
use billy_lambda::{StreamBatch, StreamFunction};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// How long an idle stream waits before asking again.
const IDLE: Duration = Duration::from_millis(100);
/// How often the stream's shards are listed (new shards appear as old ones close).
const DISCOVER_EVERY: Duration = Duration::from_secs(2);

#[allow(missing_debug_implementations)]
pub struct StreamSource {
    pub calls: crate::runner::Calls,
    pub function: String,
    pub stream_arn: String,
    pub batch_size: usize,
    pub report_failures: bool,
    pub max_retries: u32,
    pub on_failure: Option<String>,
    /// Batches name their shard, as Lambda's do for a mapping with a tumbling window.
    pub windowed: bool,
    pub timeout: Duration,
    pub handler: Arc<dyn StreamFunction>,
}

/// A streams client for the local DynamoDB (the runner only ever runs against the local stack).
pub fn local_client() -> aws_sdk_dynamodbstreams::Client {
    let endpoint =
        std::env::var("AWS_ENDPOINT_URL_DYNAMODB").unwrap_or_else(|_| billy_aws::LocalEndpoints::from_env().dynamodb);
    let config = aws_sdk_dynamodbstreams::Config::builder()
        .behavior_version(aws_sdk_dynamodbstreams::config::BehaviorVersion::latest())
        .http_client(billy_aws::clients::https_client())
        .region(aws_sdk_dynamodbstreams::config::Region::new(crate::provision::REGION))
        .credentials_provider(aws_sdk_dynamodbstreams::config::Credentials::new(
            "test",
            "test",
            None,
            None,
            "billy-local",
        ))
        .endpoint_url(endpoint)
        .build();
    aws_sdk_dynamodbstreams::Client::from_conf(config)
}

fn to_lambda(value: &AttributeValue) -> serde_dynamo::AttributeValue {
    use serde_dynamo::AttributeValue as L;
    match value {
        AttributeValue::S(s) => L::S(s.clone()),
        AttributeValue::N(n) => L::N(n.clone()),
        AttributeValue::B(b) => L::B(b.clone().into_inner()),
        AttributeValue::Bool(b) => L::Bool(*b),
        AttributeValue::Null(b) => L::Null(*b),
        AttributeValue::Ss(v) => L::Ss(v.clone()),
        AttributeValue::Ns(v) => L::Ns(v.clone()),
        AttributeValue::Bs(v) => L::Bs(v.iter().map(|b| b.clone().into_inner()).collect()),
        AttributeValue::L(v) => L::L(v.iter().map(to_lambda).collect()),
        AttributeValue::M(m) => L::M(m.iter().map(|(k, v)| (k.clone(), to_lambda(v))).collect()),
        _ => L::Null(true),
    }
}

fn item(image: Option<&HashMap<String, AttributeValue>>) -> serde_dynamo::Item {
    let map: HashMap<String, serde_dynamo::AttributeValue> =
        image.map(|m| m.iter().map(|(k, v)| (k.clone(), to_lambda(v))).collect()).unwrap_or_default();
    serde_dynamo::Item::from(map)
}

/// The record as Lambda would deliver it.
fn lambda_record(record: &Record, arn: &str) -> EventRecord {
    let mut change = StreamRecord::default();
    if let Some(d) = record.dynamodb() {
        change.keys = item(d.keys.as_ref());
        change.new_image = item(d.new_image.as_ref());
        change.old_image = item(d.old_image.as_ref());
        change.sequence_number = d.sequence_number().map(str::to_owned);
        change.size_bytes = d.size_bytes().unwrap_or_default();
        if let Some(at) = d.approximate_creation_date_time() {
            change.approximate_creation_date_time =
                chrono::DateTime::from_timestamp(at.secs(), at.subsec_nanos()).unwrap_or_default();
        }
    }
    let mut out = EventRecord::default();
    out.aws_region = crate::provision::REGION.to_owned();
    out.change = change;
    out.event_id = record.event_id().unwrap_or_default().to_owned();
    out.event_name = record.event_name().map(|n| n.as_str().to_owned()).unwrap_or_default();
    out.event_source = Some("aws:dynamodb".into());
    out.event_version = Some("1.1".into());
    out.event_source_arn = Some(arn.to_owned());
    out
}

struct Shard {
    id: String,
    iterator: Option<String>,
    /// The last record handed over for good: a lost iterator is asked for again after it.
    last: Option<String>,
    /// The shard has no more records (its iterator ran out).
    closed: bool,
    /// Records fetched but not yet handled (a partial failure leaves its tail here).
    buffered: Vec<Record>,
    attempts: u32,
}

/// Polls one stream until stopped.
pub async fn poll(
    source: Arc<StreamSource>,
    streams: aws_sdk_dynamodbstreams::Client,
    sqs: aws_sdk_sqs::Client,
    mut stop: watch::Receiver<bool>,
) {
    let mut shards: BTreeMap<String, Shard> = BTreeMap::new();
    let mut finished: Vec<String> = Vec::new();
    let mut described: Option<std::time::Instant> = None;
    while !*stop.borrow() {
        if described.is_none_or(|at| at.elapsed() >= DISCOVER_EVERY) || shards.is_empty() {
            described = Some(std::time::Instant::now());
            if let Err(e) = discover(&source, &streams, &mut shards, &finished).await {
                tracing::warn!(function = %source.function, error = %e, "stream not described; backing off");
            }
        }
        let mut busy = false;
        for (id, shard) in &mut shards {
            match step(&source, &streams, &sqs, shard).await {
                Ok(worked) => busy |= worked,
                Err(e) => tracing::warn!(function = %source.function, shard = %id, error = %e, "stream read failed"),
            }
        }
        let closed: Vec<String> =
            shards.iter().filter(|(_, s)| s.closed && s.buffered.is_empty()).map(|(k, _)| k.clone()).collect();
        for id in closed {
            shards.remove(&id);
            finished.push(id);
        }
        if !busy {
            tokio::select! {
                _ = stop.changed() => break,
                () = tokio::time::sleep(IDLE) => {}
            }
        }
    }
}

async fn discover(
    source: &StreamSource,
    streams: &aws_sdk_dynamodbstreams::Client,
    shards: &mut BTreeMap<String, Shard>,
    finished: &[String],
) -> Result<(), String> {
    let described =
        streams.describe_stream().stream_arn(&source.stream_arn).send().await.map_err(|e| format!("{e:?}"))?;
    let Some(description) = described.stream_description() else { return Ok(()) };
    for shard in description.shards() {
        let Some(id) = shard.shard_id() else { continue };
        if shards.contains_key(id) || finished.iter().any(|f| f == id) {
            continue;
        }
        // A child shard is read once its parent is done, so records stay in order.
        if let Some(parent) = shard.parent_shard_id()
            && shards.contains_key(parent)
        {
            continue;
        }
        shards.insert(
            id.to_owned(),
            Shard { id: id.to_owned(), iterator: None, last: None, closed: false, buffered: Vec::new(), attempts: 0 },
        );
    }
    Ok(())
}

/// Reads and hands over one batch of a shard; whether there was anything to do.
async fn step(
    source: &StreamSource,
    streams: &aws_sdk_dynamodbstreams::Client,
    sqs: &aws_sdk_sqs::Client,
    shard: &mut Shard,
) -> Result<bool, String> {
    if shard.buffered.is_empty() {
        if shard.closed {
            return Ok(false);
        }
        let iterator = match shard.iterator.take() {
            Some(iterator) => iterator,
            None => {
                // From the start, or after the last record handed over (an iterator expires, and
                // DynamoDB Local refuses one on a shard that had no records yet).
                let request = streams.get_shard_iterator().stream_arn(&source.stream_arn).shard_id(&shard.id);
                let request = match &shard.last {
                    Some(last) => {
                        request.shard_iterator_type(ShardIteratorType::AfterSequenceNumber).sequence_number(last)
                    }
                    None => request.shard_iterator_type(ShardIteratorType::TrimHorizon),
                };
                let Some(iterator) =
                    request.send().await.map_err(|e| format!("{:?}", e.into_service_error()))?.shard_iterator
                else {
                    shard.closed = true;
                    return Ok(false);
                };
                iterator
            }
        };
        let limit = i32::try_from(source.batch_size.min(1000)).unwrap_or(100);
        let out = match streams.get_records().shard_iterator(&iterator).limit(limit).send().await {
            Ok(out) => out,
            // A lost or refused iterator is asked for again next time.
            Err(e) => {
                tracing::debug!(function = %source.function, error = ?e.into_service_error(), "stream iterator refused");
                return Ok(false);
            }
        };
        shard.closed = out.next_shard_iterator.is_none();
        shard.iterator = out.next_shard_iterator;
        shard.buffered = out.records.unwrap_or_default();
        if shard.buffered.is_empty() {
            return Ok(false);
        }
    }
    let batch: Vec<Record> = shard.buffered.iter().take(source.batch_size).cloned().collect();
    let mut event = DynamoDbEvent::default();
    event.records = batch.iter().map(|r| lambda_record(r, &source.stream_arn)).collect();
    let batch_of = StreamBatch { event, shard: source.windowed.then(|| shard.id.clone()) };
    source.calls.hit(&source.function);
    let outcome = tokio::time::timeout(source.timeout, source.handler.handle(batch_of)).await;
    // How many records of the batch are done: all, or those before the first failed one.
    let done = match outcome {
        // (A failure that names no record, or one not in the batch, fails the batch whole, as in
        // Lambda.)
        Ok(Ok(response)) if source.report_failures => response
            .batch_item_failures
            .iter()
            .map(|f| {
                let named = f.item_identifier.as_deref();
                batch.iter().position(|r| named.is_some() && r.dynamodb().and_then(|d| d.sequence_number()) == named)
            })
            .map(|at| at.unwrap_or(0))
            .min()
            .unwrap_or(batch.len()),
        Ok(Ok(_)) => batch.len(),
        Ok(Err(e)) => {
            tracing::warn!(function = %source.function, error = %e, "stream batch failed");
            0
        }
        Err(_) => {
            tracing::warn!(function = %source.function, "stream batch timed out");
            0
        }
    };
    let sequence = |r: &Record| r.dynamodb().and_then(|d| d.sequence_number()).map(str::to_owned);
    if done == batch.len() {
        shard.last = batch.last().and_then(sequence).or(shard.last.take());
        shard.buffered.drain(..batch.len());
        shard.attempts = 0;
        return Ok(true);
    }
    if done > 0 {
        shard.last = sequence(&batch[done - 1]);
    }
    shard.buffered.drain(..done);
    shard.attempts += 1;
    if shard.attempts > source.max_retries {
        // Lambda gives up on the batch: its position goes to the on-failure destination.
        let rest: Vec<Record> = shard.buffered.drain(..(batch.len() - done)).collect();
        shard.last = rest.last().and_then(sequence).or(shard.last.take());
        let first = rest.first().and_then(|r| r.dynamodb()).and_then(|d| d.sequence_number()).unwrap_or_default();
        let last = rest.last().and_then(|r| r.dynamodb()).and_then(|d| d.sequence_number()).unwrap_or_default();
        tracing::error!(function = %source.function, first, last, "stream batch skipped after its retries");
        if let Some(queue) = &source.on_failure {
            let report = serde_json::json!({
                "requestContext": {"functionArn": source.function, "condition": "RetryAttemptsExhausted"},
                "DDBStreamBatchInfo": {"streamArn": source.stream_arn, "startSequenceNumber": first,
                    "endSequenceNumber": last, "batchSize": rest.len()},
            });
            let _ = sqs.send_message().queue_url(queue).message_body(report.to_string()).send().await;
        }
        shard.attempts = 0;
    } else {
        tokio::time::sleep(Duration::from_millis(200 * u64::from(shard.attempts.min(10)))).await;
    }
    Ok(true)
}

/// Every record a stream holds now, per shard in stream order, as Lambda would deliver them (for
/// tests that deliver a stream again). A shard is read until a page comes back empty, which on
/// DynamoDB Local means it is read up to its end so far.
pub async fn records(
    streams: &aws_sdk_dynamodbstreams::Client,
    stream_arn: &str,
) -> Result<Vec<(String, Vec<EventRecord>)>, String> {
    let described = streams.describe_stream().stream_arn(stream_arn).send().await.map_err(|e| format!("{e:?}"))?;
    let mut out = Vec::new();
    for shard in described.stream_description().map(|d| d.shards()).unwrap_or_default() {
        let Some(id) = shard.shard_id() else { continue };
        let start = streams
            .get_shard_iterator()
            .stream_arn(stream_arn)
            .shard_id(id)
            .shard_iterator_type(ShardIteratorType::TrimHorizon)
            .send()
            .await
            .map_err(|e| format!("{:?}", e.into_service_error()))?;
        let (mut iterator, mut records) = (start.shard_iterator, Vec::new());
        while let Some(at) = iterator {
            let page =
                streams.get_records().shard_iterator(at).limit(1000).send().await.map_err(|e| format!("{e:?}"))?;
            let got = page.records.unwrap_or_default();
            if got.is_empty() {
                break;
            }
            records.extend(got.iter().map(|r| lambda_record(r, stream_arn)));
            iterator = page.next_shard_iterator;
        }
        out.push((id.to_owned(), records));
    }
    Ok(out)
}
