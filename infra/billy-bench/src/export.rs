//! The 100,000-row export: the ledger seeded straight into fresh tables, then exported by the
//! export use case run in a process of its own (this binary, `billy-bench export ...`), so its peak
//! resident memory is the export's alone.

use billy_core::ids::{Id, IdKind};
use billy_core::ports::{Changeset, UnitOfWork, Write};
use billy_core::tenant::{Mode, Scope};
use billy_core::transaction::{Transaction, TransactionStatus, TransactionType};
use billy_local::testing::TestResources;
use futures::stream::{self, StreamExt};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::time::Instant;

fn deps(main: &str, audit: &str, bus: &str, aws: &billy_aws::AwsClients) -> billy_lambda::deps::Deps {
    let config = billy_lambda::Config::from_map(BTreeMap::from([
        ("BILLY_TABLE".to_owned(), main.to_owned()),
        ("BILLY_AUDIT_TABLE".to_owned(), audit.to_owned()),
        ("BILLY_EVENT_BUS".to_owned(), bus.to_owned()),
    ]));
    billy_lambda::deps::Deps::new(&config, aws).expect("deps")
}

/// Seeds `rows` transactions, exports them in a child process, and reports time and memory.
pub async fn measure(rows: usize) -> Value {
    let res = TestResources::provision().await;
    let p = &res.provisioned;
    let (main, audit, bus) =
        (p.tables["BillyTable"].clone(), p.tables["AuditTable"].clone(), p.buses["BillyEventBus"].clone());
    let bucket = p.buckets["ExportsBucket"].clone();
    let scope = Scope::new(Id::derived(IdKind::Tenant, chrono::Utc::now(), "bench-export"), Mode::Test);
    let t0 = chrono::Utc::now() - chrono::Duration::days(400);
    let seeding = Instant::now();
    let unit = billy_aws::unit::DynamoUnitOfWork::new(res.aws.dynamodb.clone(), res.tables());
    let batches: Vec<Vec<usize>> = (0..rows).collect::<Vec<_>>().chunks(500).map(<[usize]>::to_vec).collect();
    stream::iter(batches)
        .for_each_concurrent(2, |batch| {
            let (unit, scope) = (&unit, &scope);
            async move {
                let changes = batch
                    .into_iter()
                    .map(|i| {
                        let at = t0 + chrono::Duration::seconds(i64::try_from(i).unwrap_or(0) * 60);
                        let inv = billy_core::invoice::Invoice::draft(
                            Id::derived(IdKind::Invoice, at, &format!("inv{i}")),
                            Id::derived(IdKind::Customer, t0, &format!("cus{}", i % 50)),
                            None,
                            billy_core::plan::Direction::Debit,
                            billy_core::money::Currency::parse("usd", "c").unwrap(),
                            None,
                            at,
                            false,
                        )
                        .with_items(vec![billy_core::invoice::InvoiceItem::new("Seat licence", 1, 1999).unwrap()])
                        .unwrap();
                        let id = Id::derived(IdKind::Transaction, at, &format!("txn{i}"));
                        let mut t = Transaction::for_invoice(id, &inv, TransactionType::Charge, 1, 1999, at);
                        t.gateway = "sandbox".into();
                        t.settle(TransactionStatus::Succeeded, at, None).unwrap();
                        Changeset {
                            scope: scope.clone(),
                            writes: vec![Write::Transaction { transaction: t, expected: None }],
                            events: Vec::new(),
                        }
                    })
                    .collect();
                for r in unit.commit_each(changes).await {
                    r.expect("seeded");
                }
            }
        })
        .await;
    let seeded_s = seeding.elapsed().as_secs_f64();
    let d = deps(&main, &audit, &bus, &res.aws);
    let ctx = billy_core::audit::Context::new(
        scope.clone(),
        billy_core::audit::Actor::System { function: "bench".into() },
        None,
    );
    let export =
        billy_core::service::transactions::create_export(&d.ports(), &ctx, Default::default()).await.expect("export");
    let me = std::env::current_exe().expect("own path");
    let output = tokio::process::Command::new(me)
        .args(["export", &main, &audit, &bus, &bucket, &scope.key(), export.id.as_str()])
        .output()
        .await
        .expect("the export process runs");
    let mut measured: Value = serde_json::from_slice(&output.stdout).unwrap_or_else(
        |_| json!({"error": String::from_utf8_lossy(&output.stderr).chars().take(500).collect::<String>()}),
    );
    measured["rows_seeded"] = json!(rows);
    measured["seeding_s"] = json!((seeded_s * 100.0).round() / 100.0);
    res.teardown().await;
    measured
}

/// The child: runs one export and prints its time, size and this process's peak resident memory.
pub async fn child(args: &[String]) {
    let [main, audit, bus, bucket, scope, export] = args else {
        panic!("export <main> <audit> <bus> <bucket> <scope> <id>")
    };
    let aws = billy_aws::AwsClients::local(&billy_aws::LocalEndpoints::from_env()).await;
    let d = deps(main, audit, bus, &aws);
    let files = billy_files::S3Files::local(&billy_aws::LocalEndpoints::from_env().localstack, bucket.clone());
    let scope = Scope::parse_key(scope).expect("scope");
    let started = Instant::now();
    let done =
        billy_core::service::transactions::run_export(&d.ports(), &files, &scope, &Id::from_trusted(export.clone()))
            .await
            .expect("export");
    let seconds = started.elapsed().as_secs_f64();
    let peak_mb = crate::coldstart::peak_rss_mb("self");
    println!(
        "{}",
        json!({"rows": done.rows, "bytes": done.bytes, "export_s": (seconds * 100.0).round() / 100.0,
            "rows_per_s": (done.rows as f64 / seconds).round(), "peak_rss_mb": (peak_mb * 10.0).round() / 10.0})
    );
}
