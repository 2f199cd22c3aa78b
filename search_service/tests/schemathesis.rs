//! The OpenAPI document states what the API enforces: schemathesis (the real client, from
//! PyPI, installed by `scripts/setup.sh`) generates requests from `/api/v1/openapi.json`,
//! valid and invalid, against the service over a real socket with logs stored, and runs
//! every check: no server error, no schema-valid request refused, no invalid one accepted,
//! answers as documented. The live tail is left out (a stream that never ends).

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use chrono::Utc;
use logagg::store::stats::Rollup;
use logagg::testsuite::TestContext;
use logagg::{LogRecord, Severity};
use tokio_util::sync::CancellationToken;

#[path = "support/server.rs"]
mod server;

/// Longest a schemathesis run may take before the test gives up on it.
const RUN_TIMEOUT: Duration = Duration::from_secs(600);

/// The schemathesis command: `LOGAGG_SCHEMATHESIS`, else the venv `scripts/setup.sh` makes.
fn schemathesis() -> PathBuf {
    if let Some(path) = std::env::var_os("LOGAGG_SCHEMATHESIS") {
        return PathBuf::from(path);
    }
    let workspace = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_owned();
    let data_dir =
        std::env::var_os("LOGAGG_DATA_DIR").map_or_else(|| workspace.join(".data"), PathBuf::from);
    data_dir.join("venv/bin/schemathesis")
}

/// A few hundred logs over the last hours, access logs among them, with their rollups.
async fn seed(context: &TestContext) {
    let now = Utc::now();
    let records: Vec<LogRecord> = (0..300)
        .map(|index| {
            let timestamp = now - chrono::Duration::seconds(index * 37);
            let http = (index % 3 == 0).then(|| logagg::record::HttpFields {
                method: Some(["GET", "POST", "HEAD"][index as usize % 3].into()),
                path: Some(format!("/items/{}", index % 40)),
                status: Some([200, 404, 503][index as usize % 3]),
                duration_ms: Some(5.0 + (index % 90) as f64),
                ..Default::default()
            });
            LogRecord {
                id: format!("schemathesis-{index}"),
                timestamp,
                received_at: timestamp,
                service: ["web", "auth", "billing.api"][index as usize % 3].into(),
                severity: Severity::ALL[index as usize % Severity::ALL.len()],
                message: format!("request {index} took a while: order {}", index % 11),
                host: Some(format!("host-{}", index % 4)),
                attributes: Default::default(),
                http,
            }
        })
        .collect();
    context.store.insert_records(&records).await.expect("seed");
    let mut rollup = Rollup::default();
    records.iter().for_each(|record| rollup.add_record(record));
    context.store.record_stats(&rollup).await.expect("rollups");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schemathesis_finds_no_request_the_document_and_the_api_disagree_on() {
    let command = schemathesis();
    assert!(
        command.exists(),
        "{} is missing: run scripts/setup.sh (it installs schemathesis into .data/venv)",
        command.display()
    );
    let context = TestContext::new("schemathesis").await;
    context.store.ensure_indexes().await.expect("indexes");
    seed(&context).await;
    let shutdown = CancellationToken::new();
    let port = server::serve(&context, &shutdown).await;

    let run = tokio::process::Command::new(&command)
        .args([
            "run",
            &format!("http://127.0.0.1:{port}/api/v1/openapi.json"),
            "--checks",
            "all",
            "--exclude-path-regex",
            "tail",
        ])
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(RUN_TIMEOUT, run)
        .await
        .expect("schemathesis finished in time")
        .expect("schemathesis ran");
    let report = String::from_utf8_lossy(&output.stdout);
    println!("{report}");
    shutdown.cancel();
    context.cleanup().await;
    assert!(
        output.status.success(),
        "schemathesis found disagreements (report above): {}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(report.contains("passed"), "schemathesis ran no test case");
}
