//! billy-aws publishers against LocalStack: batched SQS sends with versioned envelopes, and
//! EventBridge PutEvents delivered through a rule to a queue.
#![allow(clippy::unwrap_used)]

use billy_aws::events::{EventBridgePublisher, SOURCE};
use billy_aws::sqs::SqsPublisher;
use billy_aws::{AwsClients, LocalEndpoints};
use billy_core::events::EventType;
use billy_core::ids::Id;
use billy_core::ports::{DomainEvent, EventBus, QueueMessage, QueuePublisher};
use billy_core::tenant::{Mode, Scope};
use billy_local::testing::unique_prefix;
use serde_json::{Value, json};
use std::time::{Duration, Instant};

async fn queue(aws: &AwsClients, name: &str) -> (String, String) {
    let url = aws.sqs.create_queue().queue_name(name).send().await.unwrap().queue_url.unwrap();
    let arn = aws
        .sqs
        .get_queue_attributes()
        .queue_url(&url)
        .attribute_names(aws_sdk_sqs::types::QueueAttributeName::QueueArn)
        .send()
        .await
        .unwrap()
        .attributes
        .unwrap()
        .remove(&aws_sdk_sqs::types::QueueAttributeName::QueueArn)
        .unwrap();
    (url, arn)
}

/// Receives until `want` bodies arrived or `patience` passed.
async fn drain(aws: &AwsClients, url: &str, want: usize, patience: Duration) -> Vec<String> {
    let mut bodies = Vec::new();
    let deadline = Instant::now() + patience;
    while bodies.len() < want && Instant::now() < deadline {
        let out = aws
            .sqs
            .receive_message()
            .queue_url(url)
            .max_number_of_messages(10)
            .wait_time_seconds(1)
            .send()
            .await
            .unwrap();
        for m in out.messages.unwrap_or_default() {
            bodies.push(m.body.unwrap_or_default());
            aws.sqs.delete_message().queue_url(url).receipt_handle(m.receipt_handle.unwrap()).send().await.unwrap();
        }
    }
    bodies
}

#[tokio::test]
async fn messages_are_sent_in_batches_as_versioned_envelopes() {
    let aws = AwsClients::local(&LocalEndpoints::from_env()).await;
    let (url, _) = queue(&aws, &format!("{}-bill", unique_prefix())).await;
    // 25 messages: three SendMessageBatch calls (10 + 10 + 5)
    let messages: Vec<QueueMessage> =
        (0..25).map(|n| QueueMessage { version: 1, kind: "bill_period".into(), body: json!({"n": n}) }).collect();
    SqsPublisher::new(aws.sqs.clone()).send(&url, &messages).await.unwrap();
    let bodies = drain(&aws, &url, 25, Duration::from_secs(20)).await;
    let mut got: Vec<u64> = bodies
        .iter()
        .map(|b| {
            let m: QueueMessage = serde_json::from_str(b).unwrap();
            assert_eq!((m.version, m.kind.as_str()), (1, "bill_period"));
            m.body["n"].as_u64().unwrap()
        })
        .collect();
    got.sort_unstable();
    assert_eq!(got, (0..25).collect::<Vec<u64>>());
    aws.sqs.delete_queue().queue_url(&url).send().await.unwrap();
}

#[tokio::test]
async fn an_oversized_message_is_refused_with_a_clear_error() {
    let aws = AwsClients::local(&LocalEndpoints::from_env()).await;
    let (url, _) = queue(&aws, &format!("{}-big", unique_prefix())).await;
    let huge = QueueMessage { version: 1, kind: "x".into(), body: json!({"pad": "x".repeat(300 * 1024)}) };
    assert!(SqsPublisher::new(aws.sqs.clone()).send(&url, &[huge]).await.is_err());
    aws.sqs.delete_queue().queue_url(&url).send().await.unwrap();
}

#[tokio::test]
async fn domain_events_reach_a_rule_target_with_the_stable_schema() {
    let aws = AwsClients::local(&LocalEndpoints::from_env()).await;
    let prefix = unique_prefix();
    let bus = format!("{prefix}-bus");
    aws.eventbridge.create_event_bus().name(&bus).send().await.unwrap();
    let (url, arn) = queue(&aws, &format!("{prefix}-events")).await;
    let rule = format!("{prefix}-paid");
    aws.eventbridge
        .put_rule()
        .name(&rule)
        .event_bus_name(&bus)
        .event_pattern(json!({"source": [SOURCE], "detail-type": ["invoice.paid"]}).to_string())
        .send()
        .await
        .unwrap();
    let target = aws_sdk_eventbridge::types::Target::builder().id("q").arn(&arn).build().unwrap();
    aws.eventbridge.put_targets().rule(&rule).event_bus_name(&bus).targets(target).send().await.unwrap();
    // 12 events (two PutEvents calls), of which 11 match the rule
    let scope = Scope::new(Id::from_trusted("ten_a".into()), Mode::Test);
    let events: Vec<DomainEvent> = (0..12)
        .map(|n| DomainEvent {
            id: Id::from_trusted(format!("evt_{n}")),
            kind: if n == 5 { EventType::InvoicePaymentFailed } else { EventType::InvoicePaid },
            scope: scope.clone(),
            occurred_at: chrono::Utc::now(),
            data: json!({"invoice": format!("inv_{n}")}),
        })
        .collect();
    EventBridgePublisher::new(aws.eventbridge.clone(), &bus).publish(&events).await.unwrap();
    let bodies = drain(&aws, &url, 11, Duration::from_secs(20)).await;
    assert_eq!(bodies.len(), 11);
    for body in &bodies {
        let envelope: Value = serde_json::from_str(body).unwrap();
        assert_eq!(envelope["source"], SOURCE);
        assert_eq!(envelope["detail-type"], "invoice.paid");
        let detail: DomainEvent = serde_json::from_value(envelope["detail"].clone()).unwrap();
        assert_eq!(detail.scope, scope);
    }
    // nothing more arrives (the failed-payment event did not match)
    assert!(drain(&aws, &url, 1, Duration::from_secs(3)).await.is_empty());
    aws.eventbridge.remove_targets().rule(&rule).event_bus_name(&bus).ids("q").send().await.unwrap();
    aws.eventbridge.delete_rule().name(&rule).event_bus_name(&bus).send().await.unwrap();
    aws.eventbridge.delete_event_bus().name(&bus).send().await.unwrap();
    aws.sqs.delete_queue().queue_url(&url).send().await.unwrap();
}
