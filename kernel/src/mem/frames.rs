//! The frame allocator: free RAM as ranges (from the memory map, minus what must never be
//! handed out), frames bumped off them, freed frames on a list threaded through the frames
//! themselves. [`Page`] owns one frame; [`BootModule`] owns a boot module's memory.
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use crate::shared::SharedMem;

use super::PAGE_SIZE;

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
static RAM_BYTES: AtomicU64 = AtomicU64::new(0);

pub(super) fn set_ram_bytes(b: u64) {
    RAM_BYTES.store(b, Ordering::Relaxed);
}

pub(super) fn subtract(ranges: &mut heapless::Vec<(u64, u64), 64>, hole: (u64, u64)) {
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

/// Hands the free ranges to the allocator (once, from `mem::init`).
pub(super) fn set_ranges(ranges: heapless::Vec<(u64, u64), 64>) {
    let mut f = FRAMES.lock();
    f.total = ranges.iter().map(|(s, e)| e - s).sum();
    f.ranges = ranges;
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
pub(super) fn take_contiguous(bytes: u64) -> Option<u64> {
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

/// One of our frames shared with another domain (granted): only volatile access through
/// `SharedMem`, never a reference, since the other domain may write it at any time.
#[derive(Debug)]
pub struct SharedPage {
    page: Page,
}

impl SharedPage {
    pub fn alloc() -> Option<Self> {
        Page::alloc().map(|page| Self { page })
    }
}

impl xen_hv::Page for SharedPage {
    fn read(&self, off: usize, dst: &mut [u8]) -> Result<(), xen_hv::MemError> {
        self.page.mem().read_bytes(off, dst).map_err(|_| xen_hv::MemError::OutOfBounds)
    }
    fn write(&self, off: usize, src: &[u8]) -> Result<(), xen_hv::MemError> {
        self.page.mem().write_bytes(off, src).map_err(|_| xen_hv::MemError::OutOfBounds)
    }
    fn load_u32(&self, off: usize) -> Result<u32, xen_hv::MemError> {
        let m = self.page.mem();
        let a = m.atomic_u32(off).map_err(|_| xen_hv::MemError::OutOfBounds)?;
        Ok(a.load(Ordering::Acquire))
    }
    fn store_u32(&self, off: usize, v: u32) -> Result<(), xen_hv::MemError> {
        let m = self.page.mem();
        let a = m.atomic_u32(off).map_err(|_| xen_hv::MemError::OutOfBounds)?;
        a.store(v, Ordering::Release);
        Ok(())
    }
    fn fence(&self) {
        crate::shared::mb();
    }
}

impl xen_hv::SharedFrame for SharedPage {
    fn gfn(&self) -> u64 {
        self.page.gfn()
    }
}

impl xen_hv::SharedFrames for FrameAllocator {
    type Shared = SharedPage;
    fn alloc_shared(&mut self) -> Option<SharedPage> {
        SharedPage::alloc()
    }
}

/// The frame allocator as the runtime's `Frames` (RAM disks take their frames here).
#[derive(Debug, Default, Clone, Copy)]
pub struct FrameAllocator;

impl xen_hv::Frame for Page {
    fn gfn(&self) -> u64 {
        Page::gfn(self)
    }
    fn bytes(&self) -> &[u8] {
        Page::bytes(self)
    }
    fn bytes_mut(&mut self) -> &mut [u8] {
        Page::bytes_mut(self)
    }
}

impl xen_hv::Frames for FrameAllocator {
    type Frame = Page;
    fn alloc(&mut self) -> Option<Page> {
        Page::alloc()
    }
    fn free_bytes(&self) -> u64 {
        free_bytes()
    }
}

/// A boot module's memory (`ramdisk=` in the xl config), owned: excluded from the frame
/// allocator by `mem::init`, handed out once by [`take_modules`].
#[derive(Debug)]
pub struct BootModule {
    bytes: &'static mut [u8],
    paddr: u64,
}

static MODULES_TAKEN: AtomicBool = AtomicBool::new(false);

/// The module libxl hands an HVM guest's firmware for hvmloader (SeaBIOS, named
/// `firmware`: hvmloader's `get_module_entry(hvm_start_info, "firmware")`). An HVM driver
/// domain runs in hvmloader's place and has no use for it: it is not a disk.
pub const HVMLOADER_FIRMWARE: &str = "firmware";

/// The boot modules as owned regions, without hvmloader's firmware; `None` after the first
/// call (each is handed out once, so no two owners can alias it).
pub fn take_modules(boot: &super::BootInfo) -> Option<alloc::vec::Vec<BootModule>> {
    if MODULES_TAKEN.swap(true, Ordering::AcqRel) {
        return None;
    }
    Some(
        boot.modules
            .iter()
            .filter(|(_, _, name)| name.as_str() != HVMLOADER_FIRMWARE)
            .map(|&(paddr, size, _)| {
                // SAFETY: the module Xen loaded, in our identity-mapped RAM, excluded from
                // the frame allocator and the heap by mem::init, and handed out only here,
                // once (the flag above).
                let bytes = unsafe { core::slice::from_raw_parts_mut(paddr as *mut u8, size as usize) };
                BootModule { bytes, paddr }
            })
            .collect(),
    )
}

impl xen_hv::Region for BootModule {
    fn bytes(&self) -> &[u8] {
        self.bytes
    }
    fn bytes_mut(&mut self) -> &mut [u8] {
        self.bytes
    }
    fn gfn(&self, off: u64) -> Option<(u64, u16)> {
        ((off as usize) < self.bytes.len()).then(|| {
            let a = self.paddr + off;
            (a >> 12, (a & 4095) as u16)
        })
    }
}
