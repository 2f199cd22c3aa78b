//! The default rule against the demo's traffic, on the scenario's own timeline (no broker, no
//! clock: each log is observed at its due time): it fires in the failure phase only, once
//! per failing service, and resolves after the failure ends.

use chrono::{TimeZone, Utc};
use logagg::settings::{MessageFormat, MonitorSettings};
use monitoring_service::monitor::{AlertEvent, Monitor};
use monitoring_service::rules::Rule;
use source_service::load::scenario::{PhaseKind, ScenarioGenerator, Timeline};

#[test]
fn the_default_rule_fires_in_the_demo_failure_only_and_resolves_after_it() {
    let timeline = Timeline::parse(include_str!("../../docs/demo-timeline.toml")).expect("demo");
    let period = timeline.total_seconds();
    let (failure_start, failure_end) = {
        let mut start = 0.0;
        let mut span = None;
        for phase in &timeline.phases {
            if matches!(phase.kind, PhaseKind::Failure { .. }) {
                span = Some((start, start + phase.seconds as f64));
            }
            start += phase.seconds as f64;
        }
        span.expect("the demo has a failure phase")
    };
    let settings = MonitorSettings::default();
    let rules: Vec<Rule> = settings.rules.iter().map(Rule::compile).collect();
    let mut monitor = Monitor::new(rules, settings.max_services, settings.idle_eviction_seconds);
    let mut generator = ScenarioGenerator::new(timeline, 42);
    let start = Utc.with_ymd_and_hms(2026, 12, 1, 0, 0, 0).unwrap();
    let mut events: Vec<(f64, AlertEvent)> = Vec::new();
    let mut pending = Vec::new();
    let mut next_tick = 0.0;
    // Two rounds of the timeline: the second round's failure must fire again.
    while let Some(due) = generator.next_due().filter(|due| *due < 2.0 * period) {
        let now = start + chrono::Duration::milliseconds((due * 1_000.0) as i64);
        let log = generator.next_log(now).expect("a log");
        let record = log
            .record(MessageFormat::Json, now)
            .expect("the scenario's logs parse");
        while next_tick <= due {
            monitor.tick(
                start.timestamp_millis() + (next_tick * 1_000.0) as i64,
                &mut pending,
            );
            next_tick += 1.0;
        }
        monitor.observe(&record, now.timestamp_millis(), &mut pending);
        events.extend(pending.drain(..).map(|event| (due, event)));
    }
    let summary: Vec<(f64, bool, &str)> = events
        .iter()
        .map(|(at, event)| (*at, event.fired, event.service.as_str()))
        .collect();
    println!("alert transitions (seconds from the start, fired, service): {summary:?}");
    assert_eq!(events.len(), 4, "fire and resolve, twice: {summary:?}");
    for (round, pair) in events.chunks(2).enumerate() {
        let offset = round as f64 * period;
        let (fired_at, fired) = &pair[0];
        let (resolved_at, resolved) = &pair[1];
        assert!(fired.fired && !resolved.fired, "{summary:?}");
        assert_eq!(
            (fired.service.as_str(), resolved.service.as_str()),
            ("auth", "auth")
        );
        assert!(
            (offset + failure_start..offset + failure_end).contains(fired_at),
            "fired at {fired_at} s, outside the failure ({failure_start}-{failure_end} s)"
        );
        assert!(
            *resolved_at > offset + failure_end && *resolved_at < offset + failure_end + 90.0,
            "resolved at {resolved_at} s, the failure ended at {failure_end} s"
        );
        assert!(
            fired.value >= 0.1 && resolved.value < 0.05,
            "{fired:?} {resolved:?}"
        );
    }
}
