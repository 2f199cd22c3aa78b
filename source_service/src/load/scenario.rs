//! Traffic scenarios for load tests and demos: access logs of a small web application (login,
//! home, profile, logout) with realistic response times and status codes, in phases:
//!
//! - `normal`: `base_rate` logs a second shaped like a day (quiet at night, busy in the
//!   afternoon; a "day" lasts `day_seconds`), and an endpoint mix that follows it;
//! - `spike`: ten times the rate;
//! - `failure`: one service's 5xx share (and error logs) climbs from 1 % to 50 %;
//! - `slow`: one endpoint's response times triple.
//!
//! A timeline file strings phases together, once or over and over (`repeat = true`, as the
//! demo does). Pure code: time is passed in.

use chrono::{DateTime, SecondsFormat, Utc};
use logagg::parse::routing_key;
use logagg::settings::TrafficProfile;
use logagg::Severity;
use rand::rngs::SmallRng;
use rand::{RngExt, SeedableRng};
use serde::Deserialize;
use serde_json::json;

use super::simulator::GeneratedLog;

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum PhaseKind {
    Normal,
    Spike,
    Failure { service: String },
    Slow { endpoint: String },
}

/// One phase (serde cannot refuse unknown fields through `flatten`; the kind's own fields
/// are checked).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Phase {
    #[serde(flatten)]
    pub kind: PhaseKind,
    pub seconds: u64,
}

/// A timeline file:
/// ```toml
/// base_rate = 500
/// day_seconds = 600
/// [[phase]]
/// kind = "normal"
/// seconds = 120
/// [[phase]]
/// kind = "failure"
/// service = "auth"
/// seconds = 60
/// ```
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Timeline {
    /// Logs per second of normal traffic at the day's average.
    pub base_rate: f64,
    /// Length of one simulated day, seconds (the day shape repeats).
    #[serde(default = "default_day_seconds")]
    pub day_seconds: u64,
    #[serde(default = "default_services")]
    pub services: Vec<String>,
    #[serde(rename = "phase")]
    pub phases: Vec<Phase>,
    /// Start again from the first phase after the last, until stopped.
    #[serde(default)]
    pub repeat: bool,
}

fn default_day_seconds() -> u64 {
    86_400
}

fn default_services() -> Vec<String> {
    vec!["frontend".into(), "auth".into()]
}

/// An endpoint: its share of requests at night and by day, median response time, and
/// the status it answers when all is well.
struct Endpoint {
    method: &'static str,
    path: &'static str,
    night_weight: f64,
    day_weight: f64,
    median_ms: f64,
    ok_status: u16,
}

const ENDPOINTS: [Endpoint; 4] = [
    Endpoint {
        method: "POST",
        path: "/login",
        night_weight: 0.10,
        day_weight: 0.20,
        median_ms: 120.0,
        ok_status: 302,
    },
    Endpoint {
        method: "GET",
        path: "/home",
        night_weight: 0.60,
        day_weight: 0.45,
        median_ms: 40.0,
        ok_status: 200,
    },
    Endpoint {
        method: "GET",
        path: "/profile",
        night_weight: 0.20,
        day_weight: 0.25,
        median_ms: 80.0,
        ok_status: 200,
    },
    Endpoint {
        method: "POST",
        path: "/logout",
        night_weight: 0.10,
        day_weight: 0.10,
        median_ms: 30.0,
        ok_status: 302,
    },
];

impl Timeline {
    pub fn parse(text: &str) -> Result<Timeline, String> {
        let timeline: Timeline = toml_from_str(text)?;
        timeline.check()?;
        Ok(timeline)
    }

    /// One phase of `kind` for `seconds` at `base_rate`.
    pub fn single(kind: PhaseKind, seconds: u64, base_rate: f64) -> Result<Timeline, String> {
        let timeline = Timeline {
            base_rate,
            day_seconds: default_day_seconds(),
            services: default_services(),
            phases: vec![Phase { kind, seconds }],
            repeat: false,
        };
        timeline.check()?;
        Ok(timeline)
    }

    fn check(&self) -> Result<(), String> {
        if !(self.base_rate > 0.0 && self.base_rate <= 1_000_000.0) {
            return Err("base_rate must be above 0 and at most 1,000,000".into());
        }
        if self.phases.is_empty() || self.phases.iter().any(|phase| phase.seconds == 0) {
            return Err("a timeline needs phases of at least one second".into());
        }
        if self.day_seconds == 0 || self.services.is_empty() {
            return Err("day_seconds and services must not be empty".into());
        }
        for service in &self.services {
            logagg::parse::validate_service(service).map_err(|error| error.to_string())?;
        }
        for phase in &self.phases {
            match &phase.kind {
                PhaseKind::Failure { service } if !self.services.contains(service) => {
                    return Err(format!(
                        "failure phase names `{service}`, not one of the services"
                    ))
                }
                PhaseKind::Slow { endpoint } if !ENDPOINTS.iter().any(|e| e.path == endpoint) => {
                    return Err(format!(
                        "slow phase names `{endpoint}`: one of /login, /home, /profile, /logout"
                    ))
                }
                _ => {}
            }
        }
        Ok(())
    }

    pub fn total_seconds(&self) -> f64 {
        self.phases.iter().map(|phase| phase.seconds as f64).sum()
    }

    /// The phase at `t` seconds from the start and how far into it (0 to 1); `None` past the
    /// end of a timeline that does not repeat.
    pub fn phase_at(&self, t: f64) -> Option<(&Phase, f64)> {
        let t = if self.repeat {
            t.rem_euclid(self.total_seconds())
        } else {
            t
        };
        let mut start = 0.0;
        for phase in &self.phases {
            let end = start + phase.seconds as f64;
            if t < end {
                return Some((phase, (t - start) / phase.seconds as f64));
            }
            start = end;
        }
        None
    }

    /// How busy the day is at `t`: 0.3 at 03:00, 1.7 at 15:00, 1.0 on average.
    pub fn day_factor(&self, t: f64) -> f64 {
        let hour = (t / self.day_seconds as f64).fract() * 24.0;
        1.0 - 0.7 * ((hour - 3.0) / 24.0 * std::f64::consts::TAU).cos()
    }

    /// Logs per second at `t`.
    pub fn rate_at(&self, t: f64) -> Option<f64> {
        let (phase, _) = self.phase_at(t)?;
        let rate = match phase.kind {
            PhaseKind::Spike => self.base_rate * 10.0,
            _ => self.base_rate * self.day_factor(t),
        };
        Some(rate.max(0.001))
    }
}

fn toml_from_str(text: &str) -> Result<Timeline, String> {
    config::Config::builder()
        .add_source(config::File::from_str(text, config::FileFormat::Toml))
        .build()
        .and_then(|config| config.try_deserialize())
        .map_err(|error| format!("invalid timeline: {error}"))
}

/// Generates a timeline's logs, each at its due time.
pub struct ScenarioGenerator {
    timeline: Timeline,
    profile: TrafficProfile,
    rng: SmallRng,
    /// When the next log is due, seconds from the start.
    next_due: f64,
}

impl ScenarioGenerator {
    pub fn new(timeline: Timeline, seed: u64) -> ScenarioGenerator {
        ScenarioGenerator {
            timeline,
            profile: TrafficProfile::Simple,
            rng: SmallRng::seed_from_u64(seed),
            next_due: 0.0,
        }
    }

    /// With the realistic profile, each message is a whole access line (client address,
    /// user, query string, bytes, user agent, request id) rather than `GET /home 200 12ms`.
    pub fn with_profile(mut self, profile: TrafficProfile) -> ScenarioGenerator {
        self.profile = profile;
        self
    }

    /// When the next log is due (seconds from the start); `None` when the timeline is over.
    pub fn next_due(&self) -> Option<f64> {
        (self.timeline.repeat || self.next_due < self.timeline.total_seconds())
            .then_some(self.next_due)
    }

    /// The next log, stamped `now`; moves the due time on by one interval at the rate then.
    pub fn next_log(&mut self, now: DateTime<Utc>) -> Option<GeneratedLog> {
        let t = self.next_due()?;
        let rate = self.timeline.rate_at(t)?;
        self.next_due += 1.0 / rate;
        let (phase, progress) = self.timeline.phase_at(t)?;
        let phase = phase.clone();
        let services = &self.timeline.services;
        let service = services[self.rng.random_range(0..services.len())].clone();
        let day = (self.timeline.day_factor(t) - 0.3) / 1.4;
        let endpoint = self.pick_endpoint(day);
        let mut duration = endpoint.median_ms
            * (self.rng.random_range(-0.5_f64..0.5) + self.rng.random_range(-0.5_f64..0.5)).exp();
        if matches!(&phase.kind, PhaseKind::Slow { endpoint: slow } if slow == endpoint.path) {
            duration *= 3.0;
        }
        let failure_share = match &phase.kind {
            PhaseKind::Failure { service: failing } if *failing == service => {
                0.01 + 0.49 * progress
            }
            _ => 0.005,
        };
        let draw: f64 = self.rng.random_range(0.0..1.0);
        let status = if draw < failure_share {
            if self.rng.random_range(0..4) == 0 {
                503
            } else {
                500
            }
        } else if draw < failure_share + 0.02 {
            404
        } else {
            endpoint.ok_status
        };
        let severity = match status {
            500..=599 => Severity::Error,
            400..=499 => Severity::Warn,
            _ => Severity::Info,
        };
        let client_ip = format!(
            "10.0.{}.{}",
            self.rng.random_range(0..4),
            self.rng.random_range(1..255)
        );
        let message = match self.profile {
            TrafficProfile::Simple => format!(
                "{} {} {status} {:.0}ms",
                endpoint.method, endpoint.path, duration
            ),
            TrafficProfile::Realistic => format!(
                "{client_ip} - user{} [{}] \"{} {}?session={:016x} HTTP/1.1\" {status} {} \"-\" \"Mozilla/5.0 (X11; Linux x86_64)\" rt={:.3} rid={:016x}",
                self.rng.random_range(1..5_000),
                now.format("%d/%b/%Y:%H:%M:%S %z"),
                endpoint.method,
                endpoint.path,
                self.rng.random::<u64>(),
                self.rng.random_range(200..60_000),
                duration / 1000.0,
                self.rng.random::<u64>(),
            ),
        };
        let body = json!({
            "timestamp": now.to_rfc3339_opts(SecondsFormat::Millis, true),
            "service": service,
            "severity": severity.as_str(),
            "message": message,
            "host": format!("{service}-{}", self.rng.random_range(1..=3)),
            "http": {
                "method": endpoint.method,
                "path": endpoint.path,
                "status": status,
                "duration_ms": (duration * 10.0).round() / 10.0,
                "client_ip": client_ip,
            },
        });
        Some(GeneratedLog {
            routing_key: routing_key(&service, severity),
            body: serde_json::to_vec(&body).unwrap_or_default(),
            message_id: uuid::Uuid::now_v7().to_string(),
        })
    }

    fn pick_endpoint(&mut self, day: f64) -> &'static Endpoint {
        let weight = |endpoint: &Endpoint| {
            endpoint.night_weight + (endpoint.day_weight - endpoint.night_weight) * day
        };
        let total: f64 = ENDPOINTS.iter().map(weight).sum();
        let mut draw = self.rng.random_range(0.0..total);
        for endpoint in &ENDPOINTS {
            draw -= weight(endpoint);
            if draw < 0.0 {
                return endpoint;
            }
        }
        &ENDPOINTS[1]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use logagg::settings::MessageFormat;

    fn generate(timeline: Timeline) -> Vec<(f64, logagg::LogRecord)> {
        let mut generator = ScenarioGenerator::new(timeline, 11);
        let mut logs = Vec::new();
        while let Some(due) = generator.next_due() {
            let log = generator.next_log(Utc::now()).expect("a log");
            let record = log.record(MessageFormat::Json, Utc::now()).expect("parses");
            logs.push((due, record));
        }
        logs
    }

    #[test]
    fn each_phase_gets_its_rate_within_five_percent() {
        let timeline = Timeline::parse(
            "base_rate = 1000\nday_seconds = 86400\n\
             [[phase]]\nkind = \"normal\"\nseconds = 10\n\
             [[phase]]\nkind = \"spike\"\nseconds = 5\n\
             [[phase]]\nkind = \"failure\"\nservice = \"auth\"\nseconds = 10\n\
             [[phase]]\nkind = \"slow\"\nendpoint = \"/profile\"\nseconds = 10\n",
        )
        .expect("timeline");
        let logs = generate(timeline.clone());
        let count =
            |from: f64, to: f64| logs.iter().filter(|(t, _)| (from..to).contains(t)).count() as f64;
        let expected = |from: f64, to: f64| {
            let steps = 10_000;
            (0..steps)
                .map(|step| {
                    timeline
                        .rate_at(from + (to - from) * (f64::from(step) + 0.5) / f64::from(steps))
                        .unwrap()
                })
                .sum::<f64>()
                * (to - from)
                / f64::from(steps)
        };
        for (from, to) in [(0.0, 10.0), (10.0, 15.0), (15.0, 25.0), (25.0, 35.0)] {
            let (got, want) = (count(from, to), expected(from, to));
            assert!(
                (got - want).abs() <= want * 0.05,
                "{from}-{to}: {got} vs {want}"
            );
        }
        assert!(
            count(10.0, 15.0) > 9.0 * count(0.0, 10.0) / 2.0,
            "the spike is ten times"
        );
    }

    #[test]
    fn failure_climbs_for_its_service_and_slow_triples_its_endpoint() {
        let failing = Timeline::single(
            PhaseKind::Failure {
                service: "auth".into(),
            },
            20,
            2_000.0,
        )
        .unwrap();
        let logs = generate(failing);
        let share = |from: f64, to: f64, service: &str| {
            let of: Vec<_> = logs
                .iter()
                .filter(|(t, r)| (from..to).contains(t) && r.service == service)
                .collect();
            of.iter()
                .filter(|(_, r)| r.http.as_ref().unwrap().status.unwrap() >= 500)
                .count() as f64
                / of.len() as f64
        };
        assert!(share(0.0, 2.0, "auth") < 0.1, "starts low");
        assert!(share(18.0, 20.0, "auth") > 0.35, "climbs to about half");
        assert!(
            share(18.0, 20.0, "frontend") < 0.05,
            "other services are fine"
        );
        assert!(logs
            .iter()
            .all(|(_, r)| (r.http.as_ref().unwrap().status.unwrap() >= 500)
                == (r.severity == Severity::Error)));

        let median = |logs: &[(f64, logagg::LogRecord)], path: &str| {
            let mut durations: Vec<f64> = logs
                .iter()
                .filter_map(|(_, r)| {
                    r.http
                        .as_ref()
                        .filter(|h| h.path.as_deref() == Some(path))
                        .and_then(|h| h.duration_ms)
                })
                .collect();
            durations.sort_by(f64::total_cmp);
            durations[durations.len() / 2]
        };
        let normal = generate(Timeline::single(PhaseKind::Normal, 10, 2_000.0).unwrap());
        let slow = generate(
            Timeline::single(
                PhaseKind::Slow {
                    endpoint: "/profile".into(),
                },
                10,
                2_000.0,
            )
            .unwrap(),
        );
        let ratio = median(&slow, "/profile") / median(&normal, "/profile");
        assert!((2.7..3.3).contains(&ratio), "{ratio}");
        let home = median(&slow, "/home") / median(&normal, "/home");
        assert!((0.9..1.1).contains(&home), "{home}");
    }

    #[test]
    fn the_demo_timeline_fails_auth_in_its_second_minute_and_repeats() {
        let text = include_str!("../../../docs/demo-timeline.toml");
        let timeline = Timeline::parse(text).expect("docs/demo-timeline.toml");
        assert!(timeline.repeat);
        let failing_at = |t: f64| {
            matches!(
                timeline.phase_at(t),
                Some((
                    Phase {
                        kind: PhaseKind::Failure { .. },
                        ..
                    },
                    _
                ))
            )
        };
        assert!(!failing_at(10.0) && failing_at(40.0) && !failing_at(100.0));
        let period = timeline.total_seconds();
        assert!(failing_at(period + 40.0), "the second round fails again");
        let mut generator = ScenarioGenerator::new(timeline.clone(), 3);
        generator.next_due = period * 3.0;
        assert!(generator.next_log(Utc::now()).is_some(), "never over");
    }

    #[test]
    fn bad_timelines_are_refused_with_the_reason() {
        for text in [
            "base_rate = 0\n[[phase]]\nkind = \"normal\"\nseconds = 1\n",
            "base_rate = 10\n",
            "base_rate = 10\n[[phase]]\nkind = \"storm\"\nseconds = 1\n",
            "base_rate = 10\n[[phase]]\nkind = \"failure\"\nservice = \"nope\"\nseconds = 1\n",
            "base_rate = 10\n[[phase]]\nkind = \"slow\"\nendpoint = \"/x\"\nseconds = 1\n",
            "base_rate = 10\n[[phase]]\nkind = \"normal\"\nseconds = 0\n",
        ] {
            assert!(Timeline::parse(text).is_err(), "{text}");
        }
    }
}
