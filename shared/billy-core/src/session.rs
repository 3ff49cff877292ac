//! Signed, expiring browser credentials: the dashboard's session (an API key exchanged for an
//! hour of read-only access, kept in an HttpOnly cookie), a customer portal link, and the portal
//! session that following the link starts. Each is `<claims>.<mac>`: base64url JSON claims and
//! their HMAC-SHA-256 by the deployment's session key (which never leaves KMS), so an altered or
//! made-up token fails the check before anything is read. Nothing is stored: a token is
//! worthless once it expires, and a dashboard session dies with its API key.

use crate::audit::{Actor, Context};
use crate::error::{DomainError, DomainResult};
use crate::ids::{Id, IdGenerator, IdKind};
use crate::ports::{Ports, SessionSigner, TenantRepository};
use crate::tenant::{ApiKeyHash, ApiKeySecret, Mode, Scope};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

/// How long a dashboard session lasts.
pub const DASHBOARD_SESSION: Duration = Duration::hours(1);
/// How long a portal session lasts once its link is followed.
pub const PORTAL_SESSION: Duration = Duration::hours(1);
/// A portal link's default lifetime, and the range a caller may ask for (in seconds).
pub const PORTAL_LINK_DEFAULT_SECONDS: i64 = 300;
pub const PORTAL_LINK_SECONDS: std::ops::RangeInclusive<i64> = 5..=3600;
/// Tokens longer than this are refused unread.
const MAX_TOKEN: usize = 2048;

/// What a token is for: one kind is never accepted as another.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Purpose {
    Dashboard,
    PortalLink,
    Portal,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    pub purpose: Purpose,
    /// The session's own id (`bps_…` for portal links and sessions).
    pub id: Id,
    pub tenant: Id,
    pub mode: Mode,
    /// The API key a dashboard session was opened with, by its hash (never the key).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<ApiKeyHash>,
    /// The one customer a portal link or session shows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub customer: Option<Id>,
    /// Unix seconds.
    pub expires_at: i64,
}

impl Claims {
    pub fn scope(&self) -> Scope {
        Scope::new(self.tenant.clone(), self.mode)
    }

    pub fn expires(&self) -> DateTime<Utc> {
        DateTime::from_timestamp(self.expires_at, 0).unwrap_or_default()
    }
}

fn refused(what: &str) -> DomainError {
    DomainError::Unauthenticated(format!("{what} is not valid or has expired"))
}

/// Signs `claims` into a token.
pub async fn seal(signer: &dyn SessionSigner, claims: &Claims) -> DomainResult<String> {
    let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(claims).map_err(DomainError::unexpected)?);
    let mac = signer.sign(payload.as_bytes()).await?;
    Ok(format!("{payload}.{}", URL_SAFE_NO_PAD.encode(mac)))
}

/// The claims of a token that is genuine, of `purpose`, and not expired at `now`.
pub async fn open(
    signer: &dyn SessionSigner,
    token: &str,
    purpose: Purpose,
    now: DateTime<Utc>,
) -> DomainResult<Claims> {
    let what = match purpose {
        Purpose::Dashboard => "the dashboard session",
        Purpose::PortalLink => "this portal link",
        Purpose::Portal => "the portal session",
    };
    let (payload, mac) = token.split_once('.').filter(|_| token.len() <= MAX_TOKEN).ok_or_else(|| refused(what))?;
    let mac = URL_SAFE_NO_PAD.decode(mac).map_err(|_| refused(what))?;
    // What a token claims is read first, so a malformed, misdirected or expired one (a browser
    // keeps an expired cookie) costs no call to the key; it is believed only once the MAC holds.
    let raw = URL_SAFE_NO_PAD.decode(payload).map_err(|_| refused(what))?;
    let claims: Claims = serde_json::from_slice(&raw).map_err(|_| refused(what))?;
    if claims.purpose != purpose || claims.expires() <= now {
        return Err(refused(what));
    }
    if !signer.verify(payload.as_bytes(), &mac).await? {
        return Err(refused(what));
    }
    Ok(claims)
}

/// What the dashboard shows of its session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DashboardSession {
    pub object: &'static str,
    pub tenant: Id,
    pub livemode: bool,
    pub expires_at: DateTime<Utc>,
}

impl DashboardSession {
    fn of(claims: &Claims) -> Self {
        Self {
            object: "dashboard_session",
            tenant: claims.tenant.clone(),
            livemode: claims.mode == Mode::Live,
            expires_at: claims.expires(),
        }
    }
}

/// Exchanges an API key for a dashboard session token (the key itself goes no further).
pub async fn sign_in(
    tenants: &dyn TenantRepository,
    signer: &dyn SessionSigner,
    ids: &dyn IdGenerator,
    api_key: &str,
    now: DateTime<Utc>,
) -> DomainResult<(String, DashboardSession)> {
    let secret = ApiKeySecret::parse(api_key.trim())?;
    let record = tenants
        .key_by_hash(&secret.hash())
        .await?
        .ok_or_else(|| DomainError::Unauthenticated("invalid API key".into()))?;
    let claims = Claims {
        purpose: Purpose::Dashboard,
        id: ids.next(IdKind::PortalSession),
        tenant: record.tenant.clone(),
        mode: record.mode,
        key: Some(record.hash.clone()),
        customer: None,
        expires_at: (now + DASHBOARD_SESSION).timestamp(),
    };
    Ok((seal(signer, &claims).await?, DashboardSession::of(&claims)))
}

/// The session a dashboard token stands for, if it is genuine, current, and its API key still
/// exists.
pub async fn dashboard_session(
    tenants: &dyn TenantRepository,
    signer: &dyn SessionSigner,
    token: &str,
    now: DateTime<Utc>,
) -> DomainResult<(Context, DashboardSession)> {
    let claims = open(signer, token, Purpose::Dashboard, now).await?;
    let hash = claims.key.as_ref().ok_or_else(|| refused("the dashboard session"))?;
    let record = tenants
        .key_by_hash(hash)
        .await?
        .filter(|r| r.scope() == claims.scope())
        .ok_or_else(|| refused("the dashboard session"))?;
    let ctx = Context::new(claims.scope(), Actor::ApiKey { key: record.id }, None);
    Ok((ctx, DashboardSession::of(&claims)))
}

/// A portal link as the API answers it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PortalSession {
    pub id: Id,
    pub object: &'static str,
    pub customer: Id,
    pub livemode: bool,
    /// The link itself: a bearer credential for one customer's page until `expires_at`.
    pub url: Option<String>,
    pub expires_at: DateTime<Utc>,
    pub created: DateTime<Utc>,
}

/// Makes a signed link to `customer`'s own read-only page, under `base_url`.
pub async fn create_portal_session(
    p: &Ports<'_>,
    signer: &dyn SessionSigner,
    ctx: &Context,
    customer: &str,
    expires_in: Option<i64>,
    base_url: &str,
) -> DomainResult<PortalSession> {
    let now = p.clock.now();
    let seconds = expires_in.unwrap_or(PORTAL_LINK_DEFAULT_SECONDS);
    if !PORTAL_LINK_SECONDS.contains(&seconds) {
        return Err(DomainError::invalid(
            "parameter_invalid",
            format!("expires_in must be from {} to {} seconds", PORTAL_LINK_SECONDS.start(), PORTAL_LINK_SECONDS.end()),
            Some("expires_in"),
        ));
    }
    let found = crate::service::customer(p, ctx, customer, "").await?;
    let claims = Claims {
        purpose: Purpose::PortalLink,
        id: p.ids.next(IdKind::PortalSession),
        tenant: ctx.scope.tenant.clone(),
        mode: ctx.scope.mode,
        key: None,
        customer: Some(found.id.clone()),
        expires_at: (now + Duration::seconds(seconds)).timestamp(),
    };
    let token = seal(signer, &claims).await?;
    Ok(PortalSession {
        id: claims.id.clone(),
        object: "portal_session",
        customer: found.id,
        livemode: ctx.scope.mode == Mode::Live,
        url: Some(format!("{}/portal/{token}", base_url.trim_end_matches('/'))),
        expires_at: claims.expires(),
        created: now,
    })
}

/// Follows a portal link: a genuine, current link starts a portal session for its customer.
pub async fn follow_portal_link(signer: &dyn SessionSigner, link: &str, now: DateTime<Utc>) -> DomainResult<String> {
    let link = open(signer, link, Purpose::PortalLink, now).await?;
    let session = Claims { purpose: Purpose::Portal, expires_at: (now + PORTAL_SESSION).timestamp(), ..link };
    seal(signer, &session).await
}

/// The scope and customer of a portal session.
pub async fn portal_customer(signer: &dyn SessionSigner, token: &str, now: DateTime<Utc>) -> DomainResult<(Scope, Id)> {
    let claims = open(signer, token, Purpose::Portal, now).await?;
    let customer = claims.customer.clone().ok_or_else(|| refused("the portal session"))?;
    Ok((claims.scope(), customer))
}

/// An HMAC-SHA-256 signer over a local key, for tests of the rules above.
#[cfg(test)]
#[derive(Debug)]
pub(crate) struct LocalSigner(pub [u8; 32]);

#[cfg(test)]
#[async_trait::async_trait]
impl SessionSigner for LocalSigner {
    async fn sign(&self, message: &[u8]) -> DomainResult<Vec<u8>> {
        use hmac::{Hmac, Mac};
        let mut mac = Hmac::<sha2::Sha256>::new_from_slice(&self.0).map_err(DomainError::unexpected)?;
        mac.update(message);
        Ok(mac.finalize().into_bytes().to_vec())
    }

    async fn verify(&self, message: &[u8], mac: &[u8]) -> DomainResult<bool> {
        use hmac::{Hmac, Mac};
        let mut check = Hmac::<sha2::Sha256>::new_from_slice(&self.0).map_err(DomainError::unexpected)?;
        check.update(message);
        Ok(check.verify_slice(mac).is_ok())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 12, 5, 12, 0, 0).unwrap()
    }

    fn link(expires_in: i64) -> Claims {
        Claims {
            purpose: Purpose::PortalLink,
            id: Id::from_trusted("bps_1".into()),
            tenant: Id::from_trusted("ten_1".into()),
            mode: Mode::Test,
            key: None,
            customer: Some(Id::from_trusted("cus_1".into())),
            expires_at: (now() + Duration::seconds(expires_in)).timestamp(),
        }
    }

    #[tokio::test]
    async fn a_genuine_link_opens_until_it_expires_and_starts_an_hour_long_session() {
        let signer = LocalSigner([7; 32]);
        // GIVEN a 5-minute link to cus_1
        let token = seal(&signer, &link(300)).await.unwrap();
        // THEN it opens before its expiry and not at it
        assert_eq!(open(&signer, &token, Purpose::PortalLink, now()).await.unwrap(), link(300));
        let late = open(&signer, &token, Purpose::PortalLink, now() + Duration::seconds(300)).await;
        assert!(matches!(late, Err(DomainError::Unauthenticated(_))));
        // AND following it starts a portal session for cus_1 lasting an hour
        let session = follow_portal_link(&signer, &token, now()).await.unwrap();
        let (scope, customer) = portal_customer(&signer, &session, now() + Duration::minutes(59)).await.unwrap();
        assert_eq!((scope.tenant.as_str(), customer.as_str()), ("ten_1", "cus_1"));
        assert!(portal_customer(&signer, &session, now() + Duration::minutes(60)).await.is_err());
    }

    #[tokio::test]
    async fn an_altered_or_foreign_token_is_refused() {
        let signer = LocalSigner([7; 32]);
        let token = seal(&signer, &link(300)).await.unwrap();
        // WHEN its claims name another customer, keeping the signature
        let (_, mac) = token.split_once('.').unwrap();
        let mut other = link(300);
        other.customer = Some(Id::from_trusted("cus_2".into()));
        let forged = format!("{}.{mac}", URL_SAFE_NO_PAD.encode(serde_json::to_vec(&other).unwrap()));
        // THEN it is refused, as are one changed character, a token of another key, and garbage
        assert!(open(&signer, &forged, Purpose::PortalLink, now()).await.is_err());
        let mut flipped = token.clone().into_bytes();
        let i = flipped.len() - 3;
        flipped[i] = if flipped[i] == b'A' { b'B' } else { b'A' };
        assert!(open(&signer, &String::from_utf8(flipped).unwrap(), Purpose::PortalLink, now()).await.is_err());
        let stranger = seal(&LocalSigner([8; 32]), &link(300)).await.unwrap();
        assert!(open(&signer, &stranger, Purpose::PortalLink, now()).await.is_err());
        for junk in ["", ".", "abc", "a.b.c", &"x".repeat(5000)] {
            assert!(open(&signer, junk, Purpose::PortalLink, now()).await.is_err(), "{junk:.20}");
        }
    }

    #[tokio::test]
    async fn a_token_of_one_purpose_is_never_accepted_as_another() {
        let signer = LocalSigner([7; 32]);
        let token = seal(&signer, &link(300)).await.unwrap();
        // A link is not a portal session (it must be followed) nor a dashboard session.
        assert!(portal_customer(&signer, &token, now()).await.is_err());
        assert!(open(&signer, &token, Purpose::Dashboard, now()).await.is_err());
    }
}
