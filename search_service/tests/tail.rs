//! Live tail against the real RabbitMQ: Server-Sent Events over a socket, filters, slow
//! clients, the client limit.

#[path = "support/server.rs"]
mod server;

use std::time::Duration;

use futures::StreamExt;
use logagg::broker;
use logagg::testsuite::{wait_until, TestContext};
use search_service::query::LogQuery;
use search_service::tail::{TailEnd, TailEvent, Tails};
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

/// One Server-Sent Event: its `event:` name and `data:` text.
#[derive(Debug)]
struct SseEvent {
    name: String,
    data: String,
}

/// An HTTP/1.0 client reading a Server-Sent Events response event by event.
struct SseClient {
    reader: BufReader<TcpStream>,
    status: u16,
}

impl SseClient {
    async fn open(port: u16, path: &str) -> SseClient {
        let mut stream = TcpStream::connect(("127.0.0.1", port))
            .await
            .expect("connect");
        let request = format!("GET {path} HTTP/1.0\r\nAccept: text/event-stream\r\n\r\n");
        stream.write_all(request.as_bytes()).await.expect("request");
        let mut reader = BufReader::new(stream);
        let mut status_line = String::new();
        reader.read_line(&mut status_line).await.expect("status");
        let status = status_line
            .split_whitespace()
            .nth(1)
            .and_then(|code| code.parse().ok())
            .unwrap_or(0);
        loop {
            let mut header = String::new();
            reader.read_line(&mut header).await.expect("header");
            if header.trim().is_empty() {
                break;
            }
        }
        SseClient { reader, status }
    }

    /// The next event (comments and keep-alives skipped), `None` at the end of the stream.
    async fn next_event(&mut self) -> Option<SseEvent> {
        let (mut name, mut data) = (String::new(), String::new());
        loop {
            let mut line = String::new();
            if self.reader.read_line(&mut line).await.ok()? == 0 {
                return None;
            }
            let line = line.trim_end_matches(['\r', '\n']);
            if line.is_empty() {
                if !name.is_empty() || !data.is_empty() {
                    return Some(SseEvent { name, data });
                }
            } else if let Some(value) = line.strip_prefix("event:") {
                name = value.trim().to_owned();
            } else if let Some(value) = line.strip_prefix("data:") {
                data.push_str(value.trim_start());
            }
        }
    }
}

async fn publish(context: &TestContext, routing_key: &str, body: Value) {
    try_publish(context, routing_key, body)
        .await
        .expect("publish");
}

async fn try_publish(
    context: &TestContext,
    routing_key: &str,
    body: Value,
) -> Result<(), broker::BrokerError> {
    let channel = broker::confirm_channel(&context.connection)
        .await
        .expect("confirm channel");
    let id = uuid::Uuid::now_v7().to_string();
    broker::publish_confirmed(
        &channel,
        &context.settings.broker.exchange,
        routing_key,
        body.to_string().as_bytes(),
        broker::log_properties("application/json", &id),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_published_log_that_passes_the_filters_reaches_the_tail_within_a_second() {
    let context = TestContext::new("tail_sse").await;
    let shutdown = CancellationToken::new();
    let port = server::serve(&context, &shutdown).await;
    let mut client = SseClient::open(port, "/api/v1/tail?service=auth&min_severity=error").await;
    assert_eq!(client.status, 200);
    let ready = client.next_event().await.expect("ready event");
    assert_eq!(ready.name, "ready");

    // Published first, filtered out: had any passed, it would arrive before the match.
    publish(&context, "web.error", json!({"message": "other service"})).await;
    publish(&context, "auth.info", json!({"message": "below error"})).await;
    publish(
        &context,
        "auth.ERROR",
        json!({"message": "card declined", "host": "h1"}),
    )
    .await;
    let event = tokio::time::timeout(Duration::from_secs(1), client.next_event())
        .await
        .expect("the log arrives within 1 s")
        .expect("an event");
    assert_eq!(event.name, "log", "{event:?}");
    let record: Value = serde_json::from_str(&event.data).expect("JSON data");
    assert_eq!(record["service"], "auth");
    assert_eq!(record["severity"], "error");
    assert_eq!(record["message"], "card declined");

    // Shutting down ends the stream with its reason.
    shutdown.cancel();
    let last = client.next_event().await.expect("a last event");
    assert_eq!(last.name, "dropped");
    let reason: Value = serde_json::from_str(&last.data).expect("JSON");
    assert_eq!(reason["error"]["code"], "shutting_down");
    assert!(client.next_event().await.is_none());
    context.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tail_client_that_falls_behind_is_told_and_dropped() {
    let context = TestContext::new("tail_slow").await;
    const BUFFER: usize = 5;
    let tails = Tails::new(
        context.settings.broker.clone(),
        4,
        BUFFER,
        CancellationToken::new(),
    );
    let query = LogQuery::parse(&[], chrono::Utc::now(), &Default::default()).expect("query");
    let mut events = Box::pin(tails.open(query).await.expect("tail"));
    assert!(matches!(events.next().await, Some(TailEvent::Ready)));
    assert_eq!(tails.open_count(), 1);

    // The client reads nothing while 100 logs arrive; its tail ends once BUFFER are waiting,
    // and its place is free once it has read to the end.
    for index in 0..100 {
        publish(
            &context,
            "web.info",
            json!({ "message": format!("log {index}") }),
        )
        .await;
    }
    let mut logs = 0;
    let end = loop {
        match events.next().await.expect("events until the end") {
            TailEvent::Log(_) => logs += 1,
            TailEvent::End(end) => break end,
            TailEvent::Ready => panic!("ready twice"),
        }
    };
    assert_eq!((logs, end), (BUFFER, TailEnd::TooSlow));
    assert!(events.next().await.is_none());
    drop(events);
    assert_eq!(tails.open_count(), 0);
    context.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tails_beyond_the_limit_get_503_and_a_closed_tail_frees_its_place() {
    let mut context = TestContext::new("tail_limit").await;
    context.settings.search.max_tail_clients = 1;
    let shutdown = CancellationToken::new();
    let port = server::serve(&context, &shutdown).await;
    let mut first = SseClient::open(port, "/api/v1/tail").await;
    assert_eq!(first.next_event().await.expect("ready").name, "ready");
    let (status, body) = logagg::testsuite::http_request(port, "GET", "/api/v1/tail").await;
    assert_eq!(status, 503, "{body}");
    let body: Value = serde_json::from_str(&body).expect("JSON error");
    assert_eq!(body["error"]["code"], "too_many_tails");

    drop(first);
    assert!(
        wait_until(Duration::from_secs(10), || async {
            SseClient::open(port, "/api/v1/tail").await.status == 200
        })
        .await,
        "the place was not freed"
    );
    shutdown.cancel();
    context.cleanup().await;
}

/// Tails opening and closing as fast as they can while a publisher sends with confirms: the
/// broker must not nack one publish. With a queue per client it did now and then (a publish
/// routed to a queue as it was deleted); the tails now share one queue per process.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tails_coming_and_going_never_fail_a_publish() {
    const MESSAGES: usize = 20_000;
    const WINDOW: usize = 200;
    const CHURNERS: usize = 16;
    let context = TestContext::new("tail_churn").await;
    let shutdown = CancellationToken::new();
    let tails = std::sync::Arc::new(Tails::new(
        context.settings.broker.clone(),
        CHURNERS * 2,
        // Room for every log: this test is about nacks, not slow readers (another test's).
        MESSAGES,
        shutdown.clone(),
    ));
    let opened = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let stop = CancellationToken::new();
    let churners: Vec<_> = (0..CHURNERS)
        .map(|index| {
            let (tails, opened, stop) = (tails.clone(), opened.clone(), stop.clone());
            tokio::spawn(async move {
                let query =
                    LogQuery::parse(&[], chrono::Utc::now(), &Default::default()).expect("query");
                let mut round = index;
                while !stop.is_cancelled() {
                    let mut events = Box::pin(tails.open(query.clone()).await.expect("tail"));
                    assert!(matches!(events.next().await, Some(TailEvent::Ready)));
                    opened.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    // Some read a log or two before going, some go at once.
                    for _ in 0..round % 3 {
                        tokio::select! {
                            _ = stop.cancelled() => break,
                            _ = events.next() => {}
                        }
                    }
                    round += 1;
                }
            })
        })
        .collect();

    let channel = broker::confirm_channel(&context.connection)
        .await
        .expect("confirm channel");
    let (mut acked, mut nacked) = (0, 0);
    for window in 0..MESSAGES / WINDOW {
        let mut confirms = Vec::with_capacity(WINDOW);
        for index in 0..WINDOW {
            let body = json!({ "message": format!("log {window}-{index}") }).to_string();
            let id = uuid::Uuid::now_v7().to_string();
            let confirm = channel
                .basic_publish(
                    context.settings.broker.exchange.as_str().into(),
                    "web.info".into(),
                    lapin::options::BasicPublishOptions::default(),
                    body.as_bytes(),
                    broker::log_properties("application/json", &id),
                )
                .await
                .expect("publish");
            confirms.push(confirm);
        }
        for confirm in confirms {
            match confirm.await.expect("confirm") {
                lapin::Confirmation::Nack(_) => nacked += 1,
                _ => acked += 1,
            }
        }
    }
    stop.cancel();
    for churner in churners {
        churner.await.expect("churner");
    }
    let opened = opened.load(std::sync::atomic::Ordering::Relaxed);
    eprintln!("{opened} tails opened and dropped; {acked} publishes acked, {nacked} nacked");
    assert!(
        opened >= CHURNERS * 10,
        "the tails hardly churned: {opened}"
    );
    assert_eq!((acked, nacked), (MESSAGES, 0));

    // The hub may still be reading the churn's logs: one tail reads up to a marker published
    // after them, so the 20 tails below start on an empty queue.
    let query = LogQuery::parse(&[], chrono::Utc::now(), &Default::default()).expect("query");
    let mut sentinel = Box::pin(tails.open(query.clone()).await.expect("tail"));
    assert!(matches!(sentinel.next().await, Some(TailEvent::Ready)));
    publish(&context, "drained.info", json!({"message": "marker"})).await;
    loop {
        match sentinel.next().await.expect("a log") {
            TailEvent::Log(record) if record.service == "drained" => break,
            TailEvent::Log(_) => continue,
            other => panic!("{other:?}"),
        }
    }

    // The shared queue still feeds every tail: 20 open at once each see the next log.
    let mut open = Vec::new();
    for _ in 0..20 {
        let mut events = Box::pin(tails.open(query.clone()).await.expect("tail"));
        assert!(matches!(events.next().await, Some(TailEvent::Ready)));
        open.push(events);
    }
    publish(&context, "fanout.warn", json!({"message": "to all"})).await;
    for events in &mut open {
        match events.next().await.expect("a log") {
            TailEvent::Log(record) => assert_eq!(record.message, "to all"),
            other => panic!("{other:?}"),
        }
    }
    shutdown.cancel();
    context.cleanup().await;
}
