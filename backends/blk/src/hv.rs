//! The hypervisor as a few small traits (cf. vm-memory's `GuestMemory`, Tock's HILs): what
//! the engine needs, not how it is provided. The kernel implements them with hypercalls;
//! `testing` implements them with a fake grant table and xenstore.
use alloc::string::String;
use alloc::vec::Vec;

pub use xen_sys_mini::{DomId, EvtchnPort, GrantRef};

/// An access outside a page, or a write the mapping does not permit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemError {
    OutOfBounds,
    ReadOnly,
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

/// Why a grant operation failed, per op.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GrantError {
    /// Xen's `GNTST_*` for that op (caused by the frontend: bad ref, wrong permissions).
    Status(i16),
    /// The hypercall itself failed (our bug or Xen's).
    Hypercall(i32),
    /// No mapping slot free (our resource limit).
    NoSlot,
}

/// One grant to map.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MapReq {
    pub dom: DomId,
    pub gref: GrantRef,
    pub readonly: bool,
}

/// One side of a grant copy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CopyPtr {
    /// A grant of the frontend.
    Gref { dom: DomId, gref: GrantRef, offset: u16 },
    /// One of our frames (a store frame), by guest frame number.
    Local { gfn: u64, offset: u16 },
}

/// One copy op.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CopyOp {
    pub src: CopyPtr,
    pub dst: CopyPtr,
    pub len: u16,
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
}

/// Event channels.
pub trait EventChannel {
    /// Binds to the frontend's `remote_port`; returns our port.
    fn bind(&mut self, remote: DomId, remote_port: EvtchnPort) -> Result<EvtchnPort, i32>;
    fn notify(&mut self, port: EvtchnPort);
    fn close(&mut self, port: EvtchnPort);
}

/// A xenstore error the engine can act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreErr {
    NotFound,
    /// Transaction conflict: run it again.
    Again,
    Other(String),
}

/// Xenstore, as the backend uses it.
pub trait XenStore {
    fn read(&mut self, path: &str) -> Result<Option<String>, StoreErr>;
    fn write(&mut self, path: &str, value: &str) -> Result<(), StoreErr>;
    fn rm(&mut self, path: &str) -> Result<(), StoreErr>;
    fn directory(&mut self, path: &str) -> Result<Vec<String>, StoreErr>;
    /// Writes every pair atomically (one transaction, retried on conflict).
    fn write_all(&mut self, pairs: &[(String, String)]) -> Result<(), StoreErr>;
    /// Fires an event for `path` (and below) with `token` now and on every change.
    fn watch(&mut self, path: &str, token: &str) -> Result<(), StoreErr>;
    fn unwatch(&mut self, path: &str, token: &str) -> Result<(), StoreErr>;
}

/// Our own frames: memory the copy path (and a RAM store) can name by GFN.
pub trait Frame: Page {
    fn gfn(&self) -> u64;
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
