//! The durable pipeline against the real RabbitMQ and MongoDB-compatible server:
//! source → exchange → collector → MongoDB, exactly once, through crashes and outages.

use std::process::{Child, Command};

#[path = "support/collector.rs"]
mod collector;
use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use logagg::broker;
use logagg::settings::Settings;
use logagg::telemetry::Health;
use logagg::testsuite::{
    header_text, metric_in, metric_value, scrape_metrics, take_all, wait_until, MongoServer,
    TestContext,
};
use tokio_util::sync::CancellationToken;

const STORE_TIMEOUT: Duration = Duration::from_secs(120);

fn spawn_collector(settings: Settings) -> (CancellationToken, tokio::task::JoinHandle<()>) {
    let shutdown = CancellationToken::new();
    let token = shutdown.clone();
    let task = tokio::spawn(async move {
        collector_service::run(settings, token)
            .await
            .expect("collector run");
    });
    (shutdown, task)
}

async fn simulate(settings: &Settings, count: u64, rate: u64, format: &str) {
    let mut settings = settings.clone();
    settings.source.count = count;
    settings.source.rate = rate;
    settings.source.format = format.parse().expect("json or plain");
    let report = source_service::simulate(&settings, &Health::default(), &CancellationToken::new())
        .await
        .expect("simulator");
    assert_eq!(report.confirmed, count, "{report}");
}

/// Ids stored, checked to be distinct and each a UUID the simulator generated.
async fn stored_ids(context: &TestContext) -> Vec<String> {
    let mut cursor = context
        .store
        .logs()
        .find(bson::doc! {})
        .projection(bson::doc! { "_id": 1 })
        .await
        .expect("find");
    let mut ids = Vec::new();
    while let Some(document) = cursor.next().await {
        let document = document.expect("document");
        ids.push(document.get_str("_id").expect("string _id").to_owned());
    }
    ids
}

/// Exactly `expected` records stored, each under a distinct id the simulator generated.
async fn assert_exactly_once(context: &TestContext, expected: usize) {
    let ids = stored_ids(context).await;
    assert_eq!(ids.len(), expected, "records stored");
    assert_distinct_uuids(&ids);
}

fn assert_distinct_uuids(ids: &[String]) {
    let distinct: std::collections::HashSet<&String> = ids.iter().collect();
    assert_eq!(distinct.len(), ids.len(), "duplicate ids");
    assert!(ids.iter().all(|id| uuid::Uuid::parse_str(id).is_ok()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_published_are_stored_exactly_once() {
    let context = TestContext::new("exactly_once").await;
    let (shutdown, collector) = spawn_collector(context.settings.clone());

    simulate(&context.settings, 5_000, 0, "json").await;
    simulate(&context.settings, 5_000, 0, "plain").await;
    let all_stored = wait_until(STORE_TIMEOUT, || async { context.stored().await >= 10_000 }).await;
    shutdown.cancel();
    collector.await.expect("collector task");

    assert!(
        all_stored,
        "only {} of 10000 stored",
        context.stored().await
    );
    assert_exactly_once(&context, 10_000).await;
    let storage_queue = context.settings.broker.storage_queue.clone();
    let dead_letter_queue = context.settings.broker.dead_letter_queue.clone();
    assert_eq!(context.ready_messages(&storage_queue).await, 0, "all acked");
    assert_eq!(context.ready_messages(&dead_letter_queue).await, 0);
    let plain = context
        .store
        .logs()
        .count_documents(bson::doc! { "host": { "$exists": false } })
        .await
        .expect("count");
    assert_eq!(plain, 5_000, "plain-text lines carry no host");
    context.cleanup().await;
}

/// The collector binary as a child process, with its admin server on `admin_port`.
fn start_collector_process_on(context: &TestContext, admin_port: u16) -> Child {
    collector::start_collector_process_with(context, admin_port, &[])
}

fn start_collector_process(context: &TestContext) -> Child {
    start_collector_process_on(context, logagg::testsuite::free_port())
}

fn terminate(child: &mut Child) -> std::process::ExitStatus {
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    child.wait().expect("collector exits")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn collector_killed_mid_stream_still_stores_exactly_once() {
    let mut context = TestContext::new("killed").await;
    context.settings.collector.batch_size = 200;
    context.settings.collector.prefetch = 1_000;
    store_through_a_killed_collector(&context, 10_000).await;
    assert_exactly_once(&context, 10_000).await;
    context.cleanup().await;
}

/// Publishes `count` logs at 4,000/s while a collector process stores them; SIGKILLs it
/// once 2,000 are stored, starts another, and waits until all are stored, the queue is
/// drained and the second collector has exited gracefully on SIGTERM.
async fn store_through_a_killed_collector(context: &TestContext, count: u64) {
    let mut first = start_collector_process(context);
    let publisher = {
        let settings = context.settings.clone();
        tokio::spawn(async move { simulate(&settings, count, 4_000, "json").await })
    };
    let midway = wait_until(STORE_TIMEOUT, || async { context.stored().await >= 2_000 }).await;
    assert!(midway, "the first collector stored too little");
    first.kill().expect("SIGKILL the collector");
    first.wait().expect("reap the collector");
    assert!(
        context.stored().await < count,
        "killed after the stream ended: proves nothing"
    );

    let mut second = start_collector_process(context);
    publisher.await.expect("publisher");
    let all_stored = wait_until(STORE_TIMEOUT, || async { context.stored().await >= count }).await;
    let queue_drained = wait_until(STORE_TIMEOUT, || async {
        context
            .ready_messages(&context.settings.broker.storage_queue)
            .await
            == 0
    })
    .await;
    let exit = terminate(&mut second);
    assert!(
        all_stored && queue_drained,
        "stored {}",
        context.stored().await
    );
    assert!(exit.success(), "graceful shutdown on SIGTERM: {exit:?}");
}

/// Every message in `queue`, taken off it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poison_is_dead_lettered_with_its_reason_while_the_rest_flow_on() {
    let context = TestContext::new("poison").await;
    let publish = |routing_key: &'static str, body: String, content_type: &'static str| {
        let channel = context.channel.clone();
        let exchange = context.settings.broker.exchange.clone();
        async move {
            let properties =
                broker::log_properties(content_type, &uuid::Uuid::now_v7().to_string());
            broker::publish_confirmed(
                &channel,
                &exchange,
                routing_key,
                body.as_bytes(),
                properties,
            )
            .await
            .expect("publish");
        }
    };
    let poison: [(&str, &str, &str, &str); 3] = [
        ("web.error", "{not json", "application/json", "invalid_json"),
        (
            "web.loud",
            r#"{"message":"x"}"#,
            "application/json",
            "unknown_severity",
        ),
        (
            "web.info",
            "2024-05-01 12:00:00 bad*name error boom",
            "text/plain",
            "invalid_service",
        ),
    ];
    for round in 0..50 {
        publish(
            "web.info",
            format!(r#"{{"message":"good {round}"}}"#),
            "application/json",
        )
        .await;
        // Rounds 10, 27 and 44 each add one poison message between good ones.
        let poison_here = (round % 17 == 10).then(|| poison.get(round / 17)).flatten();
        if let Some((routing_key, body, content_type, _)) = poison_here {
            publish(routing_key, (*body).to_owned(), content_type).await;
        }
    }
    // Python services' plain lines keep flowing too.
    publish(
        "ServiceA.Error",
        "2024-05-01 12:00:00 ServiceA Error Log message generated".into(),
        "text/plain",
    )
    .await;

    let (shutdown, collector) = spawn_collector(context.settings.clone());
    let dead_letter_queue = context.settings.broker.dead_letter_queue.clone();
    let flowed = wait_until(STORE_TIMEOUT, || async {
        context.stored().await >= 51 && context.ready_messages(&dead_letter_queue).await >= 3
    })
    .await;
    shutdown.cancel();
    collector.await.expect("collector task");
    assert!(flowed, "stored {}", context.stored().await);
    assert_eq!(context.stored().await, 51);

    let mut codes = Vec::new();
    for message in take_all(&context.connection, &dead_letter_queue).await {
        let properties = &message.properties;
        let reason =
            header_text(properties, logagg::topology::HEADER_REASON).expect("reason header");
        let code =
            header_text(properties, logagg::topology::HEADER_ERROR_CODE).expect("code header");
        let (_, body, _, expected_code) = poison
            .iter()
            .find(|(_, _, _, expected)| *expected == code)
            .expect("a known poison");
        assert_eq!(message.data, body.as_bytes(), "original body kept");
        assert!(!reason.is_empty());
        codes.push(expected_code.to_string());
    }
    codes.sort();
    assert_eq!(
        codes,
        ["invalid_json", "invalid_service", "unknown_severity"]
    );
    let service_a = context
        .store
        .logs()
        .find_one(bson::doc! { "service": "ServiceA", "severity": "error" })
        .await
        .expect("query");
    assert!(service_a.is_some(), "the Python service's line was stored");
    context.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mongodb_outage_loses_nothing() {
    let mut mongo = MongoServer::start();
    let mut context = TestContext::with_mongo_url("outage", &mongo.url()).await;
    context.settings.store.server_selection_timeout_ms = std::time::Duration::from_millis(500);
    context.settings.collector.batch_size = 100;
    context.settings.collector.prefetch = 500;
    let (shutdown, collector) = spawn_collector(context.settings.clone());

    simulate(&context.settings, 1_000, 0, "json").await;
    let before = wait_until(STORE_TIMEOUT, || async { context.stored().await >= 1_000 }).await;
    assert!(
        before,
        "stored {} before the outage",
        context.stored().await
    );

    mongo.stop();
    let failures_before = metric_value("logagg_collector_write_failures_total");
    simulate(&context.settings, 2_000, 0, "json").await;
    let collector_saw_outage = wait_until(STORE_TIMEOUT, || async {
        metric_value("logagg_collector_write_failures_total") > failures_before
    })
    .await;
    assert!(
        collector_saw_outage,
        "the collector never tried to write during the outage"
    );

    mongo.resume();
    let recovered = wait_until(STORE_TIMEOUT, || async { context.stored().await >= 3_000 }).await;
    shutdown.cancel();
    collector.await.expect("collector task");
    assert!(
        recovered,
        "stored {} after recovery",
        context.stored().await
    );
    assert_exactly_once(&context, 3_000).await;
    assert_eq!(
        context
            .ready_messages(&context.settings.broker.storage_queue)
            .await,
        0
    );
    context.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_connection_loss_is_survived_by_reconnecting() {
    let mut context = TestContext::new("reconnect").await;
    let connection_name = format!("{}-collector", context.settings.broker.storage_queue);
    context.settings.broker.connection_name = connection_name.clone();
    let (shutdown, collector) = spawn_collector(context.settings.clone());

    simulate(&context.settings, 1_000, 0, "json").await;
    let first = wait_until(STORE_TIMEOUT, || async { context.stored().await >= 1_000 }).await;
    assert!(first, "stored {} before the cut", context.stored().await);

    let reconnects_before = metric_value("logagg_collector_broker_reconnects_total");
    assert_eq!(
        logagg::testsuite::close_broker_connections(&connection_name),
        1
    );
    simulate(&context.settings, 1_000, 0, "json").await;
    let resumed = wait_until(STORE_TIMEOUT, || async { context.stored().await >= 2_000 }).await;
    shutdown.cancel();
    collector.await.expect("collector task");

    assert!(resumed, "stored {} after the cut", context.stored().await);
    assert!(metric_value("logagg_collector_broker_reconnects_total") > reconnects_before);
    assert_exactly_once(&context, 2_000).await;
    context.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn competing_collectors_share_the_queue_and_store_each_log_once() {
    let context = TestContext::new("competing").await;
    let mut first_settings = context.settings.clone();
    first_settings.collector.batch_size = 100;
    first_settings.collector.prefetch = 200;
    let (first_shutdown, first) = spawn_collector(first_settings.clone());
    let (second_shutdown, second) = spawn_collector(first_settings);
    let storage_queue = context.settings.broker.storage_queue.clone();
    let both_attached = wait_until(STORE_TIMEOUT, || async {
        context
            .queue_state(&storage_queue)
            .await
            .is_some_and(|state| state.consumers == 2)
    })
    .await;
    assert!(both_attached, "two collectors consume the storage queue");

    simulate(&context.settings, 5_000, 0, "json").await;
    let all_stored = wait_until(STORE_TIMEOUT, || async { context.stored().await >= 5_000 }).await;
    first_shutdown.cancel();
    second_shutdown.cancel();
    first.await.expect("first collector");
    second.await.expect("second collector");

    assert!(all_stored, "stored {}", context.stored().await);
    assert_exactly_once(&context, 5_000).await;
    assert_eq!(context.ready_messages(&storage_queue).await, 0);
    context.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paced_logs_are_stored_while_the_source_is_still_publishing() {
    let context = TestContext::new("paced").await;
    let (shutdown, collector) = spawn_collector(context.settings.clone());
    // 300 logs at 100/s take three seconds; a third of them must be stored long before the
    // end. A source that held messages back until max_unconfirmed (2000) had queued would
    // store nothing until it finished.
    let publisher = {
        let settings = context.settings.clone();
        tokio::spawn(async move { simulate(&settings, 300, 100, "json").await })
    };
    let flowing = wait_until(Duration::from_secs(30), || async {
        context.stored().await >= 100 || publisher.is_finished()
    })
    .await;
    let still_publishing = !publisher.is_finished();
    let stored_meanwhile = context.stored().await;
    publisher.await.expect("publisher");
    let all_stored = wait_until(STORE_TIMEOUT, || async { context.stored().await >= 300 }).await;
    shutdown.cancel();
    collector.await.expect("collector task");

    assert!(
        flowing && still_publishing,
        "stored {stored_meanwhile} before the source finished"
    );
    assert!(all_stored);
    assert_exactly_once(&context, 300).await;
    context.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poison_is_never_acked_into_a_missing_dead_letter_queue() {
    let context = TestContext::new("dlq_missing").await;
    let (shutdown, collector) = spawn_collector(context.settings.clone());
    let storage_queue = context.settings.broker.storage_queue.clone();
    let dead_letter_queue = context.settings.broker.dead_letter_queue.clone();
    let attached = wait_until(STORE_TIMEOUT, || async {
        context
            .queue_state(&storage_queue)
            .await
            .is_some_and(|state| state.consumers == 1)
    })
    .await;
    assert!(attached);
    // Someone deletes the dead-letter queue under a running collector. Publishing a dead
    // letter to its exchange would now be confirmed and dropped, unless published mandatory.
    context
        .channel
        .queue_delete(dead_letter_queue.as_str().into(), Default::default())
        .await
        .expect("delete the dead-letter queue");
    let properties = broker::log_properties("application/json", "poison-1");
    broker::publish_confirmed(
        &context.channel,
        &context.settings.broker.exchange,
        "web.error",
        b"{not json",
        properties,
    )
    .await
    .expect("publish poison");

    // The collector must not ack it; after it reconnects (re-declaring the topology) the
    // poison lands in the recreated dead-letter queue.
    let dead_lettered = wait_until(Duration::from_secs(30), || async {
        context
            .queue_state(&dead_letter_queue)
            .await
            .is_some_and(|state| state.ready == 1)
    })
    .await;
    shutdown.cancel();
    collector.await.expect("collector task");
    assert!(dead_lettered, "the poison message was lost");
    context.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_message_twice_is_one_record_counted_as_a_duplicate() {
    let context = TestContext::new("duplicates").await;
    let admin_port = logagg::testsuite::free_port();
    // A process of its own, so its counters are this test's alone.
    let mut collector = start_collector_process_on(&context, admin_port);
    let exchange = context.settings.broker.exchange.clone();
    let publish_round = || async {
        for index in 0..100 {
            let body = format!(r#"{{"message":"order {index} placed"}}"#);
            let properties = broker::log_properties("application/json", &format!("order-{index}"));
            broker::publish_confirmed(
                &context.channel,
                &exchange,
                "shop.info",
                body.as_bytes(),
                properties,
            )
            .await
            .expect("publish");
        }
        // No message-id: the id derives from routing key and bytes, the same both rounds.
        let line = b"2024-05-01 12:00:00 ServiceA Error Log message generated";
        broker::publish_confirmed(
            &context.channel,
            &exchange,
            "ServiceA.Error",
            line,
            lapin::BasicProperties::default().with_delivery_mode(broker::PERSISTENT),
        )
        .await
        .expect("publish plain line");
    };
    let counter =
        |name: &'static str| async move { metric_in(&scrape_metrics(admin_port).await, name) };

    publish_round().await;
    let first = wait_until(STORE_TIMEOUT, || async {
        counter("logagg_collector_stored_total").await >= 101.0
    })
    .await;
    assert!(first, "stored {}", context.stored().await);
    publish_round().await;
    let second = wait_until(STORE_TIMEOUT, || async {
        counter("logagg_collector_duplicates_total").await >= 101.0
    })
    .await;
    let stored_total = counter("logagg_collector_stored_total").await;
    let duplicates_total = counter("logagg_collector_duplicates_total").await;
    let identical_total = counter("logagg_collector_identical_bodies_total").await;
    let exit = terminate(&mut collector);

    assert!(second, "the second round was not recognised as duplicates");
    assert!(exit.success());
    assert_eq!((stored_total, duplicates_total), (101.0, 101.0));
    // Of the duplicates, only the line without a message-id, first delivered the second
    // time, is a publisher's identical body; the 100 with ids are re-sent messages.
    assert_eq!(identical_total, 1.0);
    assert_eq!(context.stored().await, 101, "no second copy of anything");
    let order = context
        .store
        .logs()
        .find_one(bson::doc! { "_id": "order-7" })
        .await
        .expect("query")
        .expect("order-7 stored under its message-id");
    assert_eq!(order.get_str("message").expect("message"), "order 7 placed");
    // Stats rollups count each record once: duplicates add nothing.
    let rollups: Vec<bson::Document> = context
        .store
        .stats()
        .find(bson::doc! { "k": "counts" })
        .await
        .expect("rollups")
        .try_collect()
        .await
        .expect("rollups");
    let counted: i64 = rollups
        .iter()
        .map(|rollup| {
            rollup
                .get_i64("n")
                .or_else(|_| rollup.get_i32("n").map(i64::from))
        })
        .sum::<Result<i64, _>>()
        .expect("counts");
    assert_eq!(counted, 101, "{rollups:?}");
    context.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_writes_the_batch_in_hand_before_exiting() {
    let mut context = TestContext::new("sigterm").await;
    // Batches would wait a minute to fill: only the graceful shutdown can write these.
    context.settings.collector.batch_max_age_ms = std::time::Duration::from_millis(60_000);
    let admin_port = logagg::testsuite::free_port();
    let mut collector = start_collector_process_on(&context, admin_port);
    simulate(&context.settings, 300, 0, "json").await;
    let in_hand = wait_until(STORE_TIMEOUT, || async {
        metric_in(
            &scrape_metrics(admin_port).await,
            "logagg_collector_consumed_total",
        ) >= 300.0
    })
    .await;
    assert!(in_hand, "the collector never received the 300");
    assert_eq!(
        context.stored().await,
        0,
        "nothing written before the signal"
    );

    let exit = terminate(&mut collector);
    assert!(exit.success(), "{exit:?}");
    assert_eq!(context.stored().await, 300);
    let storage_queue = context.settings.broker.storage_queue.clone();
    assert_eq!(
        context.ready_messages(&storage_queue).await,
        0,
        "all acked, none returned"
    );
    context.cleanup().await;
}

/// Batch messages (`source.batch_records`): every log stored exactly once under the id
/// `<batch message id>-<line>`, through a collector SIGKILLed mid-stream and restarted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batched_logs_are_stored_exactly_once_through_a_killed_collector() {
    let mut context = TestContext::new("batched").await;
    context.settings.collector.batch_size = 500;
    context.settings.collector.prefetch = 40;
    context.settings.source.batch_records = 50;
    store_through_a_killed_collector(&context, 10_000).await;

    let ids = stored_ids(&context).await;
    assert_eq!(ids.len(), 10_000);
    let distinct: std::collections::HashSet<&String> = ids.iter().collect();
    assert_eq!(distinct.len(), ids.len(), "duplicate ids");
    let mut per_batch: std::collections::HashMap<&str, usize> = Default::default();
    for id in &ids {
        let (batch, line) = id.rsplit_once('-').expect("<batch id>-<line>");
        assert!(uuid::Uuid::parse_str(batch).is_ok() && line.parse::<usize>().unwrap() < 50);
        *per_batch.entry(batch).or_default() += 1;
    }
    assert!(
        per_batch.values().any(|lines| *lines > 1),
        "logs did travel in batches"
    );
    context.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_line_of_a_batch_is_dead_lettered_alone_with_its_reason() {
    let context = TestContext::new("batch_poison").await;
    let publish = |body: &'static [u8]| {
        let channel = context.channel.clone();
        let exchange = context.settings.broker.exchange.clone();
        async move {
            let properties = broker::log_properties(logagg::parse::CONTENT_TYPE_BATCH, "batch-1");
            broker::publish_confirmed(&channel, &exchange, "web.info", body, properties)
                .await
                .expect("publish");
        }
    };
    publish(b"{\"message\":\"first\"}\n{\"message\":\"loud\",\"severity\":\"loud\"}\n{\"message\":\"third\"}").await;
    publish(b"\xff not UTF-8").await;

    let (shutdown, collector) = spawn_collector(context.settings.clone());
    let dead_letter_queue = context.settings.broker.dead_letter_queue.clone();
    let flowed = wait_until(STORE_TIMEOUT, || async {
        context.stored().await >= 2 && context.ready_messages(&dead_letter_queue).await >= 2
    })
    .await;
    shutdown.cancel();
    collector.await.expect("collector task");
    assert!(flowed, "stored {}", context.stored().await);
    let mut ids = stored_ids(&context).await;
    ids.sort();
    assert_eq!(ids, ["batch-1-0", "batch-1-2"]);

    let mut dead = Vec::new();
    for message in take_all(&context.connection, &dead_letter_queue).await {
        let properties = &message.properties;
        dead.push((
            header_text(properties, logagg::topology::HEADER_ERROR_CODE).expect("code"),
            header_text(properties, logagg::topology::HEADER_BATCH_LINE),
            String::from_utf8_lossy(&message.data).into_owned(),
        ));
    }
    dead.sort();
    assert_eq!(
        dead,
        [
            (
                "invalid_utf8".to_owned(),
                None,
                "\u{fffd} not UTF-8".to_owned()
            ),
            (
                "unknown_severity".to_owned(),
                Some("20..56".to_owned()),
                r#"{"message":"loud","severity":"loud"}"#.to_owned()
            ),
        ]
    );
    assert_eq!(
        context
            .ready_messages(&context.settings.broker.storage_queue)
            .await,
        0
    );
    context.cleanup().await;
}

/// A collector with nothing to do moves to a new channel every
/// `collector.idle_resubscribe_seconds` (which frees what a broker fault left checked out to
/// the old one); it keeps one consumer on the queue, and logs before and after are each
/// stored once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_collector_resubscribes_and_stores_everything_once() {
    let context = TestContext::new("idle_resubscribe").await;
    let admin_port = logagg::testsuite::free_port();
    let mut collector = collector::start_collector_process_with(
        &context,
        admin_port,
        &[(
            "LOGAGG__COLLECTOR__IDLE_RESUBSCRIBE_SECONDS",
            "1".to_owned(),
        )],
    );
    simulate(&context.settings, 500, 0, "json").await;
    let stored = wait_until(STORE_TIMEOUT, || async { context.stored().await >= 500 }).await;
    assert!(stored, "the first logs were not stored");
    let resubscribes = || async {
        metric_in(
            &scrape_metrics(admin_port).await,
            "logagg_collector_idle_resubscribes_total",
        )
    };
    let moved = wait_until(STORE_TIMEOUT, || async { resubscribes().await >= 2.0 }).await;
    assert!(moved, "the idle collector never resubscribed");
    let queue = &context.settings.broker.storage_queue;
    let one_consumer = wait_until(STORE_TIMEOUT, || async {
        context
            .queue_state(queue)
            .await
            .map(|state| state.consumers)
            == Some(1)
    })
    .await;
    assert!(one_consumer, "{:?}", context.queue_state(queue).await);

    simulate(&context.settings, 500, 0, "json").await;
    let stored = wait_until(STORE_TIMEOUT, || async { context.stored().await >= 1_000 }).await;
    let drained = wait_until(STORE_TIMEOUT, || async {
        context.ready_messages(queue).await == 0
    })
    .await;
    let exit = terminate(&mut collector);
    assert!(stored && drained, "stored {}", context.stored().await);
    assert!(exit.success(), "{exit:?}");
    assert_exactly_once(&context, 1_000).await;
    context.cleanup().await;
}
