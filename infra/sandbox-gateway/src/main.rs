//! `sandbox-gateway`: the local payment gateway as its own loopback process (`make run` starts it).

use sandbox_gateway::{SandboxConfig, start};
use std::net::SocketAddr;
use std::time::Duration;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt().with_target(false).init();
    let env = |k: &str, d: &str| std::env::var(k).unwrap_or_else(|_| d.to_owned());
    let port: u16 = env("SANDBOX_PORT", "4610").parse()?;
    let config = SandboxConfig {
        bind: SocketAddr::from(([127, 0, 0, 1], port)),
        api_key: env("SANDBOX_API_KEY", "sandbox-api-key"),
        webhook_secret: env("SANDBOX_WEBHOOK_SECRET", "sandbox-webhook-secret"),
        webhook_url: Some(env("SANDBOX_WEBHOOK_URL", "http://127.0.0.1:3000/v1/webhooks/sandbox")),
        delay: Duration::from_millis(env("SANDBOX_DELAY_MS", "100").parse()?),
        // Test numbers only, kept by the sandbox itself (never by Billy), so tokens outlive a restart.
        vault_file: std::env::var_os("SANDBOX_VAULT_FILE").map(Into::into),
    };
    let running = start(config).await?;
    println!("sandbox gateway listening on {}", running.url());
    tokio::signal::ctrl_c().await?;
    running.shutdown().await;
    Ok(())
}
