//! Reachability of every dependency, each timed and checked concurrently, for `GET /v1/health`.

use crate::{AwsClients, Tables};
use async_trait::async_trait;
use billy_core::ports::{DependencyHealth, HealthProbe};
use futures::future::{BoxFuture, FutureExt, join_all};
use std::time::Instant;

#[derive(Debug, Clone)]
pub struct AwsHealth {
    clients: AwsClients,
    tables: Tables,
    /// (name for the report, queue URL) of every queue this deployment uses.
    queues: Vec<(String, String)>,
}

impl AwsHealth {
    pub fn new(clients: AwsClients, tables: Tables, queues: Vec<(String, String)>) -> Self {
        Self { clients, tables, queues }
    }
}

fn timed<'a, E: std::fmt::Debug>(
    name: String,
    call: impl Future<Output = Result<(), E>> + Send + 'a,
) -> BoxFuture<'a, DependencyHealth> {
    async move {
        let started = Instant::now();
        let result = call.await;
        DependencyHealth {
            name,
            ok: result.is_ok(),
            latency_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
            // The error kind only: health is public (no auth), so no internals.
            error: result.err().map(|e| {
                let text = format!("{e:?}");
                text.split(['(', '{', ' ']).next().unwrap_or("error").to_owned()
            }),
        }
    }
    .boxed()
}

#[async_trait]
impl HealthProbe for AwsHealth {
    async fn check(&self) -> Vec<DependencyHealth> {
        let c = &self.clients;
        let mut checks = Vec::new();
        for (label, table) in [("dynamodb:main", &self.tables.main), ("dynamodb:audit", &self.tables.audit)] {
            checks.push(timed(label.to_owned(), async move {
                c.dynamodb.describe_table().table_name(table).send().await.map(drop)
            }));
        }
        for (label, url) in &self.queues {
            checks.push(timed(format!("sqs:{label}"), async move {
                c.sqs.get_queue_attributes().queue_url(url).send().await.map(drop)
            }));
        }
        checks.push(timed("eventbridge".to_owned(), async move {
            c.eventbridge.list_event_buses().limit(1).send().await.map(drop)
        }));
        join_all(checks).await
    }
}
