//! Grant tables: mapping, copying and exchanging other domains' granted pages, and granting
//! our own.
use alloc::vec::Vec;
use core::fmt;

use crate::{DomId, GrantRef, Page};

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
