//! retention_service against the real MongoDB-compatible server: which logs remain, archives
//! and restores, the lease between replicas, a killed run, the admin trigger and bad settings.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use bson::{doc, Document};
use chrono::{DateTime, TimeZone, Utc};
use futures::TryStreamExt;
use logagg::auth::sha256_hex;
use logagg::settings::{KeySetting, RetentionPolicy, RetentionSettings, Scope};
use logagg::store::retention::{run_status, windowed_filter, PurgeTarget};
use logagg::store::stats::Rollup;
use logagg::store::Database;
use logagg::testsuite::{
    free_port, http_request, http_request_with, metric_in, wait_until, TestContext,
};
use logagg::{LogRecord, Severity};
use retention_service::archive::read_archive;
use retention_service::clock::ManualClock;
use retention_service::purge::{PurgeError, Purger, Trigger};
use tokio_util::sync::CancellationToken;

const SERVICES: [&str; 3] = ["web", "auth", "billing"];
const SEVERITIES: [Severity; 3] = [Severity::Debug, Severity::Info, Severity::Error];

/// A fixed "now" for tests whose purger runs on an injected clock.
fn test_now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 21, 6, 0, 0).unwrap()
}

/// debug 2 days; auth 5 days; errors 30 days; everything else 10 days (the default).
fn mixed_policies() -> RetentionSettings {
    let policy = |name: &str, services: &[&str], severities: &[&str], days| RetentionPolicy {
        name: name.into(),
        services: services.iter().map(|s| (*s).to_owned()).collect(),
        severities: severities.iter().map(|s| (*s).to_owned()).collect(),
        max_age_days: days,
    };
    RetentionSettings {
        policies: vec![
            policy("debug", &[], &["debug", "trace"], 2),
            policy("auth", &["auth"], &[], 5),
            policy("errors", &[], &["error", "fatal"], 30),
        ],
        default_max_age_days: 10,
        alert_max_age_days: 30,
        batch_size: 7,
        batch_pause_ms: std::time::Duration::from_millis(0),
        lease_seconds: std::time::Duration::from_secs(60),
        ..RetentionSettings::default()
    }
}

/// What the policies above keep, written out independently of the service's filters.
fn kept_by_mixed_policies(service: &str, severity: Severity, age_days: f64) -> bool {
    let max_age = if severity == Severity::Debug {
        2.0
    } else if service == "auth" {
        5.0
    } else if severity == Severity::Error {
        30.0
    } else {
        10.0
    };
    age_days < max_age
}

/// Two logs per service, severity and day, `day` days and 12 h or 18 h before `now`, for
/// `days` days (no log near a day boundary). Returns each record with its age in days.
fn spread_logs(now: DateTime<Utc>, days: i64) -> Vec<(LogRecord, f64)> {
    let mut logs = Vec::new();
    for day in 0..days {
        for service in SERVICES {
            for severity in SEVERITIES {
                for hours in [12, 18] {
                    let age = chrono::Duration::days(day) + chrono::Duration::hours(hours);
                    let timestamp = now - age;
                    let id = format!("{service}-{severity}-{day}-{hours}");
                    logs.push((
                        LogRecord {
                            id: id.clone(),
                            timestamp,
                            received_at: timestamp,
                            service: service.to_owned(),
                            severity,
                            message: format!("log {id}"),
                            host: Some("host-1".into()),
                            attributes: serde_json::Map::new(),
                            http: None,
                        },
                        age.num_minutes() as f64 / 1440.0,
                    ));
                }
            }
        }
    }
    logs
}

async fn seed(store: &Database, logs: &[(LogRecord, f64)]) {
    let records: Vec<LogRecord> = logs.iter().map(|(record, _)| record.clone()).collect();
    for chunk in records.chunks(1_000) {
        let outcome = store.insert_records(chunk).await.expect("seeding");
        assert_eq!(outcome.inserted, chunk.len());
        let mut rollup = Rollup::default();
        chunk.iter().for_each(|record| rollup.add_record(record));
        store.record_stats(&rollup).await.expect("rollups");
    }
    store
        .ensure_retention_indexes()
        .await
        .expect("creating indexes");
}

async fn all_documents(store: &Database) -> Vec<Document> {
    store
        .logs()
        .find(doc! {})
        .sort(doc! { "_id": 1 })
        .await
        .expect("find")
        .try_collect()
        .await
        .expect("documents")
}

async fn stored_ids(store: &Database) -> BTreeSet<String> {
    all_documents(store)
        .await
        .iter()
        .map(|document| document.get_str("_id").expect("string id").to_owned())
        .collect()
}

fn purger(
    context: &TestContext,
    settings: RetentionSettings,
    clock: &ManualClock,
    holder: &str,
) -> Purger {
    Purger {
        store: context.store.clone(),
        settings: Arc::new(settings),
        clock: Arc::new(clock.clone()),
        holder: holder.to_owned(),
        shutdown: CancellationToken::new(),
    }
}

fn expected_ids(logs: &[(LogRecord, f64)]) -> BTreeSet<String> {
    logs.iter()
        .filter(|(record, age)| kept_by_mixed_policies(&record.service, record.severity, *age))
        .map(|(record, _)| record.id.clone())
        .collect()
}

/// Waits until fewer than `total` logs are stored: a purge is under way.
async fn wait_for_deletes_to_begin(store: &Database, total: u64) {
    let began = wait_until(Duration::from_secs(30), || async {
        store.logs().count_documents(doc! {}).await.unwrap_or(total) < total
    })
    .await;
    assert!(began, "no log was deleted within 30 s");
}

fn scratch_dir(name: &str) -> PathBuf {
    let directory = std::env::temp_dir().join(format!(
        "logagg-retention-{name}-{}",
        uuid::Uuid::now_v7().simple()
    ));
    std::fs::create_dir_all(&directory).expect("scratch dir");
    directory
}

fn archive_files(directory: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for service in std::fs::read_dir(directory).expect("archive dir") {
        for file in std::fs::read_dir(service.expect("entry").path()).expect("service dir") {
            files.push(file.expect("entry").path());
        }
    }
    files.sort();
    files
}

#[tokio::test]
async fn mixed_policies_over_forty_days_leave_exactly_the_expected_logs_and_alerts() {
    let context = TestContext::new("retention_mixed").await;
    let now = test_now();
    let logs = spread_logs(now, 40);
    seed(&context.store, &logs).await;
    let day = chrono::Duration::days(1);
    let alerts = [
        doc! { "_id": "resolved-long-ago", "started_at": bson::DateTime::from_chrono(now - day * 41), "resolved_at": bson::DateTime::from_chrono(now - day * 40) },
        doc! { "_id": "resolved-recently", "started_at": bson::DateTime::from_chrono(now - day * 6), "resolved_at": bson::DateTime::from_chrono(now - day * 5) },
        doc! { "_id": "still-firing", "started_at": bson::DateTime::from_chrono(now - day * 100) },
    ];
    context
        .store
        .alerts()
        .insert_many(alerts)
        .await
        .expect("alerts");
    let clock = ManualClock::new(now);
    let purger = purger(&context, mixed_policies(), &clock, "replica-a");

    let dry = purger.run(Trigger::Manual, true).await.expect("dry run");
    assert_eq!(
        stored_ids(&context.store).await.len(),
        logs.len(),
        "a dry run deletes nothing"
    );
    let expected = expected_ids(&logs);
    assert_eq!(dry.total_deleted() as usize, logs.len() - expected.len());
    assert_eq!(dry.alerts.deleted, 1);

    let report = purger.run(Trigger::Manual, false).await.expect("purge");
    assert_eq!(stored_ids(&context.store).await, expected);
    let deleted_by: Vec<(&str, u64)> = report
        .policies
        .iter()
        .map(|policy| (policy.policy.as_str(), policy.deleted))
        .collect();
    let dry_by: Vec<(&str, u64)> = dry
        .policies
        .iter()
        .map(|policy| (policy.policy.as_str(), policy.deleted))
        .collect();
    assert_eq!(
        deleted_by, dry_by,
        "the dry run predicted each policy's deletes"
    );
    assert!(report.policies[0].batches > 1, "small batches: {report:?}");
    let remaining_alerts: BTreeSet<String> = context
        .store
        .alerts()
        .find(doc! {})
        .await
        .expect("alerts")
        .try_collect::<Vec<Document>>()
        .await
        .expect("alerts")
        .iter()
        .map(|alert| alert.get_str("_id").expect("id").to_owned())
        .collect();
    assert_eq!(
        remaining_alerts,
        BTreeSet::from(["resolved-recently".to_owned(), "still-firing".to_owned()])
    );
    assert_eq!(
        context.store.last_completed_run().await.expect("runs"),
        Some(now)
    );
    // Stats rollups go with the longest policy (errors, 30 days): exactly the hours of logs
    // younger than that remain.
    let rollup_keys: BTreeSet<(i64, String, String)> = context
        .store
        .stats()
        .find(doc! { "k": "counts" })
        .await
        .expect("rollups")
        .try_collect::<Vec<Document>>()
        .await
        .expect("rollups")
        .iter()
        .map(|rollup| {
            (
                rollup.get_datetime("t").expect("t").timestamp_millis(),
                rollup.get_str("service").expect("service").to_owned(),
                rollup.get_str("severity").expect("severity").to_owned(),
            )
        })
        .collect();
    let younger_than_30_days: BTreeSet<(i64, String, String)> = logs
        .iter()
        .filter(|(_, age)| *age < 30.0)
        .map(|(record, _)| {
            (
                record.timestamp.timestamp_millis() / 3_600_000 * 3_600_000,
                record.service.clone(),
                record.severity.as_str().to_owned(),
            )
        })
        .collect();
    assert_eq!(rollup_keys, younger_than_30_days);
    assert!(report.stats_deleted > 0);
    let again = purger
        .run(Trigger::Manual, false)
        .await
        .expect("second purge");
    assert_eq!(again.total_deleted(), 0, "a second run finds nothing to do");
    context.cleanup().await;
}

#[tokio::test]
async fn batches_walk_the_time_index() {
    let context = TestContext::new("retention_explain").await;
    let now = test_now();
    seed(&context.store, &spread_logs(now, 12)).await;
    let policies = retention_service::policy::compile(&mixed_policies());
    let cutoff = policies[2].cutoff(now);
    let filter = windowed_filter(
        PurgeTarget::Logs,
        retention_service::policy::expired_filter(&policies, 2, now),
        Some(cutoff - chrono::Duration::days(3)),
        Some(cutoff - chrono::Duration::days(2)),
    );
    let explained = context
        .store
        .client()
        .database(&context.settings.store.database)
        .run_command(doc! { "explain": {
            "find": &context.settings.store.logs_collection,
            "filter": filter,
            "sort": { "ts": 1 },
            "limit": 7,
        }})
        .await
        .expect("explain");
    let plan = explained
        .get_document("queryPlanner")
        .and_then(|planner| planner.get_document("winningPlan"))
        .expect("a winning plan")
        .to_string();
    assert!(plan.contains("IXSCAN"), "{plan}");
    assert!(plan.contains("\"indexName\": \"ts\""), "{plan}");
    assert!(!plan.contains("COLLSCAN"), "{plan}");
    context.cleanup().await;
}

#[tokio::test]
async fn archives_hold_exactly_the_deleted_logs_and_restore_them() {
    let context = TestContext::new("retention_archive").await;
    let now = test_now();
    let logs = spread_logs(now, 40);
    seed(&context.store, &logs).await;
    let before = all_documents(&context.store).await;
    let directory = scratch_dir("archive");
    let settings = RetentionSettings {
        archive_enabled: true,
        archive_dir: directory.to_string_lossy().into_owned(),
        ..mixed_policies()
    };
    let clock = ManualClock::new(now);
    let report = purger(&context, settings, &clock, "replica-a")
        .run(Trigger::Manual, false)
        .await
        .expect("purge");
    let after = stored_ids(&context.store).await;
    let deleted: Vec<&Document> = before
        .iter()
        .filter(|document| !after.contains(document.get_str("_id").expect("id")))
        .collect();
    assert_eq!(report.total_deleted() as usize, deleted.len());

    let files = archive_files(&directory);
    let mut archived = Vec::new();
    for file in &files {
        let name = file
            .file_name()
            .expect("name")
            .to_string_lossy()
            .into_owned();
        for document in read_archive(file).expect("readable archive") {
            let service = document.get_str("service").expect("service");
            let day = document
                .get_datetime("ts")
                .expect("ts")
                .to_chrono()
                .format("%Y-%m-%d")
                .to_string();
            assert_eq!(
                name,
                format!("{service}-{day}.ndjson.gz"),
                "one file per service per day"
            );
            archived.push(document);
        }
    }
    archived.sort_by_key(|document| document.get_str("_id").expect("id").to_owned());
    let deleted: Vec<Document> = deleted.into_iter().cloned().collect();
    assert_eq!(
        archived, deleted,
        "the archives hold exactly the deleted documents"
    );

    let restored = retention_service::restore(&context.settings, &files)
        .await
        .expect("restore");
    assert_eq!(restored.inserted as usize, deleted.len());
    assert_eq!(
        all_documents(&context.store).await,
        before,
        "restored as stored"
    );
    let twice = retention_service::restore(&context.settings, &files)
        .await
        .expect("restore again");
    assert_eq!(
        (twice.inserted, twice.duplicates as usize),
        (0, deleted.len())
    );
    std::fs::remove_dir_all(directory).expect("cleanup");
    context.cleanup().await;
}

#[tokio::test]
async fn when_archiving_fails_nothing_is_deleted() {
    let context = TestContext::new("retention_archive_fails").await;
    let now = test_now();
    let logs = spread_logs(now, 20);
    seed(&context.store, &logs).await;
    let directory = scratch_dir("archive_fails");
    let not_a_directory = directory.join("file");
    std::fs::write(&not_a_directory, b"in the way").expect("blocker");
    let settings = RetentionSettings {
        archive_enabled: true,
        archive_dir: not_a_directory.to_string_lossy().into_owned(),
        ..mixed_policies()
    };
    let clock = ManualClock::new(now);
    let outcome = purger(&context, settings, &clock, "replica-a")
        .run(Trigger::Manual, false)
        .await;
    assert!(
        matches!(outcome, Err(PurgeError::Archive(_))),
        "{outcome:?}"
    );
    assert_eq!(stored_ids(&context.store).await.len(), logs.len());
    let failed = context
        .store
        .retention_runs()
        .find_one(doc! { "status": run_status::FAILED })
        .await
        .expect("runs")
        .expect("the failed run is recorded");
    assert!(failed
        .get_str("error")
        .expect("error")
        .contains("archiving failed"));
    std::fs::remove_dir_all(directory).expect("cleanup");
    context.cleanup().await;
}

#[tokio::test]
async fn two_replicas_never_purge_at_once() {
    let context = TestContext::new("retention_lease").await;
    let now = test_now();
    let logs = spread_logs(now, 40);
    seed(&context.store, &logs).await;
    let clock = ManualClock::new(now);
    let slow = RetentionSettings {
        batch_size: 10,
        batch_pause_ms: std::time::Duration::from_millis(50),
        ..mixed_policies()
    };
    let replica_a = purger(&context, slow.clone(), &clock, "replica-a");
    let replica_b = purger(&context, slow.clone(), &clock, "replica-b");

    // Started together: one purges, the other is told who holds the lease.
    let (first, second) = tokio::join!(
        replica_a.run(Trigger::Schedule, false),
        replica_b.run(Trigger::Schedule, false)
    );
    let outcomes = [first.is_ok(), second.is_ok()];
    assert_eq!(
        outcomes.iter().filter(|ok| **ok).count(),
        1,
        "{first:?} {second:?}"
    );
    let refused = if first.is_ok() { second } else { first };
    assert!(
        matches!(refused, Err(PurgeError::LeaseHeld(_))),
        "{refused:?}"
    );
    assert_eq!(stored_ids(&context.store).await, expected_ids(&logs));

    // A replica whose lease was taken over (it looked expired to another) stops before
    // its next batch, so the two never delete side by side.
    context.store.logs().drop().await.expect("drop");
    seed(&context.store, &logs).await;
    let total = logs.len() as u64;
    let running = tokio::spawn({
        let replica_a = replica_a.clone();
        async move { replica_a.run(Trigger::Schedule, false).await }
    });
    wait_for_deletes_to_begin(&context.store, total).await;
    let later = now + chrono::Duration::seconds(61);
    assert_eq!(
        context
            .store
            .acquire_lease("retention", "replica-c", later, Duration::from_secs(600))
            .await
            .expect("lease"),
        None
    );
    let outcome = running.await.expect("task");
    assert!(
        matches!(outcome, Err(PurgeError::LeaseLost(_))),
        "{outcome:?}"
    );
    let left_by_a = context
        .store
        .logs()
        .count_documents(doc! {})
        .await
        .expect("count");
    assert!(
        left_by_a > expected_ids(&logs).len() as u64,
        "stopped midway"
    );
    assert!(matches!(
        replica_b.run(Trigger::Schedule, false).await,
        Err(PurgeError::LeaseHeld(_))
    ));
    assert_eq!(
        context
            .store
            .logs()
            .count_documents(doc! {})
            .await
            .expect("count"),
        left_by_a,
        "nobody deleted while replica-c holds the lease"
    );
    context.cleanup().await;
}

#[tokio::test]
async fn a_run_killed_midway_completes_on_the_next() {
    let context = TestContext::new("retention_killed").await;
    let now = Utc::now();
    let logs = spread_logs(now, 40);
    seed(&context.store, &logs).await;
    let total = logs.len() as u64;
    let mut child = Command::new(env!("CARGO_BIN_EXE_retention_service"))
        .arg("purge")
        .envs(context.env_vars())
        .envs([
            ("LOGAGG__RETENTION__BATCH_SIZE", "5"),
            ("LOGAGG__RETENTION__BATCH_PAUSE_MS", "100"),
            ("LOGAGG__RETENTION__DEFAULT_MAX_AGE_DAYS", "10"),
            ("LOGAGG__RETENTION__LEASE_SECONDS", "60"),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("retention_service purge");
    wait_for_deletes_to_begin(&context.store, total).await;
    child.kill().expect("SIGKILL");
    child.wait().expect("reaped");
    let expected: BTreeSet<String> = logs
        .iter()
        .filter(|(_, age)| *age < 10.0)
        .map(|(record, _)| record.id.clone())
        .collect();
    let left = stored_ids(&context.store).await;
    assert!(
        left.len() > expected.len(),
        "killed midway: {} left",
        left.len()
    );
    let killed = context
        .store
        .retention_runs()
        .find_one(doc! {})
        .await
        .expect("runs")
        .expect("the killed run was recorded");
    assert_eq!(
        killed.get_str("status").expect("status"),
        run_status::RUNNING
    );

    // The next run comes after the dead replica's lease expired: 60 s after its last renewal,
    // which was within the minute since `now`.
    let clock = ManualClock::new(now + chrono::Duration::seconds(120));
    let settings = RetentionSettings {
        lease_seconds: std::time::Duration::from_secs(60),
        batch_pause_ms: std::time::Duration::from_millis(0),
        ..RetentionSettings::default()
    };
    purger(&context, settings, &clock, "replica-next")
        .run(Trigger::Missed, false)
        .await
        .expect("the next run");
    assert_eq!(stored_ids(&context.store).await, expected);
    context.cleanup().await;
}

#[tokio::test]
async fn the_service_catches_up_a_missed_run_and_purges_on_post() {
    let context = TestContext::new("retention_service").await;
    let now = test_now();
    let logs = spread_logs(now, 40);
    seed(&context.store, &logs).await;
    let admin_port = free_port();
    let mut settings = context.settings.clone();
    settings.retention = mixed_policies();
    settings.telemetry.admin_listen = std::net::SocketAddr::from(([127, 0, 0, 1], admin_port));
    let (admin_key, read_key) = ("ops-admin-key-0123456789", "ops-read-key-0123456789");
    settings.auth.keys = vec![
        KeySetting {
            name: "ops".into(),
            sha256: sha256_hex(admin_key),
            scopes: vec![Scope::Admin],
            services: None,
        },
        KeySetting {
            name: "reader".into(),
            sha256: sha256_hex(read_key),
            scopes: vec![Scope::Read],
            services: None,
        },
    ];
    let admin = [("authorization", format!("Bearer {admin_key}"))];
    let admin: Vec<(&str, &str)> = admin.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let shutdown = CancellationToken::new();
    let clock = ManualClock::new(now);
    let service = tokio::spawn(retention_service::run(
        settings,
        Arc::new(clock.clone()),
        shutdown.clone(),
    ));

    // No run ever completed, so starting counts as having missed one.
    let expected = expected_ids(&logs);
    let store = context.store.clone();
    let expected_count = expected.len() as u64;
    assert!(
        wait_until(Duration::from_secs(30), || {
            let store = store.clone();
            async move {
                store.last_completed_run().await.ok().flatten().is_some()
                    && store.logs().count_documents(doc! {}).await.ok() == Some(expected_count)
            }
        })
        .await
    );
    assert_eq!(stored_ids(&context.store).await, expected);

    // A day later, a manual trigger. Keys are configured: without an admin key, refused
    // (even a dry run), with nothing deleted.
    clock.set(now + chrono::Duration::days(1));
    for (headers, status, code) in [
        (vec![], 401, "unauthorized"),
        (
            vec![("x-api-key", "ops-admin-key-0123456780")],
            401,
            "unauthorized",
        ),
        (vec![("x-api-key", read_key)], 403, "forbidden"),
    ] {
        for path in ["/api/v1/purge", "/api/v1/purge?dry_run=true"] {
            let (got, body) = http_request_with(admin_port, "POST", path, &headers).await;
            assert_eq!(got, status, "{path} {headers:?}: {body}");
            assert!(body.contains(&format!("\"code\":\"{code}\"")), "{body}");
        }
    }
    assert_eq!(stored_ids(&context.store).await, expected);
    // With it: first dry, then for real.
    let (status, body) =
        http_request_with(admin_port, "POST", "/api/v1/purge?dry_run=true", &admin).await;
    assert_eq!(status, 200, "{body}");
    let dry: serde_json::Value = serde_json::from_str(&body).expect("json report");
    let would_delete: u64 = dry["policies"]
        .as_array()
        .expect("policies")
        .iter()
        .map(|policy| policy["deleted"].as_u64().expect("count"))
        .sum();
    assert!(would_delete > 0, "{body}");
    assert_eq!(stored_ids(&context.store).await, expected);
    let (status, body) = http_request_with(admin_port, "POST", "/api/v1/purge", &admin).await;
    assert_eq!(status, 200, "{body}");
    let left = context
        .store
        .logs()
        .count_documents(doc! {})
        .await
        .expect("count");
    assert_eq!(left, expected_count - would_delete);

    let (status, body) =
        http_request_with(admin_port, "POST", "/api/v1/purge?dry_run=maybe", &admin).await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("\"code\":\"bad_parameter\""), "{body}");
    let (_, metrics) = http_request(admin_port, "GET", "/metrics").await;
    assert!(
        metric_in(&metrics, "logagg_retention_deleted_total") >= (logs.len() as u64 - left) as f64
    );
    assert!(metric_in(&metrics, "logagg_retention_last_success_timestamp_seconds") > 0.0);
    // /metrics and /healthz stay open to scrapers and orchestrators.
    let (status, _) = http_request(admin_port, "GET", "/healthz").await;
    assert_eq!(status, 200);
    // Each request is counted by key name, route and outcome (never the key itself).
    let requests = |key: &str, outcome: &str| -> f64 {
        logagg::testsuite::metric_with_labels(
            &metrics,
            "logagg_api_requests_total",
            &[
                ("key", key),
                ("route", "/api/v1/purge"),
                ("outcome", outcome),
            ],
        )
    };
    assert_eq!(requests("ops", "allowed"), 3.0, "{metrics}");
    assert_eq!(requests("none", "unauthorized"), 4.0);
    assert_eq!(requests("reader", "forbidden"), 2.0);
    assert!(!metrics.contains(admin_key) && !metrics.contains(read_key));

    shutdown.cancel();
    service.await.expect("task").expect("service ran");
    context.cleanup().await;
}

#[tokio::test]
async fn a_run_missed_while_down_runs_at_start() {
    let context = TestContext::new("retention_missed").await;
    let now = test_now();
    let logs = spread_logs(now, 40);
    seed(&context.store, &logs).await;
    // The last completed run was two days ago: yesterday's midnight run was missed.
    let two_days_ago = now - chrono::Duration::days(2);
    context
        .store
        .record_run_start("earlier", "replica-gone", "schedule", two_days_ago)
        .await
        .expect("run record");
    context
        .store
        .record_run_end(
            "earlier",
            run_status::COMPLETED,
            two_days_ago,
            doc! {},
            None,
        )
        .await
        .expect("run record");
    let mut settings = context.settings.clone();
    settings.retention = mixed_policies();
    let shutdown = CancellationToken::new();
    let service = tokio::spawn(retention_service::run(
        settings,
        Arc::new(ManualClock::new(now)),
        shutdown.clone(),
    ));
    let runs = context.store.retention_runs().clone();
    let caught_up = wait_until(Duration::from_secs(30), || async {
        runs.count_documents(doc! { "trigger": "missed", "status": run_status::COMPLETED })
            .await
            .unwrap_or(0)
            == 1
    })
    .await;
    assert!(caught_up, "no catch-up run");
    assert_eq!(stored_ids(&context.store).await, expected_ids(&logs));
    shutdown.cancel();
    service.await.expect("task").expect("service ran");
    context.cleanup().await;
}

#[tokio::test]
async fn the_purge_command_reports_a_dry_run_as_json() {
    let context = TestContext::new("retention_cli_dry").await;
    let now = Utc::now();
    let logs = spread_logs(now, 40);
    seed(&context.store, &logs).await;
    let output = Command::new(env!("CARGO_BIN_EXE_retention_service"))
        .args(["purge", "--dry-run"])
        .envs(context.env_vars())
        .output()
        .expect("retention_service purge --dry-run");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let report: serde_json::Value =
        serde_json::from_slice(&output.stdout).expect("a JSON report on stdout");
    assert_eq!(report["dry_run"], true);
    assert_eq!(report["policies"][0]["policy"], "default");
    let past_ten_days = logs.iter().filter(|(_, age)| *age >= 10.0).count();
    assert_eq!(report["policies"][0]["deleted"], past_ten_days);
    assert_eq!(
        stored_ids(&context.store).await.len(),
        logs.len(),
        "nothing deleted"
    );
    context.cleanup().await;
}

#[tokio::test]
async fn the_cron_job_runs_purges_on_its_schedule() {
    let context = TestContext::new("retention_cron").await;
    let mut settings = context.settings.clone();
    settings.retention.schedule = "*/1 * * * * *".into();
    let shutdown = CancellationToken::new();
    let service = tokio::spawn(retention_service::run(
        settings,
        Arc::new(retention_service::clock::SystemClock),
        shutdown.clone(),
    ));
    let runs = context.store.retention_runs().clone();
    let scheduled_runs_completed = || {
        let runs = runs.clone();
        async move {
            runs.count_documents(doc! { "trigger": "schedule", "status": run_status::COMPLETED })
                .await
                .unwrap_or(0)
        }
    };
    assert!(
        wait_until(Duration::from_secs(20), || async {
            scheduled_runs_completed().await >= 2
        })
        .await,
        "the every-second schedule did not run twice"
    );
    shutdown.cancel();
    service.await.expect("task").expect("service ran");
    context.cleanup().await;
}

#[tokio::test]
async fn invalid_settings_fail_at_start_naming_the_setting() {
    let directory = scratch_dir("settings");
    let file = directory.join("retention.toml");
    std::fs::write(
        &file,
        "[[retention.policies]]\nname = \"noisy\"\nseverities = [\"loud\"]\nmax_age_days = 3\n",
    )
    .expect("settings file");
    let cases: [(&str, &str, &str); 3] = [
        (
            "LOGAGG__RETENTION__SCHEDULE",
            "at midnight",
            "retention.schedule",
        ),
        (
            "LOGAGG__RETENTION__DEFAULT_MAX_AGE_DAYS",
            "-1",
            "retention.default_max_age_days",
        ),
        (
            "LOGAGG_CONFIG",
            &file.to_string_lossy(),
            "unknown severity `loud`",
        ),
    ];
    for (key, value, expected) in cases {
        let output = Command::new(env!("CARGO_BIN_EXE_retention_service"))
            .args(["purge", "--dry-run"])
            .env(key, value)
            .output()
            .expect("retention_service");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{key}={value} was accepted");
        assert!(stderr.contains(expected), "{key}={value}: {stderr}");
    }
    std::fs::remove_dir_all(directory).expect("cleanup");
}

#[tokio::test]
async fn word_blocks_go_once_all_their_logs_have() {
    let context = TestContext::new("retention_blocks").await;
    let now = test_now();
    let logs = spread_logs(now, 12);
    // Two batches, as two collector writes: one all past the default 10 days, one not.
    let (old, young): (Vec<_>, Vec<_>) = logs.into_iter().partition(|(_, age)| *age > 10.0);
    seed(&context.store, &old).await;
    seed(&context.store, &young).await;
    let blocks = context.store.blocks().expect("word search on").clone();
    let with_ids = doc! { "ids": { "$exists": true } };
    let before = blocks
        .count_documents(with_ids.clone())
        .await
        .expect("count");
    let clock = ManualClock::new(now);
    let report = purger(&context, RetentionSettings::default(), &clock, "r1")
        .run(Trigger::Manual, false)
        .await
        .expect("purge");
    assert!(report.total_deleted() >= old.len() as u64);
    assert!(report.blocks_deleted > 0, "{report:?}");
    let left: Vec<Document> = blocks
        .find(with_ids)
        .await
        .expect("blocks")
        .try_collect()
        .await
        .expect("blocks");
    assert_eq!(left.len() as u64 + report.blocks_deleted, before);
    // What is left is exactly the young batch's blocks: every young log is still in one.
    let left_ids: BTreeSet<String> = left
        .iter()
        .flat_map(|block| block.get_array("ids").expect("ids").iter())
        .filter_map(|id| id.as_str().map(str::to_owned))
        .collect();
    let young_ids: BTreeSet<String> = young.iter().map(|(record, _)| record.id.clone()).collect();
    assert_eq!(left_ids, young_ids);
    context.cleanup().await;
}
