//! `POST /v1/tenants`: creates a tenant with the deployment's admin token; returns its keys once.

use async_trait::async_trait;
use billy_aws::AwsClients;
use billy_aws::tenants::DynamoTenants;
use billy_core::clock::SystemClock;
use billy_core::ids::RandomIds;
use billy_core::ports::TenantRepository;
use billy_core::tenant::{CreatedTenant, create_tenant};
use billy_core::{DomainError, DomainResult};
use billy_lambda::HttpFunction;
use billy_lambda::config::{Config, MissingVariable};
use billy_lambda::http::{bearer, parse_json, request_id, respond};
use lambda_http::http::StatusCode;
use lambda_http::{Body, Request, Response};
use serde::Deserialize;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateTenant {
    name: String,
}

#[derive(Debug)]
pub struct App {
    tenants: Box<dyn TenantRepository>,
    /// SHA-256 of the admin token: comparing digests keeps the check independent of where the
    /// presented token first differs.
    admin_token_digest: [u8; 32],
    ids: RandomIds<SystemClock>,
}

impl App {
    pub fn new(config: &Config, aws: &AwsClients) -> Result<Self, MissingVariable> {
        Ok(Self::with_repository(
            Box::new(DynamoTenants::new(aws.dynamodb.clone(), config.tables()?)),
            config.require("BILLY_ADMIN_TOKEN")?,
        ))
    }

    pub fn with_repository(tenants: Box<dyn TenantRepository>, admin_token: &str) -> Self {
        Self {
            tenants,
            admin_token_digest: Sha256::digest(admin_token.as_bytes()).into(),
            ids: RandomIds::new(SystemClock),
        }
    }

    async fn create(&self, request: &Request) -> DomainResult<Value> {
        let presented = bearer(request).unwrap_or_default();
        let digest: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        if presented.is_empty() || digest != self.admin_token_digest {
            return Err(DomainError::Unauthenticated("invalid admin token".into()));
        }
        let body: CreateTenant = parse_json(request)?;
        let CreatedTenant { tenant, test_key, live_key } =
            create_tenant(self.tenants.as_ref(), &SystemClock, &self.ids, request_id(request), &body.name).await?;
        Ok(json!({
            "id": tenant.id,
            "object": "tenant",
            "name": tenant.name,
            "created": tenant.created,
            "api_keys": {"test": test_key.expose(), "live": live_key.expose()},
        }))
    }
}

#[async_trait]
impl HttpFunction for App {
    async fn handle(&self, request: Request) -> Response<Body> {
        respond(StatusCode::CREATED, self.create(&request).await)
    }
}
