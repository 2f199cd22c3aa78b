//! Alert rules compiled from settings, and the lifecycle each (rule, service) pair goes
//! through: idle → pending → firing → idle (cooling down), with hysteresis. Pure: time is
//! passed in, so tests drive it with any clock.

use logagg::settings::AlertRule;
use logagg::Severity;

use crate::window::SlidingWindow;

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum RuleKind {
    /// Logs at or above the severity in the window.
    Count,
    /// Those logs over all logs in the window, once the window holds `min_volume`.
    Ratio { min_volume: u64 },
}

#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    pub name: String,
    /// Empty: every service.
    pub services: Vec<String>,
    pub kind: RuleKind,
    pub min_severity: Severity,
    pub threshold: f64,
    pub resolve_below: f64,
    pub window_seconds: u64,
    pub for_ms: i64,
    pub cooldown_ms: i64,
}

impl Rule {
    /// Compiles a validated rule (settings validation has checked every field).
    pub fn compile(rule: &AlertRule) -> Rule {
        Rule {
            name: rule.name.clone(),
            services: rule.services.clone(),
            kind: match rule.kind {
                logagg::settings::RuleKind::Ratio => RuleKind::Ratio {
                    min_volume: rule.min_volume,
                },
                logagg::settings::RuleKind::Count => RuleKind::Count,
            },
            min_severity: rule.min_severity.parse().unwrap_or(Severity::Error),
            threshold: rule.threshold,
            resolve_below: rule.resolve_below.unwrap_or(rule.threshold / 2.0),
            window_seconds: rule.window_seconds,
            for_ms: i64::try_from(rule.for_seconds.saturating_mul(1_000)).unwrap_or(i64::MAX),
            cooldown_ms: i64::try_from(rule.cooldown_seconds.saturating_mul(1_000))
                .unwrap_or(i64::MAX),
        }
    }

    pub fn applies_to(&self, service: &str) -> bool {
        self.services.is_empty() || self.services.iter().any(|name| name == service)
    }

    /// The rule's value over `window` at `second`; `None` when a ratio lacks volume.
    pub fn value(&self, window: &mut SlidingWindow, second: i64) -> Option<f64> {
        let matching = window.at_least(second, self.min_severity) as f64;
        match self.kind {
            RuleKind::Count => Some(matching),
            RuleKind::Ratio { min_volume } => {
                let total = window.total(second);
                (total >= min_volume.max(1)).then(|| matching / total as f64)
            }
        }
    }
}

/// Where a (rule, service) pair stands.
#[derive(Debug, Clone, PartialEq)]
pub enum Phase {
    Idle {
        /// No firing before this (ms), after a resolve.
        cooldown_until: i64,
    },
    Pending {
        since: i64,
    },
    Firing {
        since: i64,
        /// The highest value seen while firing.
        peak: f64,
        /// Not resolved before this (ms): an alert adopted from another monitor waits until
        /// this monitor's window has filled, rather than resolving on its empty start.
        hold_until: i64,
    },
}

/// What a step of the lifecycle asks for.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Transition {
    Fire { since: i64, value: f64 },
    Resolve { since: i64, peak: f64, value: f64 },
}

impl Default for Phase {
    fn default() -> Self {
        Phase::Idle {
            cooldown_until: i64::MIN,
        }
    }
}

impl Phase {
    pub fn is_idle(&self) -> bool {
        matches!(self, Phase::Idle { .. })
    }

    /// One evaluation at `now` (ms) with the rule's current `value` (`None`: a ratio without
    /// enough volume, which neither fires nor keeps an alert from resolving).
    pub fn step(&mut self, rule: &Rule, value: Option<f64>, now: i64) -> Option<Transition> {
        let level = value.unwrap_or(0.0);
        let above = value.is_some_and(|value| value >= rule.threshold);
        match *self {
            Phase::Idle { cooldown_until } => {
                if !above || now < cooldown_until {
                    return None;
                }
                if rule.for_ms == 0 {
                    *self = Phase::Firing {
                        since: now,
                        peak: level,
                        hold_until: now,
                    };
                    return Some(Transition::Fire {
                        since: now,
                        value: level,
                    });
                }
                *self = Phase::Pending { since: now };
                None
            }
            Phase::Pending { since } => {
                if !above {
                    *self = Phase::default();
                    return None;
                }
                if now - since < rule.for_ms {
                    return None;
                }
                *self = Phase::Firing {
                    since: now,
                    peak: level,
                    hold_until: now,
                };
                Some(Transition::Fire {
                    since: now,
                    value: level,
                })
            }
            Phase::Firing {
                since,
                peak,
                hold_until,
            } => {
                if level < rule.resolve_below && now >= hold_until {
                    *self = Phase::Idle {
                        cooldown_until: now.saturating_add(rule.cooldown_ms),
                    };
                    return Some(Transition::Resolve {
                        since,
                        peak,
                        value: level,
                    });
                }
                *self = Phase::Firing {
                    since,
                    peak: peak.max(level),
                    hold_until,
                };
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn classic() -> Rule {
        Rule::compile(&AlertRule::default())
    }

    /// Runs values (one per second from t = 0) through a phase; returns the transitions.
    fn run(rule: &Rule, values: &[Option<f64>]) -> Vec<(i64, Transition)> {
        let mut phase = Phase::default();
        values
            .iter()
            .enumerate()
            .filter_map(|(second, value)| {
                let now = second as i64 * 1_000;
                phase.step(rule, *value, now).map(|t| (now, t))
            })
            .collect()
    }

    #[test]
    fn crossing_fires_once_and_falling_below_resolves_once() {
        let values: Vec<Option<f64>> = [0.0, 5.0, 9.0, 10.0, 14.0, 30.0, 12.0, 6.0, 4.0, 1.0, 0.0]
            .iter()
            .map(|v| Some(*v))
            .collect();
        let transitions = run(&classic(), &values);
        assert_eq!(
            transitions,
            vec![
                (
                    3_000,
                    Transition::Fire {
                        since: 3_000,
                        value: 10.0
                    }
                ),
                (
                    8_000,
                    Transition::Resolve {
                        since: 3_000,
                        peak: 30.0,
                        value: 4.0
                    }
                ),
            ]
        );
    }

    #[test]
    fn a_value_hovering_at_the_threshold_does_not_flap() {
        let values: Vec<Option<f64>> = (0..600)
            .map(|second| Some(if second % 2 == 0 { 11.0 } else { 8.0 }))
            .collect();
        assert_eq!(
            run(&classic(), &values).len(),
            1,
            "fired once, never resolved"
        );
    }

    #[test]
    fn after_resolving_the_cooldown_holds_off_a_second_alert() {
        let mut values = vec![Some(12.0), Some(0.0)];
        values.extend(std::iter::repeat_n(Some(12.0), 299));
        values.push(Some(12.0));
        let transitions = run(&classic(), &values);
        assert_eq!(transitions.len(), 3, "{transitions:?}");
        assert_eq!(
            transitions[2].0, 301_000,
            "fires again when 300 s have passed"
        );
    }

    #[test]
    fn for_seconds_needs_the_value_to_hold() {
        let rule = Rule {
            for_ms: 3_000,
            ..classic()
        };
        let brief = [Some(20.0), Some(20.0), Some(0.0), Some(20.0)];
        assert!(run(&rule, &brief).is_empty());
        let held = [Some(20.0), Some(20.0), Some(20.0), Some(20.0)];
        assert_eq!(run(&rule, &held).len(), 1);
        assert_eq!(run(&rule, &held)[0].0, 3_000);
    }

    #[test]
    fn a_ratio_needs_its_volume() {
        let rule = Rule::compile(&AlertRule {
            name: "ratio".into(),
            kind: logagg::settings::RuleKind::Ratio,
            threshold: 0.5,
            min_volume: 10,
            ..AlertRule::default()
        });
        let mut window = SlidingWindow::new(60);
        for _ in 0..4 {
            window.add(100, Severity::Error);
        }
        assert_eq!(rule.value(&mut window, 100), None, "4 logs are too few");
        for _ in 0..6 {
            window.add(100, Severity::Info);
        }
        assert_eq!(rule.value(&mut window, 100), Some(0.4));
    }
}
