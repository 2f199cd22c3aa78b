//! What each traffic profile's messages look like, in figures: size percentiles, distinct
//! words per log, and how many of the words are rare. `cargo bench -p source_service --bench
//! profile` (`BENCH_LOGS`, default 200,000). docs/PERFORMANCE.md quotes it.

use std::collections::HashMap;

use chrono::Utc;
use logagg::settings::{SourceSettings, TrafficProfile};
use logagg::words::message_words;
use source_service::load::simulator::Generator;

fn main() {
    if !logagg::testsuite::under_cargo_bench("cargo bench -p source_service --bench profile") {
        return;
    }
    let logs: usize = std::env::var("BENCH_LOGS")
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(200_000);
    for profile in [TrafficProfile::Simple, TrafficProfile::Realistic] {
        let settings = SourceSettings {
            profile,
            ..SourceSettings::default()
        };
        let mut generator = Generator::new(&settings, 1);
        let mut sizes = Vec::with_capacity(logs);
        let mut words_per_log = Vec::with_capacity(logs);
        let mut seen: HashMap<String, u32> = HashMap::new();
        for _ in 0..logs {
            let log = generator.next_log(Utc::now());
            let record = log
                .record(settings.format, Utc::now())
                .expect("the simulator's logs parse");
            sizes.push(record.message.len());
            let words = message_words(&record.message);
            words_per_log.push(words.len());
            for word in words {
                *seen.entry(word).or_default() += 1;
            }
        }
        sizes.sort_unstable();
        words_per_log.sort_unstable();
        let at =
            |values: &[usize], share: f64| values[((values.len() - 1) as f64 * share) as usize];
        // A word is rare when it appears in fewer than 0.1 % of the logs: it stays in any
        // index that leaves common words out.
        let rare_limit = (logs / 1000).max(1) as u32;
        let occurrences: u64 = seen.values().map(|count| u64::from(*count)).sum();
        let rare_occurrences: u64 = seen
            .values()
            .filter(|count| **count < rare_limit)
            .map(|count| u64::from(*count))
            .sum();
        let once = seen.values().filter(|count| **count == 1).count();
        // Under 1 % of logs: what the old index (common ratio 0.01) kept as index entries.
        let uncommon_limit = (logs / 100).max(1) as u32;
        let uncommon: u64 = seen
            .values()
            .filter(|count| **count < uncommon_limit)
            .map(|count| u64::from(*count))
            .sum();
        println!(
            "profile {profile}: {logs} logs; message bytes p50 {} p90 {} p99 {} max {}; distinct \
             words per log mean {:.1} p50 {} p99 {}; vocabulary {} words, {} seen once; rare \
             words (< 0.1 % of logs) are {:.1} % of word occurrences, {:.1} per log; words in < 1 % of \
             logs {:.1} per log",
            at(&sizes, 0.5),
            at(&sizes, 0.9),
            at(&sizes, 0.99),
            sizes[sizes.len() - 1],
            occurrences as f64 / logs as f64,
            at(&words_per_log, 0.5),
            at(&words_per_log, 0.99),
            seen.len(),
            once,
            100.0 * rare_occurrences as f64 / occurrences as f64,
            rare_occurrences as f64 / logs as f64,
            uncommon as f64 / logs as f64,
        );
    }
}
