//! Export queue consumer: runs the export jobs that `export.created` announcements ask for (the
//! outbox relays them here), streaming the ledger into S3 page by page.

use async_trait::async_trait;
use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use billy_aws::AwsClients;
use billy_core::ledger::{RUN_EXPORT, RunExport};
use billy_core::service::transactions::run_export;
use billy_files::S3Files;
use billy_lambda::SqsFunction;
use billy_lambda::config::{Config, MissingVariable};
use billy_lambda::deps::Deps;
use billy_lambda::sqs::{ConsumedQueue, Decoding, Queues, for_batch};

#[derive(Debug)]
pub struct App {
    deps: Deps,
    files: S3Files,
    queue: ConsumedQueue,
}

impl App {
    pub fn new(config: &Config, aws: &AwsClients, files: S3Files) -> Result<Self, MissingVariable> {
        Ok(Self { deps: Deps::new(config, aws)?, files, queue: ConsumedQueue::from_config(config)? })
    }
}

#[async_trait]
impl SqsFunction for App {
    async fn handle(&self, event: SqsEvent) -> Result<SqsBatchResponse, lambda_runtime::Error> {
        let p = self.deps.ports();
        let p = &p;
        let files = &self.files;
        let queues = Queues { publisher: &self.deps.queue, queue: &self.queue };
        let decoding = Decoding::new(RUN_EXPORT, &[1]);
        let outcome = for_batch(event, decoding, Some(queues), |runs: Vec<RunExport>| async move {
            let mut results = Vec::with_capacity(runs.len());
            // One at a time: each streams its own file.
            for run in &runs {
                results.push(run_export(p, files, &run.scope, &run.export).await.map(|e| {
                    tracing::info!(export = %e.id, rows = e.rows, bytes = e.bytes, "export done");
                }));
            }
            results
        })
        .await;
        Ok(outcome.response)
    }
}
