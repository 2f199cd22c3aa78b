//! The shipper against the real RabbitMQ: a file followed across rotation and a restart
//! sends every line exactly once; unparseable lines are dead-lettered with the reason;
//! stdin is read to its end.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Stdio;
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
        rotate_wait: Duration::from_secs(5),
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

    // Rotation: lines written to the old file just before it moves, then a new file, and
    // lines the writer appends to the old file before it reopens the path.
    append(&path, 150, 20);
    let rotated_path = directory.join("app.log.1");
    std::fs::rename(&path, &rotated_path).expect("rotate");
    append(&path, 170, 15);
    await_lines(&context, &mut seen, 185).await;
    append(&rotated_path, 185, 15);
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

/// Takes `count` records off the storage queue (a quorum queue may show a confirmed
/// message a moment later), in queue order.
async fn take_records(context: &TestContext, count: usize) -> Vec<logagg::LogRecord> {
    let records = std::sync::Mutex::new(Vec::new());
    let complete = wait_until(TIMEOUT, || async {
        let taken = context
            .take_records(&context.settings.broker.storage_queue)
            .await;
        let mut records = records.lock().expect("lock");
        records.extend(taken);
        records.len() >= count
    })
    .await;
    let records = records.into_inner().expect("lock");
    assert!(complete, "{} of {count} records arrived", records.len());
    records
}

/// Ships the whole file once (no follow) and returns the records sent, in order.
async fn ship_once(context: &TestContext, options: &ShipOptions) -> Vec<logagg::LogRecord> {
    let report = ship(&context.settings, options, &CancellationToken::new())
        .await
        .expect("ship");
    take_records(context, report.shipped as usize).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identical_lines_are_distinct_records_and_a_resend_keeps_their_ids() {
    let context = TestContext::new("shipper_identical").await;
    let directory = scratch("identical");
    let (path, state_dir) = (directory.join("app.log"), directory.join("state"));
    let line = "2026-11-21 10:00:00 web info the same line";
    let other = "2026-11-21 10:00:01 web warn another line";
    let content = format!("{line}\n{line}\n{other}\n\n{line}\n");
    std::fs::write(&path, &content).expect("write");
    let options = ShipOptions {
        follow: false,
        ..options(&path, &state_dir)
    };

    // A state file as a crash would leave it: the generation saved, no line confirmed yet.
    let first = ship_once(&context, &options).await;
    let ids: Vec<&str> = first.iter().map(|record| record.id.as_str()).collect();
    assert_eq!(ids.len(), 4, "every non-blank line: {ids:?}");
    let generation = ids[0].rsplit_once('-').expect("<generation>-<offset>").0;
    let offsets: Vec<String> = [
        0,
        line.len() + 1,
        2 * line.len() + 2,
        2 * line.len() + other.len() + 4,
    ]
    .iter()
    .map(|offset| format!("{generation}-{offset}"))
    .collect();
    assert_eq!(
        ids, offsets,
        "ids are the file's generation and each line's byte offset"
    );

    // A crash after the confirms but before the offset was saved: the lines go again, under
    // the same ids (so they store once).
    let state_file = std::fs::read_dir(&state_dir)
        .expect("state dir")
        .next()
        .expect("a state file")
        .expect("entry")
        .path();
    let saved: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&state_file).expect("state")).expect("json");
    let mut rewound = saved.clone();
    rewound["offset"] = 0.into();
    std::fs::write(&state_file, rewound.to_string()).expect("rewind");
    let resent = ship_once(&context, &options).await;
    let resent_ids: Vec<&str> = resent.iter().map(|record| record.id.as_str()).collect();
    assert_eq!(resent_ids, ids);

    // Truncated and written again with the same lines: new records, not the old ids.
    std::fs::write(&path, "").expect("truncate");
    assert!(ship_once(&context, &options).await.is_empty());
    std::fs::write(&path, &content).expect("rewrite");
    let rewritten = ship_once(&context, &options).await;
    assert_eq!(rewritten.len(), 4);
    assert!(
        rewritten
            .iter()
            .all(|record| !ids.contains(&record.id.as_str())),
        "a truncated file's lines are new records"
    );
    let _ = std::fs::remove_dir_all(&directory);
    context.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stdin_is_read_to_its_end() {
    let context = TestContext::new("shipper_stdin").await;
    let mut child = context
        .service_command(env!("CARGO_BIN_EXE_source_service"), 0)
        .args(["ship", "--format", "logfmt", "--service", "cli"])
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
        // Two identical lines, and a last line without its newline.
        write!(
            stdin,
            "level=info msg=\"twice\"\nlevel=info msg=\"twice\"\nlevel=info msg=\"last\""
        )
        .expect("write");
    }
    let output = child.wait_with_output().expect("exit");
    assert!(output.status.success());
    assert!(String::from_utf8_lossy(&output.stdout).contains("shipped 43 lines"));
    let records = take_records(&context, 43).await;
    let ids: std::collections::BTreeSet<&str> =
        records.iter().map(|record| record.id.as_str()).collect();
    assert_eq!((records.len(), ids.len()), (43, 43), "one record per line");
    let twice = records.iter().filter(|record| record.message == "twice");
    assert_eq!(twice.count(), 2);
    let from_stdin = records
        .iter()
        .filter(|record| record.message.starts_with("from stdin"));
    assert_eq!(from_stdin.count(), 40);
    context.cleanup().await;
}
