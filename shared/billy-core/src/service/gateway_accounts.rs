//! A tenant's own gateway accounts: connect or update one (credentials sealed at once), list them.

use crate::audit::{Change, Context};
use crate::error::{DomainError, DomainResult};
use crate::gateway_account::{AccountSecrets, GatewayAccount};
use crate::ids::IdKind;
use crate::ports::{Ports, Write};

/// Connects an account at `gateway` (or replaces its credentials): they are sealed with KMS, bound
/// to this tenant and gateway, before anything is stored, and its audit event holds only the view.
pub async fn put_account(
    p: &Ports<'_>,
    ctx: &Context,
    gateway: &str,
    secrets: AccountSecrets,
    merchant_account: Option<String>,
) -> DomainResult<GatewayAccount> {
    secrets.validate(gateway, merchant_account.as_deref())?;
    let existing = p.accounts.for_scope(&ctx.scope).await?.into_iter().find(|a| a.gateway == gateway);
    let plaintext = serde_json::to_vec(&secrets).map_err(DomainError::unexpected)?;
    let sealed = p.secrets.seal(&plaintext, &GatewayAccount::seal_context(&ctx.scope.key(), gateway)).await?;
    use base64::Engine as _;
    let sealed = base64::engine::general_purpose::STANDARD.encode(sealed);
    let now = p.clock.now();
    let (account, expected, action) = match existing {
        Some(mut account) => {
            let expected = account.version;
            account.sealed = sealed;
            account.merchant_account = merchant_account;
            account.secrets_set = secrets.names();
            account.updated = now;
            account.version += 1;
            (account, Some(expected), "gateway_account.updated")
        }
        None => (
            GatewayAccount {
                id: ctx.new_id(p.ids, IdKind::GatewayAccount),
                gateway: gateway.to_owned(),
                merchant_account,
                sealed,
                secrets_set: secrets.names(),
                created: now,
                updated: now,
                livemode: ctx.scope.livemode(),
                version: 1,
            },
            None,
            "gateway_account.created",
        ),
    };
    let view = account.view();
    let event = ctx.record(
        p.ids,
        now,
        Change {
            entity: &account.id,
            entity_type: "gateway_account",
            account: None,
            action,
            version: account.version,
            reason: None,
            before: None,
            after: Some(&view),
            change: None,
        },
    );
    p.unit.commit(&ctx.scope, vec![Write::GatewayAccount { account: account.clone(), expected }], vec![event]).await?;
    p.gateways.forget(&ctx.scope);
    Ok(account)
}

pub async fn list_accounts(p: &Ports<'_>, ctx: &Context) -> DomainResult<Vec<GatewayAccount>> {
    p.accounts.for_scope(&ctx.scope).await
}
