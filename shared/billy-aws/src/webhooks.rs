//! Outgoing webhooks in BillyTable (endpoints listed per scope; deliveries listed per endpoint and,
//! while an attempt is due, in the due index), and the HTTP sender that delivers them.

use crate::dynamo::{
    DUE_SHARDS, ENTITY_SK, GSI1PK, GSI1SK, GSI2PK, GSI2SK, Item, PK, SK, due_sk, entity_pk, list_pk, sdk_error,
    shard_of,
};
use crate::items::child_of;
use crate::store::{HasId, IndexQuery, Store, keyed};
use async_trait::async_trait;
use billy_core::ids::Id;
use billy_core::page::{Page, PageRequest};
use billy_core::ports::{WebhookRepository, WebhookSender};
use billy_core::tenant::Scope;
use billy_core::webhook::{
    Destination, LocalEndpoints, SIGNATURE_HEADER, SendOutcome, WebhookDelivery, WebhookEndpoint, is_link_local,
    is_public,
};
use billy_core::{DomainError, DomainResult};
use chrono::{DateTime, Utc};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

const ENDPOINT: &str = "webhook_endpoint";
const DELIVERY: &str = "webhook_delivery";

impl HasId for WebhookDelivery {
    fn id(&self) -> &Id {
        &self.id
    }
}

/// An endpoint: listed in its scope (GSI1) until it is deleted.
pub fn endpoint_item(scope: &Scope, e: &WebhookEndpoint) -> DomainResult<Item> {
    let listed = (!e.deleted).then(|| (list_pk(scope, ENDPOINT), e.id.to_string()));
    keyed(
        e,
        &[
            (PK, Some(entity_pk(scope, &e.id))),
            (SK, Some(ENTITY_SK.to_owned())),
            (GSI1PK, listed.as_ref().map(|(p, _)| p.clone())),
            (GSI1SK, listed.map(|(_, s)| s)),
        ],
    )
}

/// A delivery: listed under its endpoint (GSI3), and in the due index (GSI2, `WEBHOOK#<shard>`)
/// while an attempt is scheduled.
pub fn delivery_item(scope: &Scope, d: &WebhookDelivery) -> DomainResult<Item> {
    let due =
        d.next_attempt_at.map(|at| (format!("WEBHOOK#{}", shard_of(&d.id, DUE_SHARDS)), due_sk(&at, scope, &d.id)));
    let mut keys = vec![(PK, Some(entity_pk(scope, &d.id))), (SK, Some(ENTITY_SK.to_owned()))];
    keys.extend(child_of(scope, &d.endpoint, DELIVERY, &d.id));
    keys.push((GSI2PK, due.as_ref().map(|(p, _)| p.clone())));
    keys.push((GSI2SK, due.map(|(_, s)| s)));
    keyed(d, &keys)
}

#[derive(Debug, Clone)]
pub struct DynamoWebhooks {
    store: Store,
}

impl DynamoWebhooks {
    pub fn new(client: aws_sdk_dynamodb::Client, tables: crate::Tables) -> Self {
        Self { store: Store::new(client, tables) }
    }

    async fn put(
        &self,
        put: aws_sdk_dynamodb::types::Put,
    ) -> Result<(), aws_sdk_dynamodb::error::SdkError<aws_sdk_dynamodb::operation::put_item::PutItemError>> {
        self.store
            .client
            .put_item()
            .table_name(put.table_name())
            .set_item(Some(put.item().clone()))
            .set_condition_expression(put.condition_expression().map(str::to_owned))
            .set_expression_attribute_names(put.expression_attribute_names().cloned())
            .set_expression_attribute_values(put.expression_attribute_values().cloned())
            .send()
            .await
            .map(|_| ())
    }
}

fn conditional_failed(
    e: &aws_sdk_dynamodb::error::SdkError<aws_sdk_dynamodb::operation::put_item::PutItemError>,
) -> bool {
    e.as_service_error()
        .is_some_and(aws_sdk_dynamodb::operation::put_item::PutItemError::is_conditional_check_failed_exception)
}

#[async_trait]
impl WebhookRepository for DynamoWebhooks {
    async fn endpoint(&self, scope: &Scope, id: &Id) -> DomainResult<Option<WebhookEndpoint>> {
        self.store.get(entity_pk(scope, id), ENTITY_SK).await
    }

    async fn endpoints(&self, scope: &Scope) -> DomainResult<Vec<WebhookEndpoint>> {
        let mut all: Vec<WebhookEndpoint> = self.store.all(&IndexQuery::new("GSI1", list_pk(scope, ENDPOINT))).await?;
        all.retain(|e| !e.deleted);
        all.sort_by(|a, b| b.id.cmp(&a.id));
        Ok(all)
    }

    async fn delivery(&self, scope: &Scope, id: &Id) -> DomainResult<Option<WebhookDelivery>> {
        self.store.get(entity_pk(scope, id), ENTITY_SK).await
    }

    async fn deliveries(
        &self,
        scope: &Scope,
        endpoint: &Id,
        page: &PageRequest,
    ) -> DomainResult<Page<WebhookDelivery>> {
        let partition = format!("{}#{DELIVERY}", entity_pk(scope, endpoint));
        self.store.page(scope, &IndexQuery::new("GSI3", partition), page).await
    }

    async fn create_delivery(&self, scope: &Scope, delivery: &WebhookDelivery) -> DomainResult<bool> {
        match self.put(self.store.put_new(delivery_item(scope, delivery)?)?).await {
            Ok(()) => Ok(true),
            Err(e) if conditional_failed(&e) => Ok(false),
            Err(e) => Err(sdk_error(e)),
        }
    }

    async fn save_delivery(&self, scope: &Scope, delivery: &WebhookDelivery, expected: u64) -> DomainResult<()> {
        match self.put(self.store.put_versioned(delivery_item(scope, delivery)?, expected)?).await {
            Ok(()) => Ok(()),
            Err(e) if conditional_failed(&e) => {
                Err(DomainError::conflict("version_conflict", "the delivery was changed meanwhile; retry"))
            }
            Err(e) => Err(sdk_error(e)),
        }
    }

    async fn deliveries_due(&self, shard: u32, before: DateTime<Utc>, limit: usize) -> DomainResult<Vec<(Scope, Id)>> {
        crate::subscriptions::due_in(&self.store, &format!("WEBHOOK#{shard}"), before, limit).await
    }
}

/// Resolves endpoint names so the connection goes to exactly the addresses checked (a name cannot
/// be re-pointed between the check and the connect): for a public-only destination every address
/// must be public; otherwise (a local test-mode receiver) none may be link-local.
#[derive(Debug)]
struct Checked {
    public_only: bool,
}

fn allowed(public_only: bool, addrs: &[SocketAddr]) -> bool {
    !addrs.is_empty() && addrs.iter().all(|a| if public_only { is_public(a.ip()) } else { !is_link_local(a.ip()) })
}

impl reqwest::dns::Resolve for Checked {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let host = name.as_str().to_owned();
        let public_only = self.public_only;
        Box::pin(async move {
            let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            if !allowed(public_only, &addrs) {
                return Err(format!("{host} resolves to an address endpoints may not use").into());
            }
            let addrs: reqwest::dns::Addrs = Box::new(addrs.into_iter());
            Ok(addrs)
        })
    }
}

/// Sends deliveries over HTTP(S): one request each, a short timeout, no redirects followed (a
/// redirect could lead anywhere, a private address included), no proxy (it would resolve the
/// names instead of the checked resolver).
#[derive(Debug, Clone)]
pub struct HttpWebhookSender {
    /// For public-only destinations. `None` if the client could not be built: every send then
    /// fails (closed), rather than falling back to a client without these guards.
    public: Option<reqwest::Client>,
    /// For local test-mode receivers (where the deployment allows them).
    local: Option<reqwest::Client>,
    local_endpoints: LocalEndpoints,
}

/// Each attempt's bound: a slow receiver fails this attempt and is retried later; it never holds
/// up another endpoint's delivery (each delivery is its own message).
pub const SEND_TIMEOUT: Duration = Duration::from_secs(10);

impl HttpWebhookSender {
    pub fn new(timeout: Duration, local_endpoints: LocalEndpoints) -> Self {
        let client = |public_only: bool| {
            reqwest::Client::builder()
                .timeout(timeout)
                .connect_timeout(Duration::from_secs(3))
                .redirect(reqwest::redirect::Policy::none())
                .no_proxy()
                .user_agent("Billy-Webhooks/1")
                .dns_resolver(Arc::new(Checked { public_only }))
                .build()
                .map_err(|e| tracing::error!(error = %e, "webhook HTTP client not built; deliveries will fail"))
                .ok()
        };
        Self { public: client(true), local: client(false), local_endpoints }
    }

    /// From the function's configuration: `WEBHOOK_LOCAL_ENDPOINTS=allow` (the local runner only)
    /// lets test-mode endpoints point at loopback and private receivers.
    pub fn from_setting(setting: Option<&str>) -> Self {
        let local = if setting == Some("allow") { LocalEndpoints::AllowedInTestMode } else { LocalEndpoints::Refused };
        Self::new(SEND_TIMEOUT, local)
    }
}

#[async_trait]
impl WebhookSender for HttpWebhookSender {
    async fn send(&self, destination: &Destination, signature: &str, body: &str) -> SendOutcome {
        let client = if destination.public_only { &self.public } else { &self.local };
        let Some(client) = client else {
            return SendOutcome { status_code: None, error: Some("not sent: no HTTP client".into()), duration_ms: 0 };
        };
        let started = Instant::now();
        let sent = client
            .post(&destination.url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header(SIGNATURE_HEADER, signature)
            .body(body.to_owned())
            .send()
            .await;
        let duration_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        match sent {
            Ok(response) => SendOutcome { status_code: Some(response.status().as_u16()), error: None, duration_ms },
            Err(e) => {
                let why = if e.is_timeout() {
                    "timed out"
                } else if e.is_connect() {
                    "could not connect"
                } else {
                    "request failed"
                };
                SendOutcome { status_code: None, error: Some(why.to_owned()), duration_ms }
            }
        }
    }

    async fn check(&self, destination: &Destination) -> DomainResult<()> {
        if destination.host.parse::<std::net::IpAddr>().is_ok() {
            // An address literal was checked with the URL.
            return Ok(());
        }
        let addrs: Vec<SocketAddr> = tokio::net::lookup_host((destination.host.as_str(), 443))
            .await
            .map_err(|_| {
                DomainError::invalid("url_unresolvable", "the endpoint's host name does not resolve", Some("url"))
            })?
            .collect();
        if !allowed(destination.public_only, &addrs) {
            return Err(DomainError::invalid(
                "url_not_public",
                "endpoints may not point at private, loopback or link-local addresses",
                Some("url"),
            ));
        }
        Ok(())
    }

    fn local_endpoints(&self) -> LocalEndpoints {
        self.local_endpoints
    }
}
