//! `io/blkif.h`: the block device ring protocol.
//!
//! The native (x86_64) layouts are the C header's. A 32-bit x86 frontend (protocol
//! `x86_32-abi`) lays the same structs out with 4-byte alignment of `uint64_t`; those
//! layouts are the `X86_32` types, checked against the same header compiled with `-m32`.
use crate::io::ring::const_ring_size;
use crate::xen::GrantRef;

/// `blkif_vdev_t`
pub type BlkifVdev = u16;
/// `blkif_sector_t`: always in 512-byte units, whatever the sector size.
pub type BlkifSector = u64;

pub const BLKIF_OP_READ: u8 = 0;
pub const BLKIF_OP_WRITE: u8 = 1;
pub const BLKIF_OP_WRITE_BARRIER: u8 = 2;
pub const BLKIF_OP_FLUSH_DISKCACHE: u8 = 3;
pub const BLKIF_OP_RESERVED_1: u8 = 4;
pub const BLKIF_OP_DISCARD: u8 = 5;
pub const BLKIF_OP_INDIRECT: u8 = 6;

/// `BLKIF_MAX_SEGMENTS_PER_REQUEST`: segments in a direct request.
pub const BLKIF_MAX_SEGMENTS_PER_REQUEST: usize = 11;
/// `BLKIF_MAX_INDIRECT_PAGES_PER_REQUEST`: `indirect_grefs` slots in an indirect request.
pub const BLKIF_MAX_INDIRECT_PAGES_PER_REQUEST: usize = 8;
/// Segments one indirect page holds (Linux's `SEGS_PER_INDIRECT_FRAME`): a page of
/// `blkif_request_segment`s.
pub const BLKIF_SEGS_PER_INDIRECT_FRAME: usize =
    crate::xen::XEN_PAGE_SIZE / core::mem::size_of::<BlkifRequestSegment>();
/// Sectors of 512 bytes in a 4 KiB segment page: `first_sect <= last_sect < 8`.
pub const BLKIF_SECTORS_PER_PAGE: u8 = 8;

/// `BLKIF_DISCARD_SECURE`: in `blkif_request_discard.flag`.
pub const BLKIF_DISCARD_SECURE: u8 = 1 << 0;

/// `BLKIF_RSP_EOPNOTSUPP`
pub const BLKIF_RSP_EOPNOTSUPP: i16 = -2;
/// `BLKIF_RSP_ERROR`
pub const BLKIF_RSP_ERROR: i16 = -1;
/// `BLKIF_RSP_OKAY`
pub const BLKIF_RSP_OKAY: i16 = 0;

/// `VDISK_CDROM` (in the backend's `info` key)
pub const VDISK_CDROM: u32 = 0x1;
/// `VDISK_REMOVABLE`
pub const VDISK_REMOVABLE: u32 = 0x2;
/// `VDISK_READONLY`
pub const VDISK_READONLY: u32 = 0x4;

/// `struct blkif_request_segment`: same layout on every ABI.
#[doc(alias = "blkif_request_segment")]
#[repr(C)]
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct BlkifRequestSegment {
    pub gref: GrantRef,
    /// First 512-byte sector of the page to transfer (inclusive).
    pub first_sect: u8,
    /// Last 512-byte sector of the page to transfer (inclusive).
    pub last_sect: u8,
}
const _: () = assert!(core::mem::size_of::<BlkifRequestSegment>() == 8);

/// `struct blkif_request` (native x86_64): READ, WRITE, WRITE_BARRIER, FLUSH_DISKCACHE.
#[doc(alias = "blkif_request")]
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
pub struct BlkifRequest {
    pub operation: u8,
    pub nr_segments: u8,
    pub handle: BlkifVdev,
    /// Opaque to the backend: echoed in the response.
    pub id: u64,
    pub sector_number: BlkifSector,
    pub seg: [BlkifRequestSegment; BLKIF_MAX_SEGMENTS_PER_REQUEST],
}
const _: () = assert!(core::mem::size_of::<BlkifRequest>() == 112);

/// `struct blkif_request_discard` (native x86_64)
#[doc(alias = "blkif_request_discard")]
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
pub struct BlkifRequestDiscard {
    pub operation: u8,
    /// `BLKIF_DISCARD_SECURE` or 0.
    pub flag: u8,
    pub handle: BlkifVdev,
    pub id: u64,
    pub sector_number: BlkifSector,
    pub nr_sectors: u64,
}
const _: () = assert!(core::mem::size_of::<BlkifRequestDiscard>() == 32);

/// `struct blkif_request_indirect` (native x86_64)
#[doc(alias = "blkif_request_indirect")]
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
pub struct BlkifRequestIndirect {
    pub operation: u8,
    /// `BLKIF_OP_READ` or `BLKIF_OP_WRITE`.
    pub indirect_op: u8,
    pub nr_segments: u16,
    pub id: u64,
    pub sector_number: BlkifSector,
    pub handle: BlkifVdev,
    /// Pages holding the segment array (`BLKIF_SEGS_PER_INDIRECT_FRAME` per page).
    pub indirect_grefs: [GrantRef; BLKIF_MAX_INDIRECT_PAGES_PER_REQUEST],
}
const _: () = assert!(core::mem::size_of::<BlkifRequestIndirect>() == 64);

/// `struct blkif_response` (native x86_64)
#[doc(alias = "blkif_response")]
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
pub struct BlkifResponse {
    pub id: u64,
    pub operation: u8,
    /// `BLKIF_RSP_*`
    pub status: i16,
}
const _: () = assert!(core::mem::size_of::<BlkifResponse>() == 16);

/// `struct blkif_request` as a 32-bit x86 frontend lays it out.
#[doc(alias = "blkif_x86_32_request")]
#[repr(C, packed(4))]
#[derive(Debug, Default, Clone, Copy)]
pub struct BlkifX86_32Request {
    pub operation: u8,
    pub nr_segments: u8,
    pub handle: BlkifVdev,
    pub id: u64,
    pub sector_number: BlkifSector,
    pub seg: [BlkifRequestSegment; BLKIF_MAX_SEGMENTS_PER_REQUEST],
}
const _: () = assert!(core::mem::size_of::<BlkifX86_32Request>() == 108);

/// `struct blkif_request_discard` as a 32-bit x86 frontend lays it out.
#[doc(alias = "blkif_x86_32_request_discard")]
#[repr(C, packed(4))]
#[derive(Debug, Default, Clone, Copy)]
pub struct BlkifX86_32RequestDiscard {
    pub operation: u8,
    pub flag: u8,
    pub handle: BlkifVdev,
    pub id: u64,
    pub sector_number: BlkifSector,
    pub nr_sectors: u64,
}
const _: () = assert!(core::mem::size_of::<BlkifX86_32RequestDiscard>() == 28);

/// `struct blkif_request_indirect` as a 32-bit x86 frontend lays it out (with the
/// `#ifdef __i386__` tail pad that keeps it 64 bytes).
#[doc(alias = "blkif_x86_32_request_indirect")]
#[repr(C, packed(4))]
#[derive(Debug, Default, Clone, Copy)]
pub struct BlkifX86_32RequestIndirect {
    pub operation: u8,
    pub indirect_op: u8,
    pub nr_segments: u16,
    pub id: u64,
    pub sector_number: BlkifSector,
    pub handle: BlkifVdev,
    pub indirect_grefs: [GrantRef; BLKIF_MAX_INDIRECT_PAGES_PER_REQUEST],
    pub pad: u64,
}
const _: () = assert!(core::mem::size_of::<BlkifX86_32RequestIndirect>() == 64);

/// `struct blkif_response` as a 32-bit x86 frontend lays it out.
#[doc(alias = "blkif_x86_32_response")]
#[repr(C, packed(4))]
#[derive(Debug, Default, Clone, Copy)]
pub struct BlkifX86_32Response {
    pub id: u64,
    pub operation: u8,
    pub status: i16,
}
const _: () = assert!(core::mem::size_of::<BlkifX86_32Response>() == 12);

/// Size of one ring slot (`union blkif_sring_entry`) for native x86_64.
pub const BLKIF_X86_64_ENTRY_SIZE: usize = core::mem::size_of::<BlkifRequest>();
/// Size of one ring slot for a 32-bit x86 frontend.
pub const BLKIF_X86_32_ENTRY_SIZE: usize = core::mem::size_of::<BlkifX86_32Request>();

/// `BLK_RING_SIZE` for a ring of `pages` pages (native layout), per `__CONST_RING_SIZE`.
pub const fn blk_ring_size_x86_64(pages: usize) -> usize {
    const_ring_size(pages * crate::xen::XEN_PAGE_SIZE, BLKIF_X86_64_ENTRY_SIZE)
}
/// `BLK_RING_SIZE` for a ring of `pages` pages (x86_32 layout).
pub const fn blk_ring_size_x86_32(pages: usize) -> usize {
    const_ring_size(pages * crate::xen::XEN_PAGE_SIZE, BLKIF_X86_32_ENTRY_SIZE)
}
const _: () = assert!(blk_ring_size_x86_64(1) == 32);
const _: () = assert!(blk_ring_size_x86_32(1) == 32);
const _: () = assert!(blk_ring_size_x86_64(16) == 512);

/// `XEN_IO_PROTO_ABI_X86_32` (`io/protocols.h`)
pub const XEN_IO_PROTO_ABI_X86_32: &str = "x86_32-abi";
/// `XEN_IO_PROTO_ABI_X86_64`
pub const XEN_IO_PROTO_ABI_X86_64: &str = "x86_64-abi";
