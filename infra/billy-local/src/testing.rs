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
}

impl Default for StackOptions {
    fn default() -> Self {
        Self { meter: None, runner: RunnerOptions::default(), sandbox_delay: Duration::from_millis(50) }
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

    async fn start_with_options(
        template: &Template,
        make: impl Fn(&FunctionDef, &Config, &AwsClients) -> Result<Handler, String>,
        options: StackOptions,
    ) -> Self {
        billy_lambda::telemetry::init();
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
        })
        .await
        .expect("sandbox gateway binds a loopback port");
        let parameters = BTreeMap::from([
            ("AdminToken".to_owned(), admin_token.clone()),
            ("SandboxUrl".to_owned(), sandbox.url()),
            ("SandboxApiKey".to_owned(), sandbox_api_key.clone()),
            ("SandboxWebhookSecret".to_owned(), webhook_secret.clone()),
        ]);
        let provisioned = provision(template, &unique_prefix(), &parameters, &aws)
            .await
            .expect("local stack is up (run tests through `make test`)");
        let runner =
            Runner::build(template, &provisioned, &aws, |def, config| make(def, config, &aws)).expect("runner wires");
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
