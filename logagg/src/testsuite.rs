//! Helpers for integration tests against the real RabbitMQ and MongoDB-compatible server:
//! isolated names per test, bounded waits, and a private server that tests can stop.

use std::future::Future;
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use lapin::options::{ExchangeDeleteOptions, QueueDeclareOptions, QueueDeleteOptions};
use lapin::types::FieldTable;
use lapin::{Channel, Connection};

use crate::broker;
use crate::settings::Settings;
use crate::store::Database;

/// RabbitMQ for tests: `LOGAGG_TEST_AMQP_URL`, or the local broker.
pub fn amqp_url() -> String {
    std::env::var("LOGAGG_TEST_AMQP_URL")
        .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".into())
}

/// MongoDB-compatible server for tests: `LOGAGG_TEST_MONGO_URL`, or the local one.
pub fn mongo_url() -> String {
    std::env::var("LOGAGG_TEST_MONGO_URL").unwrap_or_else(|_| "mongodb://127.0.0.1:27017".into())
}

/// Polls `check` every 20 ms until it is true or `timeout` passes; returns the last answer.
/// For waiting on state another process changes (documents stored, a queue drained).
pub async fn wait_until<F, Fut>(timeout: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if check().await {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// What a passive declare tells about a queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueState {
    pub ready: u32,
    pub consumers: u32,
}

/// One test's world: settings naming its own exchange, queues and database.
pub struct TestContext {
    pub settings: Settings,
    pub connection: Connection,
    pub channel: Channel,
    pub store: Database,
    /// Set by [`TestContext::cleanup`]; otherwise `Drop` cleans up.
    cleaned_up: bool,
}

impl TestContext {
    /// Fresh names derived from `test_name`, both services reachable, nothing left over.
    pub async fn new(test_name: &str) -> TestContext {
        Self::with_mongo_url(test_name, &mongo_url()).await
    }

    pub async fn with_mongo_url(test_name: &str, mongo_url: &str) -> TestContext {
        let unique = format!(
            "logagg_test_{test_name}_{}_{}",
            std::process::id(),
            uuid::Uuid::now_v7().simple()
        );
        let mut settings = Settings::default();
        settings.broker.url = amqp_url();
        settings.broker.exchange = format!("{unique}.exchange");
        settings.broker.storage_queue = format!("{unique}.storage");
        settings.broker.monitoring_queue = format!("{unique}.monitoring");
        settings.analyzers.queue = format!("{unique}.analyzers");
        settings.broker.dead_letter_exchange = format!("{unique}.dlx");
        settings.broker.dead_letter_queue = format!("{unique}.dlq");
        settings.broker.alerts_exchange = format!("{unique}.alerts");
        settings.broker.reconnect_initial_ms = std::time::Duration::from_millis(50);
        settings.broker.reconnect_max_ms = std::time::Duration::from_millis(500);
        settings.store.url = mongo_url.to_owned();
        settings.store.database = unique.chars().take(60).collect();
        settings.store.server_selection_timeout_ms = std::time::Duration::from_millis(2_000);
        settings.store.connect_timeout_ms = std::time::Duration::from_millis(1_000);
        settings.telemetry.admin_listen = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
        // The gateway's other listeners on free ports: tests run side by side.
        settings.otlp.listen = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
        settings.syslog.listen_tcp = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
        settings.syslog.listen_udp = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
        settings.gelf.listen_tcp = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
        settings.gelf.listen_udp = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
        settings.collector.retry_initial_ms = std::time::Duration::from_millis(50);
        settings.collector.retry_max_ms = std::time::Duration::from_millis(500);

        let connection = await_broker(&settings).await;
        let channel = connection.create_channel().await.expect("test channel");
        crate::topology::declare(&channel, &settings.broker)
            .await
            .expect("declaring the test topology");
        let store = Database::connect(&settings.store, "logagg-tests")
            .await
            .expect("mongo client");
        await_store(&store).await;
        store
            .logs()
            .drop()
            .await
            .expect("dropping the test collection");
        TestContext {
            settings,
            connection,
            channel,
            store,
            cleaned_up: false,
        }
    }

    /// Takes every ready message from `queue` and parses each as the collector would.
    pub async fn take_records(&self, queue: &str) -> Vec<crate::LogRecord> {
        take_all(&self.connection, queue)
            .await
            .iter()
            .map(|delivery| {
                let envelope = crate::broker::envelope(
                    delivery.routing_key.as_str(),
                    &delivery.data,
                    &delivery.properties,
                    chrono::Utc::now(),
                );
                crate::parse::parse_message(&envelope).expect("a record the collector can parse")
            })
            .collect()
    }

    /// Drops every ready message of `queue` (benchmarks between their runs).
    pub async fn purge_queue(&self, queue: &str) {
        let channel = self.connection.create_channel().await.expect("channel");
        channel
            .queue_purge(queue.into(), lapin::options::QueuePurgeOptions::default())
            .await
            .expect("queue.purge");
        let _ = channel.close(200, "purged".into()).await;
    }

    /// A queue's ready messages (not counting delivered-but-unacked ones) and consumers, or
    /// `None` if it does not exist. A passive declare of a missing queue closes the channel it
    /// runs on, so each call uses a channel of its own, closed afterwards.
    pub async fn queue_state(&self, queue: &str) -> Option<QueueState> {
        let channel = self.connection.create_channel().await.ok()?;
        let declared = channel
            .queue_declare(
                queue.into(),
                QueueDeclareOptions {
                    passive: true,
                    ..QueueDeclareOptions::default()
                },
                FieldTable::default(),
            )
            .await;
        let _ = channel.close(200, "queue state read".into()).await;
        declared.ok().map(|declared| QueueState {
            ready: declared.message_count(),
            consumers: declared.consumer_count(),
        })
    }

    /// Ready messages in a queue that must exist.
    pub async fn ready_messages(&self, queue: &str) -> u32 {
        self.queue_state(queue)
            .await
            .unwrap_or_else(|| panic!("queue {queue} does not exist"))
            .ready
    }

    /// Every stored alert document.
    pub async fn stored_alerts(&self) -> Vec<bson::Document> {
        use futures::TryStreamExt;
        self.store
            .alerts()
            .find(bson::doc! {})
            .await
            .expect("alerts")
            .try_collect()
            .await
            .expect("alerts")
    }

    /// Documents in the logs collection.
    pub async fn stored(&self) -> u64 {
        self.store
            .logs()
            .count_documents(bson::doc! {})
            .await
            .unwrap_or(0)
    }

    /// A service binary to run as a child with these settings (as `LOGAGG__…` variables) and
    /// its admin server (`/metrics`, `/healthz`) on `admin_port` of 127.0.0.1; the caller
    /// adds its own variables, arguments and output.
    pub fn service_command(&self, binary: impl AsRef<std::ffi::OsStr>, admin_port: u16) -> Command {
        let mut command = Command::new(binary);
        command.envs(self.env_vars()).env(
            "LOGAGG__TELEMETRY__ADMIN_LISTEN",
            format!("127.0.0.1:{admin_port}"),
        );
        command
    }

    /// The settings as `LOGAGG__…` environment variables, for service binaries run as children.
    pub fn env_vars(&self) -> Vec<(String, String)> {
        let settings = &self.settings;
        let pairs = [
            ("BROKER__URL", settings.broker.url.clone()),
            ("BROKER__EXCHANGE", settings.broker.exchange.clone()),
            (
                "BROKER__STORAGE_QUEUE",
                settings.broker.storage_queue.clone(),
            ),
            (
                "BROKER__MONITORING_QUEUE",
                settings.broker.monitoring_queue.clone(),
            ),
            (
                "BROKER__DEAD_LETTER_EXCHANGE",
                settings.broker.dead_letter_exchange.clone(),
            ),
            (
                "BROKER__DEAD_LETTER_QUEUE",
                settings.broker.dead_letter_queue.clone(),
            ),
            (
                "BROKER__ALERTS_EXCHANGE",
                settings.broker.alerts_exchange.clone(),
            ),
            ("STORE__URL", settings.store.url.clone()),
            ("STORE__DATABASE", settings.store.database.clone()),
            (
                "TELEMETRY__ADMIN_LISTEN",
                settings.telemetry.admin_listen.to_string(),
            ),
            (
                "COLLECTOR__PREFETCH",
                settings.collector.prefetch.to_string(),
            ),
            (
                "COLLECTOR__BATCH_SIZE",
                settings.collector.batch_size.to_string(),
            ),
            (
                "COLLECTOR__BATCH_MAX_AGE_MS",
                settings.collector.batch_max_age_ms.as_millis().to_string(),
            ),
            ("ANALYZERS__QUEUE", settings.analyzers.queue.clone()),
        ];
        pairs
            .into_iter()
            .map(|(key, value)| (format!("LOGAGG__{key}"), value))
            .collect()
    }

    /// Deletes the test's queues, exchanges and database. A context dropped without it (a
    /// test that panicked) does the same in its `Drop`, so no run leaves anything behind.
    pub async fn cleanup(mut self) {
        delete_test_world(&self.settings, &self.channel, &self.store).await;
        let _ = self.connection.close(200, "test done".into()).await;
        self.store.clone().shutdown().await;
        self.cleaned_up = true;
    }
}

impl Drop for TestContext {
    fn drop(&mut self) {
        if self.cleaned_up {
            return;
        }
        // Drop cannot await, and the test's runtime may be the one unwinding: clean up on a
        // thread of its own, with its own runtime, connection and client, for at most 10 s.
        let settings = self.settings.clone();
        let cleaning = std::thread::spawn(move || {
            let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            runtime.block_on(async {
                let cleaned = tokio::time::timeout(Duration::from_secs(10), async {
                    let connection = broker::connect(&settings.broker, "logagg-tests-cleanup")
                        .await
                        .ok()?;
                    let channel = connection.create_channel().await.ok()?;
                    let store = Database::connect(&settings.store, "logagg-tests-cleanup")
                        .await
                        .ok()?;
                    delete_test_world(&settings, &channel, &store).await;
                    let _ = connection.close(200, "test cleaned up".into()).await;
                    store.shutdown().await;
                    Some(())
                })
                .await;
                if !matches!(cleaned, Ok(Some(()))) {
                    eprintln!(
                        "could not clean up test queues and database {}",
                        settings.store.database
                    );
                }
            });
        });
        let _ = cleaning.join();
    }
}

/// Deletes the queues, exchanges and database named by a test's `settings`.
async fn delete_test_world(settings: &Settings, channel: &Channel, store: &Database) {
    let broker_settings = &settings.broker;
    for queue in [
        &broker_settings.storage_queue,
        &broker_settings.monitoring_queue,
        &broker_settings.dead_letter_queue,
        &settings.analyzers.queue,
    ] {
        let _ = channel
            .queue_delete(queue.as_str().into(), QueueDeleteOptions::default())
            .await;
    }
    for exchange in [
        &broker_settings.exchange,
        &broker_settings.dead_letter_exchange,
        &broker_settings.alerts_exchange,
    ] {
        let _ = channel
            .exchange_delete(exchange.as_str().into(), ExchangeDeleteOptions::default())
            .await;
    }
    let _ = store
        .client()
        .database(&settings.store.database)
        .drop()
        .await;
}

/// Connects to the test broker, retrying for up to 30 s with a clear failure.
pub async fn await_broker(settings: &Settings) -> Connection {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match broker::connect(&settings.broker, "logagg-tests").await {
            Ok(connection) => return connection,
            Err(error) if Instant::now() < deadline => {
                eprintln!("waiting for RabbitMQ: {error}");
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            Err(error) => panic!("RabbitMQ at {} unreachable: {error}", amqp_url()),
        }
    }
}

/// For benchmarks: drains the monitoring queue as the monitor would (auto-ack) until
/// `shutdown`, so it never fills; returns the messages it took.
pub async fn stand_in_monitor(
    settings: Settings,
    shutdown: tokio_util::sync::CancellationToken,
) -> u64 {
    use futures::StreamExt;
    use lapin::options::{BasicConsumeOptions, BasicQosOptions};
    let connection = await_broker(&settings).await;
    let channel = connection.create_channel().await.expect("channel");
    channel
        .basic_qos(1_000, BasicQosOptions::default())
        .await
        .expect("qos");
    let mut consumer = channel
        .basic_consume(
            settings.broker.monitoring_queue.as_str().into(),
            "bench-monitor".into(),
            BasicConsumeOptions {
                no_ack: true,
                ..BasicConsumeOptions::default()
            },
            FieldTable::default(),
        )
        .await
        .expect("consume monitoring queue");
    let mut seen = 0;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            delivery = consumer.next() => match delivery {
                Some(Ok(_)) => seen += 1,
                _ => break,
            },
        }
    }
    let _ = connection.close(200, "bench done".into()).await;
    seen
}

/// Waits up to 30 s for MongoDB to answer a ping.
pub async fn await_store(store: &Database) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match store.ping().await {
            Ok(()) => return,
            Err(error) if Instant::now() < deadline => {
                eprintln!("waiting for MongoDB: {error}");
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            Err(error) => panic!("MongoDB-compatible server unreachable: {error}"),
        }
    }
}

/// Whether a benchmark binary runs under `cargo bench` (which passes `--bench`); otherwise
/// (as `cargo test` runs it) prints how to run it.
pub fn under_cargo_bench(command: &str) -> bool {
    let benching = std::env::args().any(|argument| argument == "--bench");
    if !benching {
        println!("benchmark: run it with `{command}`");
    }
    benching
}

/// Runs `future` to its end on a multi-thread runtime: a benchmark's async part.
pub fn block_on<F: Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(future)
}

/// A benchmark knob: the environment variable `name` as a number, or `default`.
pub fn bench_setting(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(default)
}

/// A free TCP port on the loopback interface.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|address| address.port())
        .expect("a free port")
}

/// Takes every ready message from `queue` (acked as taken), on a channel of its own.
pub async fn take_all(connection: &Connection, queue: &str) -> Vec<lapin::message::Delivery> {
    let channel = connection.create_channel().await.expect("channel");
    let mut taken = Vec::new();
    while let Some(message) = channel
        .basic_get(
            queue.into(),
            lapin::options::BasicGetOptions { no_ack: true },
        )
        .await
        .expect("basic.get")
    {
        taken.push(message.delivery);
    }
    let _ = channel.close(200, "taken".into()).await;
    taken
}

/// A message's text header `key` (the dead-letter reason, its code, …).
pub fn header_text(properties: &lapin::BasicProperties, key: &str) -> Option<String> {
    match properties
        .headers()
        .as_ref()?
        .inner()
        .get(&lapin::types::ShortString::from(key))?
    {
        lapin::types::AMQPValue::LongString(value) => {
            Some(String::from_utf8_lossy(value.as_bytes()).into_owned())
        }
        _ => None,
    }
}

/// A private SecantusDB server that a test can stop and start again on the same port and
/// data, to play "MongoDB went down". The binary is `SECANTUSD_BIN` or `secantusd-rs`.
pub struct MongoServer {
    pub port: u16,
    data_dir: PathBuf,
    child: Option<Child>,
}

impl MongoServer {
    pub fn start() -> MongoServer {
        let data_dir = std::env::temp_dir().join(format!(
            "logagg-mongo-{}-{}",
            std::process::id(),
            uuid::Uuid::now_v7().simple()
        ));
        std::fs::create_dir_all(&data_dir).expect("mongo data dir");
        let mut server = MongoServer {
            port: free_port(),
            data_dir,
            child: None,
        };
        server.resume();
        server
    }

    pub fn url(&self) -> String {
        format!("mongodb://127.0.0.1:{}/?directConnection=true", self.port)
    }

    /// Starts (again) on the same port and data directory.
    pub fn resume(&mut self) {
        let binary = std::env::var("SECANTUSD_BIN").unwrap_or_else(|_| "secantusd-rs".into());
        let child = Command::new(&binary)
            .args(["--host", "127.0.0.1", "--port", &self.port.to_string()])
            .arg("--storage-path")
            .arg(&self.data_dir)
            .args(["--log-level", "WARNING"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|error| {
                panic!("cannot start {binary} (install it: scripts/setup.sh): {error}")
            });
        self.child = Some(child);
    }

    /// Kills the server with SIGKILL (no shutdown, nothing flushed) and waits for it: what
    /// it acknowledged as journaled must be there when [`MongoServer::resume`] starts it.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Stops the server with SIGTERM and waits for it to exit.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
            let _ = child.wait();
        }
    }
}

impl Drop for MongoServer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.data_dir);
    }
}

/// An HTTP response's status and JSON body, read whole (panics when the body is not JSON:
/// every API answer is).
pub async fn json_response(
    response: axum::response::Response,
) -> (axum::http::StatusCode, serde_json::Value) {
    let status = response.status();
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 26)
        .await
        .expect("body");
    let body = serde_json::from_slice(&bytes)
        .unwrap_or_else(|_| panic!("not JSON: {}", String::from_utf8_lossy(&bytes)));
    (status, body)
}

/// `VmHWM` (peak resident set) of a process, KiB; 0 when it cannot be read.
pub fn peak_rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find(|line| line.starts_with("VmHWM:"))
                .and_then(|line| line.split_whitespace().nth(1))
                .and_then(|value| value.parse().ok())
        })
        .unwrap_or(0)
}

/// Sum of a metric's series in Prometheus text (0 when absent).
pub fn metric_in(exposition: &str, name: &str) -> f64 {
    exposition
        .lines()
        .filter(|line| {
            line.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with(' ') || rest.starts_with('{'))
        })
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Sum of a metric's series in Prometheus text whose labels include every `(label, value)`
/// of `labels` (0 when none does).
pub fn metric_with_labels(exposition: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    let wanted: Vec<String> = labels
        .iter()
        .map(|(label, value)| format!("{label}=\"{value}\""))
        .collect();
    exposition
        .lines()
        .filter_map(|line| line.strip_prefix(name)?.strip_prefix('{'))
        .filter_map(|rest| rest.split_once('}'))
        .filter(|(series, _)| {
            let series: Vec<&str> = series.split(',').collect();
            wanted.iter().all(|label| series.contains(&label.as_str()))
        })
        .filter_map(|(_, value)| value.trim().parse::<f64>().ok())
        .sum()
}

/// Sum of a metric's series in this process's own recorder (shared by all its tests).
pub fn metric_value(name: &str) -> f64 {
    metric_in(&crate::telemetry::metrics_handle().render(), name)
}

/// `/metrics` of a service process on a loopback admin port (empty if it does not answer):
/// counters of that process alone.
pub async fn scrape_metrics(admin_port: u16) -> String {
    http_request(admin_port, "GET", "/metrics").await.1
}

/// A bare HTTP/1.0 request to a loopback port: the status (0 if nothing answered) and the
/// body. Enough for admin endpoints, without an HTTP client dependency.
pub async fn http_request(port: u16, method: &str, path: &str) -> (u16, String) {
    http_request_with(port, method, path, &[]).await
}

/// [`http_request`] with extra headers (`("x-api-key", KEY)`).
pub async fn http_request_with(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let Ok(mut stream) = tokio::net::TcpStream::connect(("127.0.0.1", port)).await else {
        return (0, String::new());
    };
    let headers: String = headers
        .iter()
        .map(|(name, value)| format!("{name}: {value}\r\n"))
        .collect();
    let request = format!("{method} {path} HTTP/1.0\r\nContent-Length: 0\r\n{headers}\r\n");
    let mut response = String::new();
    if stream.write_all(request.as_bytes()).await.is_ok() {
        let _ = stream.read_to_string(&mut response).await;
    }
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or(0);
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_owned())
        .unwrap_or_default();
    (status, body)
}

/// Closes, from the broker's side, every connection whose client-provided name is `name`:
/// what a network cut or a broker restart looks like to the client. Returns how many.
pub fn close_broker_connections(name: &str) -> usize {
    let listing = Command::new("rabbitmqctl")
        .args(["-q", "list_connections", "pid", "client_properties"])
        .output()
        .expect("rabbitmqctl list_connections");
    let text = String::from_utf8_lossy(&listing.stdout);
    let quoted = format!("\"{name}\"");
    let pids: Vec<&str> = text
        .lines()
        .filter(|line| line.contains(&quoted))
        .filter_map(|line| line.split_whitespace().next())
        .collect();
    for pid in &pids {
        let status = Command::new("rabbitmqctl")
            .args(["-q", "close_connection", pid, "closed by a logagg test"])
            .status()
            .expect("rabbitmqctl close_connection");
        assert!(status.success(), "could not close connection {pid}");
    }
    pids.len()
}

/// A certificate authority and a server certificate it signed for `localhost` and
/// `127.0.0.1`, made for one test, with the files a TLS listener reads.
pub struct TestCertificates {
    /// The CA's certificate (PEM): what a verifying client trusts.
    pub ca_pem: String,
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
    pub ca_file: PathBuf,
}

impl TestCertificates {
    /// Makes them and writes them under `directory` (created).
    pub fn new(directory: &std::path::Path) -> TestCertificates {
        use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
        std::fs::create_dir_all(directory).expect("certificate directory");
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "logagg test CA");
        let ca_key = KeyPair::generate().expect("CA key");
        let ca_pem = ca_params.self_signed(&ca_key).expect("CA").pem();
        let issuer = Issuer::new(ca_params, ca_key);
        let mut params =
            CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
                .expect("server params");
        params
            .distinguished_name
            .push(DnType::CommonName, "localhost");
        let key = KeyPair::generate().expect("server key");
        let cert = params.signed_by(&key, &issuer).expect("server certificate");
        let write = |name: &str, text: &str| {
            let path = directory.join(name);
            std::fs::write(&path, text).expect("writing a certificate file");
            path
        };
        TestCertificates {
            cert_file: write("server.pem", &cert.pem()),
            key_file: write("server.key", &key.serialize_pem()),
            ca_file: write("ca.pem", &ca_pem),
            ca_pem,
        }
    }
}
