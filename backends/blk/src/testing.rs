//! Test utilities (feature `test-utils`), shared by unit tests, integration tests,
//! proptests and the fuzzer (cf. virtio-queue's `mock.rs`):
//!
//! - [`FakeGrants`]: a grant table that enforces what Xen enforces (unknown refs, refs granted
//!   to another domain, write-mapping a read-only grant, copying into one, ending access while
//!   mapped) and counts hypercalls and live mappings; mappings of read-only grants refuse
//!   writes and count the attempt.
//! - [`FakeXenStore`], [`FakeEvtchn`].
//! - [`MockFrontend`]: behaves like Linux blkfront: xenstore handshake, single- and multi-page
//!   rings, several queues, native or x86_32 layout, persistent grants, direct and indirect
//!   requests, reconnects; plus raw access for hostile tests.
//! - [`Harness`]: a backend device, a fake hypervisor and frontends, driven step by step.
// Test scaffolding: the arithmetic and casts below are on the tests' own sizes and
// counters, not on anything a frontend controls in production.
#![allow(
    clippy::arithmetic_side_effects,
    clippy::cast_possible_truncation,
    clippy::too_many_arguments,
    clippy::missing_panics_doc
)]

use alloc::boxed::Box;
use alloc::collections::BTreeMap;
use alloc::format;
use alloc::rc::Rc;
use alloc::string::{String, ToString};
use alloc::vec;
use alloc::vec::Vec;
use core::cell::{Cell, RefCell};

use xen_sys_mini::grant_table::gntst;
use xen_sys_mini::io::blkif::*;
use xen_sys_mini::io::xenbus::XenbusState;

use crate::abi::{encode_request, encode_segment, Abi, RawBody, RawRequest, MAX_SLOT};
use crate::device::{Device, DeviceConfig};
use crate::hv::*;
use crate::ring::FrontRing;
use crate::store::{BlockStore, RamBacking, RamStore};

/// The driver domain's id in tests.
pub const BACKEND: DomId = 1;
pub const PAGE: usize = 4096;

type ReadHook = Box<dyn FnMut(&mut [u8; PAGE], usize, usize)>;

struct PageState {
    data: [u8; PAGE],
    /// Called after every read of the page (a frontend racing the backend).
    hook: Option<ReadHook>,
    reads: u64,
}

/// A page of fake guest memory, shared by whoever holds a clone.
#[derive(Clone)]
pub struct MemPage(Rc<RefCell<PageState>>);

impl core::fmt::Debug for MemPage {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("MemPage")
    }
}

impl Default for MemPage {
    fn default() -> Self {
        Self::new()
    }
}

impl MemPage {
    pub fn new() -> Self {
        MemPage(Rc::new(RefCell::new(PageState { data: [0; PAGE], hook: None, reads: 0 })))
    }
    pub fn bytes(&self) -> Vec<u8> {
        self.0.borrow().data.to_vec()
    }
    pub fn set(&self, off: usize, src: &[u8]) {
        if let Some(d) = self.0.borrow_mut().data.get_mut(off..).and_then(|d| d.get_mut(..src.len())) {
            d.copy_from_slice(src);
        }
    }
    pub fn get(&self, off: usize, len: usize) -> Vec<u8> {
        self.0.borrow().data.get(off..).and_then(|d| d.get(..len)).map(<[u8]>::to_vec).unwrap_or_default()
    }
    /// Installs a hook that runs after each read (offset, length).
    pub fn on_read(&self, hook: ReadHook) {
        self.0.borrow_mut().hook = Some(hook);
    }
    pub fn reads(&self) -> u64 {
        self.0.borrow().reads
    }
}

impl Page for MemPage {
    fn read(&self, off: usize, dst: &mut [u8]) -> Result<(), MemError> {
        let mut st = self.0.borrow_mut();
        let src = st.data.get(off..).and_then(|d| d.get(..dst.len())).ok_or(MemError::OutOfBounds)?;
        dst.copy_from_slice(src);
        st.reads = st.reads.wrapping_add(1);
        if let Some(mut h) = st.hook.take() {
            h(&mut st.data, off, dst.len());
            st.hook = Some(h);
        }
        Ok(())
    }
    fn write(&self, off: usize, src: &[u8]) -> Result<(), MemError> {
        let mut st = self.0.borrow_mut();
        let d = st.data.get_mut(off..).and_then(|d| d.get_mut(..src.len())).ok_or(MemError::OutOfBounds)?;
        d.copy_from_slice(src);
        Ok(())
    }
    fn load_u32(&self, off: usize) -> Result<u32, MemError> {
        let mut b = [0u8; 4];
        if !off.is_multiple_of(4) {
            return Err(MemError::OutOfBounds);
        }
        self.read(off, &mut b)?;
        Ok(u32::from_le_bytes(b))
    }
    fn store_u32(&self, off: usize, v: u32) -> Result<(), MemError> {
        if !off.is_multiple_of(4) {
            return Err(MemError::OutOfBounds);
        }
        self.write(off, &v.to_le_bytes())
    }
    fn fence(&self) {}
}

// ---------------------------------------------------------------------------------------
// Grants

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

// ---------------------------------------------------------------------------------------
// Event channels and xenstore

/// Event channels: frontends allocate unbound ports; the backend binds to them.
#[derive(Debug, Default)]
pub struct FakeEvtchn {
    unbound: BTreeMap<(DomId, EvtchnPort), ()>,
    bound: BTreeMap<EvtchnPort, (DomId, EvtchnPort)>,
    next: EvtchnPort,
    /// Notifications sent by the backend, per (frontend, frontend port).
    pub notified: BTreeMap<(DomId, EvtchnPort), u64>,
}

impl FakeEvtchn {
    pub fn alloc_unbound(&mut self, dom: DomId) -> EvtchnPort {
        self.next += 1;
        self.unbound.insert((dom, self.next), ());
        self.next
    }
    pub fn bound_count(&self) -> usize {
        self.bound.len()
    }
    pub fn notifications(&self, dom: DomId, port: EvtchnPort) -> u64 {
        self.notified.get(&(dom, port)).copied().unwrap_or(0)
    }
}

impl EventChannel for FakeEvtchn {
    fn bind(&mut self, remote: DomId, remote_port: EvtchnPort) -> Result<EvtchnPort, i32> {
        if self.unbound.remove(&(remote, remote_port)).is_none() {
            return Err(22);
        }
        self.next += 1;
        self.bound.insert(self.next, (remote, remote_port));
        Ok(self.next)
    }
    fn notify(&mut self, port: EvtchnPort) {
        if let Some(&k) = self.bound.get(&port) {
            *self.notified.entry(k).or_insert(0) += 1;
        }
    }
    fn close(&mut self, port: EvtchnPort) {
        self.bound.remove(&port);
    }
}

/// Xenstore as a flat map of paths.
#[derive(Debug, Default)]
pub struct FakeXenStore {
    pub tree: BTreeMap<String, String>,
    pub transactions: u64,
    /// Watches set: (path, token).
    pub watches: Vec<(String, String)>,
}

impl FakeXenStore {
    pub fn get(&self, path: &str) -> Option<&str> {
        self.tree.get(path).map(String::as_str)
    }
    pub fn set(&mut self, path: &str, v: &str) {
        self.tree.insert(path.to_string(), v.to_string());
    }
    pub fn exists(&self, path: &str) -> bool {
        let pre = format!("{path}/");
        self.tree.keys().any(|k| k == path || k.starts_with(&pre))
    }
    pub fn remove_tree(&mut self, path: &str) {
        let pre = format!("{path}/");
        self.tree.retain(|k, _| k != path && !k.starts_with(&pre));
    }
}

impl XenStore for FakeXenStore {
    fn read(&mut self, path: &str) -> Result<Option<String>, StoreErr> {
        Ok(self.tree.get(path).cloned())
    }
    fn write(&mut self, path: &str, value: &str) -> Result<(), StoreErr> {
        self.set(path, value);
        Ok(())
    }
    fn rm(&mut self, path: &str) -> Result<(), StoreErr> {
        self.remove_tree(path);
        Ok(())
    }
    fn directory(&mut self, path: &str) -> Result<Vec<String>, StoreErr> {
        let pre = format!("{path}/");
        let mut v: Vec<String> = self
            .tree
            .keys()
            .filter_map(|k| k.strip_prefix(&pre))
            .map(|r| r.split('/').next().unwrap_or("").to_string())
            .collect();
        v.dedup();
        Ok(v)
    }
    fn write_all(&mut self, pairs: &[(String, String)]) -> Result<(), StoreErr> {
        self.transactions += 1;
        for (k, v) in pairs {
            self.set(k, v);
        }
        Ok(())
    }
    fn watch(&mut self, path: &str, token: &str) -> Result<(), StoreErr> {
        self.watches.push((path.to_string(), token.to_string()));
        Ok(())
    }
    fn unwatch(&mut self, path: &str, token: &str) -> Result<(), StoreErr> {
        let before = self.watches.len();
        self.watches.retain(|(p, t)| p != path || t != token);
        if self.watches.len() == before {
            return Err(StoreErr::NotFound);
        }
        Ok(())
    }
}

/// Store memory the fake grant table can reach by GFN (copy-path tests).
#[derive(Debug)]
pub struct FrameBacking {
    pages: Vec<MemPage>,
    base_gfn: u64,
}

impl FrameBacking {
    /// `bytes` of zeroed store memory registered in `g` at GFNs from `base_gfn`.
    pub fn new(g: &mut FakeGrants, bytes: usize, base_gfn: u64) -> Self {
        let pages: Vec<MemPage> = (0..bytes.div_ceil(PAGE)).map(|_| MemPage::new()).collect();
        for (i, p) in pages.iter().enumerate() {
            g.locals.insert(base_gfn + i as u64, p.clone());
        }
        Self { pages, base_gfn }
    }
    pub fn bytes(&self, off: usize, len: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(len);
        let mut o = off;
        while out.len() < len {
            let n = (PAGE - o % PAGE).min(len - out.len());
            out.extend(self.pages.get(o / PAGE).map(|p| p.get(o % PAGE, n)).unwrap_or_else(|| vec![0; n]));
            o += n;
        }
        out
    }
}

impl RamBacking for FrameBacking {
    fn size(&self) -> u64 {
        (self.pages.len() * PAGE) as u64
    }
    fn to_page(&self, off: u64, page: &dyn Page, page_off: usize, len: usize) -> Result<(), MemError> {
        let data = self.bytes(off as usize, len);
        page.write(page_off, &data)
    }
    fn store_page(&mut self, off: u64, page: &dyn Page, page_off: usize, len: usize) -> Result<(), MemError> {
        let mut buf = vec![0u8; len];
        page.read(page_off, &mut buf)?;
        let mut o = off as usize;
        let mut done = 0;
        while done < len {
            let n = (PAGE - o % PAGE).min(len - done);
            self.pages.get(o / PAGE).ok_or(MemError::OutOfBounds)?.set(o % PAGE, &buf[done..done + n]);
            o += n;
            done += n;
        }
        Ok(())
    }
    fn zero(&mut self, off: u64, len: u64) {
        let mut o = off as usize;
        let end = (off + len) as usize;
        while o < end {
            let n = (PAGE - o % PAGE).min(end - o);
            if let Some(p) = self.pages.get(o / PAGE) {
                p.set(o % PAGE, &vec![0; n]);
            }
            o += n;
        }
    }
    fn gfn(&self, off: u64) -> Option<(u64, u16)> {
        let i = off / PAGE as u64;
        ((i as usize) < self.pages.len()).then(|| (self.base_gfn + i, (off % PAGE as u64) as u16))
    }
}

// ---------------------------------------------------------------------------------------
// The mock frontend

/// How the mock frontend configures itself (what Linux blkfront would choose).
#[derive(Debug, Clone, Copy)]
pub struct FrontendOpts {
    pub abi: Abi,
    pub ring_page_order: u32,
    pub queues: u32,
    pub persistent: bool,
    /// Largest segment count it uses in one request (> 11: indirect if offered).
    pub max_segments: u16,
}

impl Default for FrontendOpts {
    fn default() -> Self {
        Self { abi: Abi::Native, ring_page_order: 0, queues: 1, persistent: false, max_segments: 11 }
    }
}

/// What the frontend expects back for a request.
#[derive(Debug, Clone)]
struct Shadow {
    op: u8,
    /// Data pages and their grants (released after the response unless persistent).
    pages: Vec<(MemPage, GrantRef)>,
    /// Indirect descriptor pages.
    ind: Vec<(MemPage, GrantRef)>,
    /// For reads: where the data is (page index, offset, len).
    layout: Vec<(usize, usize, usize)>,
}

/// A completed request as the frontend sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Done {
    pub id: u64,
    pub op: u8,
    pub status: i16,
    /// READ data.
    pub data: Vec<u8>,
}

/// A Linux-like blkfront in domain `dom`.
#[derive(Debug)]
pub struct MockFrontend {
    pub dom: DomId,
    pub devid: u32,
    pub fe: String,
    pub be: String,
    pub opts: FrontendOpts,
    rings: Vec<FrontRing<MemPage>>,
    pub ring_pages: Vec<Vec<MemPage>>,
    ring_grefs: Vec<GrantRef>,
    pub ports: Vec<EvtchnPort>,
    /// Outstanding requests by id; a hostile frontend may reuse an id, so several.
    shadow: BTreeMap<u64, Vec<(usize, Shadow)>>,
    next_id: u64,
    /// Granted pages kept for reuse (persistent grants).
    pool: Vec<(MemPage, GrantRef)>,
    next_queue: usize,
    /// Grants the backend still had mapped when the frontend tried to end access.
    pub busy_grants: u64,
    /// Responses whose id or operation did not match an outstanding request.
    pub bogus_responses: u64,
    /// (id, operation, status, why) of each.
    pub bogus: Vec<(u64, u8, i16, &'static str)>,
}

impl MockFrontend {
    /// What libxl does for `xl block-attach <dom> ... backend=<dd>`: both directories.
    pub fn toolstack_attach(
        xs: &mut FakeXenStore,
        dom: DomId,
        devid: u32,
        params: &str,
        mode: &str,
    ) -> (String, String) {
        let fe = format!("/local/domain/{dom}/device/vbd/{devid}");
        let be = format!("/local/domain/{BACKEND}/backend/vbd/{dom}/{devid}");
        for (k, v) in [
            ("frontend", fe.as_str()),
            ("frontend-id", &dom.to_string()),
            ("online", "1"),
            ("removable", "0"),
            ("bootable", "1"),
            ("state", "1"),
            ("dev", "xvdb"),
            ("type", "phy"),
            ("mode", mode),
            ("device-type", "disk"),
            ("params", params),
        ] {
            xs.set(&format!("{be}/{k}"), v);
        }
        for (k, v) in [
            ("backend", be.as_str()),
            ("backend-id", &BACKEND.to_string()),
            ("state", "1"),
            ("virtual-device", &devid.to_string()),
            ("device-type", "disk"),
        ] {
            xs.set(&format!("{fe}/{k}"), v);
        }
        (fe, be)
    }

    pub fn new(dom: DomId, devid: u32, fe: String, be: String, opts: FrontendOpts) -> Self {
        Self {
            dom,
            devid,
            fe,
            be,
            opts,
            rings: Vec::new(),
            ring_pages: Vec::new(),
            ring_grefs: Vec::new(),
            ports: Vec::new(),
            shadow: BTreeMap::new(),
            next_id: 0x1000,
            pool: Vec::new(),
            next_queue: 0,
            busy_grants: 0,
            bogus_responses: 0,
            bogus: Vec::new(),
        }
    }

    pub fn backend_state(&self, xs: &FakeXenStore) -> Option<u32> {
        xs.get(&format!("{}/state", self.be)).and_then(crate::config::parse_u32)
    }

    fn be_u32(&self, xs: &FakeXenStore, k: &str) -> u32 {
        xs.get(&format!("{}/{k}", self.be)).and_then(crate::config::parse_u32).unwrap_or(0)
    }

    /// blkfront's `talk_to_blkback`: rings, grants, event channels, keys, Initialised.
    pub fn connect(&mut self, xs: &mut FakeXenStore, g: &mut FakeGrants, ev: &mut FakeEvtchn) {
        let order = self.opts.ring_page_order.min(self.be_u32(xs, "max-ring-page-order"));
        let nq = self.opts.queues.min(self.be_u32(xs, "multi-queue-max-queues").max(1));
        self.opts.ring_page_order = order;
        self.opts.queues = nq;
        let fe = self.fe.clone();
        for q in 0..nq {
            let dir = if nq == 1 { fe.clone() } else { format!("{fe}/queue-{q}") };
            let pages: Vec<MemPage> = (0..(1u32 << order)).map(|_| MemPage::new()).collect();
            let mut refs = Vec::new();
            for (i, p) in pages.iter().enumerate() {
                let r = g.grant(self.dom, p, BACKEND, false);
                refs.push(r);
                let key = if order == 0 { String::from("ring-ref") } else { format!("ring-ref{i}") };
                xs.set(&format!("{dir}/{key}"), &r.to_string());
            }
            self.ring_grefs.extend(&refs);
            let ring = FrontRing::init(pages.clone(), self.opts.abi).unwrap_or_else(|_| panic!("ring init"));
            self.rings.push(ring);
            self.ring_pages.push(pages);
            let port = ev.alloc_unbound(self.dom);
            self.ports.push(port);
            xs.set(&format!("{dir}/event-channel"), &port.to_string());
        }
        if order > 0 {
            xs.set(&format!("{fe}/ring-page-order"), &order.to_string());
        }
        if nq > 1 {
            xs.set(&format!("{fe}/multi-queue-num-queues"), &nq.to_string());
        }
        xs.set(&format!("{fe}/protocol"), if self.opts.abi == Abi::X86_32 { "x86_32-abi" } else { "x86_64-abi" });
        xs.set(&format!("{fe}/feature-persistent"), if self.opts.persistent { "1" } else { "0" });
        xs.set(&format!("{fe}/state"), "3");
    }

    /// blkfront sees the backend Connected and goes Connected too.
    pub fn connected(&mut self, xs: &mut FakeXenStore) -> bool {
        if self.backend_state(xs) == Some(4) {
            xs.set(&format!("{}/state", self.fe), "4");
            true
        } else {
            false
        }
    }

    pub fn set_state(&self, xs: &mut FakeXenStore, s: XenbusState) {
        xs.set(&format!("{}/state", self.fe), &(s as u32).to_string());
    }

    /// blkfront's teardown: ends access to rings (refused while the backend still maps
    /// them) and forgets its rings; returns how many grants were still mapped.
    pub fn release_rings(&mut self, g: &mut FakeGrants) -> usize {
        let mut busy = 0;
        for r in core::mem::take(&mut self.ring_grefs) {
            if g.end_access(self.dom, r).is_err() {
                busy += 1;
            }
        }
        for (_, r) in core::mem::take(&mut self.pool) {
            if g.end_access(self.dom, r).is_err() {
                busy += 1;
            }
        }
        self.rings.clear();
        self.ring_pages.clear();
        self.ports.clear();
        self.shadow.clear();
        busy
    }

    pub fn sectors(&self, xs: &FakeXenStore) -> u64 {
        xs.get(&format!("{}/sectors", self.be)).and_then(|v| v.trim().parse().ok()).unwrap_or(0)
    }

    fn data_page(&mut self, g: &mut FakeGrants, readonly: bool) -> (MemPage, GrantRef) {
        if self.opts.persistent {
            if let Some(p) = self.pool.pop() {
                return p;
            }
            let p = MemPage::new();
            let r = g.grant(self.dom, &p, BACKEND, false);
            return (p, r);
        }
        let p = MemPage::new();
        let r = g.grant(self.dom, &p, BACKEND, readonly);
        (p, r)
    }

    fn release(&mut self, g: &mut FakeGrants, pages: Vec<(MemPage, GrantRef)>) {
        for (p, r) in pages {
            if self.opts.persistent {
                self.pool.push((p, r));
            } else if g.end_access(self.dom, r).is_err() {
                self.busy_grants += 1;
            }
        }
    }

    fn queue(&mut self) -> usize {
        let q = self.next_queue % self.rings.len().max(1);
        self.next_queue = self.next_queue.wrapping_add(1);
        q
    }

    /// Number of request slots free on queue `q`.
    pub fn free_slots(&self, q: usize) -> u32 {
        self.rings.get(q).map_or(0, FrontRing::free)
    }

    fn uses_indirect(&self, xs: &FakeXenStore, nsegs: usize) -> bool {
        nsegs > BLKIF_MAX_SEGMENTS_PER_REQUEST
            && u32::from(self.opts.max_segments) > 11
            && self.be_u32(xs, "feature-max-indirect-segments") > 11
    }

    /// Queues a READ or WRITE of `len` bytes at `sector` (one request: direct up to 11
    /// pages, indirect above if the backend offers it). `data` is the WRITE payload.
    /// `page_off` shifts the data within the first page (sector aligned).
    pub fn rw(
        &mut self,
        xs: &FakeXenStore,
        g: &mut FakeGrants,
        write: bool,
        sector: u64,
        len: usize,
        data: Option<&[u8]>,
        page_off: usize,
    ) -> u64 {
        let mut layout = Vec::new();
        let mut left = len;
        let mut off = page_off;
        while left > 0 {
            let n = (PAGE - off).min(left);
            layout.push((layout.len(), off, n));
            left -= n;
            off = 0;
        }
        let mut pages = Vec::new();
        let mut segs = Vec::new();
        let mut pos = 0;
        for &(_, o, n) in &layout {
            let (p, r) = self.data_page(g, write);
            if let Some(d) = data {
                p.set(o, &d[pos..pos + n]);
            }
            pos += n;
            segs.push(BlkifRequestSegment {
                gref: r,
                first_sect: (o / 512) as u8,
                last_sect: ((o + n) / 512 - 1) as u8,
            });
            pages.push((p, r));
        }
        let op = if write { BLKIF_OP_WRITE } else { BLKIF_OP_READ };
        let id = self.next_id;
        self.next_id += 1;
        let q = self.queue();
        let mut ind = Vec::new();
        let raw = if self.uses_indirect(xs, segs.len()) {
            let mut grefs = [0u32; BLKIF_MAX_INDIRECT_PAGES_PER_REQUEST];
            for (i, chunk) in segs.chunks(BLKIF_SEGS_PER_INDIRECT_FRAME).enumerate() {
                let (p, r) = self.data_page(g, true);
                for (j, s) in chunk.iter().enumerate() {
                    p.set(j * 8, &encode_segment(s));
                }
                grefs[i] = r;
                ind.push((p, r));
            }
            RawRequest {
                operation: BLKIF_OP_INDIRECT,
                id,
                body: RawBody::Indirect { indirect_op: op, nr_segments: segs.len() as u16, sector, handle: 0, grefs },
            }
        } else {
            let mut seg = [BlkifRequestSegment::default(); 11];
            for (d, s) in seg.iter_mut().zip(&segs) {
                *d = *s;
            }
            RawRequest {
                operation: op,
                id,
                body: RawBody::Rw { nr_segments: segs.len() as u8, handle: 0, sector, seg },
            }
        };
        self.put(q, &encode_request(self.opts.abi, &raw));
        self.shadow_insert(id, (q, Shadow { op, pages, ind, layout }));
        id
    }

    /// Queues FLUSH_DISKCACHE (no data) or DISCARD.
    pub fn simple(&mut self, operation: u8, sector: u64, nr_sectors: u64, secure: bool) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        let body = if operation == BLKIF_OP_DISCARD {
            RawBody::Discard { flag: if secure { BLKIF_DISCARD_SECURE } else { 0 }, handle: 0, sector, nr_sectors }
        } else {
            RawBody::Rw { nr_segments: 0, handle: 0, sector, seg: [BlkifRequestSegment::default(); 11] }
        };
        let q = self.queue();
        self.put(q, &encode_request(self.opts.abi, &RawRequest { operation, id, body }));
        self.shadow_insert(id, (q, Shadow { op: operation, pages: Vec::new(), ind: Vec::new(), layout: Vec::new() }));
        id
    }

    /// Queues raw slot bytes (hostile). The response is matched by `id` = `expect_id`,
    /// operation `expect_op`.
    pub fn raw(&mut self, q: usize, slot: &[u8; MAX_SLOT], expect_id: u64, expect_op: u8) -> u32 {
        let idx = self.put(q, slot);
        self.shadow_insert(
            expect_id,
            (q, Shadow { op: expect_op, pages: Vec::new(), ind: Vec::new(), layout: Vec::new() }),
        );
        idx
    }

    fn put(&mut self, q: usize, slot: &[u8; MAX_SLOT]) -> u32 {
        self.rings.get_mut(q).and_then(|r| r.put_request(slot).ok()).unwrap_or(0)
    }

    /// Publishes queued requests on every queue.
    pub fn push(&mut self) {
        for r in &mut self.rings {
            let _ = r.push_requests();
        }
    }

    pub fn ring(&mut self, q: usize) -> Option<&mut FrontRing<MemPage>> {
        self.rings.get_mut(q)
    }

    /// Collects responses, copies READ data out, releases grants.
    pub fn complete(&mut self, g: &mut FakeGrants) -> Vec<Done> {
        let mut out = Vec::new();
        for q in 0..self.rings.len() {
            let rsps = self.rings.get_mut(q).and_then(|r| r.take_responses().ok()).unwrap_or_default();
            for (id, op, status) in rsps {
                // Each response answers one distinct outstanding request with this id,
                // queue and operation.
                let entry = self.shadow.get_mut(&id).and_then(|v| {
                    let i = v.iter().position(|(sq, sh)| *sq == q && sh.op == op)?;
                    Some(v.remove(i))
                });
                if self.shadow.get(&id).is_some_and(Vec::is_empty) {
                    self.shadow.remove(&id);
                }
                let Some((_, sh)) = entry else {
                    self.bogus_responses += 1;
                    self.bogus.push((id, op, status, "no outstanding request with this id, queue and operation"));
                    continue;
                };
                let mut data = Vec::new();
                if sh.op == BLKIF_OP_READ && status == BLKIF_RSP_OKAY {
                    for &(i, o, n) in &sh.layout {
                        data.extend(sh.pages[i].0.get(o, n));
                    }
                }
                self.release(g, sh.pages);
                self.release(g, sh.ind);
                out.push(Done { id, op, status, data });
            }
        }
        out
    }

    fn shadow_insert(&mut self, id: u64, v: (usize, Shadow)) {
        self.shadow.entry(id).or_default().push(v);
    }

    pub fn outstanding(&self) -> usize {
        self.shadow.values().map(Vec::len).sum()
    }
}

// ---------------------------------------------------------------------------------------
// Harness

/// The backend's store in tests.
pub type TestStore = RamStore<Vec<u8>, Rc<FakeMapping>>;
pub type TestDevice = Device<FakeMapping, TestStore>;

/// A fake hypervisor with a backend device per frontend.
#[derive(Debug, Default)]
pub struct Harness {
    pub xs: FakeXenStore,
    pub g: FakeGrants,
    pub ev: FakeEvtchn,
}

impl Harness {
    pub fn new() -> Self {
        Self { xs: FakeXenStore::default(), g: FakeGrants::new(), ev: FakeEvtchn::default() }
    }

    /// libxl attaches a `size`-byte RAM disk to `dom`; returns the backend device (probed:
    /// InitWait) and the frontend.
    pub fn attach(
        &mut self,
        dom: DomId,
        devid: u32,
        size: usize,
        read_only: bool,
        cfg: DeviceConfig,
        opts: FrontendOpts,
    ) -> (TestDevice, MockFrontend) {
        let (fe, be) =
            MockFrontend::toolstack_attach(&mut self.xs, dom, devid, "ram", if read_only { "r" } else { "w" });
        let store = RamStore::new(vec![0u8; size], read_only);
        let mut dev = Device::new(&mut self.xs, &be, store, cfg).unwrap_or_else(|e| panic!("device: {e}"));
        dev.watch(&mut self.xs, &be).unwrap_or_else(|e| panic!("watch: {e}"));
        dev.update(&mut self.xs, &mut self.g, &mut self.ev).unwrap_or_else(|e| panic!("probe: {e}"));
        (dev, MockFrontend::new(dom, devid, fe, be, opts))
    }

    /// `attach` with any store.
    pub fn attach_store<S: BlockStore<Rc<FakeMapping>>>(
        &mut self,
        dom: DomId,
        devid: u32,
        store: S,
        mode: &str,
        cfg: DeviceConfig,
        opts: FrontendOpts,
    ) -> (Device<FakeMapping, S>, MockFrontend) {
        let (fe, be) = MockFrontend::toolstack_attach(&mut self.xs, dom, devid, "custom", mode);
        let mut dev = Device::new(&mut self.xs, &be, store, cfg).unwrap_or_else(|e| panic!("device: {e}"));
        dev.watch(&mut self.xs, &be).unwrap_or_else(|e| panic!("watch: {e}"));
        dev.update(&mut self.xs, &mut self.g, &mut self.ev).unwrap_or_else(|e| panic!("probe: {e}"));
        (dev, MockFrontend::new(dom, devid, fe, be, opts))
    }

    /// Runs the handshake to Connected on both sides.
    pub fn connect<S: BlockStore<Rc<FakeMapping>>>(
        &mut self,
        dev: &mut Device<FakeMapping, S>,
        fe: &mut MockFrontend,
    ) -> bool {
        fe.connect(&mut self.xs, &mut self.g, &mut self.ev);
        let _ = dev.update(&mut self.xs, &mut self.g, &mut self.ev);
        let ok = fe.connected(&mut self.xs);
        let _ = dev.update(&mut self.xs, &mut self.g, &mut self.ev);
        ok
    }

    /// Pushes the frontend's requests, runs the backend, collects responses.
    pub fn run<S: BlockStore<Rc<FakeMapping>>>(
        &mut self,
        dev: &mut Device<FakeMapping, S>,
        fe: &mut MockFrontend,
    ) -> Vec<Done> {
        fe.push();
        let mut out = Vec::new();
        for _ in 0..64 {
            let r = dev.process(&mut self.xs, &mut self.g, &mut self.ev);
            out.extend(fe.complete(&mut self.g));
            if !r.more && fe.outstanding() == 0 {
                break;
            }
            if !r.more && r.requests == 0 {
                break;
            }
        }
        out
    }

    pub fn update<S: BlockStore<Rc<FakeMapping>>>(
        &mut self,
        dev: &mut Device<FakeMapping, S>,
    ) -> crate::device::UpdateOutcome {
        dev.update(&mut self.xs, &mut self.g, &mut self.ev).unwrap_or_default()
    }
}

/// Deterministic test data.
pub fn pattern(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

// ---------------------------------------------------------------------------------------
// Fuzzing

/// Reads the fuzzer's bytes as parameters; runs out gracefully.
struct Bytes<'a> {
    d: &'a [u8],
}

impl Bytes<'_> {
    fn u8(&mut self) -> u8 {
        match self.d.split_first() {
            Some((b, rest)) => {
                self.d = rest;
                *b
            }
            None => 0,
        }
    }
    fn u16(&mut self) -> u16 {
        u16::from_le_bytes([self.u8(), self.u8()])
    }
    fn u32(&mut self) -> u32 {
        u32::from_le_bytes([self.u8(), self.u8(), self.u8(), self.u8()])
    }
    fn u64(&mut self) -> u64 {
        u64::from(self.u32()) | (u64::from(self.u32()) << 32)
    }
    fn empty(&self) -> bool {
        self.d.is_empty()
    }
}

/// What one fuzz input did (for the corpus replay test's assertions).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct FuzzReport {
    pub commands: u32,
    pub verified_reads: u32,
    pub responses: u32,
}

/// One fuzz case: a frontend driven by `data` ("mostly valid, rarely invalid": valid
/// reads and writes checked against a model, raw slots, corrupted requests, garbage
/// indirect pages, bogus ring indices, state changes), then teardown. Panics on any broken
/// invariant: unknown response ids, data that differs from the model on a clean run,
/// mappings or event channels left behind.
pub fn fuzz_ring(data: &[u8]) -> FuzzReport {
    let mut b = Bytes { d: data };
    let cfg_byte = b.u8();
    let abi = if cfg_byte & 1 == 1 { Abi::X86_32 } else { Abi::Native };
    let persistent = cfg_byte & 2 != 0;
    let copy = cfg_byte & 4 != 0;
    let order = u32::from((cfg_byte >> 3) & 3);
    let queues = 1 + u32::from((cfg_byte >> 5) & 1);
    let mut h = Harness::new();
    let mut cfg = DeviceConfig::default();
    cfg.adv.max_indirect_segments = 64;
    cfg.max_inflight = 16;
    cfg.persistent_cap = 32;
    if copy {
        cfg.path = crate::engine::DataPath::Copy;
    }
    const DISK: usize = 1 << 20;
    let backing = FrameBacking::new(&mut h.g, DISK, 0x4_0000);
    let store: RamStore<FrameBacking, Rc<FakeMapping>> = RamStore::new(backing, false);
    let opts = FrontendOpts { abi, ring_page_order: order, queues, persistent, max_segments: 64 };
    let (mut dev, mut fe) = h.attach_store(2, 51712, store, "w", cfg, opts);
    assert!(h.connect(&mut dev, &mut fe), "connect");
    let mut model = vec![0u8; DISK];
    let mut clean = true;
    let mut rep = FuzzReport::default();
    let mut reads: BTreeMap<u64, (usize, usize)> = BTreeMap::new();
    // blkif orders nothing across queues (nor overlapping writes in flight at once): a
    // read, or a write overlapping one in flight, is only issued once earlier writes are
    // done, so the model's order is the backend's.
    let mut writes_outstanding = false;
    let mut in_flight_writes: Vec<(usize, usize)> = Vec::new();
    let mut forged = false;
    while !b.empty() && rep.commands < 256 {
        rep.commands += 1;
        let cmd = b.u8() % 16;
        let q = usize::from(b.u8()) % (queues as usize);
        let overlap = {
            let mut p = Bytes { d: b.d };
            let pages = 1 + usize::from(p.u8() % 24);
            let off = usize::from(p.u8() % 8) * 512;
            let len = (pages * PAGE - off).min(DISK / 2);
            let s = (u64::from(p.u16()) % ((DISK - len) as u64 / 512)) as usize * 512;
            cmd < 4 && in_flight_writes.iter().any(|&(a, e)| s < e && a < s + len)
        };
        // Reads and discards wait for earlier writes and discards; writes wait only for
        // overlapping ones.
        if fe.free_slots(q) == 0 || (writes_outstanding && ((4..=7).contains(&cmd) || cmd == 11)) || overlap {
            writes_outstanding = false;
            in_flight_writes.clear();
            let done = h.run(&mut dev, &mut fe);
            rep.responses += done.len() as u32;
            check_reads(&done, &mut reads, &model, clean, &mut rep);
        }
        match cmd {
            // Valid writes and reads (most of the input).
            0..=7 => {
                let pages = 1 + usize::from(b.u8() % 24);
                let off = usize::from(b.u8() % 8) * 512;
                let len = (pages * PAGE - off).min(DISK / 2);
                let sector = u64::from(b.u16()) % ((DISK - len) as u64 / 512);
                let write = cmd < 4;
                if write {
                    let d = pattern(u64::from(b.u16()), len);
                    fe.rw(&h.xs, &mut h.g, true, sector, len, Some(&d), off);
                    // A write that is refused (e.g. > 11 direct pages without indirect)
                    // leaves the model as it was: only successful ones count, checked below.
                    model_write(&mut model, sector, &d, &mut reads);
                    writes_outstanding = true;
                    in_flight_writes.push((sector as usize * 512, sector as usize * 512 + len));
                } else {
                    let id = fe.rw(&h.xs, &mut h.g, false, sector, len, None, off);
                    reads.insert(id, (sector as usize * 512, len));
                }
            }
            8 => {
                let mut slot = [0u8; MAX_SLOT];
                for x in slot.iter_mut() {
                    *x = b.u8();
                }
                let raw = crate::abi::decode_request(abi, &slot);
                // A random READ may name any of our grants, the ring pages included, and
                // overwrite them with disk data: after that our own ring is garbage.
                if raw.operation == BLKIF_OP_READ || raw.operation == BLKIF_OP_INDIRECT {
                    forged = true;
                }
                fe.raw(q, &slot, raw.id, crate::request::rsp_op_of(&raw));
                clean = false;
            }
            9 => {
                // A valid request with one byte changed, on a page of its own (never the
                // ring: a corrupted segment count can only reach garbage refs).
                let page = MemPage::new();
                let gref = h.g.grant(fe.dom, &page, BACKEND, false);
                let r = RawRequest {
                    operation: BLKIF_OP_READ,
                    id: b.u64(),
                    body: RawBody::Rw {
                        nr_segments: 1,
                        handle: 0,
                        sector: 0,
                        seg: [BlkifRequestSegment { gref, first_sect: 0, last_sect: 7 }; 11],
                    },
                };
                let mut slot = encode_request(abi, &r);
                let pos = usize::from(b.u8()) % abi.slot_size();
                slot[pos] ^= b.u8() | 1;
                let raw = crate::abi::decode_request(abi, &slot);
                // The flipped byte may have turned our page's ref into the ring's.
                let ours = matches!(raw.body, RawBody::Rw { seg, .. } if seg[0].gref == gref);
                if raw.operation == BLKIF_OP_INDIRECT || (raw.operation == BLKIF_OP_READ && !ours) {
                    forged = true;
                }
                fe.raw(q, &slot, raw.id, crate::request::rsp_op_of(&raw));
                clean = false;
            }
            10 => {
                // An indirect request whose descriptor page is garbage.
                let page = MemPage::new();
                let garbage: Vec<u8> = (0..PAGE).map(|_| b.u8()).collect();
                page.set(0, &garbage);
                let gref = h.g.grant(fe.dom, &page, BACKEND, true);
                let nseg = b.u16() % 80;
                let r = RawRequest {
                    operation: BLKIF_OP_INDIRECT,
                    id: b.u64(),
                    body: RawBody::Indirect {
                        indirect_op: b.u8() % 3,
                        nr_segments: nseg,
                        sector: u64::from(b.u16()),
                        handle: 0,
                        grefs: [gref; 8],
                    },
                };
                if let RawBody::Indirect { indirect_op: BLKIF_OP_READ, .. } = r.body {
                    forged = true;
                }
                let raw_bytes = encode_request(abi, &r);
                fe.raw(q, &raw_bytes, r.id, crate::request::rsp_op_of(&r));
                clean = false;
            }
            11 => {
                let sector = u64::from(b.u16()) % (DISK as u64 / 512);
                let n = u64::from(b.u8());
                let secure = b.u8() & 1 == 1;
                let op = if b.u8() & 1 == 1 { BLKIF_OP_DISCARD } else { BLKIF_OP_FLUSH_DISKCACHE };
                fe.simple(op, sector, n, secure);
                if op == BLKIF_OP_DISCARD && sector + n <= (DISK / 512) as u64 {
                    let s = sector as usize * 512;
                    let e = s + n as usize * 512;
                    model[s..e].fill(0);
                    reads.retain(|_, (o, l)| *o + *l <= s || *o >= e);
                    // A discard is a write for ordering purposes.
                    writes_outstanding = true;
                    in_flight_writes.push((s, e));
                }
            }
            12 => {
                // Bogus req_prod: far ahead disconnects the frontend; a little ahead makes
                // the backend consume stale slots. Either way, stop here.
                forged = true;
                let v = b.u32();
                if let Some(r) = fe.ring(q) {
                    let _ = r.force_req_prod(v);
                }
                clean = false;
                let _ = h.run(&mut dev, &mut fe);
                break;
            }
            _ => {
                writes_outstanding = false;
                in_flight_writes.clear();
                let done = h.run(&mut dev, &mut fe);
                rep.responses += done.len() as u32;
                check_reads(&done, &mut reads, &model, clean, &mut rep);
            }
        }
    }
    let done = h.run(&mut dev, &mut fe);
    rep.responses += done.len() as u32;
    check_reads(&done, &mut reads, &model, clean, &mut rep);
    // A frontend that forged `req_prod` made the backend answer slots it never filled:
    // those answers are expected. Otherwise every response must match a request.
    assert!(forged || fe.bogus.is_empty(), "responses that match no outstanding request: {:?}", fe.bogus);
    // Teardown: the frontend closes; nothing of it may stay mapped or bound.
    fe.set_state(&mut h.xs, XenbusState::Closed);
    h.update(&mut dev);
    assert!(dev.connection().is_none());
    let c = h.g.counters();
    assert_eq!(c.mapped_now, 0, "mappings left after disconnect");
    assert_eq!(c.leaked, 0, "mappings dropped without unmap");
    assert_eq!(c.ro_violations, 0, "a write through a read-only mapping");
    assert_eq!(h.ev.bound_count(), 0, "event channels left bound");
    rep
}

/// The model follows writes in submission order; a read checks against the model as of
/// its completion, so reads overlapping a later write are dropped from checking.
fn model_write(model: &mut [u8], sector: u64, d: &[u8], reads: &mut BTreeMap<u64, (usize, usize)>) {
    let s = sector as usize * 512;
    if let Some(m) = model.get_mut(s..s + d.len()) {
        m.copy_from_slice(d);
    }
    reads.retain(|_, (o, l)| *o + *l <= s || *o >= s + d.len());
}

fn check_reads(
    done: &[Done],
    reads: &mut BTreeMap<u64, (usize, usize)>,
    model: &[u8],
    clean: bool,
    rep: &mut FuzzReport,
) {
    for d in done {
        if let Some((off, len)) = reads.remove(&d.id) {
            if clean && d.status == BLKIF_RSP_OKAY {
                assert!(
                    d.data.as_slice() == &model[off..off + len],
                    "read {:#x} of {len} bytes at {off} differs from the model",
                    d.id
                );
                rep.verified_reads += 1;
            }
        }
    }
}
