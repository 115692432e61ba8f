//! Ring slots as bytes ⇄ plain values, for the native (x86_64) and the x86_32 layouts of
//! `io/blkif.h`. Offsets come from xen-sys-mini's layout-checked structs (`offset_of!`), so
//! they match Xen's headers by construction.
use core::mem::{offset_of, size_of};

use xen_sys_mini::io::blkif::*;
use xen_sys_mini::io::ring::const_ring_size;
use xen_sys_mini::XEN_PAGE_SIZE;

/// The largest ring slot (a native request).
pub const MAX_SLOT: usize = size_of::<BlkifRequest>();

/// Which layout the frontend uses (`protocol` key, `io/protocols.h`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Abi {
    /// `x86_64-abi`, or no `protocol` key: the backend's native layout.
    Native,
    /// `x86_32-abi`: `uint64_t` aligned to 4.
    X86_32,
}

/// The frontend named a protocol we do not speak.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownProtocol;

impl Abi {
    pub fn from_protocol(p: Option<&str>) -> Result<Self, UnknownProtocol> {
        match p.map(str::trim) {
            None | Some("") | Some(XEN_IO_PROTO_ABI_X86_64) => Ok(Abi::Native),
            Some(XEN_IO_PROTO_ABI_X86_32) => Ok(Abi::X86_32),
            Some(_) => Err(UnknownProtocol),
        }
    }

    /// Bytes of one ring slot (`sizeof(union blkif_sring_entry)`).
    pub const fn slot_size(self) -> usize {
        match self {
            Abi::Native => BLKIF_X86_64_ENTRY_SIZE,
            Abi::X86_32 => BLKIF_X86_32_ENTRY_SIZE,
        }
    }

    /// Bytes of a response.
    pub const fn rsp_size(self) -> usize {
        match self {
            Abi::Native => size_of::<BlkifResponse>(),
            Abi::X86_32 => size_of::<BlkifX86_32Response>(),
        }
    }

    /// `__CONST_RING_SIZE` for a ring of `pages` pages.
    pub const fn ring_size(self, pages: usize) -> usize {
        const_ring_size(pages.saturating_mul(XEN_PAGE_SIZE), self.slot_size())
    }
}

/// A request exactly as the frontend wrote it, decoded from one copy of its slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RawRequest {
    pub operation: u8,
    /// Opaque; echoed in the response.
    pub id: u64,
    pub body: RawBody,
}

/// The operation-specific part of a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RawBody {
    /// READ, WRITE, WRITE_BARRIER, FLUSH_DISKCACHE.
    Rw {
        nr_segments: u8,
        handle: u16,
        sector: u64,
        seg: [BlkifRequestSegment; BLKIF_MAX_SEGMENTS_PER_REQUEST],
    },
    Discard {
        flag: u8,
        handle: u16,
        sector: u64,
        nr_sectors: u64,
    },
    Indirect {
        indirect_op: u8,
        nr_segments: u16,
        sector: u64,
        handle: u16,
        grefs: [u32; BLKIF_MAX_INDIRECT_PAGES_PER_REQUEST],
    },
    /// Any other operation: only `id` is meaningful.
    Other,
}

fn u16_at(b: &[u8], off: usize) -> u16 {
    b.get(off..).and_then(|s| s.first_chunk::<2>()).map_or(0, |c| u16::from_le_bytes(*c))
}
fn u32_at(b: &[u8], off: usize) -> u32 {
    b.get(off..).and_then(|s| s.first_chunk::<4>()).map_or(0, |c| u32::from_le_bytes(*c))
}
fn u64_at(b: &[u8], off: usize) -> u64 {
    b.get(off..).and_then(|s| s.first_chunk::<8>()).map_or(0, |c| u64::from_le_bytes(*c))
}
fn u8_at(b: &[u8], off: usize) -> u8 {
    b.get(off).copied().unwrap_or(0)
}

/// Field offsets of one layout.
struct Layout {
    id: usize,
    sector: usize,
    nr_segments: usize,
    handle: usize,
    seg: usize,
    discard_flag: usize,
    discard_handle: usize,
    nr_sectors: usize,
    ind_op: usize,
    ind_nr_segments: usize,
    ind_handle: usize,
    ind_grefs: usize,
}

const NATIVE: Layout = Layout {
    id: offset_of!(BlkifRequest, id),
    sector: offset_of!(BlkifRequest, sector_number),
    nr_segments: offset_of!(BlkifRequest, nr_segments),
    handle: offset_of!(BlkifRequest, handle),
    seg: offset_of!(BlkifRequest, seg),
    discard_flag: offset_of!(BlkifRequestDiscard, flag),
    discard_handle: offset_of!(BlkifRequestDiscard, handle),
    nr_sectors: offset_of!(BlkifRequestDiscard, nr_sectors),
    ind_op: offset_of!(BlkifRequestIndirect, indirect_op),
    ind_nr_segments: offset_of!(BlkifRequestIndirect, nr_segments),
    ind_handle: offset_of!(BlkifRequestIndirect, handle),
    ind_grefs: offset_of!(BlkifRequestIndirect, indirect_grefs),
};

const X86_32: Layout = Layout {
    id: offset_of!(BlkifX86_32Request, id),
    sector: offset_of!(BlkifX86_32Request, sector_number),
    nr_segments: offset_of!(BlkifX86_32Request, nr_segments),
    handle: offset_of!(BlkifX86_32Request, handle),
    seg: offset_of!(BlkifX86_32Request, seg),
    discard_flag: offset_of!(BlkifX86_32RequestDiscard, flag),
    discard_handle: offset_of!(BlkifX86_32RequestDiscard, handle),
    nr_sectors: offset_of!(BlkifX86_32RequestDiscard, nr_sectors),
    ind_op: offset_of!(BlkifX86_32RequestIndirect, indirect_op),
    ind_nr_segments: offset_of!(BlkifX86_32RequestIndirect, nr_segments),
    ind_handle: offset_of!(BlkifX86_32RequestIndirect, handle),
    ind_grefs: offset_of!(BlkifX86_32RequestIndirect, indirect_grefs),
};

const SEG_SIZE: usize = size_of::<BlkifRequestSegment>();

/// Decodes a segment descriptor (the same 8 bytes in every layout and in indirect pages).
pub fn decode_segment(b: &[u8]) -> BlkifRequestSegment {
    BlkifRequestSegment {
        gref: u32_at(b, offset_of!(BlkifRequestSegment, gref)),
        first_sect: u8_at(b, offset_of!(BlkifRequestSegment, first_sect)),
        last_sect: u8_at(b, offset_of!(BlkifRequestSegment, last_sect)),
    }
}

/// Bytes of one segment descriptor.
pub const SEGMENT_SIZE: usize = SEG_SIZE;

/// Decodes a slot copied out of the ring. Never fails: every byte pattern is some request,
/// validation decides whether it is a good one.
pub fn decode_request(abi: Abi, slot: &[u8; MAX_SLOT]) -> RawRequest {
    let l = match abi {
        Abi::Native => &NATIVE,
        Abi::X86_32 => &X86_32,
    };
    let operation = u8_at(slot, 0);
    let id = u64_at(slot, l.id);
    let body = match operation {
        BLKIF_OP_READ | BLKIF_OP_WRITE | BLKIF_OP_WRITE_BARRIER | BLKIF_OP_FLUSH_DISKCACHE => {
            let mut seg = [BlkifRequestSegment::default(); BLKIF_MAX_SEGMENTS_PER_REQUEST];
            for (s, chunk) in seg.iter_mut().zip(slot.get(l.seg..).unwrap_or_default().chunks_exact(SEG_SIZE)) {
                *s = decode_segment(chunk);
            }
            RawBody::Rw {
                nr_segments: u8_at(slot, l.nr_segments),
                handle: u16_at(slot, l.handle),
                sector: u64_at(slot, l.sector),
                seg,
            }
        }
        BLKIF_OP_DISCARD => RawBody::Discard {
            flag: u8_at(slot, l.discard_flag),
            handle: u16_at(slot, l.discard_handle),
            sector: u64_at(slot, l.sector),
            nr_sectors: u64_at(slot, l.nr_sectors),
        },
        BLKIF_OP_INDIRECT => {
            let mut grefs = [0u32; BLKIF_MAX_INDIRECT_PAGES_PER_REQUEST];
            for (g, chunk) in grefs.iter_mut().zip(slot.get(l.ind_grefs..).unwrap_or_default().chunks_exact(4)) {
                *g = u32_at(chunk, 0);
            }
            RawBody::Indirect {
                indirect_op: u8_at(slot, l.ind_op),
                nr_segments: u16_at(slot, l.ind_nr_segments),
                sector: u64_at(slot, l.sector),
                handle: u16_at(slot, l.ind_handle),
                grefs,
            }
        }
        _ => RawBody::Other,
    };
    RawRequest { operation, id, body }
}

/// Encodes a request into a slot (for the mock frontend and the tests).
pub fn encode_request(abi: Abi, r: &RawRequest) -> [u8; MAX_SLOT] {
    let l = match abi {
        Abi::Native => &NATIVE,
        Abi::X86_32 => &X86_32,
    };
    let mut b = [0u8; MAX_SLOT];
    let mut put = |off: usize, bytes: &[u8]| {
        if let Some(dst) = b.get_mut(off..).and_then(|d| d.get_mut(..bytes.len())) {
            dst.copy_from_slice(bytes);
        }
    };
    put(0, &[r.operation]);
    put(l.id, &r.id.to_le_bytes());
    match r.body {
        RawBody::Rw { nr_segments, handle, sector, seg } => {
            put(l.nr_segments, &[nr_segments]);
            put(l.handle, &handle.to_le_bytes());
            put(l.sector, &sector.to_le_bytes());
            let mut off = l.seg;
            for s in seg {
                put(off, &encode_segment(&s));
                off = off.saturating_add(SEG_SIZE);
            }
        }
        RawBody::Discard { flag, handle, sector, nr_sectors } => {
            put(l.discard_flag, &[flag]);
            put(l.discard_handle, &handle.to_le_bytes());
            put(l.sector, &sector.to_le_bytes());
            put(l.nr_sectors, &nr_sectors.to_le_bytes());
        }
        RawBody::Indirect { indirect_op, nr_segments, sector, handle, grefs } => {
            put(l.ind_op, &[indirect_op]);
            put(l.ind_nr_segments, &nr_segments.to_le_bytes());
            put(l.sector, &sector.to_le_bytes());
            put(l.ind_handle, &handle.to_le_bytes());
            let mut off = l.ind_grefs;
            for g in grefs {
                put(off, &g.to_le_bytes());
                off = off.saturating_add(4);
            }
        }
        RawBody::Other => {}
    }
    b
}

/// Encodes a segment descriptor.
pub fn encode_segment(s: &BlkifRequestSegment) -> [u8; SEG_SIZE] {
    let mut b = [0u8; SEG_SIZE];
    b[..4].copy_from_slice(&s.gref.to_le_bytes());
    b[4] = s.first_sect;
    b[5] = s.last_sect;
    b
}

/// A response, encoded with every padding byte zero (nothing of ours leaks to the frontend).
pub fn encode_response(abi: Abi, id: u64, operation: u8, status: i16) -> ([u8; 16], usize) {
    let mut b = [0u8; 16];
    b[..8].copy_from_slice(&id.to_le_bytes());
    let (op_off, st_off) = match abi {
        Abi::Native => (offset_of!(BlkifResponse, operation), offset_of!(BlkifResponse, status)),
        Abi::X86_32 => (offset_of!(BlkifX86_32Response, operation), offset_of!(BlkifX86_32Response, status)),
    };
    if let Some(x) = b.get_mut(op_off) {
        *x = operation;
    }
    if let Some(x) = b.get_mut(st_off..).and_then(|d| d.get_mut(..2)) {
        x.copy_from_slice(&status.to_le_bytes());
    }
    (b, abi.rsp_size())
}

/// Decodes a response (for the mock frontend): (id, operation, status).
pub fn decode_response(abi: Abi, b: &[u8]) -> (u64, u8, i16) {
    let (op_off, st_off) = match abi {
        Abi::Native => (offset_of!(BlkifResponse, operation), offset_of!(BlkifResponse, status)),
        Abi::X86_32 => (offset_of!(BlkifX86_32Response, operation), offset_of!(BlkifX86_32Response, status)),
    };
    (u64_at(b, 0), u8_at(b, op_off), u16_at(b, st_off).cast_signed())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layouts_round_trip_and_differ() {
        let mut seg = [BlkifRequestSegment::default(); 11];
        seg[0] = BlkifRequestSegment { gref: 77, first_sect: 1, last_sect: 6 };
        seg[10] = BlkifRequestSegment { gref: 0xdead_beef, first_sect: 0, last_sect: 7 };
        let r = RawRequest {
            operation: BLKIF_OP_WRITE,
            id: 0x1122_3344_5566_7788,
            body: RawBody::Rw { nr_segments: 11, handle: 3, sector: 0x1_0000_0001, seg },
        };
        for abi in [Abi::Native, Abi::X86_32] {
            assert_eq!(decode_request(abi, &encode_request(abi, &r)), r);
        }
        // The same bytes mean different things in the two layouts: id is at 8 vs 4.
        let n = encode_request(Abi::Native, &r);
        assert_ne!(decode_request(Abi::X86_32, &n).id, r.id);
        let ind = RawRequest {
            operation: BLKIF_OP_INDIRECT,
            id: 9,
            body: RawBody::Indirect {
                indirect_op: BLKIF_OP_READ,
                nr_segments: 300,
                sector: 8,
                handle: 1,
                grefs: [1, 2, 3, 4, 5, 6, 7, 8],
            },
        };
        let d = RawRequest {
            operation: BLKIF_OP_DISCARD,
            id: 5,
            body: RawBody::Discard { flag: 1, handle: 0, sector: 64, nr_sectors: 128 },
        };
        for abi in [Abi::Native, Abi::X86_32] {
            assert_eq!(decode_request(abi, &encode_request(abi, &ind)), ind);
            assert_eq!(decode_request(abi, &encode_request(abi, &d)), d);
        }
    }

    #[test]
    fn responses_have_zero_padding() {
        let (b, n) = encode_response(Abi::Native, u64::MAX, 6, -2);
        assert_eq!(n, 16);
        assert_eq!(b[9], 0);
        assert_eq!(&b[12..16], &[0, 0, 0, 0]);
        assert_eq!(decode_response(Abi::Native, &b), (u64::MAX, 6, -2));
        let (b, n) = encode_response(Abi::X86_32, 1, 0, -1);
        assert_eq!(n, 12);
        assert_eq!(decode_response(Abi::X86_32, &b[..12]), (1, 0, -1));
    }

    #[test]
    fn protocols_and_ring_sizes() {
        assert_eq!(Abi::from_protocol(None), Ok(Abi::Native));
        assert_eq!(Abi::from_protocol(Some("x86_32-abi")), Ok(Abi::X86_32));
        assert_eq!(Abi::from_protocol(Some("arm-abi")), Err(UnknownProtocol));
        assert_eq!(Abi::Native.ring_size(1), 32);
        assert_eq!(Abi::Native.ring_size(16), 512);
        assert_eq!(Abi::X86_32.ring_size(1), 32);
    }
}
