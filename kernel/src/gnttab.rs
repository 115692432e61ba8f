//! Grant tables (`grant_table.h`), v1.
//!
//! - Our own table (for granting our pages) is put in the first frames of the grant region
//!   with `XENMEM_add_to_physmap(XENMAPSPACE_grant_table)`. Entries are written domid and
//!   frame first, then `flags` with release ordering (the entry becomes valid last); access
//!   ends only when Xen no longer marks the entry `GTF_reading`/`GTF_writing`, checked with
//!   a compare-exchange so a mapping cannot start between the check and the clear.
//! - Foreign grants are mapped into fixed slots of the grant region (`mem.rs` says why it
//!   cannot collide with RAM). Map, unmap and copy are batched: one hypercall per batch, a
//!   status per op. A failed op releases its slot; the others' mappings are handed back to
//!   the caller, who unmaps them (a `ForeignMap` dropped without `unmap_batch` is unmapped on
//!   its own as a safety net and counted as such).
use alloc::collections::VecDeque;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicU64, Ordering};

use xen_hv::{CopyOp, CopyPtr, GrantError, MapReq, MemError, SwapOp};
use xen_sys_mini::grant_table::*;
use xen_sys_mini::hypercall::GRANT_TABLE_OP;
use xen_sys_mini::memory::XENMAPSPACE_GRANT_TABLE;
use xen_sys_mini::{DomId, GrantRef, DOMID_SELF};

use crate::hypercall::{self, XenResult};
use crate::mem;
use crate::shared::SharedMem;

/// Frames of our own table (512 v1 entries each).
const OWN_FRAMES: u32 = 4;
/// Region pages kept for our own table, before the mapping slots.
const OWN_AREA_PAGES: u64 = 64;
/// Mapping slots (one page each): the bound on foreign pages mapped at once.
pub const MAP_SLOTS: u32 = 65536;
/// Refs Xen's tools reserve (`GNTTAB_NR_RESERVED_ENTRIES`: console, xenstore).
const RESERVED_REFS: u32 = 8;

/// Why granting or ending access to one of our own pages failed (foreign grants fail with
/// `xen_hv::GrantError`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GntError {
    /// Our table has no free entry.
    NoFreeRef,
    /// The other side still has the page mapped or is copying: retry later.
    Busy,
    /// The ref is not one of ours in use.
    BadRef,
}

#[derive(Debug, Default, Clone, Copy)]
pub struct Counters {
    pub map_calls: u64,
    pub map_ops: u64,
    pub map_errors: u64,
    pub unmap_calls: u64,
    pub unmap_ops: u64,
    pub unmap_errors: u64,
    pub copy_calls: u64,
    pub copy_ops: u64,
    pub copy_errors: u64,
    pub mapped_now: u64,
    pub safety_net_unmaps: u64,
}

static MAP_CALLS: AtomicU64 = AtomicU64::new(0);
static MAP_OPS: AtomicU64 = AtomicU64::new(0);
static MAP_ERRORS: AtomicU64 = AtomicU64::new(0);
static UNMAP_CALLS: AtomicU64 = AtomicU64::new(0);
static UNMAP_OPS: AtomicU64 = AtomicU64::new(0);
static UNMAP_ERRORS: AtomicU64 = AtomicU64::new(0);
static COPY_CALLS: AtomicU64 = AtomicU64::new(0);
static COPY_OPS: AtomicU64 = AtomicU64::new(0);
static COPY_ERRORS: AtomicU64 = AtomicU64::new(0);
static SAFETY_NET: AtomicU64 = AtomicU64::new(0);

pub fn counters() -> Counters {
    let g = STATE.lock();
    Counters {
        map_calls: MAP_CALLS.load(Ordering::Relaxed),
        map_ops: MAP_OPS.load(Ordering::Relaxed),
        map_errors: MAP_ERRORS.load(Ordering::Relaxed),
        unmap_calls: UNMAP_CALLS.load(Ordering::Relaxed),
        unmap_ops: UNMAP_OPS.load(Ordering::Relaxed),
        unmap_errors: UNMAP_ERRORS.load(Ordering::Relaxed),
        copy_calls: COPY_CALLS.load(Ordering::Relaxed),
        copy_ops: COPY_OPS.load(Ordering::Relaxed),
        copy_errors: COPY_ERRORS.load(Ordering::Relaxed),
        mapped_now: g.as_ref().map_or(0, |s| u64::from(MAP_SLOTS) - s.free_slots.len() as u64),
        safety_net_unmaps: SAFETY_NET.load(Ordering::Relaxed),
    }
}

#[derive(Debug)]
struct State {
    table: SharedMem,
    free_refs: Vec<GrantRef>,
    free_slots: VecDeque<u32>,
    slot_base_gfn: u64,
}

static STATE: spin::Mutex<Option<State>> = spin::Mutex::new(None);

fn op_array<T>(cmd: u32, ops: &mut [T]) -> XenResult<u64> {
    // SAFETY: callers pass the element type grant_table.h defines for `cmd`.
    unsafe { hypercall::op_array(GRANT_TABLE_OP, cmd, ops) }
}

/// Sets up our grant table and the mapping slots.
pub fn init() -> Result<(), &'static str> {
    let mut q = GnttabQuerySize { dom: DOMID_SELF, ..Default::default() };
    op_array(GNTTABOP_QUERY_SIZE, core::slice::from_mut(&mut q)).map_err(|_| "GNTTABOP_query_size failed")?;
    if q.status != gntst::OKAY {
        return Err("GNTTABOP_query_size: bad status");
    }
    let frames = OWN_FRAMES.min(q.max_nr_frames).max(1);
    let base = mem::grant_region_base();
    for i in 0..frames {
        mem::add_to_physmap(XENMAPSPACE_GRANT_TABLE, u64::from(i), base + u64::from(i))
            .map_err(|_| "XENMEM_add_to_physmap(grant_table) failed")?;
    }
    let entries = frames * 512;
    // SAFETY: the frames just mapped at the region's start (identity-mapped by mem::init),
    // used only through this window.
    let table = unsafe { SharedMem::new(base << 12, (frames as usize) * 4096) };
    let free_refs = (RESERVED_REFS..entries).rev().collect();
    let free_slots = (0..MAP_SLOTS).collect();
    *STATE.lock() = Some(State { table, free_refs, free_slots, slot_base_gfn: base + OWN_AREA_PAGES });
    Ok(())
}

/// Our grant table's version (`GNTTABOP_get_version`).
pub fn version() -> XenResult<u32> {
    let mut v = GnttabGetVersion { dom: DOMID_SELF, ..Default::default() };
    op_array(GNTTABOP_GET_VERSION, core::slice::from_mut(&mut v)).map(|_| v.version)
}

// ---------------------------------------------------------------------------------------
// Granting our own pages

/// Grants `domid` access to our frame `gfn`.
pub fn grant_access(domid: DomId, gfn: u64, readonly: bool) -> Result<GrantRef, GntError> {
    let frame = u32::try_from(gfn).map_err(|_| GntError::BadRef)?;
    let mut g = STATE.lock();
    let s = g.as_mut().ok_or(GntError::NoFreeRef)?;
    let r = s.free_refs.pop().ok_or(GntError::NoFreeRef)?;
    let off = r as usize * 8;
    let _ = s.table.write(off + 2, &domid);
    let _ = s.table.write(off + 4, &frame);
    let flags = GTF_PERMIT_ACCESS | if readonly { GTF_READONLY } else { 0 };
    if let Ok(f) = s.table.atomic_u16(off) {
        // Release: domid and frame are visible before the entry is.
        f.store(flags, Ordering::Release);
    }
    Ok(r)
}

/// Ends access to one of our grants, unless the grantee still uses it (then `Busy`: the
/// caller keeps the page and retries later).
pub fn end_access(r: GrantRef) -> Result<(), GntError> {
    let mut g = STATE.lock();
    let s = g.as_mut().ok_or(GntError::BadRef)?;
    if r < RESERVED_REFS || r as usize * 8 >= s.table.len() {
        return Err(GntError::BadRef);
    }
    let f = s.table.atomic_u16(r as usize * 8).map_err(|_| GntError::BadRef)?;
    let mut cur = f.load(Ordering::Acquire);
    loop {
        if cur & GTF_TYPE_MASK == GTF_INVALID {
            return Err(GntError::BadRef);
        }
        if cur & (GTF_READING | GTF_WRITING) != 0 {
            return Err(GntError::Busy);
        }
        match f.compare_exchange(cur, 0, Ordering::AcqRel, Ordering::Acquire) {
            Ok(_) => break,
            Err(now) => cur = now,
        }
    }
    s.free_refs.push(r);
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Mapping foreign grants

/// One page of another domain mapped into a slot of the grant region.
#[derive(Debug)]
pub struct ForeignMap {
    slot: u32,
    paddr: u64,
    handle: GrantHandle,
    pub dom: DomId,
    pub gref: GrantRef,
    pub readonly: bool,
}

impl ForeignMap {
    /// Where the page is mapped in our guest-physical space: also its bus address for a
    /// device passed through to us, since Xen mirrors our p2m's grant entries
    /// (`p2m_grant_map_rw/ro`) into the IOMMU's tables for our devices.
    pub fn bus_addr(&self) -> u64 {
        self.paddr
    }

    /// The mapped page. Only through volatile accessors: the other domain can write it.
    pub fn mem(&self) -> SharedMem {
        // SAFETY: the slot is mapped (a successful GNTTABOP_map_grant_ref) until this value
        // is unmapped; the window is one page.
        unsafe { SharedMem::new(self.paddr, 4096) }
    }
}

impl Drop for ForeignMap {
    fn drop(&mut self) {
        // Safety net: a mapping nobody unmapped. One hypercall for one op; counted.
        SAFETY_NET.fetch_add(1, Ordering::Relaxed);
        let mut op = GnttabUnmapGrantRef { host_addr: self.paddr, dev_bus_addr: 0, handle: self.handle, status: 0 };
        UNMAP_CALLS.fetch_add(1, Ordering::Relaxed);
        UNMAP_OPS.fetch_add(1, Ordering::Relaxed);
        let ok = op_array(GNTTABOP_UNMAP_GRANT_REF, core::slice::from_mut(&mut op)).is_ok() && op.status == gntst::OKAY;
        release_slot(self.slot, ok);
    }
}

fn release_slot(slot: u32, reusable: bool) {
    if reusable {
        if let Some(s) = STATE.lock().as_mut() {
            s.free_slots.push_back(slot);
        }
    } else {
        // Xen still has something at that frame: never reuse the slot.
        UNMAP_ERRORS.fetch_add(1, Ordering::Relaxed);
    }
}

/// Maps every request with one `GNTTABOP_map_grant_ref` hypercall. Each result is the
/// mapping or why that op failed; a failure never affects the other ops.
pub fn map_batch(reqs: &[MapReq]) -> Vec<Result<ForeignMap, GrantError>> {
    let mut out: Vec<Result<ForeignMap, GrantError>> = Vec::with_capacity(reqs.len());
    if reqs.is_empty() {
        return out;
    }
    // Take slots first (under the lock), then issue the hypercall without it.
    let (slots, base) = {
        let mut g = STATE.lock();
        let Some(s) = g.as_mut() else {
            return reqs.iter().map(|_| Err(GrantError::NoSlot)).collect();
        };
        let slots: Vec<Option<u32>> = reqs.iter().map(|_| s.free_slots.pop_front()).collect();
        (slots, s.slot_base_gfn)
    };
    let mut ops: Vec<GnttabMapGrantRef> = Vec::with_capacity(reqs.len());
    let mut idx: Vec<usize> = Vec::with_capacity(reqs.len());
    for (i, (r, slot)) in reqs.iter().zip(&slots).enumerate() {
        if let Some(slot) = slot {
            ops.push(GnttabMapGrantRef {
                host_addr: (base + u64::from(*slot)) << 12,
                flags: GNTMAP_HOST_MAP | if r.readonly { GNTMAP_READONLY } else { 0 },
                ref_: r.gref,
                dom: r.dom,
                ..Default::default()
            });
            idx.push(i);
        }
    }
    MAP_CALLS.fetch_add(1, Ordering::Relaxed);
    MAP_OPS.fetch_add(ops.len() as u64, Ordering::Relaxed);
    let rc = op_array(GNTTABOP_MAP_GRANT_REF, &mut ops);
    let mut results: Vec<Option<Result<(u64, GrantHandle), GrantError>>> = reqs.iter().map(|_| None).collect();
    for (k, op) in ops.iter().enumerate() {
        let i = idx[k];
        results[i] = Some(match rc {
            Err(e) => Err(GrantError::Hypercall(e.0)),
            Ok(_) if op.status == gntst::OKAY => Ok((op.host_addr, op.handle)),
            Ok(_) => Err(GrantError::Status(op.status)),
        });
    }
    for ((r, slot), res) in reqs.iter().zip(slots).zip(results) {
        out.push(match (slot, res) {
            (Some(slot), Some(Ok((paddr, handle)))) => {
                Ok(ForeignMap { slot, paddr, handle, dom: r.dom, gref: r.gref, readonly: r.readonly })
            }
            (Some(slot), Some(Err(e))) => {
                MAP_ERRORS.fetch_add(1, Ordering::Relaxed);
                release_slot(slot, true);
                Err(e)
            }
            (Some(slot), None) => {
                release_slot(slot, true);
                Err(GrantError::NoSlot)
            }
            (None, _) => Err(GrantError::NoSlot),
        });
    }
    out
}

/// Unmaps every mapping with one `GNTTABOP_unmap_grant_ref` hypercall.
pub fn unmap_batch(maps: Vec<ForeignMap>) -> Vec<Result<(), GrantError>> {
    if maps.is_empty() {
        return Vec::new();
    }
    let mut ops: Vec<GnttabUnmapGrantRef> = maps
        .iter()
        .map(|m| GnttabUnmapGrantRef { host_addr: m.paddr, dev_bus_addr: 0, handle: m.handle, status: 0 })
        .collect();
    let slots: Vec<u32> = maps.iter().map(|m| m.slot).collect();
    // The batch below owns the unmapping now: disarm the safety net.
    for m in maps {
        core::mem::forget(m);
    }
    UNMAP_CALLS.fetch_add(1, Ordering::Relaxed);
    UNMAP_OPS.fetch_add(ops.len() as u64, Ordering::Relaxed);
    let rc = op_array(GNTTABOP_UNMAP_GRANT_REF, &mut ops);
    ops.iter()
        .zip(slots)
        .map(|(op, slot)| {
            let r = match rc {
                Err(e) => Err(GrantError::Hypercall(e.0)),
                Ok(_) if op.status == gntst::OKAY => Ok(()),
                Ok(_) => Err(GrantError::Status(op.status)),
            };
            release_slot(slot, r.is_ok());
            r
        })
        .collect()
}

// ---------------------------------------------------------------------------------------
// Copy

fn copy_ptr(p: CopyPtr) -> (GnttabCopyPtr, bool) {
    match p {
        CopyPtr::Gref { dom, gref, offset } => (GnttabCopyPtr { u: u64::from(gref), domid: dom, offset }, true),
        CopyPtr::Local { gfn, offset } => (GnttabCopyPtr { u: gfn, domid: DOMID_SELF, offset }, false),
    }
}

/// `gnttab_copy` for one op.
fn copy_op(op: &CopyOp) -> GnttabCopy {
    let (source, sg) = copy_ptr(op.src);
    let (dest, dg) = copy_ptr(op.dst);
    let flags = if sg { GNTCOPY_SOURCE_GREF } else { 0 } | if dg { GNTCOPY_DEST_GREF } else { 0 };
    GnttabCopy { source, dest, len: op.len, flags, status: 0 }
}

/// Runs every copy with one `GNTTABOP_copy` hypercall; per-op results.
pub fn copy_batch(ops: &[CopyOp]) -> Vec<Result<(), GrantError>> {
    if ops.is_empty() {
        return Vec::new();
    }
    let mut ops: Vec<GnttabCopy> = ops.iter().map(copy_op).collect();
    let ops = ops.as_mut_slice();
    COPY_CALLS.fetch_add(1, Ordering::Relaxed);
    COPY_OPS.fetch_add(ops.len() as u64, Ordering::Relaxed);
    let rc = op_array(GNTTABOP_COPY, ops);
    ops.iter()
        .map(|op| match rc {
            Err(e) => Err(GrantError::Hypercall(e.0)),
            Ok(_) if op.status == gntst::OKAY => Ok(()),
            Ok(_) => {
                COPY_ERRORS.fetch_add(1, Ordering::Relaxed);
                Err(GrantError::Status(op.status))
            }
        })
        .collect()
}

// ---------------------------------------------------------------------------------------
// Frame exchange (GNTTABOP_swap_frame: this repository's Xen patch, not stock Xen)

static SWAP_CALLS: AtomicU64 = AtomicU64::new(0);
static SWAP_OPS: AtomicU64 = AtomicU64::new(0);
/// 0 not probed, 1 available, 2 missing.
static SWAP_PROBE: core::sync::atomic::AtomicU8 = core::sync::atomic::AtomicU8::new(0);

/// Whether the hypervisor has `GNTTABOP_swap_frame`: a call with a count of 0 returns 0
/// on the patched hypervisor; stock Xen answers `-ENOSYS` (the HVM grant-op whitelist,
/// `hvm_grant_table_op()`). Probed once.
pub fn swap_available() -> bool {
    match SWAP_PROBE.load(Ordering::Relaxed) {
        1 => true,
        2 => false,
        _ => {
            let mut none: [GnttabSwapFrame; 0] = [];
            let ok = op_array(GNTTABOP_SWAP_FRAME, &mut none).is_ok();
            SWAP_PROBE.store(if ok { 1 } else { 2 }, Ordering::Relaxed);
            ok
        }
    }
}

/// (calls, ops) of `GNTTABOP_swap_frame`.
pub fn swap_counters() -> (u64, u64) {
    (SWAP_CALLS.load(Ordering::Relaxed), SWAP_OPS.load(Ordering::Relaxed))
}

/// Runs every exchange with one hypercall (Xen batches 16 per flush); per-op results.
pub fn swap_batch(ops: &[SwapOp]) -> Vec<Result<(), GrantError>> {
    if ops.is_empty() {
        return Vec::new();
    }
    let mut ops: Vec<GnttabSwapFrame> =
        ops.iter().map(|o| GnttabSwapFrame { gfn: o.gfn, ref_: o.gref, domid: o.dom, ..Default::default() }).collect();
    SWAP_CALLS.fetch_add(1, Ordering::Relaxed);
    SWAP_OPS.fetch_add(ops.len() as u64, Ordering::Relaxed);
    let rc = op_array(GNTTABOP_SWAP_FRAME, ops.as_mut_slice());
    ops.iter()
        .map(|op| match rc {
            Err(e) => Err(GrantError::Hypercall(e.0)),
            Ok(_) if op.status == gntst::OKAY => Ok(()),
            Ok(_) => Err(GrantError::Status(op.status)),
        })
        .collect()
}

/// The grant table as the runtime's `Grants` (one hypercall per batch).
#[derive(Debug, Default, Clone, Copy)]
pub struct Gnttab;

impl xen_hv::Grants for Gnttab {
    type Mapping = ForeignMap;

    fn map(&mut self, reqs: &[MapReq]) -> Vec<Result<ForeignMap, GrantError>> {
        map_batch(reqs)
    }
    fn unmap(&mut self, maps: Vec<ForeignMap>) -> Vec<Result<(), GrantError>> {
        unmap_batch(maps)
    }
    fn copy(&mut self, ops: &[CopyOp]) -> Vec<Result<(), GrantError>> {
        copy_batch(ops)
    }
    fn can_swap(&mut self) -> bool {
        swap_available()
    }
    fn swap(&mut self, ops: &[SwapOp]) -> Vec<Result<(), GrantError>> {
        swap_batch(ops)
    }
}

impl xen_hv::Page for ForeignMap {
    fn read(&self, off: usize, dst: &mut [u8]) -> Result<(), MemError> {
        self.mem().read_bytes(off, dst).map_err(|_| MemError::OutOfBounds)
    }
    fn write(&self, off: usize, src: &[u8]) -> Result<(), MemError> {
        if self.readonly {
            // Xen mapped it read-only in our p2m: a write would fault. Refuse it here.
            return Err(MemError::ReadOnly);
        }
        self.mem().write_bytes(off, src).map_err(|_| MemError::OutOfBounds)
    }
    fn load_u32(&self, off: usize) -> Result<u32, MemError> {
        let m = self.mem();
        let a = m.atomic_u32(off).map_err(|_| MemError::OutOfBounds)?;
        Ok(a.load(Ordering::Acquire))
    }
    fn store_u32(&self, off: usize, v: u32) -> Result<(), MemError> {
        if self.readonly {
            return Err(MemError::ReadOnly);
        }
        let m = self.mem();
        let a = m.atomic_u32(off).map_err(|_| MemError::OutOfBounds)?;
        a.store(v, Ordering::Release);
        Ok(())
    }
    fn fence(&self) {
        crate::shared::mb();
    }
}

/// Granting our own pages, as the runtime's `GrantAccess`.
impl xen_hv::GrantAccess for Gnttab {
    fn grant(&mut self, dom: DomId, gfn: u64, readonly: bool) -> Result<GrantRef, GrantError> {
        grant_access(dom, gfn, readonly).map_err(own_grant_err)
    }
    fn end_access(&mut self, gref: GrantRef) -> Result<(), GrantError> {
        end_access(gref).map_err(own_grant_err)
    }
}

fn own_grant_err(e: GntError) -> GrantError {
    match e {
        GntError::NoFreeRef => GrantError::Exhausted,
        GntError::Busy => GrantError::InUse,
        GntError::BadRef => GrantError::Status(gntst::BAD_GNTREF),
    }
}
