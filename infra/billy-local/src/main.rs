//! `billy-local`: provisions the local stack from template.yaml, creates a development tenant,
//! and serves Billy's API and queues until Ctrl-C.

use billy_aws::AwsClients;
use billy_aws::tenants::DynamoTenants;
use billy_core::clock::SystemClock;
use billy_core::ids::RandomIds;
use billy_local::{Runner, RunnerOptions, Template, functions, provision};
use std::collections::BTreeMap;
use std::net::SocketAddr;

/// Printed when BILLY_ADMIN_TOKEN is unset: a development default, never for deployments.
const DEV_ADMIN_TOKEN: &str = "billy-dev-admin-token-0000000000000000";

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match &args[..] {
        [] => {}
        [command, log] if command == "check-access" => return check_access(std::path::Path::new(log)),
        _ => return Err("usage: billy-local (serves Billy locally) | billy-local check-access <access log>".into()),
    }
    billy_lambda::telemetry::init();
    let port: u16 = std::env::var("BILLY_PORT").ok().map_or(Ok(3000), |p| p.parse())?;
    let admin_token = std::env::var("BILLY_ADMIN_TOKEN").unwrap_or_else(|_| DEV_ADMIN_TOKEN.to_owned());
    let prefix = std::env::var("BILLY_PREFIX").unwrap_or_else(|_| "billy-dev".to_owned());
    let template_path =
        std::env::var("BILLY_TEMPLATE").map_or_else(|_| billy_local::default_template_path(), Into::into);

    // The runner creates tables and queues: refuse to do that anywhere but a local stack.
    let endpoint = std::env::var("AWS_ENDPOINT_URL").unwrap_or_default();
    if !(endpoint.starts_with("http://127.0.0.1:") || endpoint.starts_with("http://localhost:")) {
        return Err(
            "billy-local runs only against a local stack: set AWS_ENDPOINT_URL to a loopback URL (make run does)"
                .into(),
        );
    }
    let template = Template::load(&template_path)?;
    let aws = AwsClients::from_env().await;
    let env = |k: &str, d: &str| std::env::var(k).unwrap_or_else(|_| d.to_owned());
    // The sandbox gateway `make run` starts beside the runner (same defaults as its binary).
    let parameters = BTreeMap::from([
        ("AdminToken".to_owned(), admin_token.clone()),
        ("SandboxUrl".to_owned(), env("SANDBOX_URL", "http://127.0.0.1:4610")),
        ("SandboxApiKey".to_owned(), env("SANDBOX_API_KEY", "sandbox-api-key")),
        ("SandboxWebhookSecret".to_owned(), env("SANDBOX_WEBHOOK_SECRET", "sandbox-webhook-secret")),
        // Local receivers (a test-mode endpoint on 127.0.0.1) are what local development needs.
        ("WebhookLocalEndpoints".to_owned(), "allow".to_owned()),
    ]);
    let provisioned = provision(&template, &prefix, &parameters, &aws).await?;
    let runner = Runner::build(&template, &provisioned, &aws, |def, config| functions::build(&def.name, config, &aws))?;
    let options = RunnerOptions { bind: SocketAddr::from(([127, 0, 0, 1], port)), ..RunnerOptions::default() };
    let running = runner.start(&options).await?;

    let tables = billy_aws::Tables {
        main: provisioned.tables["BillyTable"].clone(),
        audit: provisioned.tables["AuditTable"].clone(),
    };
    let tenants = DynamoTenants::new(aws.dynamodb.clone(), tables);
    let dev =
        billy_core::tenant::create_tenant(&tenants, &SystemClock, &RandomIds::new(SystemClock), None, "Development")
            .await?;

    println!("Billy is serving {}/v1 (stack prefix '{prefix}')", running.url());
    println!("  health:        curl {}/v1/health", running.url());
    println!(
        "  admin token:   {admin_token}{}",
        if admin_token == DEV_ADMIN_TOKEN { " (development default)" } else { "" }
    );
    println!("  test API key:  {}   (tenant {})", dev.test_key.expose(), dev.tenant.id);
    println!("  dashboard:     {}/dashboard   (sign in with the test API key)", running.url());
    println!(
        "  try:           curl -H 'Authorization: Bearer {}' -d '{{\"name\":\"Ada\"}}' -H 'Content-Type: application/json' {}/v1/customers",
        dev.test_key.expose(),
        running.url()
    );
    println!("Press Ctrl-C to stop.");

    tokio::signal::ctrl_c().await?;
    println!("stopping: finishing in-flight requests and batches");
    running.shutdown().await;
    Ok(())
}

/// `billy-local check-access <log>`: every function's policy in template.yaml against what the
/// tests recorded it doing (`make test` runs it after the tests); prints the figures per function
/// and fails on an action used without a grant or granted and never used.
fn check_access(log: &std::path::Path) -> Result<(), Box<dyn std::error::Error>> {
    let text = std::fs::read_to_string(log).map_err(|e| format!("cannot read {}: {e}", log.display()))?;
    let used = billy_local::access::Access::parse_log(&text)?;
    let template = Template::load(&billy_local::default_template_path())?;
    let reports = billy_local::access::check(&template, &used)?;
    println!("{:<22} {:>8} {:>6}  granted for paths the suite does not reach", "function", "granted", "used");
    let mut problems = Vec::new();
    for r in &reports {
        println!("{:<22} {:>8} {:>6}  {}", r.function, r.granted, r.used, r.declared_unused.join(", "));
        problems.extend(r.findings());
    }
    let (granted, used): (usize, usize) = reports.iter().fold((0, 0), |(g, u), r| (g + r.granted, u + r.used));
    println!("{:<22} {granted:>8} {used:>6}", "all functions");
    if problems.is_empty() {
        println!("every function's policy grants exactly what it was seen to use");
        Ok(())
    } else {
        for p in &problems {
            eprintln!("{p}");
        }
        Err(format!("{} least-privilege finding(s) in template.yaml", problems.len()).into())
    }
}
