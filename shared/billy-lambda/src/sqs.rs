//! The SQS batch helper every queue consumer uses: decode each message's versioned envelope, hand
//! the decodable ones to the use case together, and report exactly the failed ones (partial batch
//! failure), so one bad message never makes a whole batch redeliver. A message that failed for a
//! passing reason on Billy's side comes back after a short wait that grows with each delivery, not
//! after the queue's whole visibility timeout; one that can never succeed (undecodable, or failing
//! for good, or failing on its last delivery) is moved to the dead-letter queue at once with its
//! reason.

use crate::config::{Config, MissingVariable};
use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent, SqsMessage};
use billy_aws::sqs::SqsPublisher;
use billy_core::DomainError;
use billy_core::ports::QueueMessage;
use serde::de::DeserializeOwned;
use std::future::Future;

/// Deliveries after which a failing message goes to its dead-letter queue: the queues'
/// `maxReceiveCount` in template.yaml (a test checks they agree).
pub const MAX_RECEIVES: u32 = 5;

/// The longest wait before a failed message comes back: about the queues' own visibility timeout
/// (181 s for the billing queues), so no retry waits longer than it did before.
const LONGEST_RETRY_SECS: i32 = 180;

/// How long a message that failed for a passing reason stays hidden after its `receives`-th
/// delivery, when the reason is on Billy's side (a throttled or timed-out store call, a
/// conflict): 5 s after the first, 30 s after the second, then 3 minutes. Each wait is shortened
/// by up to a fifth, by the message's id, so a batch that failed together does not come back
/// together. `None` when no gateway took a charge or payout (unreachable, refusing, rate limited,
/// or paused by its breaker, a minute by default): it is not asked again sooner, the queue's own
/// timeout spaces the tries.
pub fn retry_delay(error: &DomainError, receives: u32, message_id: &str) -> Option<i32> {
    if matches!(error, DomainError::Unavailable(_)) {
        return None;
    }
    let base = 6_i32.saturating_pow(receives.saturating_sub(1)).saturating_mul(5).min(LONGEST_RETRY_SECS);
    let spread = message_id.bytes().fold(0_u32, |h, b| h.wrapping_mul(31).wrapping_add(u32::from(b)));
    let shortened_by = i32::try_from(spread % u32::try_from(base / 5 + 1).unwrap_or(1)).unwrap_or(0);
    Some(base - shortened_by)
}

/// Why one message was not handled.
#[derive(Debug, thiserror::Error)]
pub enum MessageError {
    #[error("undecodable message: {0}")]
    Undecodable(String),
    #[error("{0}")]
    Failed(String),
}

/// The queue a consumer reads (`QUEUE_URL`) and its dead-letter queue (`DEAD_LETTER_QUEUE_URL`).
#[derive(Debug, Clone)]
pub struct ConsumedQueue {
    pub url: String,
    pub dead_letters: String,
}

impl ConsumedQueue {
    pub fn from_config(config: &Config) -> Result<Self, MissingVariable> {
        Ok(Self {
            url: config.require("QUEUE_URL")?.to_owned(),
            dead_letters: config.require("DEAD_LETTER_QUEUE_URL")?.to_owned(),
        })
    }
}

/// Where a consumer's failed messages go: back to its queue after a short wait, or, when hopeless,
/// to its dead-letter queue.
#[derive(Debug, Clone, Copy)]
pub struct Queues<'a> {
    pub publisher: &'a SqsPublisher,
    pub queue: &'a ConsumedQueue,
}

/// How to read one consumer's messages: their kind, and the body versions it understands.
#[derive(Debug, Clone, Copy)]
pub struct Decoding<T> {
    pub kind: &'static str,
    pub versions: &'static [u32],
    body: std::marker::PhantomData<fn() -> T>,
}

impl<T: DeserializeOwned> Decoding<T> {
    pub const fn new(kind: &'static str, versions: &'static [u32]) -> Self {
        Self { kind, versions, body: std::marker::PhantomData }
    }

    fn decode(&self, body: &str) -> Result<T, MessageError> {
        let message: QueueMessage = serde_json::from_str(body).map_err(|e| MessageError::Undecodable(e.to_string()))?;
        if message.kind != self.kind || !self.versions.contains(&message.version) {
            return Err(MessageError::Undecodable(format!(
                "expected {} v{:?}, got {} v{}",
                self.kind, self.versions, message.kind, message.version
            )));
        }
        serde_json::from_value(message.body).map_err(|e| MessageError::Undecodable(e.to_string()))
    }
}

/// What became of a batch: the response for Lambda, and the messages moved to the dead-letter
/// queue with their reasons (a test clock's step records its failure from these).
#[derive(Debug)]
pub struct BatchOutcome<T> {
    pub response: SqsBatchResponse,
    pub dead: Vec<(Option<T>, String)>,
}

fn failure(id: String, error: &MessageError) -> BatchItemFailure {
    tracing::warn!(message_id = %id, error = %error, "message failed; it returns to the queue");
    let mut failure = BatchItemFailure::default();
    failure.item_identifier = id;
    failure
}

fn receives(record: &SqsMessage) -> u32 {
    record.attributes.get("ApproximateReceiveCount").and_then(|c| c.parse().ok()).unwrap_or(1)
}

/// Decodes every message of `event` and hands the decodable ones to `handle` together, which
/// answers one result per body, in order. Failures that may pass later are reported for
/// redelivery, each after its [`retry_delay`]; hopeless ones are dead-lettered with their reason
/// (when `queues` is given; without, everything failed returns after the queue's timeout).
pub async fn for_batch<T, F, Fut>(
    event: SqsEvent,
    decoding: Decoding<T>,
    queues: Option<Queues<'_>>,
    handle: F,
) -> BatchOutcome<T>
where
    T: DeserializeOwned + Clone,
    F: FnOnce(Vec<T>) -> Fut,
    Fut: Future<Output = Vec<Result<(), DomainError>>>,
{
    let mut failures = Vec::new();
    let mut retries: Vec<(String, i32)> = Vec::new();
    let mut hopeless: Vec<(SqsMessage, Option<T>, String)> = Vec::new();
    let (mut records, mut bodies) = (Vec::new(), Vec::new());
    for record in event.records {
        match decoding.decode(record.body.as_deref().unwrap_or_default()) {
            Ok(body) => {
                records.push(record);
                bodies.push(body);
            }
            Err(e) => hopeless.push((record, None, e.to_string())),
        }
    }
    let expected = records.len();
    let kept = bodies.clone();
    let results = if bodies.is_empty() { Vec::new() } else { handle(bodies).await };
    for (i, (record, body)) in records.into_iter().zip(kept).enumerate() {
        let error = match results.get(i) {
            Some(Ok(())) => continue,
            Some(Err(e)) => e.clone(),
            None => DomainError::unexpected(format!("no result ({} of {expected})", results.len())),
        };
        let delivery = receives(&record);
        if !error.is_retryable() || delivery >= MAX_RECEIVES {
            hopeless.push((record, Some(body), error.to_string()));
        } else {
            let id = record.message_id.clone().unwrap_or_default();
            if let (Some(receipt), Some(delay)) = (record.receipt_handle.clone(), retry_delay(&error, delivery, &id)) {
                retries.push((receipt, delay));
            }
            failures.push(failure(id, &MessageError::Failed(error.to_string())));
        }
    }
    if let Some(q) = queues
        && !retries.is_empty()
    {
        // A wait not shortened is no loss: the message still comes back, after the queue's own
        // timeout.
        let (unchanged, error) = q.publisher.show_again_after(&q.queue.url, &retries).await;
        if unchanged > 0 {
            let error = error.map(|e| e.to_string()).unwrap_or_default();
            tracing::warn!(unchanged, %error, "some failed messages wait out the queue's visibility timeout");
        }
    }
    let mut dead = Vec::new();
    for (record, body, reason) in hopeless {
        let id = record.message_id.clone().unwrap_or_default();
        let moved = match queues {
            Some(q) => {
                q.publisher
                    .dead_letter(&q.queue.dead_letters, record.body.as_deref().unwrap_or_default(), &reason)
                    .await
            }
            None => Err(DomainError::unexpected("no dead-letter queue configured")),
        };
        match moved {
            Ok(()) => {
                tracing::error!(message_id = %id, %reason, "message dead-lettered");
                dead.push((body, reason));
            }
            // Not moved: it goes back, and the queue's redrive takes it there in the end.
            Err(e) => failures.push(failure(id, &MessageError::Failed(format!("{reason} (not dead-lettered: {e})")))),
        }
    }
    let mut response = SqsBatchResponse::default();
    response.batch_item_failures = failures;
    BatchOutcome { response, dead }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn record(id: &str, body: &str, receives: u32) -> SqsMessage {
        let mut m = SqsMessage::default();
        m.message_id = Some(id.into());
        m.body = Some(body.into());
        m.attributes.insert("ApproximateReceiveCount".into(), receives.to_string());
        m
    }

    #[derive(Debug, Clone, serde::Deserialize, PartialEq)]
    struct Body {
        n: u32,
    }

    const BILL: Decoding<Body> = Decoding::new("bill", &[1]);

    fn body(version: u32, n: u32) -> String {
        serde_json::to_string(&QueueMessage { version, kind: "bill".into(), body: json!({"n": n}) }).unwrap()
    }

    #[tokio::test]
    async fn retryable_failures_go_back_and_hopeless_ones_are_reported_without_a_dead_letter_queue() {
        let mut event = SqsEvent::default();
        event.records = vec![
            record("a", &body(1, 1), 1),
            record("b", &body(1, 13), 1),
            record("c", "not json", 1),
            record("d", &body(9, 2), 1),
            record("e", &body(1, 3), 1),
            record("f", &body(1, 13), MAX_RECEIVES),
            record("g", &body(1, 7), 1),
        ];
        let seen = std::sync::Mutex::new(Vec::new());
        let seen_by_handler = &seen;
        let outcome = for_batch(event, BILL, None, |bodies: Vec<Body>| async move {
            seen_by_handler.lock().unwrap().extend(bodies.iter().map(|b| b.n));
            bodies
                .iter()
                .map(|b| match b.n {
                    13 => Err(DomainError::unexpected("unlucky")),
                    7 => Err(DomainError::invalid("plan_unsupported", "never", None)),
                    _ => Ok(()),
                })
                .collect()
        })
        .await;
        let mut failed: Vec<String> =
            outcome.response.batch_item_failures.into_iter().map(|f| f.item_identifier).collect();
        failed.sort();
        // b goes back for another try; c, d (undecodable), f (last delivery) and g (never
        // retryable) cannot be moved without a dead-letter queue, so they go back too.
        assert_eq!(failed, vec!["b", "c", "d", "f", "g"]);
        assert_eq!(*seen.lock().unwrap(), vec![1, 13, 3, 13, 7], "decodable bodies are handled together, in order");
        assert!(outcome.dead.is_empty());
    }

    #[test]
    fn a_failed_message_comes_back_after_5_then_30_seconds_then_3_minutes_spread_by_its_id() {
        let stall = DomainError::unexpected("the store did not answer in time");
        let ids: Vec<String> = (0..200).map(|i| format!("{i:08x}-message")).collect();
        for (receives, (low, high)) in [(1, (4, 5)), (2, (24, 30)), (3, (144, 180)), (4, (144, 180))] {
            let delays: std::collections::BTreeSet<i32> =
                ids.iter().map(|id| retry_delay(&stall, receives, id).unwrap()).collect();
            assert!(delays.iter().all(|d| (low..=high).contains(d)), "after delivery {receives}: {delays:?}");
            assert!(delays.len() > 1, "a batch's messages do not all come back at once: {delays:?}");
        }
        assert_eq!(retry_delay(&stall, 3, "m"), retry_delay(&stall, 3, "m"), "the same message, the same wait");
        assert!(retry_delay(&stall, u32::MAX, "m").is_some_and(|d| d <= LONGEST_RETRY_SECS));
        // A gateway that could not be reached is left to the queue's own, longer timeout.
        let unreachable = DomainError::Unavailable("no gateway could be reached".into());
        assert_eq!(retry_delay(&unreachable, 1, "m"), None);
    }
}
