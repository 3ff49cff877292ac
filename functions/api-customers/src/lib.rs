//! `POST /v1/customers`, `GET /v1/customers`, `GET /v1/customers/{id}`.

use async_trait::async_trait;
use billy_aws::AwsClients;
use billy_aws::customers::DynamoCustomers;
use billy_aws::tenants::DynamoTenants;
use billy_core::DomainResult;
use billy_core::clock::SystemClock;
use billy_core::customer::{Customer, CustomerDeps, NewCustomer, create_customer, get_customer, list_customers};
use billy_core::ids::{IdKind, RandomIds};
use billy_core::page::{Page, PageRequest};
use billy_core::ports::{CustomerRepository, TenantRepository};
use billy_lambda::HttpFunction;
use billy_lambda::config::{Config, MissingVariable};
use billy_lambda::http::{
    authenticate, error_response, method_not_allowed, parse_json, path_param, query_param, respond,
};
use lambda_http::http::{Method, StatusCode};
use lambda_http::{Body, Request, Response};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateCustomer {
    name: Option<String>,
    email: Option<String>,
    description: Option<String>,
    #[serde(default)]
    metadata: BTreeMap<String, String>,
}

/// The API's view of a customer.
#[derive(Debug, Serialize)]
pub struct CustomerView {
    id: String,
    object: &'static str,
    created: chrono::DateTime<chrono::Utc>,
    name: Option<String>,
    email: Option<String>,
    description: Option<String>,
    metadata: BTreeMap<String, String>,
    test_clock: Option<String>,
    default_payment_method: Option<String>,
    livemode: bool,
}

impl From<Customer> for CustomerView {
    fn from(c: Customer) -> Self {
        Self {
            id: c.id.to_string(),
            object: "customer",
            created: c.created,
            name: c.name,
            email: c.email,
            description: c.description,
            metadata: c.metadata,
            test_clock: c.test_clock.map(|i| i.to_string()),
            default_payment_method: c.default_payment_method.map(|i| i.to_string()),
            livemode: c.livemode,
        }
    }
}

#[derive(Debug)]
pub struct App {
    tenants: Box<dyn TenantRepository>,
    customers: Box<dyn CustomerRepository>,
    ids: RandomIds<SystemClock>,
}

impl App {
    pub fn new(config: &Config, aws: &AwsClients) -> Result<Self, MissingVariable> {
        let tables = config.tables()?;
        Ok(Self {
            tenants: Box::new(DynamoTenants::new(aws.dynamodb.clone(), tables.clone())),
            customers: Box::new(DynamoCustomers::new(aws.dynamodb.clone(), tables)),
            ids: RandomIds::new(SystemClock),
        })
    }

    async fn create(&self, request: &Request) -> DomainResult<CustomerView> {
        let ctx = authenticate(self.tenants.as_ref(), request).await?;
        let body: CreateCustomer = parse_json(request)?;
        let deps = CustomerDeps { customers: self.customers.as_ref(), clock: &SystemClock, ids: &self.ids };
        let input =
            NewCustomer { name: body.name, email: body.email, description: body.description, metadata: body.metadata };
        create_customer(deps, &ctx, input).await.map(CustomerView::from)
    }

    async fn get(&self, request: &Request, id: &str) -> DomainResult<CustomerView> {
        let ctx = authenticate(self.tenants.as_ref(), request).await?;
        get_customer(self.customers.as_ref(), &ctx, id).await.map(CustomerView::from)
    }

    async fn list(&self, request: &Request) -> DomainResult<Page<CustomerView>> {
        let ctx = authenticate(self.tenants.as_ref(), request).await?;
        let page = PageRequest::parse(
            query_param(request, "limit").as_deref(),
            query_param(request, "starting_after").as_deref(),
            IdKind::Customer,
        )?;
        Ok(list_customers(self.customers.as_ref(), &ctx, &page).await?.map(CustomerView::from))
    }
}

#[async_trait]
impl HttpFunction for App {
    async fn handle(&self, request: Request) -> Response<Body> {
        let id = path_param(&request, "id");
        match (request.method(), id.is_empty()) {
            (&Method::POST, true) => respond(StatusCode::CREATED, self.create(&request).await),
            (&Method::GET, true) => respond(StatusCode::OK, self.list(&request).await),
            (&Method::GET, false) => match self.get(&request, &id).await {
                Ok(view) => respond(StatusCode::OK, Ok(view)),
                Err(err) => error_response(&err),
            },
            _ => method_not_allowed(),
        }
    }
}
