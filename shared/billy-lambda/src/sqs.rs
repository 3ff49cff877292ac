//! The SQS batch helper every queue consumer uses: decodes each message's versioned envelope, handles
//! messages concurrently, and reports exactly the failed ones (partial batch failure), so one bad
//! message never makes a whole batch redeliver.

use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent};
use billy_core::ports::QueueMessage;
use futures::stream::{self, StreamExt};
use serde::de::DeserializeOwned;
use std::future::Future;

/// Why one message was not handled; it stays on the queue and is redelivered (then dead-lettered
/// after the queue's `maxReceiveCount`).
#[derive(Debug, thiserror::Error)]
pub enum MessageError {
    #[error("undecodable message: {0}")]
    Undecodable(String),
    #[error("{0}")]
    Failed(String),
}

impl From<billy_core::DomainError> for MessageError {
    fn from(e: billy_core::DomainError) -> Self {
        Self::Failed(e.to_string())
    }
}

/// Decodes a message of `kind` whose version this consumer supports.
pub fn decode<T: DeserializeOwned>(message: &QueueMessage, kind: &str, versions: &[u32]) -> Result<T, MessageError> {
    if message.kind != kind || !versions.contains(&message.version) {
        return Err(MessageError::Undecodable(format!(
            "expected {kind} v{versions:?}, got {} v{}",
            message.kind, message.version
        )));
    }
    serde_json::from_value(message.body.clone()).map_err(|e| MessageError::Undecodable(e.to_string()))
}

/// Runs `handle` on every message of `event`, at most `concurrency` at a time.
pub async fn for_each_message<F, Fut>(event: SqsEvent, concurrency: usize, handle: F) -> SqsBatchResponse
where
    F: Fn(QueueMessage) -> Fut,
    Fut: Future<Output = Result<(), MessageError>>,
{
    let handle = &handle;
    let failures: Vec<BatchItemFailure> = stream::iter(event.records)
        .map(|record| async move {
            let id = record.message_id.clone().unwrap_or_default();
            let result = match serde_json::from_str::<QueueMessage>(record.body.as_deref().unwrap_or_default()) {
                Ok(message) => handle(message).await,
                Err(e) => Err(MessageError::Undecodable(e.to_string())),
            };
            match result {
                Ok(()) => None,
                Err(e) => {
                    tracing::warn!(message_id = %id, error = %e, "message failed; it returns to the queue");
                    let mut failure = BatchItemFailure::default();
                    failure.item_identifier = id;
                    Some(failure)
                }
            }
        })
        .buffer_unordered(concurrency.max(1))
        .filter_map(|f| async move { f })
        .collect()
        .await;
    let mut response = SqsBatchResponse::default();
    response.batch_item_failures = failures;
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_lambda_events::event::sqs::SqsMessage;
    use serde_json::json;

    fn record(id: &str, body: &str) -> SqsMessage {
        let mut m = SqsMessage::default();
        m.message_id = Some(id.into());
        m.body = Some(body.into());
        m
    }

    #[tokio::test]
    async fn only_failed_and_undecodable_messages_are_reported() {
        let good =
            serde_json::to_string(&QueueMessage { version: 1, kind: "bill".into(), body: json!({"n": 1}) }).unwrap();
        let bad =
            serde_json::to_string(&QueueMessage { version: 1, kind: "bill".into(), body: json!({"n": 13}) }).unwrap();
        let future =
            serde_json::to_string(&QueueMessage { version: 9, kind: "bill".into(), body: json!({"n": 2}) }).unwrap();
        let mut event = SqsEvent::default();
        event.records = vec![record("a", &good), record("b", &bad), record("c", "not json"), record("d", &future)];
        #[derive(serde::Deserialize)]
        struct Body {
            n: u32,
        }
        let response = for_each_message(event, 4, |m| async move {
            let body: Body = decode(&m, "bill", &[1])?;
            if body.n == 13 { Err(MessageError::Failed("unlucky".into())) } else { Ok(()) }
        })
        .await;
        let mut failed: Vec<String> = response.batch_item_failures.into_iter().map(|f| f.item_identifier).collect();
        failed.sort();
        assert_eq!(failed, vec!["b", "c", "d"]);
    }
}
