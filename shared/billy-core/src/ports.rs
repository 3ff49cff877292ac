//! The ports: what the domain needs from the outside world, each a small trait implemented over the
//! AWS SDK in billy-aws. Domain rules are tested without them, as pure functions.

use crate::audit::AuditEvent;
use crate::customer::Customer;
use crate::error::DomainResult;
use crate::ids::Id;
use crate::invoice::{Invoice, InvoiceStatus};
use crate::page::{Page, PageRequest};
use crate::payment_method::PaymentMethod;
use crate::plan::Plan;
use crate::subscription::Subscription;
use crate::tenant::{ApiKeyHash, ApiKeyRecord, Scope, Tenant};
use crate::test_clock::TestClock;
use crate::transaction::{Transaction, TransactionStatus, TransactionType};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::Serialize;

pub use crate::clock::Clock;
pub use crate::gateway::{GatewayRegistry, PaymentGateway};
pub use crate::ids::IdGenerator;
use crate::settings::TenantSettings;

#[async_trait]
pub trait TenantRepository: Send + Sync + std::fmt::Debug {
    /// Stores a new tenant, its keys and its audit event atomically.
    async fn create(&self, tenant: &Tenant, keys: &[ApiKeyRecord], event: &AuditEvent) -> DomainResult<()>;
    async fn key_by_hash(&self, hash: &ApiKeyHash) -> DomainResult<Option<ApiKeyRecord>>;
}

#[async_trait]
pub trait CustomerRepository: Send + Sync + std::fmt::Debug {
    async fn get(&self, scope: &Scope, id: &Id) -> DomainResult<Option<Customer>>;
    /// Several at once, whatever their scopes (missing ones are left out).
    async fn get_many(&self, keys: &[(Scope, Id)]) -> DomainResult<Vec<Customer>>;
    /// Newest first, within one scope only.
    async fn list(&self, scope: &Scope, page: &PageRequest) -> DomainResult<Page<Customer>>;
}

/// Reads the journal; appends happen only inside the repositories' transactions.
#[async_trait]
pub trait AuditJournal: Send + Sync + std::fmt::Debug {
    /// Every event of one entity, oldest first.
    async fn for_entity(&self, scope: &Scope, entity: &Id) -> DomainResult<Vec<AuditEvent>>;
    /// Every event of one customer account, oldest first.
    async fn for_account(&self, scope: &Scope, account: &Id) -> DomainResult<Vec<AuditEvent>>;
}

/// Reachability of one dependency, as `GET /v1/health` reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DependencyHealth {
    pub name: String,
    pub ok: bool,
    pub latency_ms: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[async_trait]
pub trait HealthProbe: Send + Sync + std::fmt::Debug {
    async fn check(&self) -> Vec<DependencyHealth>;
}

/// A message for a queue: a versioned JSON body and an optional de-duplication id.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct QueueMessage {
    /// Schema version of `body`, so consumers can evolve without breaking in-flight messages.
    pub version: u32,
    pub kind: String,
    pub body: serde_json::Value,
}

/// Sends messages to one of Billy's queues, batching where it can.
#[async_trait]
pub trait QueuePublisher: Send + Sync + std::fmt::Debug {
    async fn send(&self, queue: &str, messages: &[QueueMessage]) -> DomainResult<()>;
}

/// A domain event for EventBridge (and from there, tenants' webhook endpoints).
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct DomainEvent {
    /// The audit event's id: the same however often the event is announced.
    pub id: Id,
    #[serde(rename = "type")]
    pub kind: crate::events::EventType,
    pub scope: Scope,
    pub occurred_at: chrono::DateTime<chrono::Utc>,
    pub data: serde_json::Value,
}

#[async_trait]
pub trait EventBus: Send + Sync + std::fmt::Debug {
    async fn publish(&self, events: &[DomainEvent]) -> DomainResult<()>;
}

#[async_trait]
pub trait PlanRepository: Send + Sync + std::fmt::Debug {
    async fn get(&self, scope: &Scope, id: &Id) -> DomainResult<Option<Plan>>;
    async fn list(&self, scope: &Scope, page: &PageRequest) -> DomainResult<Page<Plan>>;
}

#[async_trait]
pub trait SubscriptionRepository: Send + Sync + std::fmt::Debug {
    async fn get(&self, scope: &Scope, id: &Id) -> DomainResult<Option<Subscription>>;
    /// Several at once, whatever their scopes (missing ones are left out).
    async fn get_many(&self, keys: &[(Scope, Id)]) -> DomainResult<Vec<Subscription>>;
    /// Subscriptions of every tenant due at or before `before`, from one shard of the due index.
    async fn due(&self, shard: u32, before: DateTime<Utc>, limit: usize) -> DomainResult<Vec<(Scope, Id)>>;
    async fn for_customer(&self, scope: &Scope, customer: &Id) -> DomainResult<Vec<Subscription>>;
    /// Every scope with a subscription still to bill (the tenants the nightly checks look at).
    async fn scopes_billing(&self) -> DomainResult<Vec<Scope>>;
    async fn list(&self, scope: &Scope, page: &PageRequest) -> DomainResult<Page<Subscription>>;
}

/// Filters of `GET /v1/invoices`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InvoiceFilter {
    pub customer: Option<Id>,
    pub subscription: Option<Id>,
    pub status: Option<InvoiceStatus>,
    pub period_from: Option<DateTime<Utc>>,
    pub period_to: Option<DateTime<Utc>>,
}

#[async_trait]
pub trait InvoiceRepository: Send + Sync + std::fmt::Debug {
    async fn get(&self, scope: &Scope, id: &Id) -> DomainResult<Option<Invoice>>;
    /// Several at once, whatever their scopes (missing ones are left out).
    async fn get_many(&self, keys: &[(Scope, Id)]) -> DomainResult<Vec<Invoice>>;
    async fn list(&self, scope: &Scope, filter: &InvoiceFilter, page: &PageRequest) -> DomainResult<Page<Invoice>>;
    /// The invoice of one subscription period, if it exists.
    async fn for_period(
        &self,
        scope: &Scope,
        subscription: &Id,
        period_start: DateTime<Utc>,
    ) -> DomainResult<Option<Invoice>>;
    /// Every invoice of one customer (test-clock readiness; a clock has at most three customers).
    async fn for_customer(&self, scope: &Scope, customer: &Id) -> DomainResult<Vec<Invoice>>;
    /// A page of the scope's invoices created in `[from, to)`, oldest first.
    async fn created_between(
        &self,
        scope: &Scope,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        page: &PageRequest,
    ) -> DomainResult<Page<Invoice>>;
    /// Invoices of every tenant whose retry is due at or before `before`, from one shard.
    async fn retries_due(&self, shard: u32, before: DateTime<Utc>, limit: usize) -> DomainResult<Vec<(Scope, Id)>>;
}

/// Export jobs of the transactions ledger.
#[async_trait]
pub trait ExportRepository: Send + Sync + std::fmt::Debug {
    async fn get(&self, scope: &Scope, id: &Id) -> DomainResult<Option<crate::ledger::Export>>;
}

/// Outgoing webhooks: a tenant's endpoints and their deliveries. Endpoints change through the
/// unit of work (with their audit events); a delivery is its own record of every attempt, written
/// alone under its version.
#[async_trait]
pub trait WebhookRepository: Send + Sync + std::fmt::Debug {
    async fn endpoint(&self, scope: &Scope, id: &Id) -> DomainResult<Option<crate::webhook::WebhookEndpoint>>;
    /// The scope's endpoints that are not deleted, newest first.
    async fn endpoints(&self, scope: &Scope) -> DomainResult<Vec<crate::webhook::WebhookEndpoint>>;
    async fn delivery(&self, scope: &Scope, id: &Id) -> DomainResult<Option<crate::webhook::WebhookDelivery>>;
    async fn deliveries(
        &self,
        scope: &Scope,
        endpoint: &Id,
        page: &crate::page::PageRequest,
    ) -> DomainResult<crate::page::Page<crate::webhook::WebhookDelivery>>;
    /// Stores a new delivery; `false` if it exists already (the event was announced again).
    async fn create_delivery(&self, scope: &Scope, delivery: &crate::webhook::WebhookDelivery) -> DomainResult<bool>;
    /// Replaces a delivery whose stored version is still `expected` (else a conflict).
    async fn save_delivery(
        &self,
        scope: &Scope,
        delivery: &crate::webhook::WebhookDelivery,
        expected: u64,
    ) -> DomainResult<()>;
    /// Deliveries of one shard whose next attempt is due at or before `before`.
    async fn deliveries_due(&self, shard: u32, before: DateTime<Utc>, limit: usize) -> DomainResult<Vec<(Scope, Id)>>;
}

/// Sends one signed delivery to an endpoint, within a short timeout, and never follows a
/// redirect; a destination that must be public is resolved and refused if any address is not.
#[async_trait]
pub trait WebhookSender: Send + Sync + std::fmt::Debug {
    async fn send(
        &self,
        destination: &crate::webhook::Destination,
        signature: &str,
        body: &str,
    ) -> crate::webhook::SendOutcome;
    /// Whether a destination may be used now (its name resolves only to allowed addresses).
    async fn check(&self, destination: &crate::webhook::Destination) -> DomainResult<()>;
    /// Whether this deployment lets test-mode endpoints point at local receivers.
    fn local_endpoints(&self) -> crate::webhook::LocalEndpoints;
}

/// Seals secrets (KMS): ciphertext bound to a context, opened only with the same context.
#[async_trait]
pub trait SecretBox: Send + Sync + std::fmt::Debug {
    async fn seal(
        &self,
        plaintext: &[u8],
        context: &std::collections::BTreeMap<String, String>,
    ) -> DomainResult<Vec<u8>>;
    async fn open(&self, sealed: &[u8], context: &std::collections::BTreeMap<String, String>) -> DomainResult<Vec<u8>>;
}

/// Signs and checks browser session tokens with the deployment's session key (HMAC-SHA-256),
/// which never leaves its keeper.
#[async_trait]
pub trait SessionSigner: Send + Sync + std::fmt::Debug {
    async fn sign(&self, message: &[u8]) -> DomainResult<Vec<u8>>;
    /// False for a MAC that does not match; an error only when the check could not be made.
    async fn verify(&self, message: &[u8], mac: &[u8]) -> DomainResult<bool>;
}

/// The dashboard's counters (`crate::report`).
#[async_trait]
pub trait ReportRepository: Send + Sync + std::fmt::Debug {
    /// In one transaction: with `checkpoint`, the shard's checkpoint moved to its `to` (it fails
    /// unless the stored one is still `counted_to`); without one, or when it is `guarded`, each
    /// tally's guard (it fails if the event was applied before); the renewal states the tallies
    /// record (each only if the state it replaces is still the stored one); and the tallies' merged
    /// counter changes. All of it, or nothing.
    async fn apply(
        &self,
        tallies: &[crate::report::Tally],
        checkpoint: Option<&crate::report::Checkpoint>,
    ) -> DomainResult<Applied>;
    /// How far a stream shard's tallies are counted: the last position a chunk recorded.
    async fn counted_to(&self, shard: &str) -> DomainResult<Option<String>>;
    /// The renewal state last recorded for each of these subscriptions (missing ones left out).
    async fn renewals(&self, keys: &[(Scope, Id)]) -> DomainResult<Vec<(Scope, crate::report::RenewalState)>>;
    /// The buckets of one kind (`Bucket::REVENUE`, …) whose keys fall in `from..=to` (key
    /// prefixes after the kind), in key order.
    async fn buckets(
        &self,
        scope: &Scope,
        kind: &str,
        from: &str,
        to: &str,
    ) -> DomainResult<Vec<(crate::report::Bucket, crate::report::Counters)>>;
}

/// What `ReportRepository::apply` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Applied {
    All,
    /// Nothing: these events' tallies were applied before.
    NoneAlreadyApplied(Vec<Id>),
    /// Nothing: a renewal state changed since it was read.
    NoneRenewalMoved,
    /// Nothing: the shard's checkpoint is no longer the one the chunk was counted from.
    NoneCheckpointMoved,
}

/// Tenants' gateway accounts.
#[async_trait]
pub trait GatewayAccountRepository: Send + Sync + std::fmt::Debug {
    async fn for_scope(&self, scope: &Scope) -> DomainResult<Vec<crate::gateway_account::GatewayAccount>>;
    /// The account behind a webhook address, whatever its tenant, with its scope.
    async fn by_id(&self, id: &Id) -> DomainResult<Option<(Scope, crate::gateway_account::GatewayAccount)>>;
}

/// The gateways a scope may use: the deployment's own (the sandbox, in test mode only) and the
/// tenant's connected accounts, ready to call.
#[async_trait]
pub trait GatewayDirectory: Send + Sync + std::fmt::Debug {
    async fn for_scope(&self, scope: &Scope) -> DomainResult<std::sync::Arc<GatewayRegistry>>;
    /// The gateway of one connected account (its webhooks name it in their address), and its scope.
    async fn for_account(&self, account: &Id) -> DomainResult<Option<(Scope, std::sync::Arc<dyn PaymentGateway>)>>;
    /// The deployment's own gateway of this name (the sandbox), for its shared webhook address.
    fn deployment(&self, name: &str) -> Option<std::sync::Arc<dyn PaymentGateway>>;
    /// The names of the gateways a scope can use, without opening any credentials (read afresh).
    async fn names(&self, scope: &Scope) -> DomainResult<Vec<String>>;
    /// Drops what the warm instance knows of a scope's accounts: the next look is a fresh read.
    fn forget(&self, _scope: &Scope) {}
}

/// Customers' credit balances and their movements.
#[async_trait]
pub trait CreditRepository: Send + Sync + std::fmt::Debug {
    /// The balance of each (customer, currency), in the order given; 0 where there is none.
    async fn balances(&self, keys: &[(Scope, Id, crate::money::Currency)]) -> DomainResult<Vec<i64>>;
    /// Every balance of one customer.
    async fn of_customer(&self, scope: &Scope, customer: &Id) -> DomainResult<Vec<crate::credit::CreditBalance>>;
    /// A customer's movements, newest first.
    async fn movements(
        &self,
        scope: &Scope,
        customer: &Id,
        limit: usize,
    ) -> DomainResult<Vec<crate::credit::CreditMovement>>;
}

#[async_trait]
pub trait CouponRepository: Send + Sync + std::fmt::Debug {
    async fn get(&self, scope: &Scope, id: &Id) -> DomainResult<Option<crate::coupon::Coupon>>;
    async fn list(&self, scope: &Scope, page: &PageRequest) -> DomainResult<Page<crate::coupon::Coupon>>;
}

#[async_trait]
pub trait SettlementRepository: Send + Sync + std::fmt::Debug {
    async fn get(&self, scope: &Scope, id: &Id) -> DomainResult<Option<crate::settlement::Settlement>>;
    /// A customer's settlements of every month and status.
    async fn for_customer(&self, scope: &Scope, customer: &Id) -> DomainResult<Vec<crate::settlement::Settlement>>;
    /// The scope's settlements in one status (open months, or closed ones whose net has not moved).
    async fn in_status(
        &self,
        scope: &Scope,
        status: crate::settlement::SettlementStatus,
    ) -> DomainResult<Vec<crate::settlement::Settlement>>;
    /// The scope's invoices waiting in a settlement.
    async fn invoices_in_settlement(&self, scope: &Scope) -> DomainResult<Vec<Invoice>>;
    /// Every scope with settlement work: invoices in settlement, or months not settled yet.
    async fn scopes_settling(&self) -> DomainResult<Vec<Scope>>;
    async fn list(
        &self,
        scope: &Scope,
        customer: Option<&Id>,
        page: &PageRequest,
    ) -> DomainResult<Page<crate::settlement::Settlement>>;
    async fn runs(&self, scope: &Scope, page: &PageRequest) -> DomainResult<Page<crate::settlement::SettlementRun>>;
}

#[async_trait]
pub trait VerificationRepository: Send + Sync + std::fmt::Debug {
    async fn get(&self, scope: &Scope, id: &Id) -> DomainResult<Option<crate::verification::Verification>>;
    async fn list(&self, scope: &Scope, page: &PageRequest) -> DomainResult<Page<crate::verification::Verification>>;
}

/// The usage total of one metric in one period of one subscription.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct UsageKey {
    pub scope: Scope,
    pub subscription: Id,
    pub metric: String,
    pub period: u64,
}

/// Usage events and their per-period totals.
#[async_trait]
pub trait UsageRepository: Send + Sync + std::fmt::Debug {
    /// Records events placed in their periods, each with its period total in the same
    /// transaction; an id seen before is a duplicate when its content matches (the stored event
    /// comes back), else `idempotency_conflict`; a closed period refuses with `period_closed`.
    /// Results come back in the order of `events`.
    async fn record(
        &self,
        scope: &Scope,
        events: Vec<crate::usage::UsageEvent>,
    ) -> DomainResult<Vec<DomainResult<crate::usage::Recorded>>>;
    /// The totals of these keys (missing: no usage counted), in their order.
    async fn totals(&self, keys: &[UsageKey]) -> DomainResult<Vec<Option<crate::usage::UsageTotal>>>;
    /// Events of one total, oldest first, a page at a time (`after`: the last event's cursor).
    async fn events(
        &self,
        key: &UsageKey,
        limit: usize,
        after: Option<String>,
    ) -> DomainResult<(Vec<crate::usage::UsageEvent>, Option<String>)>;
}

/// A file being written part by part (an S3 multipart upload): nothing is ever held whole.
#[async_trait]
pub trait FileWriter: Send {
    async fn write(&mut self, bytes: &[u8]) -> DomainResult<()>;
    /// Completes the file; its size in bytes.
    async fn finish(self: Box<Self>) -> DomainResult<u64>;
    /// Gives the file up (nothing is left behind).
    async fn abort(self: Box<Self>);
}

/// Where exported files go, and short-lived links to download them.
#[async_trait]
pub trait FileStore: Send + Sync + std::fmt::Debug {
    async fn create(&self, key: &str, content_type: &str) -> DomainResult<Box<dyn FileWriter>>;
    /// A link anyone holding it can download the file with, until it expires.
    async fn link(&self, key: &str, valid_for: std::time::Duration) -> DomainResult<String>;
}

/// A tenant's settings (refund window, dunning policy, routing rules, ...), with the defaults
/// for a tenant that set nothing.
#[async_trait]
pub trait SettingsRepository: Send + Sync + std::fmt::Debug {
    async fn get(&self, scope: &Scope) -> DomainResult<TenantSettings>;
}

/// Filters of `GET /v1/transactions`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TransactionFilter {
    pub customer: Option<Id>,
    pub invoice: Option<Id>,
    pub kind: Option<TransactionType>,
    pub status: Option<TransactionStatus>,
    pub created_from: Option<DateTime<Utc>>,
    pub created_to: Option<DateTime<Utc>>,
    pub amount_min: Option<i64>,
    pub amount_max: Option<i64>,
    /// Text in the descriptions of the items of the invoice it collects (case-insensitive).
    pub item: Option<String>,
}

#[async_trait]
pub trait TransactionRepository: Send + Sync + std::fmt::Debug {
    async fn get(&self, scope: &Scope, id: &Id) -> DomainResult<Option<Transaction>>;
    /// Several at once, whatever their scopes (missing ones are left out).
    async fn get_many(&self, keys: &[(Scope, Id)]) -> DomainResult<Vec<Transaction>>;
    /// The transaction of one attempt of one kind on one invoice, through its attempt claim (an
    /// attempt whose id its invoice does not name), if it exists.
    async fn for_attempt(
        &self,
        scope: &Scope,
        invoice: &Id,
        kind: TransactionType,
        attempt: u32,
    ) -> DomainResult<Option<Transaction>>;
    /// Which transaction (and scope) a gateway's reference belongs to.
    async fn by_reference(&self, gateway: &str, reference: &str) -> DomainResult<Option<(Scope, Id)>>;
    /// `by_reference` for several (gateway, reference) pairs at once, in the order given.
    async fn by_references(&self, refs: &[(String, String)]) -> DomainResult<Vec<Option<(Scope, Id)>>>;
    /// Whether a gateway event that moves no version (a dispute, a stale note) was already applied.
    async fn event_applied(&self, gateway: &str, event_id: &str) -> DomainResult<bool>;
    /// Transactions of every tenant whose unknown outcome is due for a look-up, from one shard.
    async fn rechecks_due(&self, shard: u32, before: DateTime<Utc>, limit: usize) -> DomainResult<Vec<(Scope, Id)>>;
    async fn list(
        &self,
        scope: &Scope,
        filter: &TransactionFilter,
        page: &PageRequest,
    ) -> DomainResult<Page<Transaction>>;
}

#[async_trait]
pub trait PaymentMethodRepository: Send + Sync + std::fmt::Debug {
    async fn get(&self, scope: &Scope, id: &Id) -> DomainResult<Option<PaymentMethod>>;
    /// Several at once, whatever their scopes (missing ones are left out).
    async fn get_many(&self, keys: &[(Scope, Id)]) -> DomainResult<Vec<PaymentMethod>>;
    async fn for_customer(&self, scope: &Scope, customer: &Id) -> DomainResult<Vec<PaymentMethod>>;
}

#[async_trait]
pub trait TestClockRepository: Send + Sync + std::fmt::Debug {
    async fn get(&self, scope: &Scope, id: &Id) -> DomainResult<Option<TestClock>>;
    /// Several at once, whatever their scopes (missing ones are left out).
    async fn get_many(&self, keys: &[(Scope, Id)]) -> DomainResult<Vec<TestClock>>;
    /// Subscriptions of the clock's customers that are due at or before `before`.
    async fn due_subscriptions(&self, clock: &Id, before: DateTime<Utc>) -> DomainResult<Vec<(Scope, Id)>>;
    /// Invoices of the clock's customers whose retry is due at or before `before`.
    async fn due_retries(&self, clock: &Id, before: DateTime<Utc>) -> DomainResult<Vec<(Scope, Id)>>;
    /// Transactions of the clock's customers whose unknown outcome is due for a look-up.
    async fn due_rechecks(&self, clock: &Id, before: DateTime<Utc>) -> DomainResult<Vec<(Scope, Id)>>;
}

/// One write of a unit of work. (Variants hold whole entities; a unit has a handful of writes, so
/// their size difference does not matter.) `expected: None` creates the entity (it must not exist);
/// `Some(v)` replaces it only if its stored version is still `v`.
#[derive(Debug, Clone, PartialEq)]
#[allow(clippy::large_enum_variant)]
pub enum Write {
    Customer {
        customer: Customer,
        expected: Option<u64>,
    },
    PaymentMethod {
        method: PaymentMethod,
    },
    PayoutDestination {
        destination: PaymentMethod,
    },
    Plan {
        plan: Plan,
    },
    Subscription {
        subscription: Subscription,
        expected: Option<u64>,
    },
    /// A new subscription invoice also claims its period: a second invoice for it cannot exist.
    Invoice {
        invoice: Invoice,
        expected: Option<u64>,
    },
    /// A new transaction is created only if its id is new: an attempt's transaction, whose id the
    /// invoice names, is its own claim.
    Transaction {
        transaction: Transaction,
        expected: Option<u64>,
    },
    /// Claims (invoice, kind, attempt) for a transaction whose id its invoice does not name (an
    /// attempt counted before invoices named them): a second transaction for it cannot exist.
    AttemptClaim {
        transaction: Transaction,
    },
    /// Records a pending transaction's gateway reference without a new version (it is not a state
    /// change); fails as a conflict when the transaction already has one or is settled. With
    /// `lookup`, also maps the reference back to the transaction, for incoming events that name
    /// only the gateway's payment (a gateway that echoes Billy's ids in every event needs none).
    TransactionReference {
        transaction: Id,
        gateway: String,
        reference: String,
        lookup: bool,
    },
    /// Marks a gateway event applied; a second application of the same event fails the unit.
    GatewayEventApplied {
        gateway: String,
        event_id: String,
    },
    TestClock {
        clock: TestClock,
        expected: Option<u64>,
    },
    /// The tenant's settings (`expected: None` for the first save).
    Settings {
        settings: TenantSettings,
        expected: Option<u64>,
    },
    Export {
        export: crate::ledger::Export,
        expected: Option<u64>,
    },
    Coupon {
        coupon: crate::coupon::Coupon,
    },
    /// A new settlement also claims its (customer, currency, month): there is one per month.
    Settlement {
        settlement: crate::settlement::Settlement,
        expected: Option<u64>,
    },
    SettlementRun {
        run: crate::settlement::SettlementRun,
    },
    Verification {
        verification: crate::verification::Verification,
        expected: Option<u64>,
    },
    /// A gateway account (a new one also maps its id to its scope, for its webhooks).
    GatewayAccount {
        account: crate::gateway_account::GatewayAccount,
        expected: Option<u64>,
    },
    /// A webhook endpoint (`expected: None` for a new one).
    WebhookEndpoint {
        endpoint: crate::webhook::WebhookEndpoint,
        expected: Option<u64>,
    },
    /// A movement of a customer's credit balance: the movement is recorded and the balance moves
    /// by its amount; a negative one only while the balance covers it (else a conflict).
    Credit {
        movement: crate::credit::CreditMovement,
    },
    /// Closes a period's usage total of one metric once its invoice prices it, on the condition
    /// that it still holds what was priced (`None`: no usage was counted): a late event then
    /// finds it closed, and an event counted meanwhile makes this a conflict.
    UsageClose {
        subscription: Id,
        metric: String,
        period: crate::schedule::Period,
        priced: Option<(rust_decimal::Decimal, u64)>,
    },
}

/// One atomic change: writes of one scope and the audit events that explain them.
#[derive(Debug, Clone, PartialEq)]
pub struct Changeset {
    pub scope: Scope,
    pub writes: Vec<Write>,
    pub events: Vec<AuditEvent>,
}

/// Commits several writes of one scope and their audit events atomically: all or nothing, and a
/// failed condition (stale version, existing key) is a `Conflict`.
#[async_trait]
pub trait UnitOfWork: Send + Sync + std::fmt::Debug {
    async fn commit(&self, scope: &Scope, writes: Vec<Write>, events: Vec<AuditEvent>) -> DomainResult<()>;
    /// Commits each changeset as if by `commit`, independently of the others (one's conflict
    /// never undoes another), packing several into one request where the store allows. Results
    /// come back in the order given.
    async fn commit_each(&self, changes: Vec<Changeset>) -> Vec<DomainResult<()>>;
}

/// What to do with a request that carries an `Idempotency-Key`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdempotencyDecision {
    /// Process it, then `complete`. `first_seen` is when the key was first used, the same on every
    /// retry: what the request creates is named from it (see `Context::new_id`).
    Process { first_seen: DateTime<Utc> },
    /// Same key, same body, finished: replay the saved response.
    Replay { status: u16, body: String },
    /// Same key, still being processed by another request: 409.
    InFlight,
    /// Same key, different body: 422.
    Mismatch,
}

#[async_trait]
pub trait IdempotencyStore: Send + Sync + std::fmt::Debug {
    async fn begin(
        &self,
        scope: &Scope,
        key: &str,
        request_hash: &str,
        now: DateTime<Utc>,
    ) -> DomainResult<IdempotencyDecision>;
    async fn complete(&self, scope: &Scope, key: &str, status: u16, body: &str) -> DomainResult<()>;
    /// Releases a key whose processing failed unexpectedly, so a retry (with the same body) can
    /// process it again; the key keeps its first-seen time.
    async fn abandon(&self, scope: &Scope, key: &str) -> DomainResult<()>;
}

/// The queues a function sends to (`None` where a function has no such queue).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QueueUrls {
    pub bill: Option<String>,
    pub charge: Option<String>,
    pub payout: Option<String>,
    pub webhook: Option<String>,
}

impl QueueUrls {
    fn required<'a>(url: &'a Option<String>, name: &str) -> DomainResult<&'a str> {
        url.as_deref().ok_or_else(|| crate::DomainError::unexpected(format!("this function has no {name} queue")))
    }

    pub fn bill(&self) -> DomainResult<&str> {
        Self::required(&self.bill, "bill")
    }

    pub fn charge(&self) -> DomainResult<&str> {
        Self::required(&self.charge, "charge")
    }

    pub fn payout(&self) -> DomainResult<&str> {
        Self::required(&self.payout, "payout")
    }

    /// The queue of the pipeline that moves money in `direction`: charges or payouts.
    pub fn for_direction(&self, direction: crate::plan::Direction) -> DomainResult<&str> {
        match direction {
            crate::plan::Direction::Debit => self.charge(),
            crate::plan::Direction::Payout => self.payout(),
        }
    }

    pub fn webhook(&self) -> DomainResult<&str> {
        Self::required(&self.webhook, "webhook")
    }
}

/// Every port a use case may need, built once per function and lent to each invocation.
#[derive(Debug, Clone, Copy)]
pub struct Ports<'a> {
    pub tenants: &'a dyn TenantRepository,
    pub customers: &'a dyn CustomerRepository,
    pub methods: &'a dyn PaymentMethodRepository,
    /// Payout destinations: stored like payment methods, apart from them.
    pub destinations: &'a dyn PaymentMethodRepository,
    pub plans: &'a dyn PlanRepository,
    pub subscriptions: &'a dyn SubscriptionRepository,
    pub invoices: &'a dyn InvoiceRepository,
    pub transactions: &'a dyn TransactionRepository,
    pub clocks: &'a dyn TestClockRepository,
    pub audit: &'a dyn AuditJournal,
    pub settings: &'a dyn SettingsRepository,
    pub exports: &'a dyn ExportRepository,
    pub usage: &'a dyn UsageRepository,
    pub credits: &'a dyn CreditRepository,
    pub coupons: &'a dyn CouponRepository,
    pub settlements: &'a dyn SettlementRepository,
    pub verifications: &'a dyn VerificationRepository,
    pub unit: &'a dyn UnitOfWork,
    pub queue: &'a dyn QueuePublisher,
    pub queues: &'a QueueUrls,
    pub gateways: &'a dyn GatewayDirectory,
    pub breaker: &'a crate::routing::CircuitBreaker,
    pub accounts: &'a dyn GatewayAccountRepository,
    pub webhooks: &'a dyn WebhookRepository,
    pub secrets: &'a dyn SecretBox,
    pub ids: &'a dyn IdGenerator,
    pub clock: &'a dyn Clock,
}
