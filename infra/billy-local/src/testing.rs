//! Test support: an isolated copy of Billy (unique resource prefix) on the local stack, served by an
//! in-process runner on an ephemeral loopback port with its own sandbox gateway, removed again by
//! `stop`.

use crate::functions::{self, Handler};
use crate::provision::{Provisioned, provision};
use crate::runner::{Runner, RunnerOptions, RunningRunner};
use crate::template::{FunctionDef, Template};
use billy_aws::{AwsClients, LocalEndpoints, Tables};
use billy_lambda::Config;
use sandbox_gateway::{RunningSandbox, SandboxConfig};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

/// A prefix no other test run shares.
pub fn unique_prefix() -> String {
    format!("t{}", &uuid::Uuid::new_v4().simple().to_string()[..10])
}

fn tables_of(provisioned: &Provisioned) -> Tables {
    Tables { main: provisioned.tables["BillyTable"].clone(), audit: provisioned.tables["AuditTable"].clone() }
}

/// The template's tables and queues under a unique prefix, without a runner (adapter tests).
#[derive(Debug)]
pub struct TestResources {
    pub aws: AwsClients,
    pub provisioned: Provisioned,
}

impl TestResources {
    pub async fn provision() -> Self {
        let aws = AwsClients::local(&LocalEndpoints::from_env()).await;
        let template = Template::load(&crate::default_template_path()).expect("template.yaml loads");
        // No sandbox for adapter tests: the Sandbox* parameters keep their empty defaults.
        let parameters = BTreeMap::from([("AdminToken".to_owned(), "x".repeat(32))]);
        let provisioned = provision(&template, &unique_prefix(), &parameters, &aws)
            .await
            .expect("local stack is up (run tests through `make test`)");
        Self { aws, provisioned }
    }

    pub fn tables(&self) -> Tables {
        tables_of(&self.provisioned)
    }

    pub async fn teardown(self) {
        self.provisioned.teardown(&self.aws).await;
    }
}

#[derive(Debug)]
pub struct TestStack {
    pub aws: AwsClients,
    pub provisioned: Provisioned,
    pub admin_token: String,
    pub url: String,
    /// This stack's own sandbox gateway, posting its webhooks to this stack's runner.
    pub sandbox: RunningSandbox,
    pub sandbox_api_key: String,
    pub sandbox_webhook_secret: String,
    runner: RunningRunner,
}

/// How a test stack runs (benchmarks change these).
#[derive(Debug, Clone)]
pub struct StackOptions {
    /// Counts every AWS request the stack makes.
    pub meter: Option<billy_aws::metering::RequestMeter>,
    pub runner: RunnerOptions,
    /// How long the sandbox gateway "processes" before its webhook.
    pub sandbox_delay: Duration,
    /// Keep a copy of every log line in memory (`billy_lambda::telemetry::captured`).
    pub capture_logs: bool,
    /// Template parameters beyond the admin token and the sandbox's (gateway endpoints, say).
    pub parameters: BTreeMap<String, String>,
}

impl Default for StackOptions {
    fn default() -> Self {
        Self {
            meter: None,
            runner: RunnerOptions::default(),
            sandbox_delay: Duration::from_millis(50),
            capture_logs: true,
            parameters: BTreeMap::new(),
        }
    }
}

impl TestStack {
    /// Billy as `template.yaml` declares it.
    pub async fn start() -> Self {
        Self::start_custom(StackOptions::default()).await
    }

    /// Billy as `template.yaml` declares it, run with `options`.
    pub async fn start_custom(options: StackOptions) -> Self {
        let template = Template::load(&crate::default_template_path()).expect("template.yaml loads");
        Self::start_with_options(&template, |def, config, aws| functions::build(&def.name, config, aws), options).await
    }

    /// Any template, with handlers from `make` (tests host their own functions this way).
    pub async fn start_with(
        template: &Template,
        make: impl Fn(&FunctionDef, &Config, &AwsClients) -> Result<Handler, String>,
    ) -> Self {
        Self::start_with_options(template, make, StackOptions::default()).await
    }

    pub async fn start_with_options(
        template: &Template,
        make: impl Fn(&FunctionDef, &Config, &AwsClients) -> Result<Handler, String>,
        options: StackOptions,
    ) -> Self {
        if options.capture_logs {
            billy_lambda::telemetry::init_capturing();
        } else {
            billy_lambda::telemetry::init();
        }
        let aws = AwsClients::local_metered(&LocalEndpoints::from_env(), options.meter.clone()).await;
        let admin_token = format!("admin-{}", uuid::Uuid::new_v4().simple());
        let sandbox_api_key = format!("sk-{}", uuid::Uuid::new_v4().simple());
        let webhook_secret = format!("whsec-{}", uuid::Uuid::new_v4().simple());
        let sandbox = sandbox_gateway::start(SandboxConfig {
            bind: SocketAddr::from(([127, 0, 0, 1], 0)),
            api_key: sandbox_api_key.clone(),
            webhook_secret: webhook_secret.clone(),
            webhook_url: None,
            delay: options.sandbox_delay,
            vault_file: None,
        })
        .await
        .expect("sandbox gateway binds a loopback port");
        let mut parameters = BTreeMap::from([
            ("AdminToken".to_owned(), admin_token.clone()),
            ("SandboxUrl".to_owned(), sandbox.url()),
            ("SandboxApiKey".to_owned(), sandbox_api_key.clone()),
            ("SandboxWebhookSecret".to_owned(), webhook_secret.clone()),
            // Tests' webhook receivers listen on 127.0.0.1.
            ("WebhookLocalEndpoints".to_owned(), "allow".to_owned()),
        ]);
        parameters.extend(options.parameters.clone());
        let provisioned = provision(template, &unique_prefix(), &parameters, &aws)
            .await
            .expect("local stack is up (run tests through `make test`)");
        // Under `make test` every function gets clients of its own that record what it calls.
        let access = crate::access::AccessLog::from_env(&provisioned);
        let runner = Runner::build(template, &provisioned, &aws, |def, config| match &access {
            Some(log) => make(def, config, &aws.with_interceptor(log.recorder(&def.name))),
            None => make(def, config, &aws),
        })
        .expect("runner wires")
        .recording_routes(access);
        let options = RunnerOptions { bind: SocketAddr::from(([127, 0, 0, 1], 0)), ..options.runner };
        let runner = runner.start(&options).await.expect("runner binds a loopback port");
        sandbox.set_webhook_url(&format!("{}/v1/webhooks/sandbox", runner.url()));
        Self {
            url: runner.url(),
            aws,
            provisioned,
            admin_token,
            sandbox,
            sandbox_api_key,
            sandbox_webhook_secret: webhook_secret,
            runner,
        }
    }

    pub fn tables(&self) -> Tables {
        tables_of(&self.provisioned)
    }

    /// The name of the event bus a logical id of the template became.
    pub fn event_bus(&self, logical_id: &str) -> Option<&str> {
        self.provisioned.buses.get(logical_id).map(String::as_str)
    }

    /// Invokes a scheduled function now, as its schedule would.
    pub async fn run_scheduled(&self, function: &str) -> Result<(), String> {
        self.runner.run_scheduled(function).await
    }

    /// Invocations per function so far.
    pub fn calls(&self) -> &crate::runner::Calls {
        &self.runner.calls
    }

    pub async fn stop(self) {
        self.runner.shutdown().await;
        self.sandbox.shutdown().await;
        self.provisioned.teardown(&self.aws).await;
    }
}

/// A queue that receives one type of Billy's domain events through a rule on its bus, for tests
/// and benchmarks that watch what Billy announces. Remove it when done.
#[derive(Debug)]
pub struct EventWatch {
    rule: String,
    bus: String,
    queue_url: String,
}

impl EventWatch {
    pub async fn start(aws: &AwsClients, bus: &str, detail_type: &str) -> Result<Self, String> {
        Self::start_matching(aws, bus, detail_type, None).await
    }

    /// A watch on the events of `detail_type` whose `detail` also matches `detail` (an EventBridge
    /// pattern), e.g. a sample of them by the suffix of an id.
    pub async fn start_matching(
        aws: &AwsClients,
        bus: &str,
        detail_type: &str,
        detail: Option<serde_json::Value>,
    ) -> Result<Self, String> {
        let err = |e: &dyn std::fmt::Debug| format!("{e:?}");
        let name = format!("{}-watch", unique_prefix());
        let queue_url = aws
            .sqs
            .create_queue()
            .queue_name(&name)
            .send()
            .await
            .map_err(|e| err(&e))?
            .queue_url
            .ok_or("no queue url")?;
        let arn_attribute = aws_sdk_sqs::types::QueueAttributeName::QueueArn;
        let arn = aws
            .sqs
            .get_queue_attributes()
            .queue_url(&queue_url)
            .attribute_names(arn_attribute.clone())
            .send()
            .await
            .map_err(|e| err(&e))?
            .attributes
            .and_then(|mut a| a.remove(&arn_attribute))
            .ok_or("no queue arn")?;
        let mut pattern = serde_json::json!({"source": [billy_aws::events::SOURCE], "detail-type": [detail_type]});
        if let Some(detail) = detail {
            pattern["detail"] = detail;
        }
        aws.eventbridge
            .put_rule()
            .name(&name)
            .event_bus_name(bus)
            .event_pattern(pattern.to_string())
            .send()
            .await
            .map_err(|e| err(&e))?;
        let target = aws_sdk_eventbridge::types::Target::builder().id("q").arn(arn).build().map_err(|e| err(&e))?;
        aws.eventbridge
            .put_targets()
            .rule(&name)
            .event_bus_name(bus)
            .targets(target)
            .send()
            .await
            .map_err(|e| err(&e))?;
        Ok(Self { rule: name, bus: bus.to_owned(), queue_url })
    }

    /// The `detail` of the next events (waiting up to a second for some). They are not deleted but
    /// hidden for an hour, so each is seen once.
    pub async fn receive(&self, aws: &AwsClients) -> Vec<serde_json::Value> {
        self.receive_within(aws, std::time::Duration::from_secs(1)).await
    }

    /// As `receive`, waiting up to `wait` in whole seconds; under a second, one look and then a
    /// pause of `wait` if there was nothing.
    pub async fn receive_within(&self, aws: &AwsClients, wait: std::time::Duration) -> Vec<serde_json::Value> {
        let seconds = i32::try_from(wait.as_secs().min(20)).unwrap_or(20);
        let out = aws
            .sqs
            .receive_message()
            .queue_url(&self.queue_url)
            .max_number_of_messages(10)
            .wait_time_seconds(seconds)
            .visibility_timeout(3600)
            .send()
            .await;
        let details: Vec<serde_json::Value> = out
            .ok()
            .and_then(|out| out.messages)
            .unwrap_or_default()
            .iter()
            .filter_map(|m| serde_json::from_str::<serde_json::Value>(m.body.as_deref()?).ok())
            .map(|mut envelope| envelope["detail"].take())
            .collect();
        if details.is_empty() && seconds == 0 {
            tokio::time::sleep(wait).await;
        }
        details
    }

    pub async fn remove(&self, aws: &AwsClients) {
        let _ = aws.eventbridge.remove_targets().rule(&self.rule).event_bus_name(&self.bus).ids("q").send().await;
        let _ = aws.eventbridge.delete_rule().name(&self.rule).event_bus_name(&self.bus).send().await;
        let _ = aws.sqs.delete_queue().queue_url(&self.queue_url).send().await;
    }
}

/// A loopback TCP proxy that passes requests on at once and holds every answer back for `delay`
/// (changeable while it runs): a gateway that answers after its caller's timeout. Stopped when
/// dropped.
#[derive(Debug)]
pub struct DelayProxy {
    pub addr: SocketAddr,
    delay_ms: std::sync::Arc<std::sync::atomic::AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl DelayProxy {
    pub async fn start(upstream: SocketAddr, delay: Duration) -> std::io::Result<Self> {
        let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0))).await?;
        let addr = listener.local_addr()?;
        let delay_ms = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(
            u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
        ));
        let shared = std::sync::Arc::clone(&delay_ms);
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let delay = Duration::from_millis(shared.load(std::sync::atomic::Ordering::SeqCst));
                tokio::spawn(async move {
                    let Ok(server) = tokio::net::TcpStream::connect(upstream).await else { return };
                    let (mut client_read, mut client_write) = client.into_split();
                    let (mut server_read, mut server_write) = server.into_split();
                    let up = tokio::io::copy(&mut client_read, &mut server_write);
                    let down = async {
                        tokio::time::sleep(delay).await;
                        tokio::io::copy(&mut server_read, &mut client_write).await
                    };
                    let _ = tokio::join!(up, down);
                });
            }
        });
        Ok(Self { addr, delay_ms, task })
    }

    /// Holds the answers of connections opened from now on for `delay`.
    pub fn set_delay(&self, delay: Duration) {
        self.delay_ms.store(u64::try_from(delay.as_millis()).unwrap_or(u64::MAX), std::sync::atomic::Ordering::SeqCst);
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for DelayProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A DynamoDB interceptor that fails the first request it sees once armed, before sending it, as
/// a store call that timed out would (at once, where a real stall first waits out the client's
/// timeout); later requests pass. On one function's clients, it makes that function's next step
/// fail once for a passing reason. `default()` is armed; `disarmed()` waits for `arm()`.
#[derive(Debug, Clone)]
pub struct FailFirstStoreCall {
    armed: std::sync::Arc<std::sync::atomic::AtomicBool>,
    fired: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl Default for FailFirstStoreCall {
    fn default() -> Self {
        let fault = Self::disarmed();
        fault.arm();
        fault
    }
}

impl FailFirstStoreCall {
    pub fn disarmed() -> Self {
        Self { armed: std::sync::Arc::default(), fired: std::sync::Arc::default() }
    }

    pub fn arm(&self) {
        self.armed.store(true, std::sync::atomic::Ordering::SeqCst);
    }

    pub fn fired(&self) -> bool {
        self.fired.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// This fault, to add to a function's clients (`AwsClients::with_interceptor`).
    pub fn interceptor(&self) -> aws_smithy_runtime_api::client::interceptors::SharedInterceptor {
        aws_smithy_runtime_api::client::interceptors::SharedInterceptor::new(self.clone())
    }
}

impl aws_smithy_runtime_api::client::interceptors::Intercept for FailFirstStoreCall {
    fn name(&self) -> &'static str {
        "FailFirstStoreCall"
    }

    fn read_before_transmit(
        &self,
        context: &aws_smithy_runtime_api::client::interceptors::context::BeforeTransmitInterceptorContextRef<'_>,
        _components: &aws_smithy_runtime_api::client::runtime_components::RuntimeComponents,
        _cfg: &mut aws_smithy_types::config_bag::ConfigBag,
    ) -> Result<(), aws_smithy_runtime_api::box_error::BoxError> {
        let target = context.request().headers().get("x-amz-target").unwrap_or_default();
        if target.starts_with("DynamoDB_")
            && self.armed.load(std::sync::atomic::Ordering::SeqCst)
            && !self.fired.swap(true, std::sync::atomic::Ordering::SeqCst)
        {
            return Err("injected: the store did not answer in time".into());
        }
        Ok(())
    }
}

/// A DynamoDB interceptor that lets the first transaction carrying `marker` commit and then fails
/// its answer, as a function that died right after its commit would: the change is stored, the
/// caller sees an error. Later transactions pass.
#[derive(Debug, Clone)]
pub struct CrashAfterCommit {
    marker: String,
    fired: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

#[derive(Debug, Clone)]
struct Marked;

impl aws_smithy_types::config_bag::Storable for Marked {
    type Storer = aws_smithy_types::config_bag::StoreReplace<Self>;
}

impl CrashAfterCommit {
    pub fn new(marker: &str) -> Self {
        Self { marker: marker.to_owned(), fired: std::sync::Arc::default() }
    }

    pub fn fired(&self) -> bool {
        self.fired.load(std::sync::atomic::Ordering::SeqCst)
    }
}

impl aws_smithy_runtime_api::client::interceptors::Intercept for CrashAfterCommit {
    fn name(&self) -> &'static str {
        "CrashAfterCommit"
    }

    fn read_before_transmit(
        &self,
        context: &aws_smithy_runtime_api::client::interceptors::context::BeforeTransmitInterceptorContextRef<'_>,
        _components: &aws_smithy_runtime_api::client::runtime_components::RuntimeComponents,
        cfg: &mut aws_smithy_types::config_bag::ConfigBag,
    ) -> Result<(), aws_smithy_runtime_api::box_error::BoxError> {
        let request = context.request();
        let is_transaction = request.headers().get("x-amz-target").is_some_and(|t| t.ends_with("TransactWriteItems"));
        let body = request.body().bytes().map(|b| String::from_utf8_lossy(b).into_owned()).unwrap_or_default();
        if is_transaction && body.contains(&self.marker) && !self.fired() {
            cfg.interceptor_state().store_put(Marked);
        }
        Ok(())
    }

    fn read_before_deserialization(
        &self,
        context: &aws_smithy_runtime_api::client::interceptors::context::BeforeDeserializationInterceptorContextRef<'_>,
        _components: &aws_smithy_runtime_api::client::runtime_components::RuntimeComponents,
        cfg: &mut aws_smithy_types::config_bag::ConfigBag,
    ) -> Result<(), aws_smithy_runtime_api::box_error::BoxError> {
        let committed = context.response().status().is_success();
        if committed && cfg.load::<Marked>().is_some() && !self.fired.swap(true, std::sync::atomic::Ordering::SeqCst) {
            return Err("injected: the function died right after its commit".into());
        }
        Ok(())
    }
}
