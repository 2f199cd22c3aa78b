//! The monitor's state: per service, one sliding window per distinct window length and one
//! lifecycle per rule. `observe` costs O(rules) per log; `tick` re-evaluates the services
//! with an alert pending or firing (so alerts resolve when logs stop) and forgets idle ones.
//! Pure and synchronous: the caller passes the time.

use std::collections::{HashMap, VecDeque};

use logagg::{LogRecord, Severity};

use crate::rules::{Phase, Rule, Transition};
use crate::window::SlidingWindow;

/// Ids of recent matching logs an alert carries as samples.
const SAMPLES: usize = 5;

/// An alert as the monitor raises or resolves it.
#[derive(Debug, Clone, PartialEq)]
pub struct AlertEvent {
    pub fired: bool,
    pub rule: String,
    pub service: String,
    pub value: f64,
    pub threshold: f64,
    pub window_seconds: u64,
    /// When it started firing (ms).
    pub started_ms: i64,
    /// Set when `fired` is false (ms).
    pub resolved_ms: Option<i64>,
    pub peak: f64,
    pub sample_ids: Vec<String>,
}

#[derive(Debug)]
struct ServiceState {
    /// One per distinct window length among the rules, in `Monitor::window_lengths` order.
    windows: Vec<SlidingWindow>,
    /// One per rule, in `Monitor::rules` order (idle for rules that do not apply).
    phases: Vec<Phase>,
    samples: VecDeque<String>,
    last_seen_ms: i64,
}

#[derive(Debug)]
pub struct Monitor {
    rules: Vec<Rule>,
    /// For each rule, the index of its window length.
    rule_window: Vec<usize>,
    window_lengths: Vec<u64>,
    /// The lowest severity any rule counts: logs below it are not sampled.
    sample_floor: Severity,
    services: HashMap<String, ServiceState>,
    max_services: usize,
    idle_eviction_ms: i64,
    /// Logs of services beyond `max_services`, skipped.
    pub overflowed: u64,
}

impl Monitor {
    pub fn new(rules: Vec<Rule>, max_services: usize, idle_eviction_seconds: u64) -> Monitor {
        let mut window_lengths: Vec<u64> = rules.iter().map(|rule| rule.window_seconds).collect();
        window_lengths.sort_unstable();
        window_lengths.dedup();
        let rule_window = rules
            .iter()
            .map(|rule| {
                window_lengths
                    .iter()
                    .position(|length| *length == rule.window_seconds)
                    .unwrap_or(0)
            })
            .collect();
        let sample_floor = rules
            .iter()
            .map(|rule| rule.min_severity)
            .min()
            .unwrap_or(Severity::Error);
        Monitor {
            rules,
            rule_window,
            window_lengths,
            sample_floor,
            services: HashMap::new(),
            max_services,
            idle_eviction_ms: i64::try_from(idle_eviction_seconds.saturating_mul(1_000))
                .unwrap_or(i64::MAX),
            overflowed: 0,
        }
    }

    pub fn services(&self) -> usize {
        self.services.len()
    }

    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// Counts one log seen at `now` (ms) and evaluates the rules of its service.
    pub fn observe(&mut self, record: &LogRecord, now: i64, events: &mut Vec<AlertEvent>) {
        let second = now.div_euclid(1_000);
        if !self.services.contains_key(&record.service) {
            if self.services.len() >= self.max_services {
                self.overflowed += 1;
                return;
            }
            let state = self.new_state(now);
            self.services.insert(record.service.clone(), state);
        }
        let Some(state) = self.services.get_mut(&record.service) else {
            return;
        };
        state.last_seen_ms = now;
        for window in &mut state.windows {
            window.add(second, record.severity);
        }
        if record.severity >= self.sample_floor {
            if state.samples.len() == SAMPLES {
                state.samples.pop_front();
            }
            state.samples.push_back(record.id.clone());
        }
        evaluate(
            &self.rules,
            &self.rule_window,
            &record.service,
            state,
            now,
            events,
        );
    }

    /// Re-evaluates every service with an alert pending or firing, and forgets services
    /// idle past the eviction age with none.
    pub fn tick(&mut self, now: i64, events: &mut Vec<AlertEvent>) {
        let idle_limit = now.saturating_sub(self.idle_eviction_ms);
        let (rules, rule_window) = (&self.rules, &self.rule_window);
        self.services.retain(|service, state| {
            if state.phases.iter().any(|phase| !phase.is_idle()) {
                evaluate(rules, rule_window, service, state, now, events);
            }
            state.last_seen_ms > idle_limit || state.phases.iter().any(|phase| !phase.is_idle())
        });
    }

    /// Takes over an alert another monitor opened (read from the store): it is firing here
    /// too, and resolves here when the value falls, but not before this monitor has watched
    /// a whole window (its windows start empty).
    pub fn adopt(&mut self, rule: &str, service: &str, started_ms: i64, now: i64) {
        let Some(index) = self
            .rules
            .iter()
            .position(|candidate| candidate.name == rule)
        else {
            return;
        };
        if !self.services.contains_key(service) {
            if self.services.len() >= self.max_services {
                return;
            }
            let state = self.new_state(now);
            self.services.insert(service.to_owned(), state);
        }
        if let Some(state) = self.services.get_mut(service) {
            if state.phases[index].is_idle() {
                let window_ms =
                    i64::try_from(self.rules[index].window_seconds * 1_000).unwrap_or(i64::MAX);
                state.phases[index] = Phase::Firing {
                    since: started_ms,
                    peak: 0.0,
                    hold_until: now.saturating_add(window_ms),
                };
            }
        }
    }

    fn new_state(&self, now: i64) -> ServiceState {
        ServiceState {
            windows: self
                .window_lengths
                .iter()
                .map(|length| SlidingWindow::new(*length))
                .collect(),
            phases: vec![Phase::default(); self.rules.len()],
            samples: VecDeque::with_capacity(SAMPLES),
            last_seen_ms: now,
        }
    }
}

fn evaluate(
    rules: &[Rule],
    rule_window: &[usize],
    service: &str,
    state: &mut ServiceState,
    now: i64,
    events: &mut Vec<AlertEvent>,
) {
    let second = now.div_euclid(1_000);
    for (index, rule) in rules.iter().enumerate() {
        if !rule.applies_to(service) {
            continue;
        }
        let value = rule.value(&mut state.windows[rule_window[index]], second);
        let Some(transition) = state.phases[index].step(rule, value, now) else {
            continue;
        };
        let (fired, started_ms, resolved_ms, value, peak) = match transition {
            Transition::Fire { since, value } => (true, since, None, value, value),
            Transition::Resolve { since, peak, value } => (false, since, Some(now), value, peak),
        };
        events.push(AlertEvent {
            fired,
            rule: rule.name.clone(),
            service: service.to_owned(),
            value,
            threshold: rule.threshold,
            window_seconds: rule.window_seconds,
            started_ms,
            resolved_ms,
            peak,
            sample_ids: state.samples.iter().cloned().collect(),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use logagg::settings::AlertRule;

    fn log(service: &str, severity: Severity, id: usize) -> LogRecord {
        LogRecord {
            id: format!("log-{id}"),
            timestamp: chrono::Utc::now(),
            received_at: chrono::Utc::now(),
            service: service.into(),
            severity,
            message: "m".into(),
            host: None,
            attributes: Default::default(),
            http: None,
        }
    }

    fn monitor() -> Monitor {
        Monitor::new(vec![Rule::compile(&AlertRule::default())], 100, 600)
    }

    #[test]
    fn ten_errors_in_a_minute_fire_once_with_samples_and_resolve_when_the_window_empties() {
        let mut monitor = monitor();
        let mut events = Vec::new();
        for index in 0..30 {
            let now = 1_000_000 + index as i64 * 100;
            monitor.observe(&log("checkout", Severity::Error, index), now, &mut events);
            monitor.observe(
                &log("other", Severity::Error, 100 + index % 3),
                now,
                &mut events,
            );
        }
        assert_eq!(events.len(), 2, "one per service: {events:?}");
        let checkout = events.iter().find(|e| e.service == "checkout").unwrap();
        assert!(checkout.fired);
        assert_eq!(checkout.value, 10.0);
        assert_eq!(
            checkout.sample_ids,
            ["log-5", "log-6", "log-7", "log-8", "log-9"]
        );
        events.clear();
        monitor.tick(1_030_000, &mut events);
        assert!(events.is_empty(), "still 30 in the window");
        monitor.tick(1_063_000, &mut events);
        assert_eq!(events.len(), 2);
        assert!(events.iter().all(|event| !event.fired));
        assert_eq!(events[0].peak, 30.0);
    }

    #[test]
    fn idle_services_are_forgotten_and_the_service_count_is_bounded() {
        let mut monitor = Monitor::new(vec![Rule::compile(&AlertRule::default())], 2, 60);
        let mut events = Vec::new();
        monitor.observe(&log("a", Severity::Info, 1), 0, &mut events);
        monitor.observe(&log("b", Severity::Info, 2), 0, &mut events);
        monitor.observe(&log("c", Severity::Info, 3), 0, &mut events);
        assert_eq!((monitor.services(), monitor.overflowed), (2, 1));
        monitor.tick(61_000, &mut events);
        assert_eq!(monitor.services(), 0);
    }

    #[test]
    fn an_adopted_alert_resolves_here_and_does_not_fire_again() {
        let mut monitor = monitor();
        let mut events = Vec::new();
        monitor.adopt("error_burst", "checkout", 500, 1_000);
        for index in 0..15 {
            monitor.observe(&log("checkout", Severity::Error, index), 2_000, &mut events);
        }
        assert!(events.is_empty(), "already firing: {events:?}");
        monitor.tick(70_000, &mut events);
        assert_eq!(events.len(), 1);
        assert!(!events[0].fired);
        assert_eq!(events[0].started_ms, 500);
    }
}
