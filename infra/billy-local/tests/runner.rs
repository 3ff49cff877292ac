//! The runner against the real local stack: SQS event sources with partial batch failures and the
//! queue's redrive policy, and the real template's functions all wired.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use async_trait::async_trait;
use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent};
use billy_lambda::SqsFunction;
use billy_local::functions::{self, Handler};
use billy_local::template::Template;
use billy_local::testing::TestStack;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Fails every message whose body starts with "poison"; records every delivery.
#[derive(Default)]
struct Worker {
    deliveries: Mutex<Vec<(String, String)>>,
}

#[async_trait]
impl SqsFunction for Worker {
    async fn handle(&self, event: SqsEvent) -> Result<SqsBatchResponse, lambda_runtime::Error> {
        let mut response = SqsBatchResponse::default();
        for record in event.records {
            let body = record.body.clone().unwrap_or_default();
            let count = record.attributes.get("ApproximateReceiveCount").cloned().unwrap_or_default();
            self.deliveries.lock().unwrap().push((body.clone(), count));
            if body.starts_with("poison") {
                let mut failure = BatchItemFailure::default();
                failure.item_identifier = record.message_id.unwrap_or_default();
                response.batch_item_failures.push(failure);
            }
        }
        Ok(response)
    }
}

async fn receive_all(stack: &TestStack, queue: &str) -> Vec<String> {
    let out = stack
        .aws
        .sqs
        .receive_message()
        .queue_url(stack.provisioned.queue_url(queue).unwrap())
        .max_number_of_messages(10)
        .wait_time_seconds(1)
        .send()
        .await
        .unwrap();
    out.messages.unwrap_or_default().into_iter().filter_map(|m| m.body).collect()
}

#[tokio::test]
async fn a_message_that_keeps_failing_reaches_the_dlq_and_the_rest_are_deleted() {
    // GIVEN a queue whose redrive policy allows 2 receives, consumed through the runner
    let template = Template::parse(include_str!("fixtures/dlq-template.yaml")).unwrap();
    let worker = Arc::new(Worker::default());
    let hosted = Arc::clone(&worker);
    let stack = TestStack::start_with(&template, move |_, _, _| Ok(Handler::Sqs(hosted.clone()))).await;
    let queue_url = stack.provisioned.queue_url("WorkQueue").unwrap().to_owned();

    // WHEN one good and one poison message are sent
    for body in ["good-1", "poison-1"] {
        stack.aws.sqs.send_message().queue_url(&queue_url).message_body(body).send().await.unwrap();
    }

    // THEN the poison message lands in the DLQ after exactly 2 deliveries
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut in_dlq = Vec::new();
    while in_dlq.is_empty() && Instant::now() < deadline {
        in_dlq = receive_all(&stack, "WorkDLQ").await;
    }
    assert_eq!(in_dlq, vec!["poison-1".to_owned()]);
    let deliveries = worker.deliveries.lock().unwrap().clone();
    let poison: Vec<&(String, String)> = deliveries.iter().filter(|(b, _)| b == "poison-1").collect();
    assert_eq!(poison.len(), 2, "delivered once per allowed receive: {deliveries:?}");
    assert_eq!(poison[1].1, "2", "the second delivery says so in ApproximateReceiveCount");
    // AND the good message was handled once and deleted, so the source queue is empty
    assert_eq!(deliveries.iter().filter(|(b, _)| b == "good-1").count(), 1);
    let attrs = stack
        .aws
        .sqs
        .get_queue_attributes()
        .queue_url(&queue_url)
        .attribute_names(aws_sdk_sqs::types::QueueAttributeName::All)
        .send()
        .await
        .unwrap()
        .attributes
        .unwrap();
    let count = |name: &str| attrs.iter().find(|(k, _)| k.as_str() == name).map(|(_, v)| v.clone()).unwrap();
    assert_eq!(count("ApproximateNumberOfMessages"), "0");
    assert_eq!(count("ApproximateNumberOfMessagesNotVisible"), "0");
    stack.stop().await;
}

#[tokio::test]
async fn every_function_in_the_template_has_a_handler_and_every_handler_is_in_the_template() {
    let template = Template::load(&billy_local::default_template_path()).unwrap();
    let names: Vec<String> = template.functions().unwrap().into_iter().map(|f| f.name).collect();
    let mut sorted = names.clone();
    sorted.sort();
    let mut known: Vec<String> = functions::KNOWN.iter().map(|s| (*s).to_owned()).collect();
    known.sort();
    assert_eq!(sorted, known);
    // AND every folder under functions/ is a function of the template
    let dir = billy_local::default_template_path().parent().unwrap().join("functions");
    let mut folders: Vec<String> =
        std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    folders.sort();
    assert_eq!(folders, known);
}

#[tokio::test]
async fn the_real_template_provisions_its_tables_with_keys_indexes_and_ttl() {
    let stack = TestStack::start().await;
    let main = stack.aws.dynamodb.describe_table().table_name(&stack.tables().main).send().await.unwrap();
    let table = main.table.unwrap();
    let mut indexes: Vec<&str> = table.global_secondary_indexes().iter().filter_map(|g| g.index_name()).collect();
    indexes.sort_unstable();
    assert_eq!(indexes, vec!["GSI1", "GSI2", "GSI3", "GSI4"]);
    let keys: BTreeMap<&str, &str> =
        table.key_schema().iter().map(|k| (k.attribute_name(), k.key_type().as_str())).collect();
    assert_eq!(keys, BTreeMap::from([("PK", "HASH"), ("SK", "RANGE")]));
    let ttl = stack.aws.dynamodb.describe_time_to_live().table_name(&stack.tables().main).send().await.unwrap();
    assert_eq!(ttl.time_to_live_description().unwrap().attribute_name(), Some("expires_at"));
    // AND provisioning again is a no-op that reuses what exists
    let again = billy_local::provision(
        &Template::load(&billy_local::default_template_path()).unwrap(),
        &stack.provisioned.prefix,
        &BTreeMap::from([("AdminToken".to_owned(), "x".repeat(32))]),
        &stack.aws,
    )
    .await
    .unwrap();
    assert_eq!(again.tables, stack.provisioned.tables);
    stack.stop().await;
}
