//! A mergeable latency sketch: counts in logarithmic buckets, so any quantile is known to
//! within 4 % of its value, sketches add bucket by bucket, and the size grows with the spread
//! of the values (about 30 buckets per factor of ten), never with their number. The idea of
//! DDSketch (Masson et al., 2019), in its simplest form.

use std::collections::BTreeMap;

/// Ratio between successive bucket bounds: a bucket's midpoint is within 4 % of any value in
/// it. About 30 buckets per factor of ten: 1 ms to 10 s fits in 120.
const GAMMA: f64 = 1.08;
/// Values at or below this (milliseconds) are counted as zero.
const MIN_VALUE: f64 = 1e-3;
/// Bucket key of values at or below [`MIN_VALUE`].
pub const ZERO_BUCKET: i32 = i32::MIN;

#[derive(Debug, Clone, Default, PartialEq)]
pub struct LatencySketch {
    buckets: BTreeMap<i32, u64>,
    count: u64,
}

impl LatencySketch {
    /// The bucket a value falls in.
    pub fn bucket_of(value: f64) -> i32 {
        if !value.is_finite() || value <= MIN_VALUE {
            return ZERO_BUCKET;
        }
        (value.ln() / GAMMA.ln()).ceil() as i32
    }

    /// The value a bucket stands for: within 4 % of everything counted in it.
    pub fn value_of(bucket: i32) -> f64 {
        if bucket == ZERO_BUCKET {
            return 0.0;
        }
        2.0 * GAMMA.powi(bucket) / (GAMMA + 1.0)
    }

    pub fn add(&mut self, value: f64) {
        self.add_to_bucket(Self::bucket_of(value), 1);
    }

    pub fn add_to_bucket(&mut self, bucket: i32, count: u64) {
        if count > 0 {
            *self.buckets.entry(bucket).or_default() += count;
            self.count += count;
        }
    }

    pub fn merge(&mut self, other: &LatencySketch) {
        for (bucket, count) in &other.buckets {
            self.add_to_bucket(*bucket, *count);
        }
    }

    pub fn count(&self) -> u64 {
        self.count
    }

    /// Non-empty buckets, lowest first.
    pub fn buckets(&self) -> impl Iterator<Item = (i32, u64)> + '_ {
        self.buckets.iter().map(|(bucket, count)| (*bucket, *count))
    }

    /// The mean, from each bucket's value (so within 4 % too); `None` when empty.
    pub fn mean(&self) -> Option<f64> {
        (self.count > 0).then(|| {
            self.buckets
                .iter()
                .map(|(bucket, count)| Self::value_of(*bucket) * *count as f64)
                .sum::<f64>()
                / self.count as f64
        })
    }

    /// The `q` quantile (0 ≤ q ≤ 1), `None` when empty: the value of rank ⌈q·n⌉.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        if self.count == 0 {
            return None;
        }
        let rank = ((q.clamp(0.0, 1.0) * self.count as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (bucket, count) in &self.buckets {
            seen += count;
            if seen >= rank {
                return Some(Self::value_of(*bucket));
            }
        }
        self.buckets.keys().next_back().map(|b| Self::value_of(*b))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_are_within_two_percent_and_merging_equals_adding_all() {
        let values: Vec<f64> = (1..=10_000).map(|i| f64::from(i) * 0.37).collect();
        let (mut left, mut right, mut all) = Default::default();
        for (index, value) in values.iter().enumerate() {
            let half: &mut LatencySketch = if index % 2 == 0 {
                &mut left
            } else {
                &mut right
            };
            half.add(*value);
            LatencySketch::add(&mut all, *value);
        }
        left.merge(&right);
        assert_eq!(left, all);
        for q in [0.5, 0.95, 0.99] {
            let exact = values[(q * values.len() as f64).ceil() as usize - 1];
            let estimate = all.quantile(q).unwrap();
            assert!(
                (estimate - exact).abs() <= 0.04 * exact,
                "q{q}: {estimate} vs {exact}"
            );
        }
        assert!(all.buckets().count() < 300, "size follows the spread");
        let mean = values.iter().sum::<f64>() / values.len() as f64;
        let estimate = all.mean().unwrap();
        assert!(
            (estimate - mean).abs() <= 0.04 * mean,
            "{estimate} vs {mean}"
        );
    }

    #[test]
    fn zero_negative_and_nan_count_as_zero() {
        let mut sketch = LatencySketch::default();
        for value in [0.0, -5.0, f64::NAN] {
            sketch.add(value);
        }
        assert_eq!(sketch.quantile(0.99), Some(0.0));
        assert_eq!(LatencySketch::default().quantile(0.5), None);
    }
}
