//! Physical memory: what Xen handed over at boot, the frame allocator, the heap, the
//! `shared_info` page, and the reserved region where foreign grants are mapped.
//!
//! Everything is identity-mapped (virtual == guest-physical): the boot page tables cover
//! the first 4 GiB, and `init` adds the grant region above that.
//!
//! **The grant region.** A PVH backend maps a frontend's grant at a guest-physical address
//! of its choosing (`gnttab_map_grant_ref.host_addr`, `GNTMAP_host_map`), and Xen puts the
//! foreign frame into our p2m there, replacing whatever was at that frame. So the region
//! must hold neither RAM nor anything Xen placed for us (the console and xenstore rings,
//! ACPI tables, the LAPIC...). All of those appear in the `hvm_start_info` memory map, so the
//! region starts at the first 1 GiB boundary above both 4 GiB and the end of every memory
//! map entry, whatever its type, and is 1 GiB long: no entry can overlap it, and it stays
//! clear of the below-4 GiB area where Xen and libxl put special pages and MMIO.
use core::sync::atomic::{AtomicU64, Ordering};

use linked_list_allocator::LockedHeap;
use xen_sys_mini::hvm::start_info::*;
use xen_sys_mini::memory::{XenAddToPhysmap, XENMAPSPACE_SHARED_INFO, XENMEM_ADD_TO_PHYSMAP};
use xen_sys_mini::DOMID_SELF;

use crate::hypercall::{self, XenResult};
use crate::shared::SharedMem;

pub const PAGE_SIZE: u64 = 4096;
const GIB: u64 = 1 << 30;
/// Pages in the grant-mapping region (1 GiB).
pub const GRANT_REGION_PAGES: u64 = GIB / PAGE_SIZE;

#[global_allocator]
static HEAP: LockedHeap = LockedHeap::empty();

/// One entry of the memory map Xen gave us.
#[derive(Debug, Clone, Copy)]
pub struct MemRange {
    pub start: u64,
    pub end: u64,
    pub kind: u32,
}

/// What `hvm_start_info` said, copied out before any of that memory is reused.
#[derive(Debug)]
pub struct BootInfo {
    pub cmdline: heapless::String<1024>,
    pub memmap: heapless::Vec<MemRange, 64>,
    pub modules: heapless::Vec<(u64, u64, heapless::String<256>), 8>,
    pub start_info: u64,
}

fn read_cstr<const N: usize>(paddr: u64) -> heapless::String<N> {
    let mut s = heapless::String::new();
    if paddr == 0 {
        return s;
    }
    // SAFETY: Xen places the strings in our RAM, identity-mapped; N bytes at most are read
    // (a string Xen wrote may be shorter and end with NUL).
    let mem = unsafe { SharedMem::new(paddr, N) };
    for i in 0..N {
        match mem.read::<u8>(i) {
            Ok(0) | Err(_) => break,
            Ok(b) => {
                if s.push(if b.is_ascii() { b as char } else { '?' }).is_err() {
                    break;
                }
            }
        }
    }
    s
}

/// Copies the start-of-day information. Fails if the magic is wrong (not a PVH start).
pub fn read_boot_info(paddr: u64) -> Result<BootInfo, &'static str> {
    // SAFETY: Xen passes the paddr of a `hvm_start_info` in our RAM (identity-mapped).
    let si = unsafe { SharedMem::new(paddr, core::mem::size_of::<HvmStartInfo>()) };
    let info: HvmStartInfo = si.read(0).map_err(|_| "start_info unreadable")?;
    if info.magic != XEN_HVM_START_MAGIC_VALUE {
        return Err("bad hvm_start_info magic: not started as a PVH guest");
    }
    let mut b = BootInfo {
        cmdline: read_cstr(info.cmdline_paddr),
        memmap: heapless::Vec::new(),
        modules: heapless::Vec::new(),
        start_info: paddr,
    };
    if info.version >= 1 && info.memmap_paddr != 0 {
        let n = (info.memmap_entries as usize).min(64);
        // SAFETY: Xen's memory map array, `memmap_entries` entries, in our RAM.
        let mm = unsafe { SharedMem::new(info.memmap_paddr, n * core::mem::size_of::<HvmMemmapTableEntry>()) };
        for i in 0..n {
            if let Ok(e) = mm.read::<HvmMemmapTableEntry>(i * core::mem::size_of::<HvmMemmapTableEntry>()) {
                let _ = b.memmap.push(MemRange { start: e.addr, end: e.addr.saturating_add(e.size), kind: e.type_ });
            }
        }
    }
    if info.nr_modules > 0 && info.modlist_paddr != 0 {
        let n = (info.nr_modules as usize).min(8);
        // SAFETY: Xen's module list, `nr_modules` entries, in our RAM.
        let ml = unsafe { SharedMem::new(info.modlist_paddr, n * core::mem::size_of::<HvmModlistEntry>()) };
        for i in 0..n {
            if let Ok(m) = ml.read::<HvmModlistEntry>(i * core::mem::size_of::<HvmModlistEntry>()) {
                let _ = b.modules.push((m.paddr, m.size, read_cstr(m.cmdline_paddr)));
            }
        }
    }
    Ok(b)
}

// ---------------------------------------------------------------------------------------
// Frames

/// Free RAM as ranges; frames are bumped off them, and freed frames go on a list threaded
/// through the frames themselves.
struct Frames {
    ranges: heapless::Vec<(u64, u64), 64>,
    free_list: u64,
    free_count: u64,
    total: u64,
}

static FRAMES: spin::Mutex<Frames> =
    spin::Mutex::new(Frames { ranges: heapless::Vec::new(), free_list: 0, free_count: 0, total: 0 });
static SHARED_INFO: AtomicU64 = AtomicU64::new(0);
static GRANT_REGION: AtomicU64 = AtomicU64::new(0);
static RAM_BYTES: AtomicU64 = AtomicU64::new(0);

fn subtract(ranges: &mut heapless::Vec<(u64, u64), 64>, hole: (u64, u64)) {
    let mut out: heapless::Vec<(u64, u64), 64> = heapless::Vec::new();
    for &(s, e) in ranges.iter() {
        if hole.1 <= s || hole.0 >= e {
            let _ = out.push((s, e));
            continue;
        }
        if s < hole.0 {
            let _ = out.push((s, hole.0));
        }
        if hole.1 < e {
            let _ = out.push((hole.1, e));
        }
    }
    *ranges = out;
}

/// A zeroed 4 KiB frame, or `None` when memory is exhausted.
pub fn alloc_frame() -> Option<u64> {
    let mut f = FRAMES.lock();
    let pa = if f.free_list != 0 {
        let pa = f.free_list;
        // SAFETY: a frame on the free list is ours, identity-mapped, and holds the next
        // pointer in its first 8 bytes (written by `free_frame`).
        f.free_list = unsafe { (pa as *const u64).read_volatile() };
        f.free_count -= 1;
        pa
    } else {
        let r = f.ranges.iter_mut().find(|(s, e)| e - s >= PAGE_SIZE)?;
        let pa = r.0;
        r.0 += PAGE_SIZE;
        pa
    };
    drop(f);
    // SAFETY: the frame was free RAM (or returned by `free_frame`), nobody else uses it.
    unsafe { core::ptr::write_bytes(pa as *mut u8, 0, PAGE_SIZE as usize) };
    Some(pa)
}

/// Returns a frame from `alloc_frame`.
///
/// # Safety
/// `pa` must come from `alloc_frame`, and nothing may use it afterwards.
pub unsafe fn free_frame(pa: u64) {
    let mut f = FRAMES.lock();
    // SAFETY: the caller gives the frame back; its first 8 bytes now hold the list link.
    unsafe { (pa as *mut u64).write_volatile(f.free_list) };
    f.free_list = pa;
    f.free_count += 1;
}

/// Free memory in bytes (bump ranges plus the free list).
pub fn free_bytes() -> u64 {
    let f = FRAMES.lock();
    f.ranges.iter().map(|(s, e)| e - s).sum::<u64>() + f.free_count * PAGE_SIZE
}

/// RAM in the memory map, in bytes.
pub fn ram_bytes() -> u64 {
    RAM_BYTES.load(Ordering::Relaxed)
}

/// Takes `bytes` of contiguous memory off the largest range (for the heap).
fn take_contiguous(bytes: u64) -> Option<u64> {
    let mut f = FRAMES.lock();
    let r = f.ranges.iter_mut().max_by_key(|(s, e)| e - s)?;
    if r.1 - r.0 < bytes {
        return None;
    }
    let pa = r.0;
    r.0 += bytes;
    Some(pa)
}

/// An owned, zeroed 4 KiB frame; returned to the allocator when dropped.
#[derive(Debug)]
pub struct Page {
    pa: u64,
}

impl Page {
    pub fn alloc() -> Option<Self> {
        alloc_frame().map(|pa| Self { pa })
    }
    pub fn gfn(&self) -> u64 {
        self.pa >> 12
    }
    /// The frame's bytes. Sound because the frame is ours alone: it is not granted with
    /// mapping rights (the copy path lets Xen copy into it only during a hypercall, while no
    /// such borrow is alive), and the borrow is tied to `self`.
    pub fn bytes(&self) -> &[u8] {
        // SAFETY: see above; 4096 bytes of identity-mapped RAM owned by `self`.
        unsafe { core::slice::from_raw_parts(self.pa as *const u8, PAGE_SIZE as usize) }
    }

    /// The frame's bytes, mutably (same reasoning as `bytes`; `&mut self` excludes others).
    pub fn bytes_mut(&mut self) -> &mut [u8] {
        // SAFETY: as for `bytes`, and the exclusive borrow of `self` makes it unique.
        unsafe { core::slice::from_raw_parts_mut(self.pa as *mut u8, PAGE_SIZE as usize) }
    }

    /// The page as shared memory (it may be granted to another domain).
    pub fn mem(&self) -> SharedMem {
        // SAFETY: we own the frame for the lifetime of `self`; it is identity-mapped.
        unsafe { SharedMem::new(self.pa, PAGE_SIZE as usize) }
    }
}

impl Drop for Page {
    fn drop(&mut self) {
        // SAFETY: `pa` came from `alloc_frame` and `self` is its only owner.
        unsafe { free_frame(self.pa) };
    }
}

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

/// Sets up frames, heap, `shared_info` and the grant region. `heap_fraction` of free RAM
/// (in 1/8ths) becomes heap.
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
    RAM_BYTES.store(ram, Ordering::Relaxed);
    // Never hand out: the first MiB (firmware-ish area, start_info often lives there), the
    // image, the start_info page, and every boot module (a module may be served as a disk).
    subtract(&mut ranges, (0, 1 << 20));
    let (img_s, img_e) = crate::arch::image_range();
    subtract(&mut ranges, (img_s, img_e.next_multiple_of(PAGE_SIZE)));
    subtract(&mut ranges, (boot.start_info & !(PAGE_SIZE - 1), (boot.start_info & !(PAGE_SIZE - 1)) + PAGE_SIZE));
    for (pa, size, _) in &boot.modules {
        subtract(&mut ranges, (pa & !(PAGE_SIZE - 1), (pa + size).next_multiple_of(PAGE_SIZE)));
    }
    {
        let mut f = FRAMES.lock();
        f.total = ranges.iter().map(|(s, e)| e - s).sum();
        f.ranges = ranges;
    }

    // Heap: an eighth of free memory, between 4 and 16 MiB (request bookkeeping, the
    // persistent-grant pools, xenstore buffers); RAM disks take frames, not heap.
    let heap_size = (free_bytes() / 8).clamp(4 << 20, 16 << 20) & !(PAGE_SIZE - 1);
    let heap = take_contiguous(heap_size).ok_or("not enough contiguous memory for the heap")?;
    // SAFETY: [heap, heap + heap_size) was free RAM, now reserved for the allocator only.
    unsafe { HEAP.lock().init(heap as *mut u8, heap_size as usize) };

    // shared_info: Xen replaces the RAM frame at this gfn with the shared_info page.
    let si = alloc_frame().ok_or("no frame for shared_info")?;
    add_to_physmap(XENMAPSPACE_SHARED_INFO, 0, si >> 12).map_err(|_| "XENMEM_add_to_physmap(shared_info) failed")?;
    SHARED_INFO.store(si, Ordering::Release);

    // The grant region (see the module comment), identity-mapped with 2 MiB pages.
    let base = top.max(4 * GIB).next_multiple_of(GIB);
    crate::arch::map_identity_2m(base, base + GRANT_REGION_PAGES * PAGE_SIZE, alloc_frame)?;
    GRANT_REGION.store(base >> 12, Ordering::Relaxed);
    Ok(())
}

/// `XENMEM_add_to_physmap` for ourselves.
pub fn add_to_physmap(space: u32, idx: u64, gpfn: u64) -> XenResult<u64> {
    let mut a = XenAddToPhysmap { domid: DOMID_SELF, size: 0, space, idx, gpfn };
    // SAFETY: `xen_add_to_physmap` is the argument of XENMEM_add_to_physmap.
    unsafe { hypercall::op(xen_sys_mini::hypercall::MEMORY_OP, XENMEM_ADD_TO_PHYSMAP, &mut a) }
}

/// Heap statistics: (used, free) bytes.
pub fn heap_usage() -> (usize, usize) {
    let h = HEAP.lock();
    (h.used(), h.free())
}
