//! Which analyzer gets the next log: smooth weighted round-robin (as nginx balances
//! upstreams). Each pick adds every analyzer's weight to its credit and takes the one with
//! the most, which then pays the total back. Deterministic, so over any run of picks each
//! analyzer's count is within one of its exact share (a coin per log drifts by the square
//! root of the count), and interleaved rather than in runs.

/// The schedule over the analyzers online now; rebuilt (keeping credits) when they change.
#[derive(Debug, Default, Clone)]
pub struct Schedule {
    entries: Vec<Entry>,
}

#[derive(Debug, Clone)]
struct Entry {
    id: String,
    weight: f64,
    credit: f64,
}

impl Schedule {
    /// Sets the analyzers and weights, keeping the credit of those still present (a refresh
    /// that changes nothing changes no pick).
    pub fn set(&mut self, analyzers: &[(String, f64)]) {
        let entries = analyzers
            .iter()
            .filter(|(_, weight)| weight.is_finite() && *weight > 0.0)
            .map(|(id, weight)| Entry {
                id: id.clone(),
                weight: *weight,
                credit: self
                    .entries
                    .iter()
                    .find(|entry| entry.id == *id)
                    .map_or(0.0, |entry| entry.credit),
            })
            .collect();
        self.entries = entries;
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The next analyzer, skipping those `excluded` (a failed delivery's); `None` when no
    /// other is left.
    pub fn pick(&mut self, excluded: &[String]) -> Option<String> {
        let mut total = 0.0;
        let mut best: Option<usize> = None;
        for index in 0..self.entries.len() {
            if excluded.contains(&self.entries[index].id) {
                continue;
            }
            let entry = &mut self.entries[index];
            entry.credit += entry.weight;
            total += entry.weight;
            if best.is_none_or(|current| self.entries[index].credit > self.entries[current].credit)
            {
                best = Some(index);
            }
        }
        let chosen = best?;
        self.entries[chosen].credit -= total;
        Some(self.entries[chosen].id.clone())
    }
}

/// The analyzer `key` (a service) belongs to among `candidates`: weighted rendezvous
/// hashing. Each candidate scores `-weight / ln(u)`, `u` a hash of the key and its id in
/// (0, 1); the highest wins. The same key picks the same analyzer while the set is
/// unchanged, every replica agrees (the hash is fixed, not per process), each analyzer wins
/// keys in proportion to its weight, and when one leaves only its keys move.
pub fn rendezvous(key: &str, candidates: &[(String, f64)]) -> Option<String> {
    candidates
        .iter()
        .filter(|(_, weight)| weight.is_finite() && *weight > 0.0)
        .map(|(id, weight)| {
            let unit = (stable_hash(key, id) >> 11) as f64 / (1_u64 << 53) as f64;
            let unit = unit.max(f64::MIN_POSITIVE);
            (id, -weight / unit.ln())
        })
        .max_by(|left, right| left.1.total_cmp(&right.1))
        .map(|(id, _)| id.clone())
}

/// FNV-1a over `key`, a separator and `id`, then SplitMix64's finaliser: fixed across
/// processes and builds, well spread.
fn stable_hash(key: &str, id: &str) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in key.bytes().chain([0xff]).chain(id.bytes()) {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash = (hash ^ (hash >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    hash = (hash ^ (hash >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    hash ^ (hash >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counts(schedule: &mut Schedule, picks: usize) -> std::collections::BTreeMap<String, usize> {
        let mut counts = std::collections::BTreeMap::new();
        for _ in 0..picks {
            *counts
                .entry(schedule.pick(&[]).expect("a pick"))
                .or_insert(0) += 1;
        }
        counts
    }

    #[test]
    fn each_gets_its_share_within_one_pick() {
        let mut schedule = Schedule::default();
        schedule.set(&[
            ("a".into(), 0.4),
            ("b".into(), 0.3),
            ("c".into(), 0.2),
            ("d".into(), 0.1),
        ]);
        for picks in [10, 97, 1_000, 100_003] {
            let counts = counts(&mut schedule, picks);
            for (id, weight) in [("a", 0.4), ("b", 0.3), ("c", 0.2), ("d", 0.1)] {
                let exact = weight * picks as f64;
                assert!(
                    (counts[id] as f64 - exact).abs() <= 1.0 + 1e-9,
                    "{id}: {} of {picks}, exactly {exact}",
                    counts[id]
                );
            }
        }
    }

    #[test]
    fn any_positive_weights_and_interleaved() {
        let mut schedule = Schedule::default();
        schedule.set(&[("a".into(), 5.0), ("b".into(), 1.0), ("c".into(), 1.0)]);
        let picks: Vec<String> = (0..7).map(|_| schedule.pick(&[]).expect("pick")).collect();
        assert_eq!(picks, ["a", "a", "b", "a", "c", "a", "a"]);
    }

    #[test]
    fn an_excluded_analyzer_is_skipped_and_none_is_left_at_the_end() {
        let mut schedule = Schedule::default();
        schedule.set(&[("a".into(), 1.0), ("b".into(), 1.0)]);
        for _ in 0..10 {
            assert_eq!(schedule.pick(&["a".into()]).as_deref(), Some("b"));
        }
        assert_eq!(schedule.pick(&["a".into(), "b".into()]), None);
        schedule.set(&[]);
        assert!(schedule.is_empty());
        assert_eq!(schedule.pick(&[]), None);
    }

    #[test]
    fn a_refresh_with_the_same_analyzers_changes_no_pick() {
        let weights = [("a".to_owned(), 2.0), ("b".to_owned(), 1.0)];
        let (mut steady, mut refreshed) = (Schedule::default(), Schedule::default());
        steady.set(&weights);
        refreshed.set(&weights);
        for _ in 0..50 {
            refreshed.set(&weights);
            assert_eq!(steady.pick(&[]), refreshed.pick(&[]));
        }
    }

    #[test]
    fn rendezvous_keeps_keys_and_moves_only_the_departed_analyzers() {
        let three = [
            ("a".to_owned(), 0.5),
            ("b".to_owned(), 0.3),
            ("c".to_owned(), 0.2),
        ];
        let keys: Vec<String> = (0..10_000)
            .map(|index| format!("service-{index}"))
            .collect();
        let before: Vec<String> = keys
            .iter()
            .map(|key| rendezvous(key, &three).expect("a pick"))
            .collect();
        for (id, weight) in &three {
            let won = before.iter().filter(|pick| *pick == id).count() as f64 / 10_000.0;
            assert!((won - weight).abs() < 0.02, "{id}: {won}");
        }
        let two = &three[..2];
        for (key, was) in keys.iter().zip(&before) {
            let now = rendezvous(key, two).expect("a pick");
            if was != "c" {
                assert_eq!(&now, was, "{key} moved though its analyzer stayed");
            }
        }
        assert_eq!(rendezvous("x", &[]), None);
    }
}
