use super::prelude::*;
use super::*;

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

impl Page for FakeMapping {
    fn read(&self, off: usize, dst: &mut [u8]) -> Result<(), MemError> {
        self.page.read(off, dst)
    }
    fn write(&self, off: usize, src: &[u8]) -> Result<(), MemError> {
        if self.readonly {
            let mut s = self.shared.borrow_mut();
            s.c.ro_violations = s.c.ro_violations.saturating_add(1);
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
            s.c.leaked = s.c.leaked.saturating_add(1);
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
    pub locals: BTreeMap<u64, MemPage>,
    /// Mapping slots (Xen: our grant region): more live mappings fail with `NoSlot`.
    pub max_slots: u64,
    pub copy_limit: usize,
}

/// Why a frontend could not end access.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndAccess {
    StillMapped,
    Unknown,
}

impl FakeGrants {
    pub fn new() -> Self {
        Self { max_slots: 1 << 20, copy_limit: 512, ..Default::default() }
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

    fn copy_target(&self, p: &CopyPtr, write: bool) -> Result<(MemPage, usize), i16> {
        match *p {
            CopyPtr::Gref { dom, gref, offset } => {
                let e = self.entries.get(&(dom, gref)).ok_or(gntst::BAD_GNTREF)?;
                if e.to != BACKEND {
                    return Err(gntst::PERMISSION_DENIED);
                }
                if write && e.readonly {
                    return Err(gntst::GENERAL_ERROR);
                }
                Ok((e.page.clone(), usize::from(offset)))
            }
            CopyPtr::Local { gfn, offset } => {
                let pg = self.locals.get(&gfn).ok_or(gntst::BAD_COPY_ARG)?;
                Ok((pg.clone(), usize::from(offset)))
            }
        }
    }
}

impl Grants for FakeGrants {
    type Mapping = FakeMapping;

    fn map(&mut self, reqs: &[MapReq]) -> Vec<Result<FakeMapping, GrantError>> {
        self.count(|c| {
            c.map_calls += 1;
            c.map_ops += reqs.len() as u64;
        });
        let mut out = Vec::with_capacity(reqs.len());
        for r in reqs {
            let live = self.counters().mapped_now;
            let res = match self.entries.get_mut(&(r.dom, r.gref)) {
                None => Err(GrantError::Status(gntst::BAD_GNTREF)),
                Some(e) if e.to != BACKEND => Err(GrantError::Status(gntst::PERMISSION_DENIED)),
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

    fn unmap(&mut self, maps: Vec<FakeMapping>) -> Vec<Result<(), GrantError>> {
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

    fn copy(&mut self, ops: &[CopyOp]) -> Vec<Result<(), GrantError>> {
        self.count(|c| {
            c.copy_calls += 1;
            c.copy_ops += ops.len() as u64;
        });
        ops.iter()
            .map(|op| {
                let (src, so) = self.copy_target(&op.src, false).map_err(GrantError::Status)?;
                let (dst, d_off) = self.copy_target(&op.dst, true).map_err(GrantError::Status)?;
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

    fn copy_batch_limit(&self) -> usize {
        self.copy_limit
    }
}
