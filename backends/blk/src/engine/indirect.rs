//! Indirect requests (`BLKIF_OP_INDIRECT`, `io/blkif.h`): their segment descriptors live in
//! up to eight granted pages. Every indirect page of a pass is mapped in **one** batch, each
//! page's descriptors are copied out once, and only the copy is decoded and validated.
use alloc::rc::Rc;
use alloc::vec::Vec;

use xen_sys_mini::io::blkif::{BlkifRequestSegment, BLKIF_SEGS_PER_INDIRECT_FRAME};

use super::lifecycle::{Answers, Outcome, Resolved, Taken};
use super::{release, Connection};
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
        let mut reqs: Vec<MapReq> = Vec::new();
        let mut owners: Vec<(usize, usize)> = Vec::new(); // (request, page)
        let mut pages: Vec<Vec<Option<Rc<M>>>> = taken.iter().map(|_| Vec::new()).collect();
        for (ti, t) in taken.iter().enumerate() {
            if let Segments::Indirect { pages: refs, .. } = &t.req.segs {
                self.stats.indirect_req = self.stats.indirect_req.saturating_add(1);
                for (pi, &gref) in refs.iter().enumerate() {
                    let hit = self.path.pool_get(gref);
                    if hit.is_none() {
                        reqs.push(MapReq { dom: self.dom, gref, readonly: !keep });
                        owners.push((ti, pi));
                    }
                    if let Some(slot) = pages.get_mut(ti) {
                        slot.push(hit);
                    }
                }
            }
        }
        self.map_into(g, &reqs, &owners, &mut pages);
        let mut out = Vec::with_capacity(taken.len());
        for (mut t, maps) in taken.into_iter().zip(pages) {
            let segs = match &mut t.req.segs {
                Segments::Direct(s) => Ok(core::mem::take(s)),
                Segments::Indirect { count, .. } => read_descriptors(&maps, *count, t.req.sector, &self.limits),
            };
            for m in maps.into_iter().flatten() {
                release(m, unmap);
            }
            match segs {
                Ok(segs) => out.push(Resolved { queue: t.queue, req: t.req, segs }),
                Err(e) => ans.answer(&mut self.stats, t.queue, t.req.id, t.req.rsp_op, Outcome::Refused(e)),
            }
        }
        out
    }
}

/// Copies `count` descriptors out of the mapped indirect pages (once) and validates them.
fn read_descriptors<M: Page>(
    maps: &[Option<Rc<M>>],
    count: u16,
    sector: u64,
    limits: &request::Limits,
) -> Result<Vec<Segment>, Invalid> {
    if maps.iter().any(Option::is_none) {
        return Err(Invalid::BadIndirectPage);
    }
    let mut raw: Vec<BlkifRequestSegment> = Vec::with_capacity(usize::from(count));
    let mut left = usize::from(count);
    let mut buf = alloc::vec![0u8; BLKIF_SEGS_PER_INDIRECT_FRAME * SEGMENT_SIZE];
    for m in maps.iter().flatten() {
        let n = left.min(BLKIF_SEGS_PER_INDIRECT_FRAME);
        let bytes = buf.get_mut(..n.saturating_mul(SEGMENT_SIZE)).unwrap_or_default();
        // One copy of the descriptors; only the copy is validated and used.
        m.read(0, bytes).map_err(|_| Invalid::BadIndirectPage)?;
        raw.extend(bytes.chunks_exact(SEGMENT_SIZE).map(decode_segment));
        left = left.saturating_sub(n);
    }
    request::validate_segments(&raw, sector, limits)
}
