//! Tenants' gateway accounts: listed per scope (GSI1), and found by id alone for the webhooks that
//! name them (a lookup item written with the account).

use crate::dynamo::{ENTITY_SK, entity_pk, list_pk};
use crate::store::{IndexQuery, Store};
use async_trait::async_trait;
use billy_core::DomainResult;
use billy_core::gateway_account::GatewayAccount;
use billy_core::ids::Id;
use billy_core::ports::GatewayAccountRepository;
use billy_core::tenant::Scope;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone)]
pub struct DynamoGatewayAccounts {
    store: Store,
}

impl DynamoGatewayAccounts {
    pub fn new(client: aws_sdk_dynamodb::Client, tables: crate::Tables) -> Self {
        Self { store: Store::new(client, tables) }
    }
}

/// Which scope an account belongs to.
#[derive(Debug, Serialize, Deserialize)]
pub struct AccountScope {
    pub scope: Scope,
}

pub fn lookup_pk(id: &Id) -> String {
    format!("GWACCOUNT#{id}")
}

#[async_trait]
impl GatewayAccountRepository for DynamoGatewayAccounts {
    async fn for_scope(&self, scope: &Scope) -> DomainResult<Vec<GatewayAccount>> {
        self.store.all(&IndexQuery::new("GSI1", list_pk(scope, "gateway_account"))).await
    }

    async fn by_id(&self, id: &Id) -> DomainResult<Option<(Scope, GatewayAccount)>> {
        let Some(found) = self.store.get::<AccountScope>(lookup_pk(id), ENTITY_SK).await? else { return Ok(None) };
        let account: Option<GatewayAccount> = self.store.get(entity_pk(&found.scope, id), ENTITY_SK).await?;
        Ok(account.map(|a| (found.scope, a)))
    }
}
