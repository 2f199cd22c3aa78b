//! The distributor: consumes `analyzers.queue` with manual acks and gives each log to one
//! online analyzer by the weighted schedule, a round of logs at a time. A round's messages
//! are acked only once every one of its logs was accepted (a 2xx, or the broker's confirm on
//! the analyzer's queue); a failed delivery's logs go to the other online analyzers, and
//! with none online the round waits (its messages unacked) until one is.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use futures::stream::FuturesUnordered;
use futures::StreamExt;
use lapin::options::{BasicAckOptions, BasicConsumeOptions, BasicQosOptions, QueueBindOptions};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::{Channel, Connection};
use logagg::broker::{self, BrokerError};
use logagg::runtime::{BrokerSession, SessionError};
use logagg::settings::{Settings, StickyBy};
use logagg::store::analyzers::{Analyzer, Target};
use logagg::store::Database;
use logagg::telemetry::Health;
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::metrics;
use crate::schedule::Schedule;

/// The analyzers as last read from MongoDB.
pub type Registered = watch::Receiver<Arc<Vec<Analyzer>>>;

/// The queue a `queue` analyzer consumes its share from.
pub fn analyzer_queue(id: &str) -> String {
    format!("logs.analyzer.{id}")
}

/// Reads the registered analyzers every `analyzers.refresh_ms` until shutdown, and keeps
/// the gauges of who is online with what share.
pub async fn refresh_registered(
    store: Database,
    settings: Arc<Settings>,
    sender: watch::Sender<Arc<Vec<Analyzer>>>,
    health: Health,
    shutdown: CancellationToken,
) {
    let mut every = tokio::time::interval(settings.analyzers.refresh_ms);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut shown = HashSet::new();
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = every.tick() => {}
        }
        match store.registered_analyzers().await {
            Ok(analyzers) => {
                health.set("store", true);
                let now = chrono::Utc::now();
                for analyzer in &analyzers {
                    if let Err(error) = store.forget_old_minutes(analyzer, now).await {
                        warn!(%error, analyzer = %analyzer.id, "removing old minute counts failed");
                    }
                }
                set_gauges(&analyzers, settings.analyzers.max_failures, &mut shown);
                sender.send_replace(Arc::new(analyzers));
            }
            Err(error) => {
                health.set("store", false);
                warn!(%error, "reading the registered analyzers failed; keeping the last read");
            }
        }
    }
}

/// Each analyzer's gauges as the API shows it; those of analyzers `shown` before and gone
/// since go to 0 (offline, no share).
fn set_gauges(analyzers: &[Analyzer], max_failures: u32, shown: &mut HashSet<String>) {
    let views = logagg::store::analyzers::views(analyzers, max_failures);
    let now: HashSet<String> = views.iter().map(|view| view.id.clone()).collect();
    for gone in shown.difference(&now) {
        let labels = [("analyzer", gone.clone())];
        metrics::gauge!(metrics::ONLINE, &labels).set(0.0);
        metrics::gauge!(metrics::WEIGHT_SHARE, &labels).set(0.0);
    }
    for view in &views {
        let labels = [("analyzer", view.id.clone())];
        metrics::gauge!(metrics::ONLINE, &labels).set(f64::from(u8::from(view.online)));
        metrics::gauge!(metrics::WEIGHT_SHARE, &labels).set(view.share);
        metrics::gauge!(metrics::WEIGHT, &labels).set(view.weight);
        metrics::gauge!(metrics::LAST_HEARTBEAT, &labels)
            .set(view.last_heartbeat.timestamp_millis() as f64 / 1000.0);
    }
    *shown = now;
}

/// One broker connection's work.
pub struct Distributor {
    pub store: Database,
    pub settings: Arc<Settings>,
    pub http: reqwest::Client,
    pub registered: Registered,
    pub health: Health,
    pub shutdown: CancellationToken,
    /// Kept across sessions, so a reconnect does not restart the weighted order.
    pub schedule: Schedule,
}

impl BrokerSession for Distributor {
    async fn run(&mut self, connection: &Connection) -> Result<(), SessionError> {
        let channel = connection.create_channel().await?;
        logagg::topology::declare(&channel, &self.settings.broker).await?;
        let publish = broker::confirm_channel(connection).await?;
        self.health.set("broker", true);
        let mut session = Session {
            distributor: self,
            channel,
            publish,
            bound: false,
            declared: std::sync::Mutex::default(),
        };
        session.run().await
    }
}

struct Session<'a> {
    distributor: &'a mut Distributor,
    channel: Channel,
    /// Publishes to `queue` analyzers, in confirm mode.
    publish: Channel,
    /// Whether the queue is bound to the exchange (some analyzer is registered).
    bound: bool,
    /// `queue` analyzers' queues declared on this connection.
    declared: std::sync::Mutex<HashSet<String>>,
}

/// A log on its way: the line an analyzer gets, its id and service.
struct Line {
    id: String,
    service: String,
    json: String,
}

impl Session<'_> {
    async fn run(&mut self) -> Result<(), SessionError> {
        let settings = Arc::clone(&self.distributor.settings);
        let shutdown = self.distributor.shutdown.clone();
        // Nothing to consume from until an analyzer is registered: the queue is declared
        // and bound then, so with none ever registered it never fills.
        loop {
            self.sync_binding().await?;
            if self.bound {
                break;
            }
            tokio::select! {
                _ = shutdown.cancelled() => return Ok(()),
                _ = self.distributor.registered.changed() => {}
            }
        }
        self.channel
            .basic_qos(settings.analyzers.prefetch, BasicQosOptions::default())
            .await?;
        let mut consumer = self
            .channel
            .basic_consume(
                settings.analyzers.queue.as_str().into(),
                "analyzer_service".into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await?;
        info!(queue = %settings.analyzers.queue, "distributing");
        let mut round: Vec<lapin::message::Delivery> = Vec::new();
        let mut records = 0;
        let mut deadline: Option<Instant> = None;
        let mut refresh = tokio::time::interval(settings.analyzers.refresh_ms);
        loop {
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => return Ok(()),
                _ = sleep_until(deadline), if deadline.is_some() => {
                    self.deliver(std::mem::take(&mut round)).await?;
                    (records, deadline) = (0, None);
                }
                _ = refresh.tick() => self.sync_binding().await?,
                delivery = consumer.next() => {
                    let delivery = match delivery {
                        Some(Ok(delivery)) => delivery,
                        Some(Err(error)) => return Err(BrokerError::Operation(error).into()),
                        None => return Err(BrokerError::ConsumerCancelled.into()),
                    };
                    if round.is_empty() {
                        deadline = Some(Instant::now() + settings.analyzers.batch_max_age_ms);
                    }
                    records += 1 + delivery.data.iter().filter(|byte| **byte == b'\n').count();
                    round.push(delivery);
                    if records >= settings.analyzers.batch_size {
                        self.deliver(std::mem::take(&mut round)).await?;
                        (records, deadline) = (0, None);
                    }
                }
            }
        }
    }

    /// Binds the queue while some analyzer is registered and unbinds it when none is:
    /// unbinding stops new logs coming, and what is in the queue waits for the next one.
    async fn sync_binding(&mut self) -> Result<(), SessionError> {
        let registered = !self.distributor.registered.borrow().is_empty();
        if registered == self.bound {
            return Ok(());
        }
        let settings = &self.distributor.settings;
        let queue = settings.analyzers.queue.as_str();
        let exchange = settings.broker.exchange.as_str();
        if registered {
            self.channel
                .queue_declare(
                    queue.into(),
                    lapin::options::QueueDeclareOptions::durable(),
                    queue_arguments(settings),
                )
                .await?;
            for key in &settings.analyzers.binding_keys {
                self.channel
                    .queue_bind(
                        queue.into(),
                        exchange.into(),
                        key.as_str().into(),
                        QueueBindOptions::default(),
                        FieldTable::default(),
                    )
                    .await?;
            }
            info!(%queue, "an analyzer is registered: the queue takes logs");
        } else {
            for key in &settings.analyzers.binding_keys {
                self.channel
                    .queue_unbind(
                        queue.into(),
                        exchange.into(),
                        key.as_str().into(),
                        FieldTable::default(),
                    )
                    .await?;
            }
            info!(%queue, "no analyzer is registered: the queue takes no more logs");
        }
        self.bound = registered;
        Ok(())
    }

    /// Delivers every log of `round` and then acks its messages.
    async fn deliver(&mut self, round: Vec<lapin::message::Delivery>) -> Result<(), SessionError> {
        let Some(last_tag) = round.last().map(|delivery| delivery.delivery_tag) else {
            return Ok(());
        };
        let mut pending = lines_of(&round);
        let mut excluded: Vec<String> = Vec::new();
        while !pending.is_empty() {
            let online = self.online();
            let candidates: Vec<(String, f64)> = online
                .iter()
                .filter(|(analyzer, _)| !excluded.contains(&analyzer.id))
                .map(|(analyzer, _)| (analyzer.id.clone(), analyzer.weight))
                .collect();
            if candidates.is_empty() {
                // Nobody online (or every one failed this round): wait for the registry.
                metrics::counter!(metrics::WAITING).increment(1);
                excluded.clear();
                let shutdown = self.distributor.shutdown.clone();
                tokio::select! {
                    _ = shutdown.cancelled() => return Ok(()),
                    _ = tokio::time::sleep(self.distributor.settings.analyzers.refresh_ms) => {}
                }
                self.sync_binding().await?;
                continue;
            }
            let sticky = self.distributor.settings.analyzers.sticky_by;
            let schedule = &mut self.distributor.schedule;
            schedule.set(&candidates);
            let mut groups: BTreeMap<String, Vec<Line>> = BTreeMap::new();
            for line in pending.drain(..) {
                let id = match sticky {
                    StickyBy::None => schedule.pick(&[]),
                    StickyBy::Service => crate::schedule::rendezvous(&line.service, &candidates),
                }
                .expect("candidates are not empty");
                groups.entry(id).or_default().push(line);
            }
            let targets: BTreeMap<String, Target> = online
                .into_iter()
                .map(|(analyzer, _)| (analyzer.id, analyzer.target))
                .collect();
            let mut sends = FuturesUnordered::new();
            for (id, lines) in groups {
                let target = targets[&id].clone();
                sends.push(self.send(id, target, lines));
            }
            let mut failed = Vec::new();
            while let Some((id, lines, outcome)) = sends.next().await {
                let labels = [("analyzer", id.clone())];
                let store = &self.distributor.store;
                match outcome {
                    Ok(()) => {
                        metrics::counter!(metrics::DELIVERED, &labels)
                            .increment(lines.len() as u64);
                        let now = chrono::Utc::now();
                        if let Err(error) =
                            store.record_delivered(&id, lines.len() as u64, now).await
                        {
                            warn!(%error, analyzer = %id, "counting a delivery failed");
                        }
                    }
                    Err(reason) => {
                        metrics::counter!(metrics::FAILURES, &labels).increment(1);
                        warn!(analyzer = %id, %reason, logs = lines.len(), "delivery failed; its logs go to another analyzer");
                        if let Err(error) = store.record_failed(&id).await {
                            warn!(%error, analyzer = %id, "counting a failed delivery failed");
                        }
                        failed.push((id, lines));
                    }
                }
            }
            drop(sends);
            for (id, lines) in failed {
                excluded.push(id);
                pending.extend(lines);
            }
        }
        self.channel
            .basic_ack(last_tag, BasicAckOptions { multiple: true })
            .await?;
        Ok(())
    }

    /// The online analyzers now, with their share.
    fn online(&self) -> Vec<(Analyzer, f64)> {
        let now = chrono::Utc::now();
        let max_failures = self.distributor.settings.analyzers.max_failures;
        self.distributor
            .registered
            .borrow()
            .iter()
            .filter(|analyzer| analyzer.is_online(now, max_failures))
            .map(|analyzer| (analyzer.clone(), analyzer.weight))
            .collect()
    }

    /// Sends `lines` to analyzer `id`: the lines back with the outcome.
    fn send(
        &self,
        id: String,
        target: Target,
        lines: Vec<Line>,
    ) -> impl std::future::Future<Output = (String, Vec<Line>, Result<(), String>)> + '_ {
        async move {
            let outcome = match &target {
                Target::Url(url) => self.post(url, &lines).await,
                Target::Queue => self.publish(&id, &lines).await,
            };
            (id, lines, outcome)
        }
    }

    /// POSTs the lines as NDJSON batches of `analyzers.batch_size`; any non-2xx fails it.
    async fn post(&self, url: &str, lines: &[Line]) -> Result<(), String> {
        let settings = &self.distributor.settings.analyzers;
        for chunk in lines.chunks(settings.batch_size) {
            let mut body =
                String::with_capacity(chunk.iter().map(|line| line.json.len() + 1).sum());
            for line in chunk {
                body.push_str(&line.json);
                body.push('\n');
            }
            let response = self
                .distributor
                .http
                .post(url)
                .header("content-type", "application/x-ndjson")
                .timeout(settings.delivery_timeout_ms)
                .body(body)
                .send()
                .await
                .map_err(|error| error.to_string())?;
            if !response.status().is_success() {
                return Err(format!("answered {}", response.status()));
            }
        }
        Ok(())
    }

    /// Publishes each line to the analyzer's own queue, persistent and confirmed.
    async fn publish(&self, id: &str, lines: &[Line]) -> Result<(), String> {
        let queue = analyzer_queue(id);
        let known = self
            .declared
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .contains(&queue);
        if !known {
            let mut arguments = FieldTable::default();
            arguments.insert(
                ShortString::from("x-queue-type"),
                AMQPValue::LongString(LongString::from("quorum")),
            );
            self.publish
                .queue_declare(
                    queue.as_str().into(),
                    lapin::options::QueueDeclareOptions::durable(),
                    arguments,
                )
                .await
                .map_err(|error| error.to_string())?;
            self.declared
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .insert(queue.clone());
        }
        let mut confirms = FuturesUnordered::new();
        for line in lines {
            confirms.push(broker::publish_owned(
                self.publish.clone(),
                ShortString::from(""),
                queue.clone(),
                line.json.clone().into_bytes(),
                broker::log_properties(broker::CONTENT_TYPE_JSON, &line.id),
            ));
        }
        while let Some(confirmation) = confirms.next().await {
            match confirmation {
                Ok(confirmation) if broker::is_queued(&confirmation) => {}
                Ok(other) => return Err(format!("the broker did not queue it: {other:?}")),
                Err(error) => return Err(error.to_string()),
            }
        }
        Ok(())
    }
}

/// The records of a round as analyzers get them: one JSON line each, as
/// `GET /api/v1/logs/{id}` shows the record. A message no record can be read from is the
/// collector's to dead-letter; here it is counted and skipped.
fn lines_of(round: &[lapin::message::Delivery]) -> Vec<Line> {
    let received_at = chrono::Utc::now();
    let mut lines = Vec::new();
    for delivery in round {
        let envelope = broker::envelope(
            delivery.routing_key.as_str(),
            &delivery.data,
            &delivery.properties,
            received_at,
        );
        for parsed in logagg::parse::parse_records(&envelope) {
            match parsed.record {
                Ok(record) => {
                    if let Ok(json) = serde_json::to_string(&record) {
                        lines.push(Line {
                            id: record.id,
                            service: record.service,
                            json,
                        });
                    }
                }
                Err(_) => metrics::counter!(metrics::SKIPPED).increment(1),
            }
        }
    }
    lines
}

/// The distributor's queue: quorum, bounded in bytes, the oldest logs dead-lettered past
/// the bound (`drop-head` never refuses a publish, so a full queue cannot slow the storage
/// path).
pub fn queue_arguments(settings: &Settings) -> FieldTable {
    let mut arguments = FieldTable::default();
    let mut put = |key: &str, value: AMQPValue| {
        arguments.insert(ShortString::from(key), value);
    };
    put("x-queue-type", AMQPValue::LongString("quorum".into()));
    put(
        "x-max-length-bytes",
        AMQPValue::LongLongInt(
            i64::try_from(settings.analyzers.queue_max_bytes).unwrap_or(i64::MAX),
        ),
    );
    put("x-overflow", AMQPValue::LongString("drop-head".into()));
    put(
        "x-dead-letter-exchange",
        AMQPValue::LongString(settings.broker.dead_letter_exchange.as_str().into()),
    );
    arguments
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}
