//! The grant tables of every domain, enforcing what Xen enforces.
use crate::Count;
use alloc::boxed::Box;
use alloc::collections::{BTreeMap, VecDeque};
use alloc::format;
use alloc::rc::Rc;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::cell::{Cell, RefCell};

use xen_sys_mini::grant_table::gntst;

use super::memory::*;
use crate::*;

#[derive(Debug)]
struct GrantEntry {
    page: MemPage,
    to: DomId,
    readonly: bool,
    maps: u32,
}

/// Hypercall and mapping counters of the fake grant table.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct GntCounters {
    pub map_calls: u64,
    pub map_ops: u64,
    pub unmap_calls: u64,
    pub unmap_ops: u64,
    pub copy_calls: u64,
    pub copy_ops: u64,
    pub mapped_now: u64,
    pub max_mapped: u64,
    /// Writes attempted through a read-only mapping.
    pub ro_violations: u64,
    /// Mappings dropped without being unmapped.
    pub leaked: u64,
    pub swap_calls: u64,
    pub swap_ops: u64,
    /// Exchanges that succeeded.
    pub swapped: u64,
}

#[derive(Debug, Default)]
struct GntShared {
    c: GntCounters,
}

/// A mapped grant.
#[derive(Debug)]
pub struct FakeMapping {
    page: MemPage,
    pub dom: DomId,
    pub gref: GrantRef,
    pub readonly: bool,
    shared: Rc<RefCell<GntShared>>,
    unmapped: Cell<bool>,
}

impl FakeMapping {
    /// The granted page itself (what a device's DMA reaches through the IOMMU).
    pub fn mem(&self) -> &MemPage {
        &self.page
    }
}

impl Page for FakeMapping {
    fn read(&self, off: usize, dst: &mut [u8]) -> Result<(), MemError> {
        self.page.read(off, dst)
    }
    fn write(&self, off: usize, src: &[u8]) -> Result<(), MemError> {
        if self.readonly {
            let mut s = self.shared.borrow_mut();
            s.c.ro_violations.inc();
            return Err(MemError::ReadOnly);
        }
        self.page.write(off, src)
    }
    fn load_u32(&self, off: usize) -> Result<u32, MemError> {
        self.page.load_u32(off)
    }
    fn store_u32(&self, off: usize, v: u32) -> Result<(), MemError> {
        if self.readonly {
            return Err(MemError::ReadOnly);
        }
        self.page.store_u32(off, v)
    }
    fn fence(&self) {}
}

impl Drop for FakeMapping {
    fn drop(&mut self) {
        if !self.unmapped.get() {
            let mut s = self.shared.borrow_mut();
            s.c.leaked.inc();
        }
    }
}

/// The fake grant table of every domain.
#[derive(Debug, Default)]
pub struct FakeGrants {
    entries: BTreeMap<(DomId, GrantRef), GrantEntry>,
    next_ref: BTreeMap<DomId, GrantRef>,
    shared: Rc<RefCell<GntShared>>,
    /// Our own frames (store memory) by GFN, for the copy path.
    pub locals: Locals,
    /// Mapping slots (Xen: our grant region): more live mappings fail with `NoSlot`.
    pub max_slots: u64,
    pub copy_limit: usize,
    /// The domain the `Grants`/`GrantAccess` trait calls act as (the driver domain,
    /// [`BACKEND`]); other actors (a mock netback) use the `*_as` methods.
    pub caller: DomId,
    next_gfn: Rc<Cell<u64>>,
    /// Whether the hypervisor is the patched one (`GNTTABOP_swap_frame`); stock by default.
    pub swap_supported: bool,
    /// Domains that are PV (not translated): the exchange refuses them (dom0 in the test
    /// bed).
    pub pv_domains: Vec<DomId>,
}

/// The caller's own frames by GFN, shared by the grant table and its frame allocators.
pub type Locals = Rc<RefCell<BTreeMap<u64, MemPage>>>;

/// Why a frontend could not end access.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndAccess {
    StillMapped,
    Unknown,
}

impl FakeGrants {
    pub fn new() -> Self {
        Self {
            max_slots: 1 << 20,
            copy_limit: 512,
            caller: BACKEND,
            next_gfn: Rc::new(Cell::new(0x8_0000)),
            ..Default::default()
        }
    }

    pub fn counters(&self) -> GntCounters {
        self.shared.borrow().c
    }

    /// `owner` grants `page` to `to`.
    pub fn grant(&mut self, owner: DomId, page: &MemPage, to: DomId, readonly: bool) -> GrantRef {
        let r = self.next_ref.entry(owner).or_insert(8);
        let gref = *r;
        *r = r.wrapping_add(1);
        self.entries.insert((owner, gref), GrantEntry { page: page.clone(), to, readonly, maps: 0 });
        gref
    }

    /// `owner` ends access to `gref`; refused while the backend has it mapped.
    pub fn end_access(&mut self, owner: DomId, gref: GrantRef) -> Result<(), EndAccess> {
        match self.entries.get(&(owner, gref)) {
            None => Err(EndAccess::Unknown),
            Some(e) if e.maps > 0 => Err(EndAccess::StillMapped),
            Some(_) => {
                self.entries.remove(&(owner, gref));
                Ok(())
            }
        }
    }

    /// Every page `owner` grants now (tests look for data that must not be there).
    pub fn granted_pages(&self, owner: DomId) -> Vec<MemPage> {
        self.entries.iter().filter(|((o, _), _)| *o == owner).map(|(_, e)| e.page.clone()).collect()
    }

    /// Every ref `owner` grants now.
    pub fn granted_refs(&self, owner: DomId) -> Vec<GrantRef> {
        self.entries.keys().filter(|(o, _)| *o == owner).map(|(_, r)| *r).collect()
    }

    pub fn live_grants(&self, owner: DomId) -> usize {
        self.entries.keys().filter(|(o, _)| *o == owner).count()
    }

    /// Drops every grant of a domain (it was destroyed); mappings stay valid until unmapped.
    pub fn forget_domain(&mut self, owner: DomId) {
        self.entries.retain(|(o, _), e| *o != owner || e.maps > 0);
    }

    fn count(&self, f: impl FnOnce(&mut GntCounters)) {
        f(&mut self.shared.borrow_mut().c);
    }

    /// The page behind our frame `gfn` (one of `locals`).
    pub fn local(&self, gfn: u64) -> Option<MemPage> {
        self.locals.borrow().get(&gfn).cloned()
    }

    /// An allocator of the caller's shareable frames, which this grant table can reach.
    pub fn shared_frames(&self) -> FakeSharedFrames {
        FakeSharedFrames { locals: Rc::clone(&self.locals), next_gfn: Rc::clone(&self.next_gfn) }
    }

    fn copy_target(&self, caller: DomId, p: &CopyPtr, write: bool) -> Result<(MemPage, usize), i16> {
        match *p {
            CopyPtr::Gref { dom, gref, offset } => {
                let e = self.entries.get(&(dom, gref)).ok_or(gntst::BAD_GNTREF)?;
                if e.to != caller {
                    return Err(gntst::PERMISSION_DENIED);
                }
                if write && e.readonly {
                    return Err(gntst::GENERAL_ERROR);
                }
                Ok((e.page.clone(), usize::from(offset)))
            }
            CopyPtr::Local { gfn, offset } => {
                let pg = self.local(gfn).ok_or(gntst::BAD_COPY_ARG)?;
                Ok((pg, usize::from(offset)))
            }
        }
    }
}

impl FakeGrants {
    /// `GNTTABOP_map_grant_ref` issued by domain `caller`.
    pub fn map_as(&mut self, caller: DomId, reqs: &[MapReq]) -> Vec<Result<FakeMapping, GrantError>> {
        self.count(|c| {
            c.map_calls += 1;
            c.map_ops += reqs.len() as u64;
        });
        let mut out = Vec::with_capacity(reqs.len());
        for r in reqs {
            let live = self.counters().mapped_now;
            let res = match self.entries.get_mut(&(r.dom, r.gref)) {
                None => Err(GrantError::Status(gntst::BAD_GNTREF)),
                Some(e) if e.to != caller => Err(GrantError::Status(gntst::PERMISSION_DENIED)),
                // Xen: "Attempt to write-pin a r/o grant entry".
                Some(e) if e.readonly && !r.readonly => Err(GrantError::Status(gntst::GENERAL_ERROR)),
                Some(_) if live >= self.max_slots => Err(GrantError::NoSlot),
                Some(e) => {
                    e.maps += 1;
                    Ok(FakeMapping {
                        page: e.page.clone(),
                        dom: r.dom,
                        gref: r.gref,
                        readonly: r.readonly,
                        shared: Rc::clone(&self.shared),
                        unmapped: Cell::new(false),
                    })
                }
            };
            if res.is_ok() {
                self.count(|c| {
                    c.mapped_now += 1;
                    c.max_mapped = c.max_mapped.max(c.mapped_now);
                });
            }
            out.push(res);
        }
        out
    }

    /// `GNTTABOP_unmap_grant_ref` (any caller: a mapping knows what it maps).
    pub fn unmap_any(&mut self, maps: Vec<FakeMapping>) -> Vec<Result<(), GrantError>> {
        self.count(|c| {
            c.unmap_calls += 1;
            c.unmap_ops += maps.len() as u64;
        });
        maps.into_iter()
            .map(|m| {
                m.unmapped.set(true);
                if let Some(e) = self.entries.get_mut(&(m.dom, m.gref)) {
                    e.maps = e.maps.saturating_sub(1);
                }
                self.count(|c| c.mapped_now -= 1);
                Ok(())
            })
            .collect()
    }

    /// `GNTTABOP_copy` issued by domain `caller`.
    pub fn copy_as(&mut self, caller: DomId, ops: &[CopyOp]) -> Vec<Result<(), GrantError>> {
        self.count(|c| {
            c.copy_calls += 1;
            c.copy_ops += ops.len() as u64;
        });
        ops.iter()
            .map(|op| {
                let (src, so) = self.copy_target(caller, &op.src, false).map_err(GrantError::Status)?;
                let (dst, d_off) = self.copy_target(caller, &op.dst, true).map_err(GrantError::Status)?;
                let len = usize::from(op.len);
                if so + len > PAGE || d_off + len > PAGE {
                    return Err(GrantError::Status(gntst::BAD_COPY_ARG));
                }
                let bytes = src.get(so, len);
                dst.set(d_off, &bytes);
                Ok(())
            })
            .collect()
    }
}

impl FakeGrants {
    /// Whether `page` has a reference besides its owner's: a mapping of any grant of it.
    fn page_busy(&self, page: &MemPage) -> bool {
        self.entries.values().any(|e| e.maps > 0 && e.page.same(page))
    }

    /// `GNTTABOP_swap_frame` issued by domain `caller`, with the patch's rules and statuses
    /// (xen/patches/0001-gnttab-swap-frame.patch): a PV or own domain is `bad_domain`, a
    /// reserved ref `bad_gntref`, anything but a writable grant to the caller
    /// `general_error`, a mapped grant or a frame someone else references `eagain`, a GFN
    /// that is not our RAM `bad_page`. A refused op changes nothing.
    pub fn swap_as(&mut self, caller: DomId, ops: &[SwapOp]) -> Vec<Result<(), GrantError>> {
        self.count(|c| {
            c.swap_calls += 1;
            c.swap_ops += ops.len() as u64;
        });
        ops.iter()
            .map(|op| {
                let st = |s: i16| Err(GrantError::Status(s));
                if op.dom == caller || self.pv_domains.contains(&op.dom) || self.pv_domains.contains(&caller) {
                    return st(gntst::BAD_DOMAIN);
                }
                if op.gref < 8 {
                    return st(gntst::BAD_GNTREF);
                }
                let Some(e) = self.entries.get(&(op.dom, op.gref)) else {
                    return st(gntst::GENERAL_ERROR);
                };
                if e.to != caller || e.readonly {
                    return st(gntst::GENERAL_ERROR);
                }
                if e.maps > 0 {
                    return st(gntst::EAGAIN);
                }
                let theirs = e.page.clone();
                let Some(ours) = self.local(op.gfn) else {
                    return st(gntst::BAD_PAGE);
                };
                if ours.same(&theirs) || self.page_busy(&ours) || self.page_busy(&theirs) {
                    return st(gntst::EAGAIN);
                }
                ours.swap_data(&theirs);
                self.count(|c| c.swapped += 1);
                Ok(())
            })
            .collect()
    }
}

impl Grants for FakeGrants {
    type Mapping = FakeMapping;

    fn map(&mut self, reqs: &[MapReq]) -> Vec<Result<FakeMapping, GrantError>> {
        self.map_as(self.caller, reqs)
    }
    fn unmap(&mut self, maps: Vec<FakeMapping>) -> Vec<Result<(), GrantError>> {
        self.unmap_any(maps)
    }
    fn copy(&mut self, ops: &[CopyOp]) -> Vec<Result<(), GrantError>> {
        self.copy_as(self.caller, ops)
    }
    fn copy_batch_limit(&self) -> usize {
        self.copy_limit
    }
    fn can_swap(&mut self) -> bool {
        self.swap_supported
    }
    fn swap(&mut self, ops: &[SwapOp]) -> Vec<Result<(), GrantError>> {
        if !self.swap_supported {
            return ops.iter().map(|_| Err(GrantError::Hypercall(xen_sys_mini::errno::ENOSYS))).collect();
        }
        self.swap_as(self.caller, ops)
    }
}

/// The caller granting its own frames (they must be `locals`: see `SharedFrames`).
impl GrantAccess for FakeGrants {
    fn grant(&mut self, dom: DomId, gfn: u64, readonly: bool) -> Result<GrantRef, GrantError> {
        let page = self.local(gfn).ok_or(GrantError::Status(gntst::BAD_PAGE))?;
        Ok(FakeGrants::grant(self, self.caller, &page, dom, readonly))
    }
    fn end_access(&mut self, gref: GrantRef) -> Result<(), GrantError> {
        FakeGrants::end_access(self, self.caller, gref).map_err(|e| match e {
            EndAccess::StillMapped => GrantError::InUse,
            EndAccess::Unknown => GrantError::Status(gntst::BAD_GNTREF),
        })
    }
}

/// A frame of the caller's that can be granted: a page of fake memory with a GFN.
#[derive(Debug, Clone)]
pub struct FakeShared {
    pub page: MemPage,
    pub gfn: u64,
}

impl Page for FakeShared {
    fn read(&self, off: usize, dst: &mut [u8]) -> Result<(), MemError> {
        self.page.read(off, dst)
    }
    fn write(&self, off: usize, src: &[u8]) -> Result<(), MemError> {
        self.page.write(off, src)
    }
    fn load_u32(&self, off: usize) -> Result<u32, MemError> {
        self.page.load_u32(off)
    }
    fn store_u32(&self, off: usize, v: u32) -> Result<(), MemError> {
        self.page.store_u32(off, v)
    }
    fn fence(&self) {}
}

impl SharedFrame for FakeShared {
    fn gfn(&self) -> u64 {
        self.gfn
    }
}

/// Allocates the caller's shareable frames where its grant table can reach them (`locals`),
/// so grants and copies by GFN work.
#[derive(Debug, Clone)]
pub struct FakeSharedFrames {
    locals: Locals,
    next_gfn: Rc<Cell<u64>>,
}

impl SharedFrames for FakeSharedFrames {
    type Shared = FakeShared;
    fn alloc_shared(&mut self) -> Option<FakeShared> {
        let gfn = self.next_gfn.get() + 1;
        self.next_gfn.set(gfn);
        let page = MemPage::new();
        self.locals.borrow_mut().insert(gfn, page.clone());
        Some(FakeShared { page, gfn })
    }
}
