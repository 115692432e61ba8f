//! The memory layout set up at boot: `shared_info`, the grant region (see the module's
//! documentation), and `XENMEM_add_to_physmap`.
use core::sync::atomic::{AtomicU64, Ordering};

use xen_sys_mini::hvm::start_info::XEN_HVM_MEMMAP_TYPE_RAM;
use xen_sys_mini::memory::{XenAddToPhysmap, XENMAPSPACE_SHARED_INFO, XENMEM_ADD_TO_PHYSMAP};
use xen_sys_mini::DOMID_SELF;

use crate::hypercall::{self, XenResult};
use crate::shared::SharedMem;

use super::bootinfo::BootInfo;
use super::frames::{self, alloc_frame, free_bytes};
use super::heap;

pub const PAGE_SIZE: u64 = 4096;
const GIB: u64 = 1 << 30;
/// Pages in the grant-mapping region (1 GiB).
pub const GRANT_REGION_PAGES: u64 = GIB / PAGE_SIZE;

static SHARED_INFO: AtomicU64 = AtomicU64::new(0);
static GRANT_REGION: AtomicU64 = AtomicU64::new(0);

/// `shared_info`, once mapped.
pub fn shared_info() -> Option<SharedMem> {
    let pa = SHARED_INFO.load(Ordering::Acquire);
    // SAFETY: set once by `init` to the frame Xen put `shared_info` at; never unmapped.
    (pa != 0).then(|| unsafe { SharedMem::new(pa, PAGE_SIZE as usize) })
}

/// First frame of the grant-mapping region.
pub fn grant_region_base() -> u64 {
    GRANT_REGION.load(Ordering::Relaxed)
}

/// Sets up frames, heap, `shared_info` and the grant region.
pub fn init(boot: &BootInfo) -> Result<(), &'static str> {
    let mut ranges: heapless::Vec<(u64, u64), 64> = heapless::Vec::new();
    let mut top = 0u64;
    let mut ram = 0u64;
    for r in &boot.memmap {
        top = top.max(r.end);
        if r.kind == XEN_HVM_MEMMAP_TYPE_RAM {
            let s = r.start.next_multiple_of(PAGE_SIZE);
            let e = r.end & !(PAGE_SIZE - 1);
            if e > s {
                ram += e - s;
                let _ = ranges.push((s, e));
            }
        }
    }
    if ranges.is_empty() {
        return Err("no RAM in the memory map");
    }
    frames::set_ram_bytes(ram);
    // Never hand out: the first MiB (firmware-ish area, start_info often lives there), the
    // image, the start_info page, and every boot module (a module may be served as a disk).
    frames::subtract(&mut ranges, (0, 1 << 20));
    let (img_s, img_e) = image_range();
    frames::subtract(&mut ranges, (img_s, img_e.next_multiple_of(PAGE_SIZE)));
    frames::subtract(
        &mut ranges,
        (boot.start_info & !(PAGE_SIZE - 1), (boot.start_info & !(PAGE_SIZE - 1)) + PAGE_SIZE),
    );
    for (pa, size, _) in &boot.modules {
        frames::subtract(&mut ranges, (pa & !(PAGE_SIZE - 1), (pa + size).next_multiple_of(PAGE_SIZE)));
    }
    frames::set_ranges(ranges);

    // Heap: an eighth of free memory, between 4 and 16 MiB (request bookkeeping, the
    // persistent-grant pools, xenstore buffers); RAM disks take frames, not heap.
    let heap_size = (free_bytes() / 8).clamp(4 << 20, 16 << 20) & !(PAGE_SIZE - 1);
    let heap = frames::take_contiguous(heap_size).ok_or("not enough contiguous memory for the heap")?;
    // SAFETY: [heap, heap + heap_size) was free RAM, now reserved for the allocator only.
    unsafe { heap::init(heap, heap_size) };

    // shared_info: Xen replaces the RAM frame at this gfn with the shared_info page.
    let si = alloc_frame().ok_or("no frame for shared_info")?;
    add_to_physmap(XENMAPSPACE_SHARED_INFO, 0, si >> 12).map_err(|_| "XENMEM_add_to_physmap(shared_info) failed")?;
    SHARED_INFO.store(si, Ordering::Release);

    // The grant region (see the module comment), identity-mapped with 2 MiB pages.
    let base = top.max(4 * GIB).next_multiple_of(GIB);
    map_grant_region(base)?;
    GRANT_REGION.store(base >> 12, Ordering::Relaxed);
    Ok(())
}

/// `XENMEM_add_to_physmap` for ourselves.
pub fn add_to_physmap(space: u32, idx: u64, gpfn: u64) -> XenResult<u64> {
    let mut a = XenAddToPhysmap { domid: DOMID_SELF, size: 0, space, idx, gpfn };
    // SAFETY: `xen_add_to_physmap` is the argument of XENMEM_add_to_physmap.
    unsafe { hypercall::op(xen_sys_mini::hypercall::MEMORY_OP, XENMEM_ADD_TO_PHYSMAP, &mut a) }
}

#[cfg(target_os = "none")]
fn image_range() -> (u64, u64) {
    crate::arch::boot::image_range()
}

#[cfg(target_os = "none")]
fn map_grant_region(base: u64) -> Result<(), &'static str> {
    // SAFETY: the boot page-table root is active; the region holds no memory of ours (see
    // the module comment), so replacing its translations affects nothing live.
    unsafe {
        crate::arch::paging::map_identity_2m(
            crate::arch::boot::pml4(),
            base,
            base + GRANT_REGION_PAGES * PAGE_SIZE,
            alloc_frame,
        )
    }
}

// `init` only runs in the PVH guest; on the host (tests, clippy) there is no image and no
// page table of ours to extend.
#[cfg(not(target_os = "none"))]
fn image_range() -> (u64, u64) {
    (0, 0)
}

#[cfg(not(target_os = "none"))]
fn map_grant_region(_base: u64) -> Result<(), &'static str> {
    Err("no PVH page tables on the host")
}
