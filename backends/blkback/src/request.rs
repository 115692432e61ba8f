//! Validation: a [`RawRequest`] (one copy of what the frontend wrote) becomes a [`Request`]
//! the engine may act on, or an [`Invalid`] that becomes an error response with the
//! frontend's `id` echoed untouched. Parse, then execute (cf. Firecracker's block device).
use alloc::vec::Vec;

use xen_sys_mini::io::blkif::*;
use xen_sys_mini::GrantRef;

use crate::abi::{RawBody, RawRequest};

/// What this backend accepts, fixed at connect time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Disk size in 512-byte sectors.
    pub capacity: u64,
    pub read_only: bool,
    /// `feature-max-indirect-segments` we advertised (0 = no indirect requests).
    pub max_indirect_segments: u16,
    pub flush: bool,
    pub barrier: bool,
    pub discard: bool,
    pub discard_secure: bool,
}

/// The operation of a validated request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Read,
    Write,
    /// FLUSH_DISKCACHE: flush, then write the segments if there are any.
    Flush,
    /// WRITE_BARRIER: flush, write, flush.
    Barrier,
    Discard {
        secure: bool,
    },
}

impl Op {
    pub fn is_write(self) -> bool {
        matches!(self, Op::Write | Op::Flush | Op::Barrier)
    }
}

/// A validated segment: `first_sect <= last_sect < 8`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Segment {
    pub gref: GrantRef,
    pub first_sect: u8,
    pub last_sect: u8,
}

impl Segment {
    /// Sectors of 512 bytes it covers (1..=8).
    pub fn sectors(&self) -> u64 {
        u64::from(self.last_sect.saturating_sub(self.first_sect)).saturating_add(1)
    }
    /// Byte offset within the page.
    pub fn offset(&self) -> u16 {
        u16::from(self.first_sect).saturating_mul(512)
    }
    /// Bytes (512..=4096).
    pub fn bytes(&self) -> u16 {
        u16::try_from(self.sectors()).unwrap_or(0).saturating_mul(512)
    }
}

/// Where a request's segments are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Segments {
    /// In the request itself (0..=11).
    Direct(Vec<Segment>),
    /// In `pages` indirect pages, `count` of them; read and validated after the pages are
    /// mapped (`validate_segments`).
    Indirect { pages: Vec<GrantRef>, count: u16 },
}

/// A request the engine may act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// The frontend's id, opaque, echoed.
    pub id: u64,
    /// The `operation` the response carries: the request's, or `indirect_op` for
    /// INDIRECT (Linux blkfront checks it against its shadow copy).
    pub rsp_op: u8,
    pub op: Op,
    /// First 512-byte sector.
    pub sector: u64,
    /// DISCARD only.
    pub nr_sectors: u64,
    pub segs: Segments,
}

/// Why a request is refused; each variant names what the frontend got wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Invalid {
    /// An operation we do not implement or did not advertise (→ EOPNOTSUPP).
    Unsupported(u8),
    /// `nr_segments` out of range for the operation (`BLKIF_MAX_SEGMENTS_PER_REQUEST`, or
    /// the advertised `feature-max-indirect-segments`).
    BadSegmentCount(u16),
    /// A segment with `first_sect > last_sect`.
    FirstAfterLast { index: u16 },
    /// A segment with `last_sect >= 8` (beyond a 4 KiB page).
    BeyondPage { index: u16 },
    /// `sector + sectors` past the end of the disk, or overflowing.
    BeyondCapacity,
    /// A write to a read-only disk.
    ReadOnly,
    /// INDIRECT with an `indirect_op` other than READ or WRITE.
    BadIndirectOp(u8),
    /// A secure discard we did not advertise (→ EOPNOTSUPP, as Linux answers).
    SecureDiscardUnsupported,
    /// An indirect page could not be mapped/read (bad gref from the frontend).
    BadIndirectPage,
    /// A data segment could not be mapped/copied (bad gref or permissions).
    BadGrant,
}

impl Invalid {
    /// The `BLKIF_RSP_*` status for this refusal.
    pub fn status(self) -> i16 {
        match self {
            Invalid::Unsupported(_) | Invalid::SecureDiscardUnsupported => BLKIF_RSP_EOPNOTSUPP,
            _ => BLKIF_RSP_ERROR,
        }
    }
}

/// The response `operation` for a refused request.
pub fn rsp_op_of(raw: &RawRequest) -> u8 {
    match raw.body {
        RawBody::Indirect { indirect_op, .. } => indirect_op,
        _ => raw.operation,
    }
}

/// Checks one segment descriptor (`first_sect <= last_sect < 8`, `io/blkif.h`).
pub fn validate_segment(s: &BlkifRequestSegment, index: u16) -> Result<Segment, Invalid> {
    if s.last_sect >= BLKIF_SECTORS_PER_PAGE {
        return Err(Invalid::BeyondPage { index });
    }
    if s.first_sect > s.last_sect {
        return Err(Invalid::FirstAfterLast { index });
    }
    Ok(Segment { gref: s.gref, first_sect: s.first_sect, last_sect: s.last_sect })
}

/// Checks a whole segment list and that `sector + total` stays on the disk.
pub fn validate_segments(raw: &[BlkifRequestSegment], sector: u64, limits: &Limits) -> Result<Vec<Segment>, Invalid> {
    let mut out = Vec::with_capacity(raw.len());
    let mut total: u64 = 0;
    for (i, s) in raw.iter().enumerate() {
        let seg = validate_segment(s, u16::try_from(i).unwrap_or(u16::MAX))?;
        total = total.saturating_add(seg.sectors());
        out.push(seg);
    }
    check_range(sector, total, limits)?;
    Ok(out)
}

fn check_range(sector: u64, sectors: u64, limits: &Limits) -> Result<(), Invalid> {
    match sector.checked_add(sectors) {
        Some(end) if end <= limits.capacity => Ok(()),
        _ => Err(Invalid::BeyondCapacity),
    }
}

/// Validates a copied request. Indirect requests come back with their pages still to be
/// read (`Segments::Indirect`); everything else is fully checked here.
pub fn validate(raw: &RawRequest, limits: &Limits) -> Result<Request, Invalid> {
    let rsp_op = rsp_op_of(raw);
    match (raw.operation, raw.body) {
        (
            op @ (BLKIF_OP_READ | BLKIF_OP_WRITE | BLKIF_OP_FLUSH_DISKCACHE | BLKIF_OP_WRITE_BARRIER),
            RawBody::Rw { nr_segments, sector, seg, .. },
        ) => {
            let op = match op {
                BLKIF_OP_READ => Op::Read,
                BLKIF_OP_WRITE => Op::Write,
                BLKIF_OP_FLUSH_DISKCACHE if limits.flush => Op::Flush,
                BLKIF_OP_WRITE_BARRIER if limits.barrier => Op::Barrier,
                other => return Err(Invalid::Unsupported(other)),
            };
            let n = usize::from(nr_segments);
            // READ/WRITE carry 1..=11 segments; a flush or barrier may carry none.
            let min = if matches!(op, Op::Read | Op::Write) { 1 } else { 0 };
            if n < min || n > BLKIF_MAX_SEGMENTS_PER_REQUEST {
                return Err(Invalid::BadSegmentCount(u16::from(nr_segments)));
            }
            if op.is_write() && limits.read_only {
                return Err(Invalid::ReadOnly);
            }
            // An empty flush carries no sectors and its `sector_number` means nothing (Linux
            // blkfront leaves whatever the block layer had there): no range to check, as in
            // Linux blkback's `xen_vbd_translate`, which checks only when there are sectors.
            let segs =
                if n == 0 { Vec::new() } else { validate_segments(seg.get(..n).unwrap_or_default(), sector, limits)? };
            Ok(Request { id: raw.id, rsp_op, op, sector, nr_sectors: 0, segs: Segments::Direct(segs) })
        }
        (BLKIF_OP_DISCARD, RawBody::Discard { flag, sector, nr_sectors, .. }) => {
            if !limits.discard {
                return Err(Invalid::Unsupported(BLKIF_OP_DISCARD));
            }
            let secure = flag & BLKIF_DISCARD_SECURE != 0;
            if secure && !limits.discard_secure {
                return Err(Invalid::SecureDiscardUnsupported);
            }
            if limits.read_only {
                return Err(Invalid::ReadOnly);
            }
            check_range(sector, nr_sectors, limits)?;
            Ok(Request {
                id: raw.id,
                rsp_op,
                op: Op::Discard { secure },
                sector,
                nr_sectors,
                segs: Segments::Direct(Vec::new()),
            })
        }
        (BLKIF_OP_INDIRECT, RawBody::Indirect { indirect_op, nr_segments, sector, grefs, .. }) => {
            if limits.max_indirect_segments == 0 {
                return Err(Invalid::Unsupported(BLKIF_OP_INDIRECT));
            }
            let op = match indirect_op {
                BLKIF_OP_READ => Op::Read,
                BLKIF_OP_WRITE => Op::Write,
                other => return Err(Invalid::BadIndirectOp(other)),
            };
            if nr_segments == 0 || nr_segments > limits.max_indirect_segments {
                return Err(Invalid::BadSegmentCount(nr_segments));
            }
            if op.is_write() && limits.read_only {
                return Err(Invalid::ReadOnly);
            }
            // Cheap early range check with the most sectors the segments could cover; the
            // exact one follows once the segments are read.
            if sector >= limits.capacity {
                return Err(Invalid::BeyondCapacity);
            }
            let pages = usize::from(nr_segments).div_ceil(BLKIF_SEGS_PER_INDIRECT_FRAME);
            let pages = grefs.get(..pages).unwrap_or_default().to_vec();
            Ok(Request {
                id: raw.id,
                rsp_op,
                op,
                sector,
                nr_sectors: 0,
                segs: Segments::Indirect { pages, count: nr_segments },
            })
        }
        (other, _) => Err(Invalid::Unsupported(other)),
    }
}
