//! One device in the service's table and its two timers: linger (a closed frontend is
//! served until idle) and removal (the directory goes a grace after Closed).
use alloc::boxed::Box;

/// How long after writing Closed our directory is removed (libxl reads Closed first).
pub const REMOVE_GRACE_NS: u64 = 200_000_000;
/// How long a connection whose frontend wrote Closed must have been idle before it is
/// dropped (`xenbus::Snapshot::idle`): Linux blkfront dispatches what it still had queued
/// within milliseconds of our last responses.
pub const LINGER_IDLE_NS: u64 = 300_000_000;
/// The longest a closed frontend is served (one that never goes idle, a hostile one, is
/// dropped after this and its remaining requests answered with errors).
pub const LINGER_MAX_NS: u64 = 5_000_000_000;

/// A device and its timers.
#[derive(Debug)]
pub(crate) struct Entry<D> {
    pub dev: Box<D>,
    /// When the directory goes (after the grace that follows Closed on detach).
    remove_at: Option<u64>,
    /// Whether the store was seen ready (a network store becomes ready later: the device is
    /// updated once then, to connect a frontend that is already waiting).
    pub ready_seen: bool,
    /// When its connection last took or answered a request.
    last_io: u64,
    /// Since when a closed frontend is being served (it was notified then).
    linger_since: Option<u64>,
}

impl<D> Entry<D> {
    pub fn new(dev: D, ready_seen: bool) -> Self {
        Self { dev: Box::new(dev), remove_at: None, ready_seen, last_io: 0, linger_since: None }
    }

    /// When serving a closed frontend ends: once it has been idle `LINGER_IDLE_NS`, or
    /// `LINGER_MAX_NS` after it was notified, whichever comes first.
    pub fn linger_end(&self) -> Option<u64> {
        let since = self.linger_since?;
        Some(self.last_io.saturating_add(LINGER_IDLE_NS).min(since.saturating_add(LINGER_MAX_NS)))
    }

    /// Whether the connection may be dropped now if its frontend closed: no linger, or
    /// the linger is over.
    pub fn idle(&self, now: u64) -> bool {
        self.linger_end().is_none_or(|end| now >= end)
    }

    /// The closed frontend was notified at `now`: serve what it had queued from now on.
    pub fn kicked(&mut self, now: u64) {
        self.last_io = now;
        self.linger_since = Some(now);
    }

    /// Serving a closed frontend ended (its connection went, or it was idle anyway).
    pub fn linger_over(&mut self) {
        self.linger_since = None;
    }

    /// The connection took or answered a request at `now`.
    pub fn io(&mut self, now: u64) {
        self.last_io = now;
    }

    /// The directory is to go `REMOVE_GRACE_NS` after `now` (once: a later call keeps the
    /// first time).
    pub fn schedule_removal(&mut self, now: u64) {
        if self.remove_at.is_none() {
            self.remove_at = Some(now.saturating_add(REMOVE_GRACE_NS));
        }
    }

    /// Whether the directory is due to go.
    pub fn removal_due(&self, now: u64) -> bool {
        self.remove_at.is_some_and(|t| t <= now)
    }

    /// Whether the linger ended by `now` (look at the device again).
    pub fn linger_due(&self, now: u64) -> bool {
        self.linger_end().is_some_and(|t| t <= now)
    }

    /// The earliest of this entry's timers.
    pub fn deadline(&self) -> Option<u64> {
        self.remove_at.into_iter().chain(self.linger_end()).min()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_closed_frontend_is_served_until_idle_or_for_at_most_linger_max() {
        let mut e = Entry::new((), true);
        assert!(e.idle(0), "no linger: idle at once");
        assert_eq!(e.deadline(), None);
        e.kicked(1_000);
        assert!(!e.idle(1_000));
        assert_eq!(e.linger_end(), Some(1_000 + LINGER_IDLE_NS));
        // I/O keeps it busy, but never past LINGER_MAX_NS from the kick.
        e.io(1_000 + LINGER_IDLE_NS - 1);
        assert!(!e.idle(1_000 + LINGER_IDLE_NS));
        let mut t = 1_000;
        while t < 1_000 + 2 * LINGER_MAX_NS {
            e.io(t);
            t += LINGER_IDLE_NS / 2;
        }
        assert_eq!(e.linger_end(), Some(1_000 + LINGER_MAX_NS));
        assert!(e.linger_due(1_000 + LINGER_MAX_NS) && !e.linger_due(LINGER_MAX_NS));
        e.linger_over();
        assert!(e.idle(0) && e.linger_end().is_none());
    }

    #[test]
    fn removal_is_scheduled_once_a_grace_after_closed() {
        let mut e = Entry::new((), true);
        e.schedule_removal(5);
        e.schedule_removal(500_000_000);
        assert!(!e.removal_due(4 + REMOVE_GRACE_NS));
        assert!(e.removal_due(5 + REMOVE_GRACE_NS));
        e.kicked(0);
        assert_eq!(e.deadline(), Some(5 + REMOVE_GRACE_NS).min(Some(LINGER_IDLE_NS)));
    }
}
