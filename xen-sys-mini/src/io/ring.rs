//! `io/ring.h`: the shared ring header (`DEFINE_RING_TYPES`' `__name##_sring`).
//!
//! Only the header's layout lives here; the index arithmetic (`RING_*` macros) belongs to
//! the code that consumes rings, which must treat every index the other side writes as
//! hostile.

/// `RING_IDX`
pub type RingIdx = u32;

/// The header of a `struct __name##_sring`; the entries (a union of request and
/// response) follow at byte [`SRING_HEADER_SIZE`].
#[doc(alias = "sring")]
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct SringHeader {
    pub req_prod: RingIdx,
    pub req_event: RingIdx,
    pub rsp_prod: RingIdx,
    pub rsp_event: RingIdx,
    /// The `pvt` union (`netif.smartpoll_active`, `tapif_user.msg`, `pvt_pad[4]`).
    pub pvt: [u8; 4],
    pub pad: [u8; 44],
}
const _: () = assert!(core::mem::size_of::<SringHeader>() == 64);

/// Offsets of the header's indices (what both ends read and write with atomics).
pub const SRING_REQ_PROD: usize = core::mem::offset_of!(SringHeader, req_prod);
pub const SRING_REQ_EVENT: usize = core::mem::offset_of!(SringHeader, req_event);
pub const SRING_RSP_PROD: usize = core::mem::offset_of!(SringHeader, rsp_prod);
pub const SRING_RSP_EVENT: usize = core::mem::offset_of!(SringHeader, rsp_event);

/// Offset of `ring[0]` in a shared ring page.
pub const SRING_HEADER_SIZE: usize = core::mem::size_of::<SringHeader>();

/// `__CONST_RING_SIZE`: entries of `entry_size` bytes that fit in `bytes` of shared ring,
/// rounded down to a power of two as `__RD32` does.
pub const fn const_ring_size(bytes: usize, entry_size: usize) -> usize {
    if entry_size == 0 || bytes <= SRING_HEADER_SIZE {
        return 0;
    }
    let n = (bytes - SRING_HEADER_SIZE) / entry_size;
    if n == 0 {
        0
    } else {
        1 << (usize::BITS - 1 - n.leading_zeros())
    }
}
