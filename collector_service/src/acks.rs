//! The ack frontier: batches finish writing in any order, but a `multiple` ack covers every
//! delivery before its tag, so it may only go as far as the oldest unwritten batch. Pure code.

use std::collections::VecDeque;

/// Batches dispatched and not yet acked, oldest first, each with whether it is written.
#[derive(Debug, Default)]
pub struct AckFrontier {
    batches: VecDeque<(u64, bool)>,
}

impl AckFrontier {
    /// Records a batch handed to a writer; `last_tag` is its highest delivery tag. Tags
    /// grow with each dispatch, since deliveries on a channel are numbered in order.
    pub fn dispatched(&mut self, last_tag: u64) {
        self.batches.push_back((last_tag, false));
    }

    /// Records a batch as written. Returns the tag to ack with `multiple` when the written
    /// prefix grew, `None` while an older batch is still being written.
    pub fn written(&mut self, last_tag: u64) -> Option<u64> {
        if let Some(batch) = self.batches.iter_mut().find(|(tag, _)| *tag == last_tag) {
            batch.1 = true;
        }
        let mut ackable = None;
        while let Some((tag, true)) = self.batches.front().copied() {
            ackable = Some(tag);
            self.batches.pop_front();
        }
        ackable
    }

    /// Batches dispatched and not yet acked.
    pub fn len(&self) -> usize {
        self.batches.len()
    }

    pub fn is_empty(&self) -> bool {
        self.batches.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn in_order_completion_acks_each_batch() {
        let mut frontier = AckFrontier::default();
        frontier.dispatched(100);
        frontier.dispatched(200);
        assert_eq!(frontier.written(100), Some(100));
        assert_eq!(frontier.written(200), Some(200));
        assert!(frontier.is_empty());
    }

    #[test]
    fn a_later_batch_waits_for_the_older_one_then_both_go_in_one_ack() {
        let mut frontier = AckFrontier::default();
        frontier.dispatched(100);
        frontier.dispatched(200);
        frontier.dispatched(300);
        assert_eq!(frontier.written(300), None);
        assert_eq!(frontier.written(200), None);
        assert_eq!(frontier.len(), 3);
        assert_eq!(frontier.written(100), Some(300));
        assert!(frontier.is_empty());
    }

    #[test]
    fn the_frontier_stops_at_the_first_unwritten_batch() {
        let mut frontier = AckFrontier::default();
        for tag in [10, 20, 30, 40] {
            frontier.dispatched(tag);
        }
        assert_eq!(frontier.written(20), None);
        assert_eq!(frontier.written(10), Some(20));
        assert_eq!(frontier.written(40), None);
        assert_eq!(frontier.len(), 2);
    }
}
