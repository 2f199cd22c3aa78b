//! Live access-log analytics: per service and route, the request rate, status classes and
//! latency p50/p95/p99 over the last `live_window_seconds`, kept in six rotating slots of
//! mergeable sketches (so the window slides by a sixth). Served at `GET /api/v1/live` and as
//! Prometheus gauges.

use std::collections::HashMap;

use logagg::record::HttpFields;
use logagg::sketch::LatencySketch;
use logagg::store::stats::normalise_path;
use logagg::StatusClass;
use serde::Serialize;

/// Slots per window.
const SLOTS: usize = 6;
/// Route name for routes beyond `max_routes_per_service`.
pub const OTHER_ROUTE: &str = "other";

#[derive(Debug, Clone, Default)]
struct Slot {
    /// Which slot period this holds (time / slot width); stale when older than the window.
    period: i64,
    requests: u64,
    classes: [u64; 5],
    latency: LatencySketch,
}

#[derive(Debug, Default)]
struct Route {
    slots: [Slot; SLOTS],
}

#[derive(Debug)]
pub struct LiveStats {
    window_ms: i64,
    slot_ms: i64,
    max_routes: usize,
    /// service → "METHOD path" → slots.
    services: HashMap<String, HashMap<(String, String), Route>>,
}

/// One route in `GET /api/v1/live`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LiveRoute {
    pub service: String,
    pub method: String,
    pub path: String,
    pub requests: u64,
    pub requests_per_second: f64,
    pub status_classes: std::collections::BTreeMap<String, u64>,
    pub latency_ms: Option<Quantiles>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Quantiles {
    pub p50: f64,
    pub p95: f64,
    pub p99: f64,
}

impl LiveStats {
    pub fn new(window_seconds: u64, max_routes: usize) -> LiveStats {
        let window_ms = i64::try_from(window_seconds.max(1) * 1_000).unwrap_or(60_000);
        LiveStats {
            window_ms,
            slot_ms: (window_ms / SLOTS as i64).max(1),
            max_routes: max_routes.max(1),
            services: HashMap::new(),
        }
    }

    pub fn window_seconds(&self) -> u64 {
        u64::try_from(self.window_ms / 1_000).unwrap_or(0)
    }

    /// Counts an access log (one with an HTTP status or duration) seen at `now` (ms).
    pub fn add(&mut self, service: &str, http: &HttpFields, now: i64) {
        if http.status.is_none() && http.duration_ms.is_none() {
            return;
        }
        let routes = self.services.entry(service.to_owned()).or_default();
        let mut key = (
            http.method.clone().unwrap_or_else(|| "-".into()),
            http.path
                .as_deref()
                .map_or_else(|| "-".into(), normalise_path),
        );
        if !routes.contains_key(&key) && routes.len() >= self.max_routes {
            key = ("-".into(), OTHER_ROUTE.into());
        }
        let period = now.div_euclid(self.slot_ms);
        let slot =
            &mut routes.entry(key).or_default().slots[period.rem_euclid(SLOTS as i64) as usize];
        if slot.period != period {
            *slot = Slot {
                period,
                ..Slot::default()
            };
        }
        slot.requests += 1;
        if let Some(class) = http.status.and_then(StatusClass::of) {
            slot.classes[class.index()] += 1;
        }
        if let Some(duration) = http.duration_ms {
            slot.latency.add(duration);
        }
    }

    /// Every route with requests in the window ending at `now`, busiest first.
    pub fn snapshot(&self, now: i64) -> Vec<LiveRoute> {
        let oldest = now.div_euclid(self.slot_ms) - SLOTS as i64 + 1;
        let mut routes = Vec::new();
        for (service, service_routes) in &self.services {
            for ((method, path), route) in service_routes {
                let mut requests = 0;
                let mut classes = [0_u64; 5];
                let mut latency = LatencySketch::default();
                for slot in route.slots.iter().filter(|slot| slot.period >= oldest) {
                    requests += slot.requests;
                    for (total, count) in classes.iter_mut().zip(slot.classes) {
                        *total += count;
                    }
                    latency.merge(&slot.latency);
                }
                if requests == 0 {
                    continue;
                }
                routes.push(LiveRoute {
                    service: service.clone(),
                    method: method.clone(),
                    path: path.clone(),
                    requests,
                    requests_per_second: requests as f64 * 1_000.0 / self.window_ms as f64,
                    status_classes: classes
                        .iter()
                        .enumerate()
                        .filter(|(_, count)| **count > 0)
                        .map(|(index, count)| (StatusClass::ALL[index].as_str().to_owned(), *count))
                        .collect(),
                    latency_ms: latency.quantile(0.5).map(|p50| Quantiles {
                        p50,
                        p95: latency.quantile(0.95).unwrap_or(p50),
                        p99: latency.quantile(0.99).unwrap_or(p50),
                    }),
                });
            }
        }
        routes.sort_by(|a, b| {
            b.requests
                .cmp(&a.requests)
                .then_with(|| (&a.service, &a.path).cmp(&(&b.service, &b.path)))
        });
        routes
    }

    /// Forgets routes and services with nothing in the window ending at `now`.
    pub fn evict(&mut self, now: i64) {
        let oldest = now.div_euclid(self.slot_ms) - SLOTS as i64 + 1;
        for routes in self.services.values_mut() {
            routes.retain(|_, route| {
                route
                    .slots
                    .iter()
                    .any(|slot| slot.period >= oldest && slot.requests > 0)
            });
        }
        self.services.retain(|_, routes| !routes.is_empty());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn http(path: &str, status: u16, duration: f64) -> HttpFields {
        HttpFields {
            method: Some("GET".into()),
            path: Some(path.into()),
            status: Some(status),
            duration_ms: Some(duration),
            client_ip: None,
            ..HttpFields::default()
        }
    }

    #[test]
    fn rates_classes_and_quantiles_over_the_window_then_gone() {
        let mut live = LiveStats::new(60, 10);
        for index in 0..120_i32 {
            let status = if index % 4 == 0 { 503 } else { 200 };
            let at = 1_000 + i64::from(index) * 100;
            live.add(
                "web",
                &http(&format!("/u/{index}"), status, f64::from(index + 1)),
                at,
            );
        }
        let snapshot = live.snapshot(13_000);
        assert_eq!(snapshot.len(), 1, "ids fold into one route: {snapshot:?}");
        let route = &snapshot[0];
        assert_eq!((route.path.as_str(), route.requests), ("/u/:id", 120));
        assert_eq!(route.requests_per_second, 2.0);
        assert_eq!(route.status_classes["5xx"], 30);
        let latency = route.latency_ms.as_ref().unwrap();
        assert!((latency.p50 - 60.0).abs() <= 60.0 * 0.04, "{latency:?}");
        assert!((latency.p99 - 119.0).abs() <= 119.0 * 0.04, "{latency:?}");
        assert!(live.snapshot(80_000).is_empty(), "slid out of the window");
        live.evict(80_000);
        assert!(live.services.is_empty());
    }

    #[test]
    fn routes_beyond_the_limit_count_as_other() {
        let mut live = LiveStats::new(60, 2);
        for path in ["/a", "/b", "/c", "/d"] {
            live.add("web", &http(path, 200, 1.0), 0);
        }
        let paths: Vec<String> = live.snapshot(0).into_iter().map(|r| r.path).collect();
        assert_eq!(paths, ["other", "/a", "/b"]);
    }
}
