//! The shipper against the real RabbitMQ: a file followed across rotation and a restart
//! sends every line exactly once; unparseable lines are dead-lettered with the reason;
//! stdin is read to its end.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use lapin::options::BasicGetOptions;
use logagg::formats::LineFormat;
use logagg::testsuite::{wait_until, TestContext};
use source_service::ingest::shipper::{ship, ShipOptions};
use tokio_util::sync::CancellationToken;

const TIMEOUT: Duration = Duration::from_secs(30);

fn scratch(name: &str) -> PathBuf {
    let directory = std::env::temp_dir().join(format!(
        "logagg-shipper-{name}-{}-{}",
        std::process::id(),
        uuid::Uuid::now_v7().simple()
    ));
    std::fs::create_dir_all(&directory).expect("scratch dir");
    directory
}

fn append(path: &Path, from: usize, count: usize) {
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .expect("log file");
    for index in from..from + count {
        writeln!(file, "2026-11-21 10:00:00 web info line {index}").expect("write");
    }
    file.sync_all().expect("sync");
}

/// Takes whatever the storage queue holds, adding each line's message to `seen`, counted.
async fn drain(context: &TestContext, seen: &mut BTreeMap<String, usize>) {
    for record in context
        .take_records(&context.settings.broker.storage_queue)
        .await
    {
        *seen.entry(record.message).or_default() += 1;
    }
}

async fn await_lines(context: &TestContext, seen: &mut BTreeMap<String, usize>, total: usize) {
    let mut reached = false;
    for _ in 0..300 {
        drain(context, seen).await;
        if seen.len() >= total {
            reached = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(reached, "{} of {total} lines arrived", seen.len());
}

fn options(path: &Path, state_dir: &Path) -> ShipOptions {
    ShipOptions {
        path: Some(path.to_path_buf()),
        format: LineFormat::Plain,
        service: None,
        state_dir: state_dir.to_path_buf(),
        follow: true,
        poll: Duration::from_millis(20),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_followed_file_ships_each_line_once_across_rotation_and_restart() {
    let context = TestContext::new("shipper_rotation").await;
    let directory = scratch("rotation");
    let (path, state_dir) = (directory.join("app.log"), directory.join("state"));
    append(&path, 0, 100);

    let run = |shutdown: CancellationToken| {
        let settings = context.settings.clone();
        let options = options(&path, &state_dir);
        tokio::spawn(async move { ship(&settings, &options, &shutdown).await })
    };
    let shutdown = CancellationToken::new();
    let first = run(shutdown.clone());
    let mut seen = BTreeMap::new();
    await_lines(&context, &mut seen, 100).await;
    append(&path, 100, 50);
    await_lines(&context, &mut seen, 150).await;

    // Rotation: lines written to the old file just before it moves, then a new file.
    append(&path, 150, 20);
    std::fs::rename(&path, directory.join("app.log.1")).expect("rotate");
    append(&path, 170, 30);
    await_lines(&context, &mut seen, 200).await;

    // Stopped, the file grows; a restart resumes at the saved offset.
    shutdown.cancel();
    first.await.expect("join").expect("first run");
    append(&path, 200, 25);
    let shutdown = CancellationToken::new();
    let second = run(shutdown.clone());
    await_lines(&context, &mut seen, 225).await;
    // A line being written (no newline yet) is shipped only once it is whole.
    {
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .expect("open");
        write!(file, "2026-11-21 10:00:00 web info line 2").expect("write");
        file.sync_all().expect("sync");
        writeln!(file, "25").expect("write");
        file.sync_all().expect("sync");
    }
    append(&path, 226, 1);
    await_lines(&context, &mut seen, 227).await;
    shutdown.cancel();
    second.await.expect("join").expect("second run");
    drain(&context, &mut seen).await;

    let mut expected: Vec<String> = (0..227).map(|index| format!("line {index}")).collect();
    expected.sort();
    let got: Vec<String> = seen.keys().cloned().collect();
    assert_eq!(got, expected, "no gap, no torn line");
    assert!(
        seen.values().all(|count| *count == 1),
        "no duplicate: {seen:?}"
    );
    let _ = std::fs::remove_dir_all(&directory);
    context.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unparseable_lines_are_dead_lettered_with_the_reason() {
    let context = TestContext::new("shipper_poison").await;
    let directory = scratch("poison");
    let path = directory.join("access.log");
    std::fs::write(
        &path,
        "127.0.0.1 - - [21/Nov/2026:10:00:00 +0000] \"GET / HTTP/1.1\" 200 5\nnot an access log line\n",
    )
    .expect("write");
    let options = ShipOptions {
        format: LineFormat::Clf,
        service: Some("web".into()),
        follow: false,
        ..options(&path, &directory.join("state"))
    };
    let report = ship(&context.settings, &options, &CancellationToken::new())
        .await
        .expect("ship");
    assert_eq!((report.shipped, report.dead_lettered), (1, 1));
    let channel = context.connection.create_channel().await.expect("channel");
    let dead = std::sync::Mutex::new(None);
    assert!(
        wait_until(TIMEOUT, || async {
            if let Ok(Some(message)) = channel
                .basic_get(
                    context.settings.broker.dead_letter_queue.as_str().into(),
                    BasicGetOptions { no_ack: true },
                )
                .await
            {
                *dead.lock().expect("lock") = Some(message.delivery);
            }
            dead.lock().expect("lock").is_some()
        })
        .await
    );
    let dead = dead.into_inner().expect("lock").expect("a dead letter");
    assert_eq!(dead.data, b"not an access log line");
    let headers = dead.properties.headers().clone().expect("headers");
    let reason = headers
        .inner()
        .get(&lapin::types::ShortString::from(
            logagg::topology::HEADER_REASON,
        ))
        .expect("reason header");
    let lapin::types::AMQPValue::LongString(reason) = reason else {
        panic!("{reason:?}")
    };
    let reason = String::from_utf8_lossy(reason.as_bytes());
    assert!(reason.starts_with("not a valid clf line"), "{reason}");
    let _ = std::fs::remove_dir_all(&directory);
    context.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stdin_is_read_to_its_end() {
    let context = TestContext::new("shipper_stdin").await;
    let broker = &context.settings.broker;
    let mut child = Command::new(env!("CARGO_BIN_EXE_source_service"))
        .args(["ship", "--format", "logfmt", "--service", "cli"])
        .env("LOGAGG__BROKER__URL", &broker.url)
        .env("LOGAGG__BROKER__EXCHANGE", &broker.exchange)
        .env("LOGAGG__BROKER__STORAGE_QUEUE", &broker.storage_queue)
        .env("LOGAGG__BROKER__MONITORING_QUEUE", &broker.monitoring_queue)
        .env(
            "LOGAGG__BROKER__DEAD_LETTER_EXCHANGE",
            &broker.dead_letter_exchange,
        )
        .env(
            "LOGAGG__BROKER__DEAD_LETTER_QUEUE",
            &broker.dead_letter_queue,
        )
        .env("LOGAGG__TELEMETRY__ADMIN_LISTEN", "127.0.0.1:0")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("shipper process");
    {
        let mut stdin = child.stdin.take().expect("stdin");
        for index in 0..40 {
            writeln!(stdin, "level=info msg=\"from stdin {index}\"").expect("write");
        }
    }
    let output = child.wait_with_output().expect("exit");
    assert!(output.status.success());
    assert!(String::from_utf8_lossy(&output.stdout).contains("shipped 40 lines"));
    let mut seen = BTreeMap::new();
    await_lines(&context, &mut seen, 40).await;
    assert!(seen.keys().all(|message| message.starts_with("from stdin")));
    context.cleanup().await;
}
