//! The data paths. `Path` owns what each needs, so no impossible combination exists: only
//! the persistent path has a pool.
//!
//! - **Map**: every data grant of a pass mapped in one batch (read-only for WRITEs), the
//!   store copies between the mapped page and its memory, all unmapped in one batch.
//! - **Persistent** (map path, `feature-persistent` negotiated): mappings kept in a bounded
//!   pool, only misses mapped; warm passes make no grant hypercall.
//! - **Copy**: `GNTTABOP_copy` between the frontend's grants and the store's frames, one
//!   call per batch limit; no data page is mapped.
use crate::hv::Count;
use alloc::rc::Rc;
use alloc::vec::Vec;

use super::lifecycle::{Answers, InFlight, Outcome, Resolved};
use super::{release, try_vec, Connection, DataPath};
use crate::hv::{CopyOp, CopyPtr, GrantRef, Grants, MapReq, Page};
use crate::persistent::PersistentPool;
use crate::request::{Invalid, Op};
use crate::store::{IoOp, IoSeg, StoreIo};

#[derive(Debug)]
pub(super) enum Path<M> {
    Map,
    Persistent(PersistentPool<M>),
    Copy,
    /// Answers without moving data (`DataPath::Noop`).
    Noop,
    /// The copy path with frame exchanges for data segments (`engine::swap`); like the
    /// copy path it keeps no mapping (an exchanged grant must not be pinned).
    Swap,
}

impl<M> Path<M> {
    /// The path for the driver domain's choice and what the frontend negotiated.
    pub fn new(path: DataPath, persistent: bool, cap: usize) -> Self {
        match (path, persistent) {
            (DataPath::Map, true) => Path::Persistent(PersistentPool::new(cap)),
            (DataPath::Map, false) => Path::Map,
            // The frontend keeps its pages granted; copies need no mapping to keep.
            (DataPath::Copy, _) => Path::Copy,
            (DataPath::Noop, _) => Path::Noop,
            (DataPath::Swap, _) => Path::Swap,
        }
    }

    pub fn is_noop(&self) -> bool {
        matches!(self, Path::Noop)
    }

    pub fn is_copy(&self) -> bool {
        matches!(self, Path::Copy)
    }

    pub fn is_swap(&self) -> bool {
        matches!(self, Path::Swap)
    }

    /// Whether new mappings are kept (and so mapped writable: one mapping serves both
    /// directions).
    pub fn keeps(&self) -> bool {
        matches!(self, Path::Persistent(_))
    }

    pub fn pool_cap(&self) -> usize {
        match self {
            Path::Persistent(p) => p.cap(),
            _ => 0,
        }
    }

    pub fn pool_len(&self) -> usize {
        match self {
            Path::Persistent(p) => p.len(),
            _ => 0,
        }
    }

    /// Starts a pass (for the pool's LRU ages).
    pub fn next_pass(&mut self) {
        if let Path::Persistent(p) = self {
            p.next_pass();
        }
    }

    /// The kept mapping of `gref`, if any.
    pub fn pool_get(&mut self, gref: GrantRef) -> Option<Rc<M>> {
        match self {
            Path::Persistent(p) => p.get(gref),
            _ => None,
        }
    }

    /// A new mapping: kept if the pool has room, else transient.
    pub fn keep(&mut self, gref: GrantRef, m: M) -> Rc<M> {
        match self {
            Path::Persistent(p) => p.insert(gref, m).unwrap_or_else(Rc::new),
            _ => Rc::new(m),
        }
    }

    /// A full pool that has missed drops some idle entries (to unmap).
    pub fn make_room(&mut self, missed: bool) -> Vec<M> {
        match self {
            Path::Persistent(p) if p.is_full() && missed => p.evict_lru(8),
            _ => Vec::new(),
        }
    }

    /// Every kept mapping no I/O still holds (disconnect).
    pub fn drain(&mut self) -> Vec<M> {
        match self {
            Path::Persistent(p) => p.drain(),
            _ => Vec::new(),
        }
    }
}

impl<M: Page> Connection<M> {
    /// Maps `reqs` in one batch and puts each mapping into `slots[owner.0][owner.1]` (kept
    /// by the persistent path when it has room); a failed op leaves its slot empty.
    pub(super) fn map_into<G: Grants<Mapping = M>>(
        &mut self,
        g: &mut G,
        reqs: &[MapReq],
        owners: &[(usize, usize)],
        slots: &mut [Vec<Option<Rc<M>>>],
    ) {
        if reqs.is_empty() {
            return;
        }
        self.stats.map_calls.inc();
        self.stats.map_ops.add_sat(reqs.len() as u64);
        for (&(wi, si), (r, res)) in owners.iter().zip(reqs.iter().zip(g.map(reqs))) {
            let Ok(m) = res else { continue };
            let rc = self.path.keep(r.gref, m);
            if let Some(slot) = slots.get_mut(wi).and_then(|v| v.get_mut(si)) {
                *slot = Some(rc);
            }
        }
    }

    /// Map and persistent paths: every data grant not kept mapped in one batch, then each
    /// request to the store with its mapped pages.
    pub(super) fn submit_mapped<G, S>(
        &mut self,
        g: &mut G,
        store: &mut S,
        work: Vec<Resolved>,
        ans: &mut Answers,
        unmap: &mut Vec<M>,
    ) where
        G: Grants<Mapping = M>,
        S: crate::store::Store<Rc<M>>,
    {
        let keep = self.path.keeps();
        let n_segs: usize = work.iter().map(|w| w.segs.len()).sum();
        // Room for the pass's bookkeeping, or every request of it fails (no abort).
        let (Some(mut bufs), Some(mut reqs), Some(mut owners)) =
            (try_vec(work.len()), try_vec(n_segs), try_vec(n_segs))
        else {
            for w in work {
                ans.answer(&mut self.stats, w.queue, w.req.id, w.req.rsp_op, Outcome::NoMemory);
            }
            return;
        };
        for w in &work {
            // A slot list that finds no room stays short, and its request fails below.
            let mut v: Vec<Option<Rc<M>>> = Vec::new();
            let _ = v.try_reserve_exact(w.segs.len());
            bufs.push(v);
        }
        for (wi, w) in work.iter().enumerate() {
            // Data flows into the frontend's page on READ: only then map writable. A kept
            // mapping serves both directions, so it is mapped writable.
            let readonly = !keep && w.req.op != Op::Read;
            for (si, s) in w.segs.iter().enumerate() {
                let hit = self.path.pool_get(s.gref);
                if hit.is_some() {
                    self.stats.persistent_hits.inc();
                } else {
                    if keep {
                        self.stats.persistent_misses.inc();
                    }
                    reqs.push(MapReq { dom: self.dom, gref: s.gref, readonly });
                    owners.push((wi, si));
                }
                if let Some(v) = bufs.get_mut(wi) {
                    if v.len() < v.capacity() {
                        v.push(hit);
                    }
                }
            }
        }
        self.map_into(g, &reqs, &owners, &mut bufs);
        for (w, maps) in work.into_iter().zip(bufs) {
            let short = maps.len() != w.segs.len();
            let mut segs: Vec<IoSeg<Rc<M>>> = Vec::new();
            if short || maps.iter().any(Option::is_none) || segs.try_reserve_exact(maps.len()).is_err() {
                for m in maps.into_iter().flatten() {
                    release(m, unmap);
                }
                let outcome = if short || segs.capacity() < w.segs.len() {
                    Outcome::NoMemory
                } else {
                    Outcome::Refused(Invalid::BadGrant)
                };
                ans.answer(&mut self.stats, w.queue, w.req.id, w.req.rsp_op, outcome);
                continue;
            }
            segs.extend(w.segs.iter().zip(maps.into_iter().flatten()).map(|(s, buf)| IoSeg {
                buf,
                offset: s.offset(),
                len: s.bytes(),
            }));
            self.submit_store(store, &w, segs, ans, unmap);
        }
    }

    /// Copy path: `GNTTABOP_copy` ops between grants and store frames, one call per batch
    /// limit. READs and WRITEs are done when their copies are; flushes and discards go to
    /// the store, after the copies of everything before them (ring order).
    pub(super) fn submit_copied<G, S>(&mut self, g: &mut G, store: &mut S, work: &[Resolved], ans: &mut Answers)
    where
        G: Grants<Mapping = M>,
        S: crate::store::Store<Rc<M>>,
    {
        // A segment is at most two pieces of store frames (4 KiB within two frames).
        let n_ops = work.iter().map(|w| w.segs.len()).sum::<usize>().saturating_mul(2);
        let room = (try_vec(n_ops), try_vec(n_ops), try_vec(8), try_vec(work.len()));
        let (Some(mut ops), Some(mut owner), Some(mut pieces), Some(mut failed)) = room else {
            for w in work {
                ans.answer(&mut self.stats, w.queue, w.req.id, w.req.rsp_op, Outcome::NoMemory);
            }
            return;
        };
        let ops: &mut Vec<CopyOp> = &mut ops;
        let owner: &mut Vec<usize> = &mut owner;
        let pieces: &mut Vec<(u64, u16, u16)> = &mut pieces;
        failed.resize(work.len(), None::<Invalid>);
        let mut none: Vec<M> = Vec::new();
        for (wi, w) in work.iter().enumerate() {
            let op = w.req.op;
            let mut off = w.req.sector.saturating_mul(512);
            for s in &w.segs {
                pieces.clear();
                if !store.frames(off, u32::from(s.bytes()), pieces) {
                    if let Some(f) = failed.get_mut(wi) {
                        *f = Some(Invalid::BeyondCapacity);
                    }
                    break;
                }
                let mut in_page = s.offset();
                for &(gfn, foff, len) in pieces.iter() {
                    let grant = CopyPtr::Gref { dom: self.dom, gref: s.gref, offset: in_page };
                    let local = CopyPtr::Local { gfn, offset: foff };
                    let (src, dst) = if op == Op::Read { (local, grant) } else { (grant, local) };
                    ops.push(CopyOp { src, dst, len });
                    owner.push(wi);
                    in_page = in_page.saturating_add(len);
                }
                off = off.saturating_add(u64::from(s.bytes()));
            }
            // Discards and flushes go to the store, which acts at once: the copies of the
            // requests before them (and a flush's own data) must land first, to keep ring
            // order. Without such requests a pass still makes one copy call per batch.
            if matches!(op, Op::Discard { .. } | Op::Flush | Op::Barrier) {
                self.run_copies(g, ops, owner, &mut failed);
                if failed.get(wi).is_some_and(Option::is_none) {
                    self.submit_store(store, w, Vec::new(), ans, &mut none);
                }
            }
        }
        self.run_copies(g, ops, owner, &mut failed);
        for (w, f) in work.iter().zip(failed) {
            let outcome = match (f, w.req.op) {
                (Some(e), _) => Outcome::Refused(e),
                // The hypervisor moved the data: done.
                (None, op @ (Op::Read | Op::Write)) => Outcome::Done { op, sectors: w.sectors(), cpu_bytes: 0 },
                // Submitted to the store above: answered when it completes.
                (None, _) => continue,
            };
            ans.answer(&mut self.stats, w.queue, w.req.id, w.req.rsp_op, outcome);
        }
    }

    /// Issues the queued copy ops (one call per batch limit); a failed op fails its request.
    pub(super) fn run_copies<G: Grants<Mapping = M>>(
        &mut self,
        g: &mut G,
        ops: &mut Vec<CopyOp>,
        owner: &mut Vec<usize>,
        failed: &mut [Option<Invalid>],
    ) {
        let limit = g.copy_batch_limit().max(1);
        for (chunk, owners) in ops.chunks(limit).zip(owner.chunks(limit)) {
            self.stats.copy_calls.inc();
            self.stats.copy_ops.add_sat(chunk.len() as u64);
            for (res, &wi) in g.copy(chunk).into_iter().zip(owners) {
                if res.is_err() {
                    if let Some(f) = failed.get_mut(wi) {
                        *f = Some(Invalid::BadGrant);
                    }
                }
            }
        }
        ops.clear();
        owner.clear();
    }

    /// Hands a resolved request to the store with its buffers (none on the copy path, where
    /// only a flush or discard is left to do); it is then in flight under a new tag. A store
    /// that refuses it gets its buffers back and the request an error.
    fn submit_store<S: crate::store::Store<Rc<M>>>(
        &mut self,
        store: &mut S,
        w: &Resolved,
        segs: Vec<IoSeg<Rc<M>>>,
        ans: &mut Answers,
        unmap: &mut Vec<M>,
    ) {
        let has_data = !segs.is_empty();
        let op = match w.req.op {
            Op::Read => IoOp::Read,
            Op::Write => IoOp::Write { preflush: false, fua: false },
            Op::Flush if !has_data => IoOp::Flush,
            Op::Flush => IoOp::Write { preflush: true, fua: false },
            Op::Barrier if !has_data => IoOp::Flush,
            Op::Barrier => IoOp::Write { preflush: true, fua: true },
            Op::Discard { secure } => IoOp::Discard { secure },
        };
        let tag = self.next_tag;
        self.next_tag = self.next_tag.wrapping_add(1);
        let io = StoreIo { tag, op, sector: w.req.sector, nr_sectors: w.req.nr_sectors, segs };
        match store.submit(io) {
            Ok(()) => {
                let p =
                    InFlight { queue: w.queue, id: w.req.id, rsp_op: w.req.rsp_op, op: w.req.op, sectors: w.sectors() };
                self.in_flight.insert(tag, p);
            }
            Err((io, _)) => {
                for s in io.segs {
                    release(s.buf, unmap);
                }
                ans.answer(&mut self.stats, w.queue, w.req.id, w.req.rsp_op, Outcome::Failed);
            }
        }
    }
}
