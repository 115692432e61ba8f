//! The statistics trickle: every `STATS_PERIOD_NS` the counters that changed since they
//! were last written are queued, and each turn writes `STATS_WRITES_PER_TURN` of them at
//! most, each one plain write (no transaction).
//!
//! A publish used to be a transaction per device (about 20 xenstore round trips each, all
//! in one turn): with dom0 busy (an event storm, a loaded frontend) that held every ring
//! for tens of ms, once a second. Now one turn waits for at most 4 round trips, and idle
//! devices cost none.
use alloc::collections::{BTreeMap, VecDeque};
use alloc::string::String;

use crate::hv::XenStore;

/// How often the counters are published.
pub const STATS_PERIOD_NS: u64 = 1_000_000_000;
/// Counters written per turn of the loop at most (each one a xenstore round trip).
pub const STATS_WRITES_PER_TURN: usize = 4;

/// Counters waiting to be written, and what each path last got.
#[derive(Debug, Default)]
pub struct StatsPublisher {
    queue: VecDeque<(String, String)>,
    last: BTreeMap<String, String>,
    last_tick: u64,
}

impl StatsPublisher {
    /// A publisher that has written nothing.
    pub fn new() -> Self {
        Self::default()
    }

    /// Once a period, with nothing left from the last one: queues every pair `pairs()`
    /// gives whose value differs from what its path last got (`pairs` is not called
    /// otherwise: it formats every counter).
    pub fn tick<I: IntoIterator<Item = (String, String)>>(&mut self, now: u64, pairs: impl FnOnce() -> I) {
        if !self.queue.is_empty() || now.saturating_sub(self.last_tick) < STATS_PERIOD_NS {
            return;
        }
        self.last_tick = now;
        for (k, v) in pairs() {
            // A heap that cannot take one more entry drops it: the next period retries.
            if self.last.get(&k) != Some(&v) && self.queue.try_reserve(1).is_ok() {
                self.queue.push_back((k, v));
            }
        }
    }

    /// Writes `STATS_WRITES_PER_TURN` queued counters at most. Returns whether some are
    /// left (turn again before sleeping).
    pub fn write_some<X: XenStore>(&mut self, xs: &mut X) -> bool {
        for _ in 0..STATS_WRITES_PER_TURN {
            let Some((k, v)) = self.queue.pop_front() else { break };
            if xs.write(&k, &v).is_ok() {
                self.last.insert(k, v);
            }
        }
        !self.queue.is_empty()
    }

    /// A device is gone: what its counters under `dir` were is forgotten (a device attached
    /// at the same path later starts afresh), and what was queued for it is not written.
    pub fn forget(&mut self, dir: &str) {
        let mine = |k: &str| k.strip_prefix(dir).is_some_and(|r| r.starts_with('/'));
        self.last.retain(|k, _| !mine(k));
        self.queue.retain(|(k, _)| !mine(k));
    }

    /// When the next write is due: now (0) while counters are queued, else the next period.
    pub fn next_deadline(&self) -> u64 {
        if self.queue.is_empty() {
            self.last_tick.saturating_add(STATS_PERIOD_NS)
        } else {
            0
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hv::fake::FakeXenStore;
    use alloc::format;
    use alloc::vec::Vec;

    fn counters(dev: &str, n: u64, v: u64) -> Vec<(String, String)> {
        (0..n).map(|i| (format!("{dev}/c{i}"), format!("{v}"))).collect()
    }

    #[test]
    fn at_most_four_writes_a_turn_and_only_changed_values() {
        let mut xs = FakeXenStore::default();
        let mut p = StatsPublisher::new();
        p.tick(STATS_PERIOD_NS, || counters("/d/a", 10, 1));
        let mut turns = 0;
        while p.write_some(&mut xs) {
            turns += 1;
            assert_eq!(p.next_deadline(), 0, "counters queued: no sleep");
        }
        assert_eq!(turns, 2, "10 counters: 4 + 4 + 2");
        assert_eq!(xs.get("/d/a/c9"), Some("1"));
        assert_eq!(xs.requests, 10);
        // Too early: nothing is queued, whatever changed.
        p.tick(STATS_PERIOD_NS + 1, || counters("/d/a", 10, 2));
        assert!(!p.write_some(&mut xs));
        assert_eq!(xs.requests, 10);
        // A period later only the changed values go out.
        let mut next = counters("/d/a", 10, 1);
        next[3].1 = String::from("7");
        p.tick(2 * STATS_PERIOD_NS, || next);
        assert!(!p.write_some(&mut xs));
        assert_eq!(xs.requests, 11);
        assert_eq!(xs.get("/d/a/c3"), Some("7"));
        assert_eq!(p.next_deadline(), 3 * STATS_PERIOD_NS);
    }

    #[test]
    fn a_forgotten_device_writes_nothing_and_starts_afresh() {
        let mut xs = FakeXenStore::default();
        let mut p = StatsPublisher::new();
        p.tick(STATS_PERIOD_NS, || counters("/d/a", 3, 1).into_iter().chain(counters("/d/ab", 3, 1)));
        p.forget("/d/a");
        while p.write_some(&mut xs) {}
        assert_eq!(xs.requests, 3, "only /d/ab's counters (a sibling with the same prefix)");
        assert_eq!(xs.get("/d/a/c0"), None);
        // Attached again at the same path: the same values are written again.
        p.tick(2 * STATS_PERIOD_NS, || counters("/d/a", 3, 1));
        while p.write_some(&mut xs) {}
        assert_eq!(xs.get("/d/a/c0"), Some("1"));
        assert_eq!(xs.requests, 6);
    }
}
