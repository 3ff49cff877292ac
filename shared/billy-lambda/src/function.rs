//! The two shapes of function Billy has, and their Lambda entry points. The local runner calls the
//! same trait methods with the same event types.

use async_trait::async_trait;
use aws_lambda_events::event::dynamodb::{Event as DynamoDbEvent, TimeWindowEventResponse};
use aws_lambda_events::event::eventbridge::EventBridgeEvent;
use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use aws_lambda_events::event::streams::DynamoDbEventResponse;
use lambda_http::{Body, Request, Response};
use lambda_runtime::LambdaEvent;
use std::sync::Arc;

/// An API Gateway HTTP API route handler. It never fails: every error is an HTTP response.
#[async_trait]
pub trait HttpFunction: Send + Sync {
    async fn handle(&self, request: Request) -> Response<Body>;
}

/// An SQS event source handler that reports partial batch failures.
#[async_trait]
pub trait SqsFunction: Send + Sync {
    async fn handle(&self, event: SqsEvent) -> Result<SqsBatchResponse, lambda_runtime::Error>;
}

/// A DynamoDB stream event source handler that reports partial batch failures (the first failed
/// record's sequence number: the stream resumes there).
#[async_trait]
pub trait StreamFunction: Send + Sync {
    async fn handle(&self, batch: StreamBatch) -> Result<DynamoDbEventResponse, lambda_runtime::Error>;
}

/// One batch of a DynamoDB stream, as its event source mapping hands it over.
#[derive(Debug, Clone, Default)]
pub struct StreamBatch {
    pub event: DynamoDbEvent,
    /// The shard every record of the batch comes from. Lambda names it only to a mapping with a
    /// tumbling window (`TumblingWindowInSeconds`), whose answers must then carry a `state`.
    pub shard: Option<String>,
}

impl StreamBatch {
    /// Reads a stream invocation's payload: a plain batch, or a tumbling window's (the same
    /// records beside `shardId`, `window` and `state`). Answers whether it was a window's.
    pub fn from_payload(mut payload: serde_json::Value) -> Result<(Self, bool), serde_json::Error> {
        let windowed = payload.get("window").is_some_and(|w| !w.is_null());
        let shard = payload.get("shardId").and_then(serde_json::Value::as_str).map(str::to_owned);
        // (A window's last invocation may carry no records at all.)
        if let Some(fields) = payload.as_object_mut()
            && fields.get("Records").is_none_or(serde_json::Value::is_null)
        {
            fields.insert("Records".into(), serde_json::Value::Array(Vec::new()));
        }
        let event: DynamoDbEvent = serde_json::from_value(payload)?;
        Ok((Self { event, shard }, windowed))
    }
}

/// A stream invocation's answer: a window's carries a `state` (Lambda takes an answer without one
/// as a failed invocation); Billy keeps none between invocations, so it is always empty.
pub fn stream_answer(response: DynamoDbEventResponse, windowed: bool) -> Result<serde_json::Value, serde_json::Error> {
    if !windowed {
        return serde_json::to_value(response);
    }
    let mut answer = TimeWindowEventResponse::default();
    answer.batch_item_failures = response.batch_item_failures;
    serde_json::to_value(answer)
}

/// A stream batch's answer when it stopped at `sequence_number`: that record and the ones after it
/// are delivered again; the ones before it are done.
pub fn resume_at(sequence_number: Option<String>) -> DynamoDbEventResponse {
    let mut failure = aws_lambda_events::event::streams::DynamoDbBatchItemFailure::default();
    failure.item_identifier = sequence_number;
    let mut response = DynamoDbEventResponse::default();
    response.batch_item_failures = vec![failure];
    response
}

/// A function triggered by an EventBridge schedule or rule (one event per invocation).
#[async_trait]
pub trait EventFunction: Send + Sync {
    async fn handle(&self, event: EventBridgeEvent) -> Result<(), lambda_runtime::Error>;
}

pub async fn run_http<F: HttpFunction + 'static>(function: F) -> Result<(), lambda_http::Error> {
    let function = Arc::new(function);
    lambda_http::run(lambda_http::service_fn(move |request: Request| {
        let function = Arc::clone(&function);
        async move { Ok::<_, lambda_http::Error>(function.handle(request).await) }
    }))
    .await
}

pub async fn run_sqs<F: SqsFunction + 'static>(function: F) -> Result<(), lambda_runtime::Error> {
    let function = Arc::new(function);
    lambda_runtime::run(lambda_runtime::service_fn(move |event: LambdaEvent<SqsEvent>| {
        let function = Arc::clone(&function);
        async move { function.handle(event.payload).await }
    }))
    .await
}

pub async fn run_event<F: EventFunction + 'static>(function: F) -> Result<(), lambda_runtime::Error> {
    let function = Arc::new(function);
    lambda_runtime::run(lambda_runtime::service_fn(move |event: LambdaEvent<EventBridgeEvent>| {
        let function = Arc::clone(&function);
        async move { function.handle(event.payload).await }
    }))
    .await
}

pub async fn run_stream<F: StreamFunction + 'static>(function: F) -> Result<(), lambda_runtime::Error> {
    let function = Arc::new(function);
    lambda_runtime::run(lambda_runtime::service_fn(move |event: LambdaEvent<serde_json::Value>| {
        let function = Arc::clone(&function);
        async move {
            let (batch, windowed) = StreamBatch::from_payload(event.payload)?;
            let response = function.handle(batch).await?;
            Ok::<_, lambda_runtime::Error>(stream_answer(response, windowed)?)
        }
    }))
    .await
}

/// The domain event a rule delivered, if the event is one of Billy's announcements (a schedule's
/// event is not).
pub fn announcement(event: &EventBridgeEvent) -> Option<billy_core::ports::DomainEvent> {
    if event.source != billy_aws::events::SOURCE {
        return None;
    }
    serde_json::from_value(event.detail.clone()).ok()
}

/// The id of the object an announcement is about (`data.object.id`).
pub fn subject(event: &billy_core::ports::DomainEvent) -> Option<billy_core::ids::Id> {
    event.data["object"]["id"].as_str().map(|id| billy_core::ids::Id::from_trusted(id.to_owned()))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;

    fn record(sequence: &str) -> serde_json::Value {
        json!({"eventID": "1", "eventName": "INSERT", "eventSource": "aws:dynamodb", "awsRegion": "us-east-1",
            "eventSourceARN": "arn:aws:dynamodb:us-east-1:123456789012:table/audit/stream/2026-12-06T00:00:00.000",
            "dynamodb": {"Keys": {"PK": {"S": "a"}}, "NewImage": {"PK": {"S": "a"}}, "SequenceNumber": sequence,
                "SizeBytes": 10, "StreamViewType": "NEW_IMAGE"}})
    }

    #[test]
    fn a_tumbling_windows_batch_names_its_shard_and_is_answered_with_a_state() {
        let payload = json!({"Records": [record("111"), record("222")],
            "window": {"start": "2026-12-06T00:00:00Z", "end": "2026-12-06T00:01:00Z"}, "state": {},
            "shardId": "shardId-00000001765000000000-0a1b2c3d", "eventSourceARN": "stream-arn",
            "isFinalInvokeForWindow": false, "isWindowTerminatedEarly": false});
        let (batch, windowed) = StreamBatch::from_payload(payload).unwrap();
        assert!(windowed);
        assert_eq!(batch.shard.as_deref(), Some("shardId-00000001765000000000-0a1b2c3d"));
        assert_eq!(batch.event.records.len(), 2);
        let answer = stream_answer(resume_at(Some("222".into())), true).unwrap();
        assert_eq!(answer, json!({"state": {}, "batchItemFailures": [{"itemIdentifier": "222"}]}));
        // (A window's last invocation may come without records: empty, null or left out.)
        for records in [json!([]), json!(null), json!("left out")] {
            let mut last = json!({"window": {"start": "2026-12-06T00:00:00Z", "end": "2026-12-06T00:01:00Z"},
                "shardId": "s", "isFinalInvokeForWindow": true, "isWindowTerminatedEarly": false});
            if records.is_array() || records.is_null() {
                last["Records"] = records;
            }
            let (last, windowed) = StreamBatch::from_payload(last).unwrap();
            assert!(windowed && last.event.records.is_empty());
        }
    }

    #[test]
    fn a_plain_batch_names_no_shard_and_is_answered_without_a_state() {
        let (batch, windowed) = StreamBatch::from_payload(json!({"Records": [record("111")]})).unwrap();
        assert!(!windowed);
        assert_eq!(batch.shard, None);
        let answer = stream_answer(DynamoDbEventResponse::default(), false).unwrap();
        assert_eq!(answer, json!({"batchItemFailures": []}));
    }
}
