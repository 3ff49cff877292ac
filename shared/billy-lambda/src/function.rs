//! The two shapes of function Billy has, and their Lambda entry points. The local runner calls the
//! same trait methods with the same event types.

use async_trait::async_trait;
use aws_lambda_events::event::dynamodb::Event as DynamoDbEvent;
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
    async fn handle(&self, event: DynamoDbEvent) -> Result<DynamoDbEventResponse, lambda_runtime::Error>;
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
    lambda_runtime::run(lambda_runtime::service_fn(move |event: LambdaEvent<DynamoDbEvent>| {
        let function = Arc::clone(&function);
        async move { function.handle(event.payload).await }
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
