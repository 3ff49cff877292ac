//! Helpers for Billy's end-to-end tests: an HTTP client for the runner and store inspection.
#![allow(clippy::unwrap_used, clippy::expect_used)]

pub mod peers;

pub use billy_local::testing::TestStack;
use reqwest::{Client, Method, StatusCode};
use serde_json::Value;

/// Talks to one test stack's runner over HTTP, like any API client would.
#[derive(Debug, Clone)]
pub struct Api {
    base: String,
    http: Client,
}

impl Api {
    pub fn new(stack: &TestStack) -> Self {
        // Only the runner's loopback address is ever targeted.
        assert!(stack.url.starts_with("http://127.0.0.1:"), "tests only call loopback");
        Self { base: format!("{}/v1", stack.url), http: Client::new() }
    }

    /// Sends `body` verbatim (so tests can send malformed JSON) and returns status and JSON.
    pub async fn raw(&self, method: Method, path: &str, key: Option<&str>, body: Option<&str>) -> (StatusCode, Value) {
        let mut req = self.http.request(method, format!("{}{path}", self.base));
        if let Some(key) = key {
            req = req.bearer_auth(key);
        }
        if let Some(body) = body {
            req = req.header("Content-Type", "application/json").body(body.to_owned());
        }
        let res = req.send().await.expect("runner answers");
        let status = res.status();
        let text = res.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
    }

    pub async fn post(&self, path: &str, key: &str, body: &Value) -> (StatusCode, Value) {
        self.raw(Method::POST, path, Some(key), Some(&body.to_string())).await
    }

    pub async fn get(&self, path: &str, key: &str) -> (StatusCode, Value) {
        self.raw(Method::GET, path, Some(key), None).await
    }

    /// Creates a tenant with the stack's admin token; returns (tenant id, test key, live key).
    pub async fn tenant(&self, stack: &TestStack, name: &str) -> (String, String, String) {
        let (status, body) = self.post("/tenants", &stack.admin_token, &serde_json::json!({"name": name})).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        let s = |v: &Value| v.as_str().unwrap().to_owned();
        (s(&body["id"]), s(&body["api_keys"]["test"]), s(&body["api_keys"]["live"]))
    }
}

/// How many items a table holds (test tables are small), to prove what a request did or did not store.
pub async fn item_count(stack: &TestStack, table: &str) -> i32 {
    item_count_in(&stack.aws, table).await
}

pub async fn item_count_in(aws: &billy_aws::AwsClients, table: &str) -> i32 {
    aws.dynamodb
        .scan()
        .table_name(table)
        .select(aws_sdk_dynamodb::types::Select::Count)
        .consistent_read(true)
        .send()
        .await
        .unwrap()
        .count
}

/// The item stored under (`pk`, `sk`) in `table`, read consistently, as DynamoDB holds it.
pub async fn stored_item(
    aws: &billy_aws::AwsClients,
    table: &str,
    pk: &str,
    sk: &str,
) -> Option<std::collections::HashMap<String, aws_sdk_dynamodb::types::AttributeValue>> {
    let s = |v: &str| aws_sdk_dynamodb::types::AttributeValue::S(v.to_owned());
    aws.dynamodb
        .get_item()
        .table_name(table)
        .key("PK", s(pk))
        .key("SK", s(sk))
        .consistent_read(true)
        .send()
        .await
        .unwrap()
        .item
}

/// Asserts the SPEC error shape and returns the error's code.
pub fn error_code(body: &Value) -> String {
    let error = &body["error"];
    assert!(error["type"].is_string(), "error.type in {body}");
    assert!(error["message"].is_string(), "error.message in {body}");
    assert!(error.get("param").is_some(), "error.param in {body}");
    error["code"].as_str().unwrap_or_else(|| panic!("error.code in {body}")).to_owned()
}

/// Every item of a table as text, binary attributes inflated where they are deflated (audit
/// snapshots travel that way): what a search for leaked data must read.
pub async fn table_text(aws: &billy_aws::AwsClients, table: &str) -> Vec<String> {
    use std::io::Read;
    let mut out = Vec::new();
    let mut start = None;
    loop {
        let page = aws
            .dynamodb
            .scan()
            .table_name(table)
            .consistent_read(true)
            .set_exclusive_start_key(start)
            .send()
            .await
            .unwrap();
        for item in page.items.unwrap_or_default() {
            let mut text = format!("{item:?}");
            for value in item.values() {
                if let aws_sdk_dynamodb::types::AttributeValue::B(bytes) = value {
                    let mut inflated = String::new();
                    if flate2::read::DeflateDecoder::new(bytes.as_ref()).read_to_string(&mut inflated).is_ok() {
                        text.push_str(&inflated);
                    }
                }
            }
            out.push(text);
        }
        start = page.last_evaluated_key;
        if start.is_none() {
            return out;
        }
    }
}
