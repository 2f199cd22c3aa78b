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
}
