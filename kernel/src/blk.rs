//! The blkback engine's traits, implemented with the runtime's mechanisms, and the stores a
//! `target=` can name.
use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;

use blkback::hv::{self, CopyOp, CopyPtr, GrantError, MapReq, MemError, StoreErr};
use blkback::store::RamBacking;
use xen_sys_mini::{DomId, EvtchnPort};

use crate::gnttab::{self, ForeignMap, GntError};
use crate::mem::{self, Page as Frame};
use crate::shared::{OutOfBounds, SharedMem};

use crate::xenstore::{XenStore, XsError};
use crate::{evtchn, shared};

fn mem_err(_: OutOfBounds) -> MemError {
    MemError::OutOfBounds
}

/// Shared-memory access as the engine's `Page`.
fn page_read(m: &SharedMem, off: usize, dst: &mut [u8]) -> Result<(), MemError> {
    m.read_bytes(off, dst).map_err(mem_err)
}

impl hv::Page for ForeignMap {
    fn read(&self, off: usize, dst: &mut [u8]) -> Result<(), MemError> {
        page_read(&self.mem(), off, dst)
    }
    fn write(&self, off: usize, src: &[u8]) -> Result<(), MemError> {
        if self.readonly {
            // Xen mapped it read-only in our p2m: a write would fault. Refuse it here.
            return Err(MemError::ReadOnly);
        }
        self.mem().write_bytes(off, src).map_err(mem_err)
    }
    fn load_u32(&self, off: usize) -> Result<u32, MemError> {
        let m = self.mem();
        let a = m.atomic_u32(off).map_err(mem_err)?;
        Ok(a.load(core::sync::atomic::Ordering::Acquire))
    }
    fn store_u32(&self, off: usize, v: u32) -> Result<(), MemError> {
        if self.readonly {
            return Err(MemError::ReadOnly);
        }
        let m = self.mem();
        let a = m.atomic_u32(off).map_err(mem_err)?;
        a.store(v, core::sync::atomic::Ordering::Release);
        Ok(())
    }
    fn fence(&self) {
        shared::mb();
    }
}

fn grant_err(e: GntError) -> GrantError {
    match e {
        GntError::Status(s) => GrantError::Status(s),
        GntError::Hypercall(x) => GrantError::Hypercall(x.0),
        _ => GrantError::NoSlot,
    }
}

/// Grant operations through `gnttab` (one hypercall per batch).
#[derive(Debug, Default)]
pub struct Grants;

impl hv::Grants for Grants {
    type Mapping = ForeignMap;

    fn map(&mut self, reqs: &[MapReq]) -> Vec<Result<ForeignMap, GrantError>> {
        let reqs: Vec<gnttab::MapReq> =
            reqs.iter().map(|r| gnttab::MapReq { dom: r.dom, gref: r.gref, readonly: r.readonly }).collect();
        gnttab::map_batch(&reqs).into_iter().map(|r| r.map_err(grant_err)).collect()
    }

    fn unmap(&mut self, maps: Vec<ForeignMap>) -> Vec<Result<(), GrantError>> {
        gnttab::unmap_batch(maps).into_iter().map(|r| r.map_err(grant_err)).collect()
    }

    fn copy(&mut self, ops: &[CopyOp]) -> Vec<Result<(), GrantError>> {
        let conv = |p: CopyPtr| match p {
            CopyPtr::Gref { dom, gref, offset } => gnttab::CopyPtr::Gref { dom, gref, offset },
            CopyPtr::Local { gfn, offset } => gnttab::CopyPtr::Local { gfn, offset },
        };
        let mut raw: Vec<_> = ops.iter().map(|o| gnttab::copy_op(conv(o.src), conv(o.dst), o.len)).collect();
        gnttab::copy_batch(&mut raw).into_iter().map(|r| r.map_err(grant_err)).collect()
    }
}

/// Event channels: every bound port is masked (no upcalls; `SCHEDOP_poll` still wakes).
#[derive(Debug, Default)]
pub struct Evtchn;

impl hv::EventChannel for Evtchn {
    fn bind(&mut self, remote: DomId, remote_port: EvtchnPort) -> Result<EvtchnPort, i32> {
        let p = evtchn::bind_interdomain(remote, remote_port).map_err(|e| e.0)?;
        evtchn::mask(p);
        Ok(p)
    }
    fn notify(&mut self, port: EvtchnPort) {
        evtchn::notify(port);
    }
    fn close(&mut self, port: EvtchnPort) {
        let _ = evtchn::close(port);
        evtchn::clear(port);
    }
}

fn xs_err(e: XsError) -> StoreErr {
    if e.is_enoent() {
        StoreErr::NotFound
    } else if e.is_eagain() {
        StoreErr::Again
    } else {
        StoreErr::Other(format!("{e}"))
    }
}

impl hv::XenStore for XenStore {
    fn read(&mut self, path: &str) -> Result<Option<String>, StoreErr> {
        match self.read_opt(0, path) {
            // xenstored answers EACCES, not ENOENT, for a node under a domain directory that
            // is gone (the check falls to an ancestor we may not read): for us it is absent.
            Err(XsError::Errno(13, _)) => Ok(None),
            r => r.map_err(xs_err),
        }
    }
    fn write(&mut self, path: &str, value: &str) -> Result<(), StoreErr> {
        XenStore::write(self, 0, path, value).map_err(xs_err)
    }
    fn rm(&mut self, path: &str) -> Result<(), StoreErr> {
        match XenStore::rm(self, 0, path) {
            Err(e) if e.is_enoent() => Ok(()),
            r => r.map_err(xs_err),
        }
    }
    fn directory(&mut self, path: &str) -> Result<Vec<String>, StoreErr> {
        match XenStore::directory(self, 0, path) {
            Err(e) if e.is_enoent() => Ok(Vec::new()),
            r => r.map_err(xs_err),
        }
    }
    fn write_all(&mut self, pairs: &[(String, String)]) -> Result<(), StoreErr> {
        self.transaction(|xs, tx| {
            for (k, v) in pairs {
                XenStore::write(xs, tx, k, v)?;
            }
            Ok(())
        })
        .map(|_| ())
        .map_err(xs_err)
    }
    fn watch(&mut self, path: &str, token: &str) -> Result<(), StoreErr> {
        XenStore::watch(self, path, token).map_err(xs_err)
    }
    fn unwatch(&mut self, path: &str, token: &str) -> Result<(), StoreErr> {
        XenStore::unwatch(self, path, token).map_err(xs_err)
    }
}

// ---------------------------------------------------------------------------------------
// Store memory

/// A RAM disk made of our own frames (zeroed, returned to the allocator when dropped). The
/// copy path names them by GFN.
#[derive(Debug)]
pub struct FrameDisk {
    frames: Vec<Frame>,
}

impl FrameDisk {
    /// `bytes` of zeroed memory, or `None` if the domain does not have that much free.
    pub fn new(bytes: u64) -> Option<Self> {
        let n = bytes.div_ceil(4096);
        // Keep a reserve for rings, mappings' page tables and the heap's neighbours.
        if n.saturating_mul(4096).saturating_add(2 << 20) > mem::free_bytes() {
            return None;
        }
        let mut frames = Vec::with_capacity(n as usize);
        for _ in 0..n {
            frames.push(Frame::alloc()?);
        }
        Some(Self { frames })
    }
}

/// Splits disk range `[off, off + len)` into per-frame pieces: (frame index, offset in the
/// frame, offset in the range, length).
fn pieces(off: u64, len: usize) -> impl Iterator<Item = (usize, usize, usize, usize)> {
    let mut done = 0usize;
    core::iter::from_fn(move || {
        if done >= len {
            return None;
        }
        let at = off + done as u64;
        let in_frame = (at % 4096) as usize;
        let n = (4096 - in_frame).min(len - done);
        let item = ((at / 4096) as usize, in_frame, done, n);
        done += n;
        Some(item)
    })
}

impl RamBacking for FrameDisk {
    fn size(&self) -> u64 {
        self.frames.len() as u64 * 4096
    }
    // One copy each way, straight between our frame and the frontend's page.
    fn to_page(&self, off: u64, page: &dyn hv::Page, page_off: usize, len: usize) -> Result<(), MemError> {
        for (fi, in_frame, done, n) in pieces(off, len) {
            let f = self.frames.get(fi).ok_or(MemError::OutOfBounds)?;
            page.write(page_off + done, &f.bytes()[in_frame..in_frame + n])?;
        }
        Ok(())
    }
    fn store_page(&mut self, off: u64, page: &dyn hv::Page, page_off: usize, len: usize) -> Result<(), MemError> {
        for (fi, in_frame, done, n) in pieces(off, len) {
            let f = self.frames.get_mut(fi).ok_or(MemError::OutOfBounds)?;
            page.read(page_off + done, &mut f.bytes_mut()[in_frame..in_frame + n])?;
        }
        Ok(())
    }
    fn zero(&mut self, off: u64, len: u64) {
        for (fi, in_frame, _, n) in pieces(off, len as usize) {
            if let Some(f) = self.frames.get_mut(fi) {
                f.bytes_mut()[in_frame..in_frame + n].fill(0);
            }
        }
    }
    fn gfn(&self, off: u64) -> Option<(u64, u16)> {
        let f = self.frames.get((off / 4096) as usize)?;
        Some((f.gfn(), (off % 4096) as u16))
    }
}

/// A boot module (`ramdisk=` in the xl config) served as a disk, in place.
#[derive(Debug)]
pub struct ModuleDisk {
    bytes: &'static mut [u8],
    paddr: u64,
}

impl ModuleDisk {
    /// # Safety
    /// `[paddr, paddr + size)` must be the module Xen loaded, excluded from the frame
    /// allocator (mem::init does that), identity-mapped, and handed out only once.
    pub unsafe fn new(paddr: u64, size: u64) -> Self {
        // SAFETY: guaranteed by the caller: memory nobody else uses, for good.
        let bytes = unsafe { core::slice::from_raw_parts_mut(paddr as *mut u8, (size & !511) as usize) };
        Self { bytes, paddr }
    }
}

impl RamBacking for ModuleDisk {
    fn size(&self) -> u64 {
        self.bytes.len() as u64
    }
    fn to_page(&self, off: u64, page: &dyn hv::Page, page_off: usize, len: usize) -> Result<(), MemError> {
        let s = self.bytes.get(off as usize..).and_then(|b| b.get(..len)).ok_or(MemError::OutOfBounds)?;
        page.write(page_off, s)
    }
    fn store_page(&mut self, off: u64, page: &dyn hv::Page, page_off: usize, len: usize) -> Result<(), MemError> {
        let d = self.bytes.get_mut(off as usize..).and_then(|b| b.get_mut(..len)).ok_or(MemError::OutOfBounds)?;
        page.read(page_off, d)
    }
    fn zero(&mut self, off: u64, len: u64) {
        if let Some(d) = self.bytes.get_mut(off as usize..).and_then(|b| b.get_mut(..len as usize)) {
            d.fill(0);
        }
    }
    fn gfn(&self, off: u64) -> Option<(u64, u16)> {
        ((off as usize) < self.bytes.len()).then(|| {
            let a = self.paddr + off;
            (a >> 12, (a & 4095) as u16)
        })
    }
}

// ---------------------------------------------------------------------------------------
// `target=`

/// What a `target=` asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub kind: TargetKind,
    /// `copy` / `map` option: the data path (default: the driver domain's `path=`).
    pub copy: Option<bool>,
    /// `nopersist`: do not offer persistent grants.
    pub persistent: Option<bool>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TargetKind {
    /// `ram:<size>`: a zero-filled RAM disk.
    Ram(u64),
    /// `null:<size>`: completes without storing (benchmark ceiling).
    Null(u64),
    /// `module[:<n>]`: boot module n (default 0), in place.
    Module(usize),
}

/// Parses a size: digits with an optional K/M/G suffix (binary units).
fn parse_size(s: &str) -> Option<u64> {
    let s = s.trim();
    let (num, mul) = match s.as_bytes().last()? {
        b'K' | b'k' => (&s[..s.len() - 1], 1u64 << 10),
        b'M' | b'm' => (&s[..s.len() - 1], 1 << 20),
        b'G' | b'g' => (&s[..s.len() - 1], 1 << 30),
        _ => (s, 1),
    };
    if num.is_empty() || !num.bytes().all(|b| b.is_ascii_digit()) || num.len() > 12 {
        return None;
    }
    num.parse::<u64>().ok()?.checked_mul(mul).filter(|&v| v >= 4096 && v % 512 == 0)
}

/// Parses `target=` (the backend's `params` key): `ram:64M`, `null:1G`, `module`,
/// `module:1`, each optionally followed by `:copy`, `:map`, `:nopersist`.
pub fn parse_target(params: &str) -> Result<Target, String> {
    let mut parts = params.trim().split(':');
    let kind = parts.next().unwrap_or("");
    let mut t = Target { kind: TargetKind::Ram(0), copy: None, persistent: None };
    let mut rest: Vec<&str> = parts.collect();
    t.kind = match kind {
        "ram" | "null" => {
            if rest.is_empty() {
                return Err(format!("`{kind}` needs a size, e.g. {kind}:64M"));
            }
            let size = rest.remove(0);
            let size = parse_size(size)
                .ok_or_else(|| format!("bad size `{size}` (digits, optional K/M/G, at least 4K, a multiple of 512)"))?;
            if kind == "ram" {
                TargetKind::Ram(size)
            } else {
                TargetKind::Null(size)
            }
        }
        "module" => {
            let n = match rest.first().and_then(|s| s.parse::<usize>().ok()) {
                Some(n) => {
                    rest.remove(0);
                    n
                }
                None => 0,
            };
            TargetKind::Module(n)
        }
        other => return Err(format!("unknown target `{other}`: use ram:<size>, null:<size> or module[:<n>]")),
    };
    for opt in rest {
        match opt {
            "copy" => t.copy = Some(true),
            "map" => t.copy = Some(false),
            "nopersist" => t.persistent = Some(false),
            "persist" => t.persistent = Some(true),
            o => return Err(format!("unknown target option `{o}` (copy, map, nopersist)")),
        }
    }
    Ok(t)
}

pub fn describe(t: &Target) -> String {
    match t.kind {
        TargetKind::Ram(s) => format!("RAM disk {} MiB", s >> 20),
        TargetKind::Null(s) => format!("null disk {} MiB", s >> 20),
        TargetKind::Module(n) => format!("boot module {n}"),
    }
    .to_string()
}
