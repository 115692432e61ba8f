//! The heap: one contiguous range of free RAM handed to `linked_list_allocator`. Request
//! bookkeeping, persistent-grant pools and xenstore buffers live here; RAM disks take
//! frames, not heap.
use linked_list_allocator::LockedHeap;

// Only the unikernel's allocator: on the host (tests, clippy) the standard one stays.
#[cfg_attr(target_os = "none", global_allocator)]
static HEAP: LockedHeap = LockedHeap::empty();

/// Gives `[base, base + size)` to the allocator.
///
/// # Safety
/// The range must be free RAM, identity-mapped, used by nothing else from now on; once.
pub(super) unsafe fn init(base: u64, size: u64) {
    // SAFETY: guaranteed by the caller.
    unsafe { HEAP.lock().init(base as *mut u8, size as usize) };
}

/// Heap statistics: (used, free) bytes.
pub fn usage() -> (usize, usize) {
    let h = HEAP.lock();
    (h.used(), h.free())
}
