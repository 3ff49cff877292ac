//! The first real path through the runner: health, tenants and customers over HTTP, against
//! LocalStack and DynamoDB Local.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use billy_aws::audit::DynamoAudit;
use billy_core::ids::Id;
use billy_core::ports::AuditJournal;
use billy_core::tenant::{Mode, Scope};
use billy_e2e::{Api, TestStack, error_code, item_count};
use reqwest::{Method, StatusCode};
use serde_json::json;

#[tokio::test]
async fn health_reports_every_dependency_reachable() {
    let stack = TestStack::start().await;
    let api = Api::new(&stack);
    let (status, body) = api.raw(Method::GET, "/health", None, None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["status"], "ok");
    let names: Vec<&str> =
        body["dependencies"].as_array().unwrap().iter().map(|d| d["name"].as_str().unwrap()).collect();
    assert_eq!(
        names,
        vec!["dynamodb:main", "dynamodb:audit", "sqs:bill", "sqs:charge", "sqs:payout", "sqs:webhook", "eventbridge"]
    );
    assert!(body["dependencies"].as_array().unwrap().iter().all(|d| d["ok"] == true));
    stack.stop().await;
}

#[tokio::test]
async fn health_reports_a_missing_table_as_degraded() {
    let stack = TestStack::start().await;
    stack.aws.dynamodb.delete_table().table_name(&stack.tables().audit).send().await.unwrap();
    let (status, body) = Api::new(&stack).raw(Method::GET, "/health", None, None).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(body["status"], "degraded");
    let audit = body["dependencies"].as_array().unwrap().iter().find(|d| d["name"] == "dynamodb:audit").unwrap();
    assert_eq!(audit["ok"], false);
    assert_eq!(audit["error"], "ServiceError", "only the kind of error, no internals: {audit}");
    stack.stop().await;
}

#[tokio::test]
async fn creating_a_tenant_needs_the_admin_token_and_returns_both_keys_once() {
    let stack = TestStack::start().await;
    let api = Api::new(&stack);
    let main = stack.tables().main;
    // GIVEN no admin token, or a wrong one: 401 and nothing stored
    for key in [None, Some("not-the-token")] {
        let (status, body) = api.raw(Method::POST, "/tenants", key, Some(r#"{"name":"Acme"}"#)).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert_eq!(error_code(&body), "invalid_api_key");
    }
    assert_eq!(item_count(&stack, &main).await, 0);
    // WHEN the admin creates one
    let (status, body) = api.post("/tenants", &stack.admin_token, &json!({"name": "Acme"})).await;
    // THEN both keys come back, and only their hashes are stored (tenant + 2 key items)
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["object"], "tenant");
    let test_key = body["api_keys"]["test"].as_str().unwrap();
    assert!(test_key.starts_with("sk_test_"));
    assert!(body["api_keys"]["live"].as_str().unwrap().starts_with("sk_live_"));
    assert_eq!(item_count(&stack, &main).await, 3);
    let dump = format!("{:?}", stack.aws.dynamodb.scan().table_name(&main).send().await.unwrap().items);
    assert!(!dump.contains(test_key), "the secret key is never stored");
    // AND bad bodies are 400s that store nothing
    for (bad, code) in [
        (r#"{"name": ""}"#, "parameter_invalid"),
        (r#"{"name": "A", "plan": "gold"}"#, "parameter_invalid"),
        (r#"{"name": 5}"#, "parameter_invalid"),
        (r#"{"name": "A""#, "json_invalid"),
    ] {
        let (status, body) = api.raw(Method::POST, "/tenants", Some(&stack.admin_token), Some(bad)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {body}");
        assert_eq!(error_code(&body), code, "{bad}");
    }
    assert_eq!(item_count(&stack, &main).await, 3);
    stack.stop().await;
}

#[tokio::test]
async fn a_customer_is_created_with_its_audit_event_and_read_back() {
    let stack = TestStack::start().await;
    let api = Api::new(&stack);
    let (tenant, key, _) = api.tenant(&stack, "Acme").await;
    // WHEN a customer is created
    let (status, created) = api
        .post(
            "/customers",
            &key,
            &json!({"name": "Ada Lovelace", "email": "ada@example.com", "metadata": {"crm": "42"}}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let id = created["id"].as_str().unwrap();
    assert!(id.starts_with("cus_"));
    assert_eq!(created["object"], "customer");
    assert_eq!(created["livemode"], false);
    assert!(created["created"].as_str().unwrap().ends_with('Z'), "UTC RFC 3339");
    // THEN it reads back as created
    let (status, fetched) = api.get(&format!("/customers/{id}"), &key).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(fetched, created);
    // AND its audit trail holds exactly one event, with the frozen snapshot and the request id
    let audit = DynamoAudit::new(stack.aws.dynamodb.clone(), stack.tables());
    let scope = Scope::new(Id::from_trusted(tenant), Mode::Test);
    let events = audit.for_entity(&scope, &Id::from_trusted(id.to_owned())).await.unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].action, "customer.created");
    assert_eq!(events[0].after.as_ref().unwrap()["email"], "ada@example.com");
    assert!(events[0].request_id.is_some());
    assert!(matches!(events[0].actor, billy_core::audit::Actor::ApiKey { .. }));
    assert_eq!(audit.for_account(&scope, &Id::from_trusted(id.to_owned())).await.unwrap().len(), 1);
    stack.stop().await;
}

#[tokio::test]
async fn customers_list_newest_first_with_cursor_pagination() {
    let stack = TestStack::start().await;
    let api = Api::new(&stack);
    let (_, key, _) = api.tenant(&stack, "Acme").await;
    let mut ids = Vec::new();
    for i in 0..5 {
        let (_, c) = api.post("/customers", &key, &json!({"name": format!("c{i}")})).await;
        ids.push(c["id"].as_str().unwrap().to_owned());
        // Ids are time-ordered to the millisecond.
        tokio::time::sleep(std::time::Duration::from_millis(3)).await;
    }
    ids.reverse();
    let (status, page1) = api.get("/customers?limit=2", &key).await;
    assert_eq!(status, StatusCode::OK);
    let page_ids = |p: &serde_json::Value| -> Vec<String> {
        p["data"].as_array().unwrap().iter().map(|c| c["id"].as_str().unwrap().to_owned()).collect()
    };
    assert_eq!(page_ids(&page1), ids[..2]);
    assert_eq!(page1["has_more"], true);
    let cursor = page1["next_cursor"].as_str().unwrap();
    let (_, page2) = api.get(&format!("/customers?limit=2&starting_after={cursor}"), &key).await;
    assert_eq!(page_ids(&page2), ids[2..4]);
    let (_, page3) =
        api.get(&format!("/customers?limit=2&starting_after={}", page2["next_cursor"].as_str().unwrap()), &key).await;
    assert_eq!(page_ids(&page3), ids[4..]);
    assert_eq!(page3["has_more"], false);
    assert!(page3["next_cursor"].is_null());
    for bad in ["limit=0", "limit=101", "limit=x", "starting_after=inv_1"] {
        let (status, body) = api.get(&format!("/customers?{bad}"), &key).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}");
        error_code(&body);
    }
    stack.stop().await;
}

#[tokio::test]
async fn bad_customer_input_is_a_clear_4xx_and_stores_nothing() {
    let stack = TestStack::start().await;
    let api = Api::new(&stack);
    let (_, key, _) = api.tenant(&stack, "Acme").await;
    let (main, audit) = (stack.tables().main, stack.tables().audit);
    let before = (item_count(&stack, &main).await, item_count(&stack, &audit).await);
    let oversize = format!(r#"{{"name": "{}"}}"#, "x".repeat(70 * 1024));
    let cases: Vec<(&str, StatusCode, &str, Option<&str>)> = vec![
        ("{not json", StatusCode::BAD_REQUEST, "json_invalid", None),
        (r#"{"name": "A"} trailing"#, StatusCode::BAD_REQUEST, "json_invalid", None),
        (r#"{"name": 42}"#, StatusCode::BAD_REQUEST, "parameter_invalid", Some("name")),
        (r#"{"nickname": "A"}"#, StatusCode::BAD_REQUEST, "parameter_invalid", None),
        (r#"{"email": "not-an-email"}"#, StatusCode::BAD_REQUEST, "email_invalid", Some("email")),
        (r#"{"email": "a@b"}"#, StatusCode::BAD_REQUEST, "email_invalid", Some("email")),
        (r#"{"metadata": {"k": 1}}"#, StatusCode::BAD_REQUEST, "parameter_invalid", Some("metadata.k")),
        (r#"[1, 2]"#, StatusCode::BAD_REQUEST, "parameter_invalid", None),
        (&oversize, StatusCode::PAYLOAD_TOO_LARGE, "body_too_large", None),
    ];
    for (body, status, code, param) in cases {
        let (got, answer) = api.raw(Method::POST, "/customers", Some(&key), Some(body)).await;
        assert_eq!(got, status, "{}: {answer}", &body[..body.len().min(40)]);
        assert_eq!(error_code(&answer), code, "{}", &body[..body.len().min(40)]);
        if let Some(param) = param {
            assert_eq!(answer["error"]["param"], param);
        }
    }
    // A metadata map past its limits
    let many: serde_json::Map<String, serde_json::Value> = (0..51).map(|i| (format!("k{i}"), json!("v"))).collect();
    let (status, body) = api.post("/customers", &key, &json!({"metadata": many})).await;
    assert_eq!((status, error_code(&body)), (StatusCode::BAD_REQUEST, "metadata_invalid".to_owned()));
    assert_eq!((item_count(&stack, &main).await, item_count(&stack, &audit).await), before, "nothing stored");
    // Unknown ids and malformed ids are both plain 404s
    for id in ["cus_01m7zzzzzzzzzzzzzzzzzzzzzz", "cus_bad", "inv_01m7zzzzzzzzzzzzzzzzzzzzzz"] {
        let (status, body) = api.get(&format!("/customers/{id}"), &key).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{id}");
        assert_eq!(error_code(&body), "resource_missing");
    }
    // Missing or malformed keys are 401s; unknown routes 404
    let (status, _) = api.raw(Method::GET, "/customers", None, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _) = api.get("/customers", "sk_test_00000000000000000000000000000000").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, body) = api.get("/nowhere", &key).await;
    assert_eq!((status, error_code(&body)), (StatusCode::NOT_FOUND, "route_not_found".to_owned()));
    stack.stop().await;
}

#[tokio::test]
async fn tenants_and_modes_never_see_each_others_customers() {
    let stack = TestStack::start().await;
    let api = Api::new(&stack);
    let (_, a_test, a_live) = api.tenant(&stack, "A").await;
    let (_, b_test, _) = api.tenant(&stack, "B").await;
    let (_, customer) = api.post("/customers", &a_test, &json!({"name": "Only A test"})).await;
    let path = format!("/customers/{}", customer["id"].as_str().unwrap());
    // Another tenant, and the same tenant's live mode, get 404 (not 403) and empty lists
    for key in [&b_test, &a_live] {
        let (status, body) = api.get(&path, key).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert_eq!(error_code(&body), "resource_missing");
        let (_, list) = api.get("/customers", key).await;
        assert_eq!(list["data"], json!([]));
    }
    let (status, _) = api.get(&path, &a_test).await;
    assert_eq!(status, StatusCode::OK);
    // Live-mode objects say so
    let (_, live) = api.post("/customers", &a_live, &json!({"name": "Live"})).await;
    assert_eq!(live["livemode"], true);
    stack.stop().await;
}
