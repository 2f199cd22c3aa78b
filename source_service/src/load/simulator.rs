//! Simulated log traffic: which service logs what, how severe and how long. Pure code.

use chrono::{DateTime, SecondsFormat, Utc};
use logagg::parse::routing_key;
use logagg::settings::{MessageFormat, SourceSettings, TrafficProfile};
use logagg::Severity;
use rand::rngs::SmallRng;
use rand::{RngExt, SeedableRng};
use serde::Serialize;

use super::realistic::RealisticMessages;

/// One message ready to publish.
#[derive(Debug, Clone, PartialEq)]
pub struct GeneratedLog {
    pub routing_key: String,
    pub body: Vec<u8>,
    pub message_id: String,
}

impl GeneratedLog {
    /// The record a collector makes of this message, sent as `format` and received at
    /// `received_at`: what tests and the monitor's checks compare against.
    pub fn record(
        &self,
        format: MessageFormat,
        received_at: DateTime<Utc>,
    ) -> Result<logagg::LogRecord, logagg::parse::ParseError> {
        logagg::parse::parse_message(&logagg::parse::Envelope {
            routing_key: &self.routing_key,
            body: &self.body,
            content_type: Some(format.content_type()),
            message_id: Some(&self.message_id),
            amqp_timestamp: None,
            received_at,
        })
    }
}

const WORDS: [&str; 16] = [
    "request",
    "handled",
    "user",
    "cache",
    "miss",
    "timeout",
    "payment",
    "order",
    "retry",
    "session",
    "token",
    "upstream",
    "latency",
    "queue",
    "database",
    "connection",
];

/// The JSON body the simulator publishes; borrowed fields keep generation allocation-light.
#[derive(Serialize)]
struct SimulatedRecord<'a> {
    timestamp: String,
    service: &'a str,
    severity: &'a str,
    message: &'a str,
    host: &'a str,
}

/// Draws services, severities and message sizes from the configured mix.
pub struct Generator {
    rng: SmallRng,
    services: Vec<String>,
    severities: Vec<(Severity, u32)>,
    total_weight: u32,
    min_bytes: usize,
    max_bytes: usize,
    format: MessageFormat,
    /// The realistic profile's templates; `None` for the simple profile.
    realistic: Option<RealisticMessages>,
}

impl Generator {
    /// `settings` must have passed `Settings::validate`.
    pub fn new(settings: &SourceSettings, seed: u64) -> Self {
        let severities: Vec<(Severity, u32)> = settings
            .severity_weights
            .iter()
            .filter_map(|(name, weight)| Some((name.parse().ok()?, *weight)))
            .filter(|(_, weight)| *weight > 0)
            .collect();
        let total_weight = severities.iter().map(|(_, weight)| weight).sum();
        let format = settings.format;
        Self {
            rng: SmallRng::seed_from_u64(seed),
            services: settings.services.clone(),
            severities,
            total_weight,
            min_bytes: settings.message_min_bytes,
            max_bytes: settings.message_max_bytes,
            format,
            realistic: (settings.profile == TrafficProfile::Realistic)
                .then(|| RealisticMessages::new(settings.services.len(), seed)),
        }
    }

    pub fn format(&self) -> MessageFormat {
        self.format
    }

    fn severity(&mut self) -> Severity {
        let mut draw = self.rng.random_range(0..self.total_weight.max(1));
        for (severity, weight) in &self.severities {
            if draw < *weight {
                return *severity;
            }
            draw -= weight;
        }
        Severity::Info
    }

    fn message(&mut self) -> String {
        let target = self.rng.random_range(self.min_bytes..=self.max_bytes);
        let mut message = String::with_capacity(target + 16);
        while message.len() < target {
            if !message.is_empty() {
                message.push(' ');
            }
            message.push_str(WORDS[self.rng.random_range(0..WORDS.len())]);
        }
        message.truncate(target.max(1));
        message.trim_end().to_owned()
    }

    /// The next message, stamped with `now` and a fresh time-ordered id.
    pub fn next_log(&mut self, now: DateTime<Utc>) -> GeneratedLog {
        let service_index = self.rng.random_range(0..self.services.len());
        let service = self.services[service_index].clone();
        let severity = self.severity();
        let mut message = match &mut self.realistic {
            Some(realistic) => realistic.message(service_index, severity),
            None => self.message(),
        };
        if message.is_empty() {
            message.push_str("event");
        }
        let message_id = uuid::Uuid::now_v7().to_string();
        let body = match self.format {
            MessageFormat::Json => serde_json::to_vec(&SimulatedRecord {
                timestamp: now.to_rfc3339_opts(SecondsFormat::Millis, true),
                service: &service,
                severity: severity.as_str(),
                message: &message,
                host: "simulator",
            })
            .unwrap_or_default(),
            MessageFormat::Plain => format!(
                "{} {service} {severity} {message}",
                now.format("%Y-%m-%d %H:%M:%S%.3f")
            )
            .into_bytes(),
        };
        GeneratedLog {
            routing_key: routing_key(&service, severity),
            body,
            message_id,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(log: &GeneratedLog, format: MessageFormat) -> logagg::LogRecord {
        log.record(format, Utc::now()).unwrap()
    }

    #[test]
    fn generated_logs_parse_in_both_formats_and_respect_sizes() {
        for format in [MessageFormat::Json, MessageFormat::Plain] {
            let settings = SourceSettings {
                format,
                message_min_bytes: 10,
                message_max_bytes: 30,
                ..SourceSettings::default()
            };
            let mut generator = Generator::new(&settings, 7);
            for _ in 0..200 {
                let log = generator.next_log(Utc::now());
                let record = parse(&log, generator.format());
                assert!(settings.services.contains(&record.service));
                assert!(
                    (1..=30).contains(&record.message.len()),
                    "{}",
                    record.message
                );
                assert_eq!(
                    log.routing_key,
                    routing_key(&record.service, record.severity)
                );
                assert_eq!(record.id, log.message_id);
            }
        }
    }

    #[test]
    fn the_realistic_profile_publishes_parseable_logs_of_its_own_kind() {
        for format in [MessageFormat::Json, MessageFormat::Plain] {
            let settings = SourceSettings {
                format,
                profile: TrafficProfile::Realistic,
                ..SourceSettings::default()
            };
            let mut generator = Generator::new(&settings, 3);
            let mut longest = 0;
            for _ in 0..2_000 {
                let log = generator.next_log(Utc::now());
                let record = parse(&log, generator.format());
                assert_eq!(record.id, log.message_id);
                assert!(record.message.len() >= 40, "{}", record.message);
                longest = longest.max(record.message.len());
            }
            assert!(longest > 1_000, "longest message {longest} bytes");
        }
    }

    #[test]
    fn severity_mix_follows_weights() {
        let settings = SourceSettings {
            severity_weights: [("error".to_owned(), 1), ("info".to_owned(), 3)].into(),
            ..SourceSettings::default()
        };
        let mut generator = Generator::new(&settings, 1);
        let errors = (0..10_000)
            .filter(|_| generator.severity() == Severity::Error)
            .count();
        assert!((2_200..2_800).contains(&errors), "{errors} errors of 10000");
    }
}
