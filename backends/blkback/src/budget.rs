//! The heap and persistent-pool budget: one owner for every number and formula of the
//! policy "no frontend-driven allocation may abort the domain".
//!
//! The driver domain's heap is shared by every frontend. Above [`HEAP_RESERVE`] (kept for
//! xenstore replies, log lines, the network stack) it is lent out:
//! - a new device needs [`DEVICE_HEAP`] plus its RAM disk's frame list, a new connection
//!   [`Budget::connect_heap_bytes`]; both are refused (`ENOMEM` in the error node) rather
//!   than starve the connections already made ([`Budget::spare`] keeps what their pools
//!   may still grow by and one worst-case request aside);
//! - a ring pass takes requests only while their worst case ([`pass_heap_bytes`]) fits in
//!   [`Budget::room`]; a frontend left waiting is looked at again after [`HEAP_RETRY_NS`];
//! - persistent-grant pools together keep at most the domain's `persistent_budget`
//!   entries ([`persistent_budget_for_heap`]: half the heap), one connection at most half
//!   of what is left ([`Budget::persistent_share`]).
//!
//! Cf. Linux blkback's `max_persistent_grants` (a fixed per-queue cap) and Firecracker's
//! `RateLimiter` (one type the device asks, instead of numbers spread over the device).
use crate::error::DeviceError;

/// Heap kept free for everything but the rings' passes (xenstore replies of up to 4 KiB,
/// log lines, the network stack's buffers, a device's directory strings).
pub const HEAP_RESERVE: usize = 256 << 10;
/// Heap a device needs besides its RAM disk's frame list (its state machine, paths,
/// watches, counters), rounded up.
pub const DEVICE_HEAP: usize = 8 << 10;
/// How soon a frontend left waiting for heap (`heap_waits`) is looked at again when no
/// event comes first.
pub const HEAP_RETRY_NS: u64 = 1_000_000;
/// A queue's share of a connection's fixed heap: its ring (the mapping handles of up to 16
/// pages), its answers, and the connection's own structures, rounded up.
pub const CONNECT_HEAP_PER_QUEUE: usize = 4096;
/// Heap a pass may use per request it takes, beyond its segments: the request's copy, its
/// answer, its in-flight entry, and a 4 KiB buffer for an indirect request's descriptors.
/// Measured by `tests/heap.rs` (which checks the sum stays above what a pass really takes).
pub const HEAP_PER_REQUEST: usize = 4608;
/// Heap a pass may use per data segment: its descriptor, map request and owner, the slot
/// of its mapping, the mapping's `Rc`, the store's view of it, or its copy op.
pub const HEAP_PER_SEGMENT: usize = 128;
/// Heap one persistent-pool entry can cost: its share of a B-tree node (key, entry: an
/// `Rc` pointer and an age), the `Rc` allocation (two counts and the mapping handle),
/// rounded up generously.
pub const ENTRY_BYTES: usize = 160;

/// The heap one pass may use for `requests` requests of `segments` segments in all.
pub fn pass_heap_bytes(requests: usize, segments: usize) -> usize {
    requests.saturating_mul(HEAP_PER_REQUEST).saturating_add(segments.saturating_mul(HEAP_PER_SEGMENT))
}

/// The domain's persistent-grant budget (entries, all connections together) for a heap of
/// `heap_bytes`: half of it (the rest is for passes, xenstore, the network stack).
pub fn persistent_budget_for_heap(heap_bytes: usize) -> usize {
    heap_bytes / 2 / ENTRY_BYTES
}

/// The budget as the service sees it now: the free heap (read through the driver domain's
/// allocator), the pool budget, and the largest request a frontend may send.
#[derive(Debug, Clone, Copy)]
pub struct Budget {
    heap_free: fn() -> usize,
    /// Persistent-grant entries all connections together may keep.
    pub persistent_budget: usize,
    /// Segments of the largest request (the advertised `feature-max-indirect-segments`).
    pub max_segments: usize,
}

impl Budget {
    /// A budget over the free heap `heap_free` reports (without an allocator to ask, e.g.
    /// on the host, `|| usize::MAX`: unbounded).
    pub fn new(heap_free: fn() -> usize, persistent_budget: usize, max_segments: usize) -> Self {
        Self { heap_free, persistent_budget, max_segments }
    }

    /// Reads the free heap through `f` from now on.
    pub fn set_gauge(&mut self, f: fn() -> usize) {
        self.heap_free = f;
    }

    /// The heap passes and connections may use now: the free heap less [`HEAP_RESERVE`].
    pub fn room(&self) -> usize {
        (self.heap_free)().saturating_sub(HEAP_RESERVE)
    }

    /// Heap for something new (a device, a connection): the room less what the kept pools
    /// may still grow by (`unfilled_pool_entries`) and one request of the largest kind, so
    /// every connection already made can always take a request.
    pub fn spare(&self, unfilled_pool_entries: usize) -> usize {
        self.room()
            .saturating_sub(unfilled_pool_entries.saturating_mul(ENTRY_BYTES))
            .saturating_sub(pass_heap_bytes(1, self.max_segments))
    }

    /// Whether a new device may be made: [`DEVICE_HEAP`] must be spare.
    pub fn admit_device(&self, unfilled_pool_entries: usize) -> Result<(), DeviceError> {
        let free = self.spare(unfilled_pool_entries);
        if free < DEVICE_HEAP {
            return Err(DeviceError::NoHeap { what: HeapUse::Device, need: DEVICE_HEAP, free });
        }
        Ok(())
    }

    /// Heap a connection needs to be made and to take one request of `max_segments`: its
    /// rings' bookkeeping (per queue) and one pass of one such request.
    pub fn connect_heap_bytes(queues: usize, max_segments: usize) -> usize {
        queues.saturating_mul(CONNECT_HEAP_PER_QUEUE).saturating_add(pass_heap_bytes(1, max_segments))
    }

    /// Admission of a connection of `queues` queues, requests of up to `max_segments`,
    /// given the heap `room` its device may use: refused (`ENOMEM`, as Linux blkback
    /// answers when it cannot allocate its rings) if it does not fit.
    pub fn admit_connection(room: usize, queues: usize, max_segments: usize) -> Result<(), DeviceError> {
        let need = Self::connect_heap_bytes(queues, max_segments);
        if room < need {
            return Err(DeviceError::NoHeap { what: HeapUse::Connection, need, free: room });
        }
        Ok(())
    }

    /// When a frontend left waiting for heap at `now` is looked at again (if no event
    /// comes first).
    pub fn retry_at(now: u64) -> u64 {
        now.saturating_add(HEAP_RETRY_NS)
    }

    /// The persistent pool a connection made now may keep: what is left of the budget
    /// after the other connections' reservations, half of it at most (the connection then
    /// trims it to what its frontend can keep granted).
    pub fn persistent_share(&self, reserved_by_others: usize) -> usize {
        let budget = self.persistent_budget;
        budget.saturating_sub(reserved_by_others).min(budget / 2)
    }
}

/// What heap was asked for when the budget said no.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeapUse {
    /// Another device (its state, paths, watches).
    Device,
    /// Another connection (its rings, one request).
    Connection,
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;

    const MIB: usize = 1 << 20;

    #[test]
    fn room_is_the_free_heap_above_the_reserve() {
        assert_eq!(Budget::new(|| MIB, 0, 256).room(), MIB - HEAP_RESERVE);
        assert_eq!(Budget::new(|| HEAP_RESERVE / 2, 0, 256).room(), 0);
    }

    #[test]
    fn spare_keeps_unfilled_pools_and_one_worst_request_aside() {
        let b = Budget::new(|| MIB, 0, 256);
        let worst = pass_heap_bytes(1, 256);
        assert_eq!(b.spare(0), MIB - HEAP_RESERVE - worst);
        assert_eq!(b.spare(100), MIB - HEAP_RESERVE - worst - 100 * ENTRY_BYTES);
        assert_eq!(b.spare(usize::MAX), 0);
    }

    #[test]
    fn a_device_past_the_spare_heap_is_refused_with_enomem() {
        let tight = Budget::new(|| HEAP_RESERVE + pass_heap_bytes(1, 256) + DEVICE_HEAP - 1, 0, 256);
        let e = tight.admit_device(0).unwrap_err();
        assert_eq!(e, DeviceError::NoHeap { what: HeapUse::Device, need: DEVICE_HEAP, free: DEVICE_HEAP - 1 });
        assert_eq!(e.errno(), xen_sys_mini::errno::ENOMEM);
        let ok = Budget::new(|| HEAP_RESERVE + pass_heap_bytes(1, 256) + DEVICE_HEAP, 0, 256);
        assert_eq!(ok.admit_device(0), Ok(()));
        assert_eq!(ok.admit_device(1).map_err(|e| e.errno()), Err(xen_sys_mini::errno::ENOMEM));
    }

    #[test]
    fn a_connection_needs_its_queues_and_one_request() {
        let need = 4 * CONNECT_HEAP_PER_QUEUE + HEAP_PER_REQUEST + 256 * HEAP_PER_SEGMENT;
        assert_eq!(Budget::connect_heap_bytes(4, 256), need);
        assert_eq!(Budget::admit_connection(need, 4, 256), Ok(()));
        let e = Budget::admit_connection(need - 1, 4, 256).unwrap_err();
        assert_eq!(e, DeviceError::NoHeap { what: HeapUse::Connection, need, free: need - 1 });
        assert_eq!(
            e.to_string(),
            alloc::format!("no heap left for another connection (needs {need} bytes, {} free)", need - 1)
        );
    }

    #[test]
    fn one_connection_gets_at_most_half_of_what_is_left() {
        let b = Budget::new(|| MIB, 3000, 256);
        assert_eq!(b.persistent_share(0), 1500);
        assert_eq!(b.persistent_share(2000), 1000);
        assert_eq!(b.persistent_share(2900), 100);
        assert_eq!(b.persistent_share(4000), 0);
        assert_eq!(persistent_budget_for_heap(4 * MIB), 4 * MIB / 2 / ENTRY_BYTES);
    }
}
