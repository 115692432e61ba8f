//! Indirect requests (`BLKIF_OP_INDIRECT`, `io/blkif.h`): their segment descriptors live in
//! up to eight granted pages. Every indirect page of a pass is mapped in **one** batch, each
//! page's descriptors are copied out once, and only the copy is decoded and validated.
use crate::hv::Count;
use alloc::rc::Rc;
use alloc::vec::Vec;

use xen_sys_mini::io::blkif::{BlkifRequestSegment, BLKIF_SEGS_PER_INDIRECT_FRAME};

use super::lifecycle::{Answers, Outcome, Resolved, Taken};
use super::{release, try_vec, Connection};
use crate::abi::{decode_segment, SEGMENT_SIZE};
use crate::hv::{Grants, MapReq, Page};
use crate::request::{self, Invalid, Segment, Segments};

impl<M: Page> Connection<M> {
    /// Turns every taken request into a resolved one: direct segments as they are,
    /// indirect ones read from their pages. A request whose pages cannot be mapped or whose
    /// descriptors are invalid is answered here.
    pub(super) fn resolve<G: Grants<Mapping = M>>(
        &mut self,
        g: &mut G,
        taken: Vec<Taken>,
        ans: &mut Answers,
        unmap: &mut Vec<M>,
    ) -> Vec<Resolved> {
        // Persistent grants cover indirect pages too (Linux blkfront keeps them granted).
        let keep = self.path.keeps();
        let n_pages: usize = taken
            .iter()
            .map(|t| if let Segments::Indirect { pages, .. } = &t.req.segs { pages.len() } else { 0 })
            .sum();
        // Room for the pass's bookkeeping, or every request of it fails (no abort).
        let room = (try_vec(n_pages), try_vec(n_pages), try_vec(taken.len()), try_vec(taken.len()));
        let (Some(mut reqs), Some(mut owners), Some(mut pages), Some(mut out)) = room else {
            for t in taken {
                ans.answer(&mut self.stats, t.queue, t.req.id, t.req.rsp_op, Outcome::NoMemory);
            }
            return Vec::new();
        };
        for t in &taken {
            let n = if let Segments::Indirect { pages, .. } = &t.req.segs { pages.len() } else { 0 };
            // At most eight: a failure here leaves the slot short, and the request fails.
            let mut slot = Vec::new();
            let _ = slot.try_reserve_exact(n);
            pages.push(slot);
        }
        for (ti, t) in taken.iter().enumerate() {
            if let Segments::Indirect { pages: refs, .. } = &t.req.segs {
                self.stats.indirect_req.inc();
                for (pi, &gref) in refs.iter().enumerate() {
                    let hit = self.path.pool_get(gref);
                    if hit.is_none() {
                        reqs.push(MapReq { dom: self.dom, gref, readonly: !keep });
                        owners.push((ti, pi));
                    }
                    if let Some(slot) = pages.get_mut(ti) {
                        if slot.len() < slot.capacity() {
                            slot.push(hit);
                        }
                    }
                }
            }
        }
        self.map_into(g, &reqs, &owners, &mut pages);
        for (mut t, maps) in taken.into_iter().zip(pages) {
            let segs = match &mut t.req.segs {
                Segments::Direct(s) => Ok(core::mem::take(s)),
                Segments::Indirect { count, pages } if maps.len() == pages.len() => {
                    read_descriptors(&maps, *count, t.req.sector, &self.limits)
                }
                Segments::Indirect { .. } => Err(Resolve::NoMemory),
            };
            for m in maps.into_iter().flatten() {
                release(m, unmap);
            }
            let outcome = match segs {
                // Reserved above: never grows.
                Ok(segs) => {
                    out.push(Resolved { queue: t.queue, req: t.req, segs });
                    continue;
                }
                Err(Resolve::Invalid(e)) => Outcome::Refused(e),
                Err(Resolve::NoMemory) => Outcome::NoMemory,
            };
            ans.answer(&mut self.stats, t.queue, t.req.id, t.req.rsp_op, outcome);
        }
        out
    }
}

/// Why an indirect request's segments could not be read.
enum Resolve {
    Invalid(Invalid),
    NoMemory,
}

impl From<Invalid> for Resolve {
    fn from(e: Invalid) -> Self {
        Resolve::Invalid(e)
    }
}

/// Copies `count` descriptors out of the mapped indirect pages (once) and validates them.
fn read_descriptors<M: Page>(
    maps: &[Option<Rc<M>>],
    count: u16,
    sector: u64,
    limits: &request::Limits,
) -> Result<Vec<Segment>, Resolve> {
    if maps.iter().any(Option::is_none) {
        return Err(Invalid::BadIndirectPage.into());
    }
    let mut raw: Vec<BlkifRequestSegment> = try_vec(usize::from(count)).ok_or(Resolve::NoMemory)?;
    let mut left = usize::from(count);
    let mut buf: Vec<u8> = try_vec(BLKIF_SEGS_PER_INDIRECT_FRAME * SEGMENT_SIZE).ok_or(Resolve::NoMemory)?;
    buf.resize(BLKIF_SEGS_PER_INDIRECT_FRAME * SEGMENT_SIZE, 0);
    for m in maps.iter().flatten() {
        let n = left.min(BLKIF_SEGS_PER_INDIRECT_FRAME);
        let bytes = buf.get_mut(..n.saturating_mul(SEGMENT_SIZE)).unwrap_or_default();
        // One copy of the descriptors; only the copy is validated and used.
        m.read(0, bytes).map_err(|_| Invalid::BadIndirectPage)?;
        // Within the capacity reserved above (`count` at most).
        for d in bytes.chunks_exact(SEGMENT_SIZE).map(decode_segment) {
            if raw.len() < raw.capacity() {
                raw.push(d);
            }
        }
        left = left.saturating_sub(n);
    }
    Ok(request::validate_segments(&raw, sector, limits)?)
}
