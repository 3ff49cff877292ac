//! The two shapes of function Billy has, and their Lambda entry points. The local runner calls the
//! same trait methods with the same event types.

use async_trait::async_trait;
use aws_lambda_events::event::eventbridge::EventBridgeEvent;
use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
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

/// The test clock an event is about (`test_clock.advanced`), with its scope; `None` for a schedule.
pub fn clock_of(event: &EventBridgeEvent) -> Option<(billy_core::tenant::Scope, billy_core::ids::Id)> {
    if event.detail_type != "test_clock.advanced" {
        return None;
    }
    let announced: billy_core::ports::DomainEvent = serde_json::from_value(event.detail.clone()).ok()?;
    let clock = announced.data["test_clock"].as_str()?;
    Some((announced.scope, billy_core::ids::Id::from_trusted(clock.to_owned())))
}
