//! Payment methods and payout destinations (the same shape, kept apart), listed per customer
//! through GSI3.

use crate::dynamo::{ENTITY_SK, entity_pk};
use crate::store::{IndexQuery, Store};
use async_trait::async_trait;
use billy_core::DomainResult;
use billy_core::ids::Id;
use billy_core::payment_method::PaymentMethod;
use billy_core::ports::PaymentMethodRepository;
use billy_core::tenant::Scope;

#[derive(Debug, Clone)]
pub struct DynamoPaymentMethods {
    store: Store,
    /// `payment_method` or `payout_destination`: the customer's list this repository reads.
    entity: &'static str,
}

impl DynamoPaymentMethods {
    pub fn new(client: aws_sdk_dynamodb::Client, tables: crate::Tables) -> Self {
        Self { store: Store::new(client, tables), entity: "payment_method" }
    }

    /// The payout destinations' repository.
    pub fn destinations(client: aws_sdk_dynamodb::Client, tables: crate::Tables) -> Self {
        Self { store: Store::new(client, tables), entity: "payout_destination" }
    }
}

#[async_trait]
impl PaymentMethodRepository for DynamoPaymentMethods {
    async fn get(&self, scope: &Scope, id: &Id) -> DomainResult<Option<PaymentMethod>> {
        self.store.get(entity_pk(scope, id), ENTITY_SK).await
    }

    async fn get_many(&self, keys: &[(Scope, Id)]) -> DomainResult<Vec<PaymentMethod>> {
        self.store.get_many(keys).await
    }

    async fn for_customer(&self, scope: &Scope, customer: &Id) -> DomainResult<Vec<PaymentMethod>> {
        self.store.all(&IndexQuery::new("GSI3", format!("{}#{}", entity_pk(scope, customer), self.entity))).await
    }
}
