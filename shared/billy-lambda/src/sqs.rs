//! The SQS batch helpers every queue consumer uses: decode each message's versioned envelope, hand
//! the messages to a handler (one at a time, concurrently, or all together as one batch), and report
//! exactly the failed ones (partial batch failure), so one bad message never makes a whole batch
//! redeliver.

use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent};
use billy_core::ports::QueueMessage;
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

fn failure(id: String, error: &MessageError) -> BatchItemFailure {
    tracing::warn!(message_id = %id, error = %error, "message failed; it returns to the queue");
    let mut failure = BatchItemFailure::default();
    failure.item_identifier = id;
    failure
}

/// Decodes every message of `event` as a `kind` body and hands the decodable ones to `handle`
/// together, which answers one result per body, in order. Undecodable messages and failed
/// results are reported as the batch's failures.
pub async fn for_batch<T, F, Fut>(event: SqsEvent, kind: &str, versions: &[u32], handle: F) -> SqsBatchResponse
where
    T: DeserializeOwned,
    F: FnOnce(Vec<T>) -> Fut,
    Fut: Future<Output = Vec<Result<(), billy_core::DomainError>>>,
{
    let mut failures = Vec::new();
    let (mut ids, mut bodies) = (Vec::new(), Vec::new());
    for record in event.records {
        let id = record.message_id.clone().unwrap_or_default();
        let decoded = serde_json::from_str::<QueueMessage>(record.body.as_deref().unwrap_or_default())
            .map_err(|e| MessageError::Undecodable(e.to_string()))
            .and_then(|m| decode::<T>(&m, kind, versions));
        match decoded {
            Ok(body) => {
                ids.push(id);
                bodies.push(body);
            }
            Err(e) => failures.push(failure(id, &e)),
        }
    }
    let expected = ids.len();
    let results = if bodies.is_empty() { Vec::new() } else { handle(bodies).await };
    for (i, id) in ids.into_iter().enumerate() {
        match results.get(i) {
            Some(Ok(())) => {}
            Some(Err(e)) => failures.push(failure(id, &MessageError::from(e.clone()))),
            None => failures
                .push(failure(id, &MessageError::Failed(format!("no result ({} of {expected})", results.len())))),
        }
    }
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
        let body = |version: u32, n: u32| {
            serde_json::to_string(&QueueMessage { version, kind: "bill".into(), body: json!({"n": n}) }).unwrap()
        };
        let mut event = SqsEvent::default();
        event.records = vec![
            record("a", &body(1, 1)),
            record("b", &body(1, 13)),
            record("c", "not json"),
            record("d", &body(9, 2)),
            record("e", &body(1, 3)),
        ];
        #[derive(serde::Deserialize)]
        struct Body {
            n: u32,
        }
        let seen = std::sync::Mutex::new(Vec::new());
        let seen_by_handler = &seen;
        let response = for_batch(event, "bill", &[1], |bodies: Vec<Body>| async move {
            seen_by_handler.lock().unwrap().extend(bodies.iter().map(|b| b.n));
            bodies
                .iter()
                .map(|b| if b.n == 13 { Err(billy_core::DomainError::unexpected("unlucky")) } else { Ok(()) })
                .collect()
        })
        .await;
        let mut failed: Vec<String> = response.batch_item_failures.into_iter().map(|f| f.item_identifier).collect();
        failed.sort();
        assert_eq!(failed, vec!["b", "c", "d"]);
        assert_eq!(*seen.lock().unwrap(), vec![1, 13, 3], "decodable bodies are handled together, in order");
    }

    #[tokio::test]
    async fn a_handler_that_answers_too_few_results_fails_the_unanswered_messages() {
        let body = serde_json::to_string(&QueueMessage { version: 1, kind: "bill".into(), body: json!(1) }).unwrap();
        let mut event = SqsEvent::default();
        event.records = vec![record("a", &body), record("b", &body)];
        let response = for_batch(event, "bill", &[1], |_: Vec<u32>| async { vec![Ok(())] }).await;
        let failed: Vec<String> = response.batch_item_failures.into_iter().map(|f| f.item_identifier).collect();
        assert_eq!(failed, vec!["b"]);
    }
}
