//! Sends versioned JSON messages to SQS in batches (`SendMessageBatch`: up to ten messages and
//! 256 KiB a call), retrying entries the service reports as failed.

use crate::dynamo::sdk_error;
use async_trait::async_trait;
use aws_sdk_sqs::types::{ChangeMessageVisibilityBatchRequestEntry, SendMessageBatchRequestEntry};
use billy_core::ports::{QueueMessage, QueuePublisher};
use billy_core::{DomainError, DomainResult};

const BATCH: usize = 10;
const ATTEMPTS: usize = 3;
/// How many `SendMessageBatch` calls of one send are in flight at once.
const PARALLEL_BATCHES: usize = 4;
/// Billy's own bound on one message and on one batch: the classic SQS limit, well above any billing
/// message, so a runaway payload is caught here with a clear error on every SQS version.
pub const MAX_BATCH_BYTES: usize = 256 * 1024;

/// Splits encoded messages into batches of at most ten and at most `MAX_BATCH_BYTES`.
fn batches(encoded: Vec<String>) -> DomainResult<Vec<Vec<String>>> {
    let mut out: Vec<Vec<String>> = Vec::new();
    let mut size = 0;
    for body in encoded {
        if body.len() > MAX_BATCH_BYTES {
            return Err(DomainError::unexpected(format!(
                "a {} byte message exceeds the {MAX_BATCH_BYTES} byte limit",
                body.len()
            )));
        }
        match out.last_mut() {
            Some(batch) if batch.len() < BATCH && size + body.len() <= MAX_BATCH_BYTES => {
                size += body.len();
                batch.push(body);
            }
            _ => {
                size = body.len();
                out.push(vec![body]);
            }
        }
    }
    Ok(out)
}

#[derive(Debug, Clone)]
pub struct SqsPublisher {
    client: aws_sdk_sqs::Client,
}

impl SqsPublisher {
    pub fn new(client: aws_sdk_sqs::Client) -> Self {
        Self { client }
    }

    /// Moves a message that can never be handled to its dead-letter queue, as it was received,
    /// with why in the `reason` attribute (what the queue's own redrive cannot record).
    pub async fn dead_letter(&self, queue: &str, body: &str, reason: &str) -> DomainResult<()> {
        let reason: String = reason.chars().take(1000).collect();
        let attribute = aws_sdk_sqs::types::MessageAttributeValue::builder()
            .data_type("String")
            .string_value(if reason.is_empty() { "unknown".to_owned() } else { reason })
            .build()
            .map_err(DomainError::unexpected)?;
        self.client
            .send_message()
            .queue_url(queue)
            .message_body(body)
            .message_attributes("reason", attribute)
            .send()
            .await
            .map_err(sdk_error)?;
        Ok(())
    }

    /// Makes received messages visible again on `queue` after their own number of seconds
    /// (`ChangeMessageVisibilityBatch`, ten a call): `messages` are (receipt handle, seconds).
    /// Every call is tried; the answer is how many messages were not changed (a receipt handle
    /// that expired, say) and the first error met, if any.
    pub async fn show_again_after(&self, queue: &str, messages: &[(String, i32)]) -> (usize, Option<DomainError>) {
        let (mut unchanged, mut first_error) = (0, None);
        for chunk in messages.chunks(BATCH) {
            let sent = async {
                let entries = chunk
                    .iter()
                    .enumerate()
                    .map(|(i, (receipt, seconds))| {
                        ChangeMessageVisibilityBatchRequestEntry::builder()
                            .id(i.to_string())
                            .receipt_handle(receipt)
                            .visibility_timeout(*seconds)
                            .build()
                            .map_err(DomainError::unexpected)
                    })
                    .collect::<DomainResult<Vec<_>>>()?;
                let call = self.client.change_message_visibility_batch().queue_url(queue).set_entries(Some(entries));
                call.send().await.map_err(sdk_error)
            }
            .await;
            match sent {
                Ok(out) => unchanged += out.failed.len(),
                Err(e) => {
                    unchanged += chunk.len();
                    first_error.get_or_insert(e);
                }
            }
        }
        (unchanged, first_error)
    }
}

impl SqsPublisher {
    /// Sends one batch, retrying the entries the service failed (throttling, say); a message the
    /// service refuses as the sender's fault is an error at once.
    async fn send_batch(&self, queue: &str, batch: Vec<String>) -> DomainResult<()> {
        let mut pending: Vec<(String, String)> =
            batch.into_iter().enumerate().map(|(i, body)| (i.to_string(), body)).collect();
        for attempt in 1..=ATTEMPTS {
            let entries: Vec<SendMessageBatchRequestEntry> = pending
                .iter()
                .map(|(id, body)| {
                    SendMessageBatchRequestEntry::builder()
                        .id(id)
                        .message_body(body)
                        .build()
                        .map_err(DomainError::unexpected)
                })
                .collect::<DomainResult<_>>()?;
            let out = self
                .client
                .send_message_batch()
                .queue_url(queue)
                .set_entries(Some(entries))
                .send()
                .await
                .map_err(sdk_error)?;
            if let Some(bad) = out.failed.iter().find(|f| f.sender_fault) {
                return Err(DomainError::unexpected(format!(
                    "SQS refused a message: {}",
                    bad.message.clone().unwrap_or_default()
                )));
            }
            let failed: Vec<String> = out.failed.iter().map(|f| f.id.clone()).collect();
            pending.retain(|(id, _)| failed.contains(id));
            if pending.is_empty() {
                return Ok(());
            }
            if attempt == ATTEMPTS {
                break;
            }
        }
        Err(DomainError::unexpected(format!("{} messages could not be sent to {queue}", pending.len())))
    }
}

#[async_trait]
impl QueuePublisher for SqsPublisher {
    /// `queue` is the queue URL (what `!Ref Queue` gives a function). Batches go out a few at a
    /// time (a tick can send thousands of messages); any batch that cannot be sent fails the call,
    /// and the caller's retry sends it again (every consumer is idempotent).
    async fn send(&self, queue: &str, messages: &[QueueMessage]) -> DomainResult<()> {
        use futures::stream::{self, TryStreamExt};
        let encoded = messages
            .iter()
            .map(|m| serde_json::to_string(m).map_err(DomainError::unexpected))
            .collect::<DomainResult<Vec<_>>>()?;
        stream::iter(batches(encoded)?.into_iter().map(Ok))
            .try_for_each_concurrent(PARALLEL_BATCHES, |batch| self.send_batch(queue, batch))
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_hold_at_most_ten_messages_and_256_kib() {
        let small: Vec<String> = (0..25).map(|i| i.to_string()).collect();
        assert_eq!(batches(small).unwrap().iter().map(Vec::len).collect::<Vec<_>>(), vec![10, 10, 5]);
        let big: Vec<String> = (0..3).map(|_| "x".repeat(100 * 1024)).collect();
        assert_eq!(batches(big).unwrap().iter().map(Vec::len).collect::<Vec<_>>(), vec![2, 1]);
        assert!(batches(vec!["x".repeat(MAX_BATCH_BYTES + 1)]).is_err());
    }
}
