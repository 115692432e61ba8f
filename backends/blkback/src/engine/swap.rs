//! The swap data path (`DataPath::Swap`, docs/grant-swap.md): the copy path, except that
//! each data segment moves by frame exchange (`GNTTABOP_swap_frame`, this repository's
//! hypervisor patch) between one of the store's scratch frames and the frontend's page.
//!
//! - READ: the disk bytes are copied into a scratch frame (`GNTTABOP_copy`, ours to ours),
//!   then the scratch frame and the frontend's page are exchanged.
//! - WRITE: the frontend's page is exchanged into a scratch frame, then copied to the disk;
//!   a whole-page WRITE onto a whole frame of the disk is exchanged with that frame directly
//!   (zero-copy: `swap_direct`).
//!
//! A scratch frame goes to a frontend only if it holds nothing (zeroed) or that frontend's
//! own former data: after an exchange it *is* the frontend's former frame. Any segment the
//! hypervisor refuses is copied instead (per segment); `bad_domain` (a PV frontend such as
//! dom0) turns exchanges off for the connection. Rings and indirect pages are never
//! exchanged. Requests other than READ and WRITE go to the copy path, in ring order.
use crate::hv::Count;
use alloc::rc::Rc;
use alloc::vec::Vec;

use super::lifecycle::{Answers, Outcome, Resolved};
use super::{try_vec, Connection};
use crate::hv::{CopyOp, CopyPtr, DomId, GrantError, GrantRef, Grants, Page, SwapOp};
use crate::request::{Invalid, Op};
use xen_sys_mini::grant_table::gntst;

/// Whether a connection exchanges frames, and if not, why (published as `swap`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SwapMode {
    /// Exchanging these kinds of data segments.
    On { read: bool, write: bool },
    /// The hypervisor has no `GNTTABOP_swap_frame` (stock Xen): copying.
    NoHypervisorOp,
    /// The frontend did not say its pages may be exchanged (no `feature-grant-swap`, no
    /// persistent grants, i.e. Linux blkfront's bounce pages): copying.
    FrontendNotSafe,
    /// Xen refused the frontend (`GNTST_bad_domain`: a PV guest such as dom0): copying.
    BadDomain,
    /// The store has no scratch frames: copying.
    NoScratch,
}

impl SwapMode {
    /// The mode for a new connection: the op must exist, and the frontend must have
    /// declared `feature-grant-swap` (bit 0 READ, bit 1 WRITE) or negotiated persistent
    /// grants (Linux blkfront then bounces every segment through private pages since
    /// XSA-396, so exchanging them is invisible to its users).
    pub fn new(hypervisor_has_op: bool, declared: u8, persistent: bool) -> Self {
        if !hypervisor_has_op {
            return SwapMode::NoHypervisorOp;
        }
        let (read, write) = if persistent { (true, true) } else { (declared & 1 != 0, declared & 2 != 0) };
        if read || write {
            SwapMode::On { read, write }
        } else {
            SwapMode::FrontendNotSafe
        }
    }

    /// The published word.
    pub fn name(self) -> &'static str {
        match self {
            SwapMode::On { read: true, write: true } => "on",
            SwapMode::On { read: true, write: false } => "on (reads)",
            SwapMode::On { .. } => "on (writes)",
            SwapMode::NoHypervisorOp => "copy: hypervisor has no GNTTABOP_swap_frame",
            SwapMode::FrontendNotSafe => "copy: frontend did not allow exchanges",
            SwapMode::BadDomain => "copy: hypervisor refused the frontend (bad_domain)",
            SwapMode::NoScratch => "copy: no scratch frames",
        }
    }

    /// As a number for the statistics: 1 on, 2.. the reasons for copying.
    pub fn code(self) -> u64 {
        match self {
            SwapMode::On { .. } => 1,
            SwapMode::NoHypervisorOp => 2,
            SwapMode::FrontendNotSafe => 3,
            SwapMode::BadDomain => 4,
            SwapMode::NoScratch => 5,
        }
    }

    fn allows(self, op: Op) -> bool {
        match (self, op) {
            (SwapMode::On { read, .. }, Op::Read) => read,
            (SwapMode::On { write, .. }, Op::Write) => write,
            _ => false,
        }
    }
}

/// One data segment on its way: which request, the grant, where in the page, and the
/// disk's frame pieces behind it (at most two).
#[derive(Debug, Clone, Copy)]
struct Seg {
    wi: usize,
    write: bool,
    gref: GrantRef,
    in_page: u16,
    pieces: [(u64, u16, u16); 2],
    n_pieces: usize,
}

impl Seg {
    fn pieces(&self) -> &[(u64, u16, u16)] {
        self.pieces.get(..self.n_pieces).unwrap_or(&[])
    }

    /// A WRITE of a whole page onto a whole frame of the disk: exchanged with that frame
    /// directly (zero-copy), no scratch frame, no copy. The frontend gets the frame with
    /// the disk's old contents of that block: its own disk's data.
    fn direct(&self) -> Option<u64> {
        match self.pieces() {
            [(gfn, 0, 4096)] if self.write && self.in_page == 0 => Some(*gfn),
            _ => None,
        }
    }

    /// Copy ops between `at` (a page: the grant, or a scratch frame) and the disk's pieces,
    /// each owned by this segment's request.
    fn copies(&self, at: impl Fn(u16) -> CopyPtr, out: &mut Vec<CopyOp>, owner: &mut Vec<usize>) {
        let mut in_page = self.in_page;
        for &(gfn, foff, len) in self.pieces() {
            let disk = CopyPtr::Local { gfn, offset: foff };
            let page = at(in_page);
            let (src, dst) = if self.write { (page, disk) } else { (disk, page) };
            out.push(CopyOp { src, dst, len });
            owner.push(self.wi);
            in_page = in_page.saturating_add(len);
        }
    }
}

impl<M: Page> Connection<M> {
    /// Swap path: READ and WRITE requests the mode allows by exchange (in rounds of at most
    /// the scratch pool), everything else through the copy path in ring order.
    pub(super) fn submit_swapped<G, S>(&mut self, g: &mut G, store: &mut S, work: Vec<Resolved>, ans: &mut Answers)
    where
        G: Grants<Mapping = M>,
        S: crate::store::Store<Rc<M>>,
    {
        let scratch_len = store.scratch().map_or(0, |p| p.pages.len());
        if scratch_len == 0 {
            self.swap_mode = SwapMode::NoScratch;
        }
        let n_segs: usize = work.iter().map(|w| w.segs.len()).sum();
        let room = (try_vec::<Seg>(scratch_len.min(n_segs)), try_vec(work.len()), try_vec(8));
        let (Some(mut round), Some(mut failed), Some(mut pieces)) = room else {
            for w in work {
                ans.answer(&mut self.stats, w.queue, w.req.id, w.req.rsp_op, Outcome::NoMemory);
            }
            return;
        };
        failed.resize(work.len(), None::<Invalid>);
        let mut mine = Vec::new();
        if mine.try_reserve_exact(work.len()).is_err() {
            for w in work {
                ans.answer(&mut self.stats, w.queue, w.req.id, w.req.rsp_op, Outcome::NoMemory);
            }
            return;
        }
        for (wi, w) in work.iter().enumerate() {
            if !self.swap_mode.allows(w.req.op) {
                // Ring order: what was gathered goes first.
                self.swap_round(g, store, &mut round, &mut failed);
                self.submit_copied(g, store, core::slice::from_ref(w), ans);
                mine.push(false);
                continue;
            }
            mine.push(true);
            let mut off = w.req.sector.saturating_mul(512);
            for s in &w.segs {
                pieces.clear();
                if !store.frames(off, u32::from(s.bytes()), &mut pieces) || pieces.len() > 2 {
                    if let Some(f) = failed.get_mut(wi) {
                        *f = Some(Invalid::BeyondCapacity);
                    }
                    break;
                }
                let mut seg = Seg {
                    wi,
                    write: w.req.op == Op::Write,
                    gref: s.gref,
                    in_page: s.offset(),
                    pieces: [(0, 0, 0); 2],
                    n_pieces: pieces.len(),
                };
                for (d, p) in seg.pieces.iter_mut().zip(pieces.iter()) {
                    *d = *p;
                }
                round.push(seg);
                if round.len() >= scratch_len {
                    self.swap_round(g, store, &mut round, &mut failed);
                }
                off = off.saturating_add(u64::from(s.bytes()));
            }
        }
        self.swap_round(g, store, &mut round, &mut failed);
        for ((w, f), mine) in work.iter().zip(failed).zip(mine) {
            if !mine {
                continue;
            }
            let outcome = match f {
                Some(e) => Outcome::Refused(e),
                None => Outcome::Done { op: w.req.op, sectors: w.sectors(), cpu_bytes: 0 },
            };
            ans.answer(&mut self.stats, w.queue, w.req.id, w.req.rsp_op, outcome);
        }
    }

    /// One round: each segment gets scratch frame `i`. (1) One copy call zeroes frames
    /// that may hold another frontend's data and fills the READ frames from the disk; (2)
    /// one exchange call; (3) one copy call stores the exchanged WRITE frames and copies
    /// every refused segment straight between grant and disk.
    fn swap_round<G, S>(&mut self, g: &mut G, store: &mut S, round: &mut Vec<Seg>, failed: &mut [Option<Invalid>])
    where
        G: Grants<Mapping = M>,
        S: crate::store::Store<Rc<M>>,
    {
        if round.is_empty() {
            return;
        }
        let dom = self.dom;
        // This round's scratch frames: the first `round.len()` of the pool.
        let (zero, frames): (u64, Vec<(u64, Option<DomId>)>) =
            store.scratch().map_or((0, Vec::new()), |p| (p.zero, p.pages.iter().take(round.len()).copied().collect()));
        let n = frames.len();
        let mut ops: Vec<CopyOp> = Vec::new();
        let mut owner: Vec<usize> = Vec::new();
        // A segment without a scratch frame (never: a round runs when the pool is full, and
        // a store without one is served by the copy path) is copied, never dropped.
        for s in round.iter().skip(n) {
            if failed.get(s.wi).is_some_and(Option::is_none) {
                self.stats.swap_fallbacks.inc();
                s.copies(|offset| CopyPtr::Gref { dom, gref: s.gref, offset }, &mut ops, &mut owner);
            }
        }
        // (1) Zero what may hold another frontend's data (its own call, so a frame whose
        // zeroing failed is known and not exchanged), then fill the READ frames.
        let mut clean: Vec<bool> = frames.iter().map(|&(_, last)| last.is_none_or(|d| d == dom)).collect();
        let zeroing: Vec<(usize, CopyOp)> = frames
            .iter()
            .enumerate()
            .filter(|(i, _)| !clean.get(*i).copied().unwrap_or(true))
            .map(|(i, &(gfn, _))| {
                let src = CopyPtr::Local { gfn: zero, offset: 0 };
                (i, CopyOp { src, dst: CopyPtr::Local { gfn, offset: 0 }, len: 4096 })
            })
            .collect();
        if !zeroing.is_empty() {
            let zops: Vec<CopyOp> = zeroing.iter().map(|z| z.1).collect();
            self.stats.copy_calls.inc();
            self.stats.copy_ops.add_sat(zops.len() as u64);
            for ((i, _), r) in zeroing.iter().zip(g.copy(&zops)) {
                if r.is_ok() {
                    self.stats.swap_zeroed.inc();
                    if let Some(c) = clean.get_mut(*i) {
                        *c = true;
                    }
                    if let Some(p) = store.scratch().and_then(|p| p.pages.get_mut(*i)) {
                        p.1 = None;
                    }
                }
            }
        }
        for (s, &(gfn, _)) in round.iter().zip(&frames) {
            if !s.write {
                s.copies(|offset| CopyPtr::Local { gfn, offset }, &mut ops, &mut owner);
            }
        }
        self.run_copies(g, &mut ops, &mut owner, failed);
        // (2) The exchanges: with the scratch frame, or for a whole-page WRITE with the
        // disk's own frame. A segment whose request already failed is left alone.
        let todo: Vec<bool> = round
            .iter()
            .zip(&clean)
            .map(|(s, c)| (*c || s.direct().is_some()) && failed.get(s.wi).is_some_and(Option::is_none))
            .collect();
        let picked: Vec<SwapOp> = round
            .iter()
            .zip(&frames)
            .zip(&todo)
            .filter(|(_, t)| **t)
            .map(|((s, &(gfn, _)), _)| SwapOp { gfn: s.direct().unwrap_or(gfn), dom, gref: s.gref })
            .collect();
        // One exchange call for the round (none when nothing is left to exchange).
        let mut results = if picked.is_empty() {
            Vec::new().into_iter()
        } else {
            self.stats.swap_calls.inc();
            g.swap(&picked).into_iter()
        };
        for (i, (s, t)) in round.iter().zip(&todo).enumerate() {
            if !*t {
                // A frame that could not be cleaned: this segment is copied.
                if failed.get(s.wi).is_some_and(Option::is_none) {
                    self.stats.swap_fallbacks.inc();
                    s.copies(|offset| CopyPtr::Gref { dom, gref: s.gref, offset }, &mut ops, &mut owner);
                }
                continue;
            }
            let r = results.next().unwrap_or(Err(GrantError::Hypercall(0)));
            let gfn = frames.get(i).map_or(0, |f| f.0);
            match r {
                Ok(()) if s.direct().is_some() => {
                    // The data is on the disk: nothing to copy, no scratch frame used.
                    self.stats.swapped.inc();
                    self.stats.swap_direct.inc();
                }
                Ok(()) => {
                    self.stats.swapped.inc();
                    // Holds the frontend's former frame now (or, for a READ, what it
                    // gave back): this frontend's data only.
                    if let Some(p) = store.scratch().and_then(|p| p.pages.get_mut(i)) {
                        p.1 = Some(dom);
                    }
                    if s.write {
                        s.copies(|offset| CopyPtr::Local { gfn, offset }, &mut ops, &mut owner);
                    }
                }
                Err(e) => {
                    self.stats.swap_fallbacks.inc();
                    if e == GrantError::Status(gntst::BAD_DOMAIN) {
                        // A PV frontend (dom0): Xen will refuse every exchange with it.
                        self.swap_mode = SwapMode::BadDomain;
                    }
                    // A READ frame was filled with this disk's data, for this frontend.
                    if !s.write {
                        if let Some(p) = store.scratch().and_then(|p| p.pages.get_mut(i)) {
                            p.1 = Some(dom);
                        }
                    }
                    s.copies(|offset| CopyPtr::Gref { dom, gref: s.gref, offset }, &mut ops, &mut owner);
                }
            }
        }
        // (3) WRITE frames to disk, refused segments copied directly.
        self.run_copies(g, &mut ops, &mut owner, failed);
        round.clear();
    }
}
