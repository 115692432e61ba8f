//! The runtime's contract with the code above it: the hypervisor mechanisms as a few small
//! traits (cf. vm-memory's `GuestMemory`, Tock's HILs), saying what is used, never how it is
//! provided. `kernel` implements them with hypercalls; backends are generic over them and
//! host-tested against fakes (`blkback::testing`).
//!
//! One vocabulary: the runtime and every backend name a grant to map, a copy op, a watch
//! event or a failure with the types below; nothing is converted field by field between
//! crates.
#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;

#[cfg(feature = "fake")]
pub mod fake;

mod events;
pub use events::{EventQueue, EVENT_QUEUE_CAP};

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

pub use xen_sys_mini::{DomId, EvtchnPort, GrantRef};

/// An access outside a page, or a write the mapping does not permit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemError {
    /// The offset and length do not fit in the page (our bug, or a bad length a frontend
    /// gave and validation missed).
    OutOfBounds,
    /// The page is mapped read-only (the frontend granted it read-only).
    ReadOnly,
}

impl fmt::Display for MemError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            MemError::OutOfBounds => "access outside the page",
            MemError::ReadOnly => "write to a read-only mapping",
        })
    }
}

/// A page shared with another domain: a ring page, a mapped grant, or one of our frames.
///
/// Implementations never hand out references into the page: the other side may change it
/// at any moment. Reads are copies; ring indices are loaded and stored as atomics.
pub trait Page {
    fn read(&self, off: usize, dst: &mut [u8]) -> Result<(), MemError>;
    fn write(&self, off: usize, src: &[u8]) -> Result<(), MemError>;
    /// An aligned `u32` with acquire ordering (ring producer indices).
    fn load_u32(&self, off: usize) -> Result<u32, MemError>;
    /// An aligned `u32` with release ordering (ring indices we own).
    fn store_u32(&self, off: usize, v: u32) -> Result<(), MemError>;
    /// A full memory barrier (`xen_mb()`).
    fn fence(&self);
}

/// A shared mapping (a persistent grant used by several in-flight segments) is a page too.
impl<P: Page + ?Sized> Page for alloc::rc::Rc<P> {
    fn read(&self, off: usize, dst: &mut [u8]) -> Result<(), MemError> {
        (**self).read(off, dst)
    }
    fn write(&self, off: usize, src: &[u8]) -> Result<(), MemError> {
        (**self).write(off, src)
    }
    fn load_u32(&self, off: usize) -> Result<u32, MemError> {
        (**self).load_u32(off)
    }
    fn store_u32(&self, off: usize, v: u32) -> Result<(), MemError> {
        (**self).store_u32(off, v)
    }
    fn fence(&self) {
        (**self).fence();
    }
}

/// Why a grant operation failed, per op.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GrantError {
    /// Xen's `GNTST_*` for that op (caused by the frontend: bad ref, wrong permissions).
    Status(i16),
    /// The hypercall itself failed with this errno (our bug or Xen's).
    Hypercall(i32),
    /// No mapping slot free (our resource limit).
    NoSlot,
    /// Our grant table has no free entry (granting our own page).
    Exhausted,
    /// The other domain still maps or copies our granted page: ending access must wait.
    InUse,
}

impl fmt::Display for GrantError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GrantError::Status(s) => write!(f, "grant status {s} ({})", xen_sys_mini::grant_table::gntst::name(*s)),
            GrantError::Hypercall(e) => write!(f, "grant hypercall failed: {}", xen_sys_mini::errno::name(*e)),
            GrantError::NoSlot => f.write_str("no free mapping slot"),
            GrantError::Exhausted => f.write_str("our grant table is full"),
            GrantError::InUse => f.write_str("the grant is still in use by the other domain"),
        }
    }
}

/// One grant to map (`gnttab_map_grant_ref`'s inputs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MapReq {
    pub dom: DomId,
    pub gref: GrantRef,
    pub readonly: bool,
}

/// One side of a grant copy (`gnttab_copy_ptr`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CopyPtr {
    /// A grant of another domain.
    Gref { dom: DomId, gref: GrantRef, offset: u16 },
    /// One of our frames (a store frame), by guest frame number.
    Local { gfn: u64, offset: u16 },
}

/// One copy op (`gnttab_copy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CopyOp {
    pub src: CopyPtr,
    pub dst: CopyPtr,
    pub len: u16,
}

/// One frame exchange (`GNTTABOP_swap_frame`: **not in stock Xen**, added by this
/// repository's hypervisor patch, `xen/patches/`): the frame behind our `gfn` and the frame
/// behind the frontend's granted page change places. On success our `gfn` holds what the
/// frontend's page held, and the frontend's page what our `gfn` held.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SwapOp {
    pub gfn: u64,
    pub dom: DomId,
    pub gref: GrantRef,
}

/// Grant operations, batched: each call is one hypercall for the whole slice.
pub trait Grants {
    /// A mapped foreign page; given back to `unmap`.
    type Mapping: Page;
    fn map(&mut self, reqs: &[MapReq]) -> Vec<Result<Self::Mapping, GrantError>>;
    fn unmap(&mut self, maps: Vec<Self::Mapping>) -> Vec<Result<(), GrantError>>;
    fn copy(&mut self, ops: &[CopyOp]) -> Vec<Result<(), GrantError>>;
    /// Most ops one `copy` call should carry (a batch limit; more means more calls).
    fn copy_batch_limit(&self) -> usize {
        512
    }
    /// Whether the hypervisor has the frame exchange (probed once: a count of 0).
    fn can_swap(&mut self) -> bool {
        false
    }
    /// Frame exchanges, one call for the slice; per-op results (`Status(GNTST_*)`). Only
    /// after `can_swap` said yes.
    fn swap(&mut self, ops: &[SwapOp]) -> Vec<Result<(), GrantError>> {
        ops.iter().map(|_| Err(GrantError::Hypercall(xen_sys_mini::errno::ENOSYS))).collect()
    }
}

/// Granting our own pages to another domain (the frontend's side of the grant table).
pub trait GrantAccess {
    /// Lets `dom` map or copy our frame `gfn` (read-only if `readonly`).
    fn grant(&mut self, dom: DomId, gfn: u64, readonly: bool) -> Result<GrantRef, GrantError>;
    /// Ends access; [`GrantError::InUse`] while the other domain still uses it (keep the
    /// page and try again later: reusing it would let the other domain see our data).
    fn end_access(&mut self, gref: GrantRef) -> Result<(), GrantError>;
}

/// Allocating event channels for another domain to bind (the frontend's side).
pub trait EvtchnAlloc {
    /// A port of ours that `remote` may bind to; Xen's errno on failure.
    fn alloc_unbound(&mut self, remote: DomId) -> Result<EvtchnPort, i32>;
}

/// Event channels.
pub trait EventChannel {
    /// Binds to the frontend's `remote_port`; returns our port, or Xen's errno.
    fn bind(&mut self, remote: DomId, remote_port: EvtchnPort) -> Result<EvtchnPort, i32>;
    fn notify(&mut self, port: EvtchnPort);
    fn close(&mut self, port: EvtchnPort);
}

/// A xenstore error the caller can act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreErr {
    /// ENOENT.
    NotFound,
    /// Transaction conflict (EAGAIN): run it again.
    Again,
    /// Anything else, as a sentence (xenstored's errno name, a protocol error, a timeout).
    Other(String),
}

impl fmt::Display for StoreErr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreErr::NotFound => f.write_str("no such node"),
            StoreErr::Again => f.write_str("transaction conflict"),
            StoreErr::Other(s) => f.write_str(s),
        }
    }
}

/// A watch event: the path that changed and the token given to `watch`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatchEvent {
    pub path: String,
    pub token: String,
}

/// Xenstore, as backends use it.
pub trait XenStore {
    fn read(&mut self, path: &str) -> Result<Option<String>, StoreErr>;
    fn write(&mut self, path: &str, value: &str) -> Result<(), StoreErr>;
    /// Removes a node and everything below it; absent is not an error.
    fn rm(&mut self, path: &str) -> Result<(), StoreErr>;
    /// The children of `path`; absent reads as empty.
    fn directory(&mut self, path: &str) -> Result<Vec<String>, StoreErr>;
    /// Writes every pair atomically (one transaction, retried on conflict).
    fn write_all(&mut self, pairs: &[(String, String)]) -> Result<(), StoreErr>;
    /// Fires an event for `path` (and below) with `token` now and on every change.
    fn watch(&mut self, path: &str, token: &str) -> Result<(), StoreErr>;
    fn unwatch(&mut self, path: &str, token: &str) -> Result<(), StoreErr>;
    /// The next queued watch event, without waiting.
    fn next_event(&mut self) -> Result<Option<WatchEvent>, StoreErr>;
}

/// One of our own frames: private memory (no other domain maps it), so the owner may take
/// references into it; the copy path names it by GFN.
pub trait Frame {
    fn gfn(&self) -> u64;
    fn bytes(&self) -> &[u8];
    fn bytes_mut(&mut self) -> &mut [u8];
}

/// Where our own frames come from.
pub trait Frames {
    type Frame: Frame;
    /// A zeroed frame, or `None` when memory is exhausted.
    fn alloc(&mut self) -> Option<Self::Frame>;
    /// Bytes still free for frames.
    fn free_bytes(&self) -> u64;
}

/// One of our frames that another domain may map (a ring page, a packet buffer): accessed
/// only as a [`Page`] (volatile copies, atomics), never by reference.
pub trait SharedFrame: Page {
    fn gfn(&self) -> u64;
}

/// Where frames to share come from.
pub trait SharedFrames {
    type Shared: SharedFrame;
    /// A zeroed frame, or `None` when memory is exhausted.
    fn alloc_shared(&mut self) -> Option<Self::Shared>;
}

/// A physically contiguous region of our own memory handed over at boot (a boot module),
/// owned by whoever holds the value.
pub trait Region {
    fn bytes(&self) -> &[u8];
    fn bytes_mut(&mut self) -> &mut [u8];
    /// The GFN and in-frame offset of byte `off`, if inside the region.
    fn gfn(&self, off: u64) -> Option<(u64, u16)>;
}
