//! The queue of xenstore watch events a client holds between arriving and being handled,
//! bounded against a flood. Anyone who can write under a watched path (a frontend under its
//! own directory) decides how many events arrive: a frontend flipping its `state` in a loop
//! produces one per write, and an unbounded queue grows until the heap runs out.
//!
//! The consumers are level-triggered (an event means "look again under this watch", and
//! they re-read what they need), so events can be merged without losing meaning:
//! - an event identical to one already queued adds nothing and is dropped;
//! - once `cap` events are queued, a new event is folded into the oldest queued event of
//!   the same token, whose path becomes the longest common ancestor of both (at worst the
//!   watched path itself, which tells the consumer to look at everything it watches).
//!
//! A token with nothing queued is always queued, so the length stays within `cap` plus the
//! number of watches (which the watcher bounds).
use crate::Count;
use alloc::collections::VecDeque;
use alloc::string::String;
use alloc::vec::Vec;

use crate::WatchEvent;

/// What a client queues before merging (`EventQueue::default`): room for every event a
/// normal turn of the driver domain sees, a few KiB of heap at most per queued path.
pub const EVENT_QUEUE_CAP: usize = 64;

#[derive(Debug)]
pub struct EventQueue {
    q: VecDeque<WatchEvent>,
    cap: usize,
    merged: u64,
}

/// The longest common ancestor of two xenstore paths, by whole components.
fn common_ancestor(a: &str, b: &str) -> String {
    let common: Vec<&str> = a.split('/').zip(b.split('/')).take_while(|(x, y)| x == y).map(|(x, _)| x).collect();
    let s = common.join("/");
    if s.is_empty() && a.starts_with('/') {
        String::from("/")
    } else {
        s
    }
}

impl Default for EventQueue {
    fn default() -> Self {
        Self::new(EVENT_QUEUE_CAP)
    }
}

impl EventQueue {
    /// A queue holding `cap` events before it starts merging (at least 1).
    pub fn new(cap: usize) -> Self {
        Self { q: VecDeque::new(), cap: cap.max(1), merged: 0 }
    }

    pub fn push(&mut self, e: WatchEvent) {
        if self.q.contains(&e) {
            self.merged.inc();
            return;
        }
        if self.q.len() >= self.cap {
            if let Some(x) = self.q.iter_mut().find(|x| x.token == e.token) {
                x.path = common_ancestor(&x.path, &e.path);
                self.merged.inc();
                return;
            }
        }
        self.q.push_back(e);
    }

    pub fn pop(&mut self) -> Option<WatchEvent> {
        self.q.pop_front()
    }

    pub fn len(&self) -> usize {
        self.q.len()
    }

    pub fn is_empty(&self) -> bool {
        self.q.is_empty()
    }

    /// Events dropped as duplicates or folded into another, since creation.
    pub fn merged(&self) -> u64 {
        self.merged
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;

    fn ev(path: &str, token: &str) -> WatchEvent {
        WatchEvent { path: path.to_string(), token: token.to_string() }
    }

    #[test]
    fn ancestors() {
        assert_eq!(common_ancestor("/a/b/c", "/a/b/d"), "/a/b");
        assert_eq!(common_ancestor("/a/b", "/a/b"), "/a/b");
        assert_eq!(common_ancestor("/a/bc", "/a/b"), "/a");
        assert_eq!(common_ancestor("/x", "/y"), "/");
        assert_eq!(common_ancestor("a/b", "a/c"), "a");
    }

    #[test]
    fn a_state_flip_flood_stays_one_event() {
        let mut q = EventQueue::new(8);
        for _ in 0..100_000 {
            q.push(ev("/local/domain/2/device/vbd/51712/state", "dev"));
        }
        assert_eq!(q.len(), 1);
        assert_eq!(q.merged(), 99_999);
    }

    #[test]
    fn distinct_paths_beyond_the_cap_fold_into_their_token() {
        let mut q = EventQueue::new(4);
        q.push(ev("/vbd", "vbd"));
        for i in 0..10_000 {
            q.push(ev(&alloc::format!("/fe/state/k{i}"), "dev"));
        }
        // A token never seen before the cap is still queued.
        q.push(ev("/local/domain/1/device/vif/0/state", "vif"));
        assert!(q.len() <= 5, "{} queued", q.len());
        let all: Vec<WatchEvent> = core::iter::from_fn(|| q.pop()).collect();
        assert_eq!(all[0], ev("/vbd", "vbd"), "order kept");
        // The folded event covers every path it stands for.
        assert!(all.iter().any(|e| e.token == "dev" && e.path == "/fe/state"), "{all:?}");
        assert!(all.iter().any(|e| e.token == "vif"));
        assert!(q.is_empty());
    }
}
