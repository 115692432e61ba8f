//! One connected frontend: its rings, the in-flight requests, the persistent grants, and
//! the ring pass that moves data.
//!
//! A pass over all queues of a connection:
//! 1. take as many requests as the in-flight bound allows (the rest stay on the ring and
//!    count as `oo_req`), copy each out once and validate the copy;
//! 2. map the indirect pages of every indirect request in **one** batch, read their
//!    segment descriptors once and validate them;
//! 3. map every data segment in **one** batch (persistent grants: only the misses), or on
//!    the copy path build `GNTTABOP_copy` ops between grants and store frames;
//! 4. hand the I/O to the store, collect completions, write responses (padding zeroed,
//!    `id` echoed), notify if the frontend asked;
//! 5. unmap every transient mapping of the pass in **one** batch.
//!
//! So a pass costs at most 2 map + 1 unmap hypercalls on the map path, none once warm on
//! the persistent path, and one copy hypercall per batch limit on the copy path.
use alloc::collections::BTreeMap;
use alloc::rc::Rc;
use alloc::vec::Vec;

use xen_sys_mini::io::blkif::{BlkifRequestSegment, BLKIF_RSP_ERROR, BLKIF_RSP_OKAY, BLKIF_SEGS_PER_INDIRECT_FRAME};

use crate::abi::{decode_request, decode_segment, Abi, SEGMENT_SIZE};
use crate::hv::{CopyOp, CopyPtr, DomId, EventChannel, EvtchnPort, GrantRef, Grants, MapReq};
use crate::persistent::PersistentPool;
use crate::request::{self, Invalid, Limits, Op, Request, Segment, Segments};
use crate::ring::{BackRing, RingError};
use crate::stats::Stats;
use crate::store::{BlockStore, Completion, IoOp, IoSeg, StoreIo};

/// How data moves between the frontend's pages and the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataPath {
    /// Map the grants (kept mapped when persistent grants are negotiated).
    Map,
    /// `GNTTABOP_copy` between grants and store frames; no data page is mapped. Indirect
    /// descriptor pages (metadata) are still mapped, read once and unmapped.
    Copy,
}

/// One queue as the frontend described it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueParams {
    pub ring_refs: Vec<GrantRef>,
    pub evtchn: EvtchnPort,
}

/// Everything needed to connect.
#[derive(Debug, Clone)]
pub struct ConnectParams {
    pub frontend: DomId,
    pub abi: Abi,
    pub queues: Vec<QueueParams>,
    pub persistent: bool,
    pub path: DataPath,
    pub limits: Limits,
    /// Requests in flight per queue at most (the fixed pool).
    pub max_inflight: usize,
    /// Segments one pass takes on at most (bounds the mappings a pass holds); a pass
    /// always takes at least one request.
    pub max_segments_per_pass: usize,
    pub persistent_cap: usize,
}

/// Why a connection could not be made or was dropped; the frontend caused all but `Local`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnError {
    /// A ring page could not be mapped (bad `ring-ref`).
    RingMap,
    /// The ring geometry is unusable.
    Ring(RingError),
    /// The event channel could not be bound (bad `event-channel`).
    Evtchn(i32),
    /// Out of our own resources.
    Local,
}

impl core::fmt::Display for ConnError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            ConnError::RingMap => f.write_str("a ring-ref could not be mapped"),
            ConnError::Ring(e) => write!(f, "unusable ring: {e}"),
            ConnError::Evtchn(e) => {
                write!(f, "event-channel could not be bound ({})", xen_sys_mini::errno::name(e.saturating_abs()))
            }
            ConnError::Local => f.write_str("out of the driver domain's resources"),
        }
    }
}

#[derive(Debug)]
struct Pending {
    queue: usize,
    id: u64,
    rsp_op: u8,
    op: Op,
    sectors: u64,
}

#[derive(Debug)]
struct Queue<M> {
    ring: BackRing<M>,
    port: EvtchnPort,
    inflight: usize,
    responses: Vec<(u64, u8, i16)>,
}

/// A request on its way through one pass.
#[derive(Debug)]
struct Work {
    queue: usize,
    req: Request,
    /// Set once segments are known (after indirect pages were read).
    segs: Vec<Segment>,
    failed: Option<Invalid>,
}

/// A connected frontend.
#[derive(Debug)]
pub struct Connection<M> {
    pub dom: DomId,
    abi: Abi,
    queues: Vec<Queue<M>>,
    persistent: Option<PersistentPool<M>>,
    path: DataPath,
    limits: Limits,
    max_inflight: usize,
    max_segments: usize,
    pending: BTreeMap<u64, Pending>,
    next_tag: u64,
    pub stats: Stats,
}

/// What a call to `process` found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PassReport {
    pub requests: u64,
    pub responses: u64,
    /// Requests are waiting: call `process` again before sleeping.
    pub more: bool,
}

/// Rounds of passes `process` runs before yielding to other frontends.
const MAX_ROUNDS: usize = 8;

impl<M: crate::hv::Page> Connection<M> {
    /// Maps every ring page (one batch), attaches the rings, binds the event channels.
    /// On failure everything already set up is released.
    pub fn connect<G: Grants<Mapping = M>, E: EventChannel>(
        g: &mut G,
        ev: &mut E,
        p: &ConnectParams,
    ) -> Result<Self, ConnError> {
        let mut stats = Stats::default();
        let reqs: Vec<MapReq> = p
            .queues
            .iter()
            .flat_map(|q| q.ring_refs.iter().map(|&gref| MapReq { dom: p.frontend, gref, readonly: false }))
            .collect();
        stats.map_calls = 1;
        stats.map_ops = reqs.len() as u64;
        let maps = g.map(&reqs);
        let (ok, bad): (Vec<_>, Vec<_>) = maps.into_iter().partition(Result::is_ok);
        let mut ok: Vec<M> = ok.into_iter().filter_map(Result::ok).collect();
        if !bad.is_empty() || ok.len() != reqs.len() {
            g.unmap(ok);
            return Err(ConnError::RingMap);
        }
        let mut queues = Vec::with_capacity(p.queues.len());
        let mut bound: Vec<EvtchnPort> = Vec::new();
        let mut fail = None;
        for q in &p.queues {
            let pages: Vec<M> = ok.drain(..q.ring_refs.len().min(ok.len())).collect();
            match BackRing::new(pages, p.abi) {
                Ok(ring) => match ev.bind(p.frontend, q.evtchn) {
                    Ok(port) => {
                        bound.push(port);
                        queues.push(Queue { ring, port, inflight: 0, responses: Vec::new() });
                    }
                    Err(e) => {
                        ok.extend(ring.into_pages());
                        fail = Some(ConnError::Evtchn(e));
                        break;
                    }
                },
                Err(e) => {
                    fail = Some(ConnError::Ring(e));
                    break;
                }
            }
        }
        if let Some(e) = fail {
            let mut pages = ok;
            for q in queues {
                pages.extend(q.ring.into_pages());
            }
            g.unmap(pages);
            for port in bound {
                ev.close(port);
            }
            return Err(e);
        }
        Ok(Self {
            dom: p.frontend,
            abi: p.abi,
            queues,
            persistent: p.persistent.then(|| PersistentPool::new(p.persistent_cap)),
            path: p.path,
            limits: p.limits,
            max_inflight: p.max_inflight.max(1),
            max_segments: p.max_segments_per_pass.max(1),
            pending: BTreeMap::new(),
            next_tag: 0,
            stats,
        })
    }

    pub fn ports(&self) -> Vec<EvtchnPort> {
        self.queues.iter().map(|q| q.port).collect()
    }

    pub fn abi(&self) -> Abi {
        self.abi
    }

    pub fn persistent_len(&self) -> usize {
        self.persistent.as_ref().map_or(0, PersistentPool::len)
    }

    /// Requests handed to the store and not completed.
    pub fn in_flight(&self) -> usize {
        self.pending.len()
    }

    /// Runs ring passes until the rings are idle (or `MAX_ROUNDS`, to be fair to other
    /// frontends). A ring protocol violation is an error: disconnect this frontend.
    pub fn process<G, E, S>(&mut self, g: &mut G, ev: &mut E, store: &mut S) -> Result<PassReport, RingError>
    where
        G: Grants<Mapping = M>,
        E: EventChannel,
        S: BlockStore<Rc<M>>,
    {
        let mut report = PassReport::default();
        for _ in 0..MAX_ROUNDS {
            let (reqs, rsps) = self.pass(g, store)?;
            report.requests = report.requests.saturating_add(reqs);
            report.responses = report.responses.saturating_add(rsps);
            // Publish, notify, and look once more before going idle.
            let mut more = false;
            for q in &mut self.queues {
                if q.ring.push_responses_and_check_notify()? {
                    ev.notify(q.port);
                    self.stats.notifications = self.stats.notifications.saturating_add(1);
                }
                if q.ring.final_check_for_requests()? && q.inflight < self.max_inflight {
                    more = true;
                }
            }
            report.more = more;
            if !more {
                break;
            }
        }
        Ok(report)
    }

    /// One pass over every queue. Returns (requests taken, responses written).
    fn pass<G, S>(&mut self, g: &mut G, store: &mut S) -> Result<(u64, u64), RingError>
    where
        G: Grants<Mapping = M>,
        S: BlockStore<Rc<M>>,
    {
        self.stats.passes = self.stats.passes.saturating_add(1);
        if let Some(p) = &mut self.persistent {
            p.next_pass();
        }
        // 1. Take and validate.
        let mut work: Vec<Work> = Vec::new();
        let mut taken = 0u64;
        let mut seg_budget = self.max_segments;
        for (qi, q) in self.queues.iter_mut().enumerate() {
            let avail = q.ring.unconsumed()?;
            let room = self.max_inflight.saturating_sub(q.inflight);
            let n = (avail as usize).min(room);
            if (avail as usize) > room {
                self.stats.oo_req = self.stats.oo_req.saturating_add(1);
            }
            for i in 0..n {
                if seg_budget == 0 {
                    // The segment budget of this pass is spent: the rest waits on the ring.
                    if i < n {
                        self.stats.oo_req = self.stats.oo_req.saturating_add(1);
                    }
                    break;
                }
                let Some(slot) = q.ring.take()? else { break };
                taken = taken.saturating_add(1);
                q.inflight = q.inflight.saturating_add(1);
                let raw = decode_request(self.abi, &slot);
                let segs = match raw.body {
                    crate::abi::RawBody::Rw { nr_segments, .. } => usize::from(nr_segments),
                    crate::abi::RawBody::Indirect { nr_segments, .. } => usize::from(nr_segments),
                    _ => 0,
                };
                seg_budget = seg_budget.saturating_sub(segs.max(1));
                match request::validate(&raw, &self.limits) {
                    Ok(req) => {
                        count_request(&mut self.stats, &req);
                        let segs = match &req.segs {
                            Segments::Direct(s) => s.clone(),
                            Segments::Indirect { .. } => Vec::new(),
                        };
                        work.push(Work { queue: qi, req, segs, failed: None });
                    }
                    Err(e) => {
                        self.stats.count_invalid(e);
                        q.responses.push((raw.id, request::rsp_op_of(&raw), e.status()));
                    }
                }
            }
        }

        let mut unmap: Vec<M> = Vec::new();
        // 2. Indirect pages: one map batch for all of them.
        self.read_indirect(g, &mut work, &mut unmap);
        // 3 + 4. Data.
        match self.path {
            DataPath::Map => self.submit_mapped(g, store, &mut work, &mut unmap),
            DataPath::Copy => self.submit_copied(g, store, &mut work),
        }
        // Refused during mapping/reading: answer now.
        for w in &work {
            if let Some(e) = w.failed {
                self.stats.count_invalid(e);
                if let Some(q) = self.queues.get_mut(w.queue) {
                    q.responses.push((w.req.id, w.req.rsp_op, e.status()));
                }
            }
        }
        let mut done: Vec<Completion<Rc<M>>> = Vec::new();
        store.complete(&mut done);
        for (io, res) in done {
            self.finish(io, res, &mut unmap);
        }
        // Make room in a full persistent pool: drop some idle entries.
        if let Some(p) = &mut self.persistent {
            if p.is_full() && self.stats.persistent_misses > 0 {
                unmap.extend(p.evict_lru(8));
            }
        }
        // 5. One unmap batch for everything transient of this pass.
        if !unmap.is_empty() {
            self.stats.unmap_calls = self.stats.unmap_calls.saturating_add(1);
            self.stats.unmap_ops = self.stats.unmap_ops.saturating_add(unmap.len() as u64);
            g.unmap(unmap);
        }
        let mut written = 0u64;
        for q in &mut self.queues {
            for (id, op, st) in core::mem::take(&mut q.responses) {
                if q.ring.push_response(id, op, st)? {
                    written = written.saturating_add(1);
                    q.inflight = q.inflight.saturating_sub(1);
                }
            }
        }
        Ok((taken, written))
    }

    /// Maps the indirect pages of every indirect request in one batch, reads their
    /// descriptors once, validates them into `w.segs`.
    fn read_indirect<G: Grants<Mapping = M>>(&mut self, g: &mut G, work: &mut [Work], unmap: &mut Vec<M>) {
        let mut reqs: Vec<MapReq> = Vec::new();
        let mut owners: Vec<(usize, usize)> = Vec::new(); // (work index, page index)
        let mut pages: Vec<Vec<Option<Rc<M>>>> = work.iter().map(|_| Vec::new()).collect();
        let persistent = self.persistent.is_some() && self.path == DataPath::Map;
        for (wi, w) in work.iter().enumerate() {
            if let Segments::Indirect { pages: refs, .. } = &w.req.segs {
                self.stats.indirect_req = self.stats.indirect_req.saturating_add(1);
                for (pi, &gref) in refs.iter().enumerate() {
                    let hit = if persistent { self.persistent.as_mut().and_then(|p| p.get(gref)) } else { None };
                    if let Some(slot) = pages.get_mut(wi) {
                        slot.push(hit.clone());
                    }
                    if hit.is_none() {
                        reqs.push(MapReq { dom: self.dom, gref, readonly: !persistent });
                        owners.push((wi, pi));
                    }
                }
            }
        }
        self.map_into(g, &reqs, &owners, &mut pages, persistent);
        for (w, maps) in work.iter_mut().zip(pages) {
            let Segments::Indirect { count, .. } = w.req.segs else {
                continue;
            };
            if maps.iter().any(Option::is_none) {
                w.failed = Some(Invalid::BadIndirectPage);
            } else {
                let mut raw: Vec<BlkifRequestSegment> = Vec::with_capacity(usize::from(count));
                let mut left = usize::from(count);
                let mut buf = alloc::vec![0u8; BLKIF_SEGS_PER_INDIRECT_FRAME * SEGMENT_SIZE];
                for m in maps.iter().flatten() {
                    let n = left.min(BLKIF_SEGS_PER_INDIRECT_FRAME);
                    let bytes = buf.get_mut(..n.saturating_mul(SEGMENT_SIZE)).unwrap_or_default();
                    // One copy of the descriptors; only the copy is validated and used.
                    if m.read(0, bytes).is_err() {
                        w.failed = Some(Invalid::BadIndirectPage);
                        break;
                    }
                    raw.extend(bytes.chunks_exact(SEGMENT_SIZE).map(decode_segment));
                    left = left.saturating_sub(n);
                }
                if w.failed.is_none() {
                    match request::validate_segments(&raw, w.req.sector, &self.limits) {
                        Ok(s) => w.segs = s,
                        Err(e) => w.failed = Some(e),
                    }
                }
            }
            for m in maps.into_iter().flatten() {
                release(m, unmap);
            }
        }
    }

    /// Maps `reqs` in one batch and puts each mapping into `slots[owner.0][owner.1]`
    /// (kept in the persistent pool when `persistent`); a failed op leaves its slot empty.
    fn map_into<G: Grants<Mapping = M>>(
        &mut self,
        g: &mut G,
        reqs: &[MapReq],
        owners: &[(usize, usize)],
        slots: &mut [Vec<Option<Rc<M>>>],
        persistent: bool,
    ) {
        if reqs.is_empty() {
            return;
        }
        self.stats.map_calls = self.stats.map_calls.saturating_add(1);
        self.stats.map_ops = self.stats.map_ops.saturating_add(reqs.len() as u64);
        for (&(wi, si), (r, res)) in owners.iter().zip(reqs.iter().zip(g.map(reqs))) {
            let Ok(m) = res else { continue };
            let rc = self.keep(r.gref, m, persistent);
            if let Some(slot) = slots.get_mut(wi).and_then(|v| v.get_mut(si)) {
                *slot = Some(rc);
            }
        }
    }

    /// A new mapping: kept in the persistent pool if there is one and room, else transient.
    fn keep(&mut self, gref: GrantRef, m: M, persistent: bool) -> Rc<M> {
        if persistent {
            if let Some(p) = &mut self.persistent {
                return match p.insert(gref, m) {
                    Ok(rc) => rc,
                    Err(m) => Rc::new(m),
                };
            }
        }
        Rc::new(m)
    }

    fn submit_mapped<G, S>(&mut self, g: &mut G, store: &mut S, work: &mut [Work], unmap: &mut Vec<M>)
    where
        G: Grants<Mapping = M>,
        S: BlockStore<Rc<M>>,
    {
        let persistent = self.persistent.is_some();
        let mut bufs: Vec<Vec<Option<Rc<M>>>> = work.iter().map(|_| Vec::new()).collect();
        let mut reqs: Vec<MapReq> = Vec::new();
        let mut owners: Vec<(usize, usize)> = Vec::new();
        for (wi, w) in work.iter().enumerate() {
            if w.failed.is_some() {
                continue;
            }
            // Data flows into the frontend's page on READ: only then map writable. A
            // persistent grant serves both directions, so it is mapped writable.
            let readonly = !persistent && w.req.op != Op::Read;
            for (si, s) in w.segs.iter().enumerate() {
                let hit = if persistent { self.persistent.as_mut().and_then(|p| p.get(s.gref)) } else { None };
                if hit.is_some() {
                    self.stats.persistent_hits = self.stats.persistent_hits.saturating_add(1);
                } else {
                    if persistent {
                        self.stats.persistent_misses = self.stats.persistent_misses.saturating_add(1);
                    }
                    reqs.push(MapReq { dom: self.dom, gref: s.gref, readonly });
                    owners.push((wi, si));
                }
                if let Some(v) = bufs.get_mut(wi) {
                    v.push(hit);
                }
            }
        }
        self.map_into(g, &reqs, &owners, &mut bufs, persistent);
        for (w, maps) in work.iter_mut().zip(bufs) {
            if w.failed.is_some() {
                continue;
            }
            if maps.iter().any(Option::is_none) {
                w.failed = Some(Invalid::BadGrant);
                for m in maps.into_iter().flatten() {
                    release(m, unmap);
                }
                continue;
            }
            let segs: Vec<IoSeg<Rc<M>>> = w
                .segs
                .iter()
                .zip(maps.into_iter().flatten())
                .map(|(s, buf)| IoSeg { buf, offset: s.offset(), len: s.bytes() })
                .collect();
            self.submit(store, w, segs, unmap);
        }
    }

    fn submit_copied<G, S>(&mut self, g: &mut G, store: &mut S, work: &mut [Work])
    where
        G: Grants<Mapping = M>,
        S: BlockStore<Rc<M>>,
    {
        let mut ops: Vec<CopyOp> = Vec::new();
        let mut owner: Vec<usize> = Vec::new();
        let mut pieces: Vec<(u64, u16, u16)> = Vec::new();
        let mut none: Vec<M> = Vec::new();
        for wi in 0..work.len() {
            let Some(w) = work.get_mut(wi) else { break };
            if w.failed.is_some() {
                continue;
            }
            let op = w.req.op;
            let mut off = w.req.sector.saturating_mul(512);
            for s in &w.segs {
                pieces.clear();
                if !store.frames(off, u32::from(s.bytes()), &mut pieces) {
                    w.failed = Some(Invalid::BeyondCapacity);
                    break;
                }
                let mut in_page = s.offset();
                for &(gfn, foff, len) in &pieces {
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
                self.run_copies(g, &mut ops, &mut owner, work);
                if let Some(w) = work.get_mut(wi) {
                    if w.failed.is_none() {
                        self.submit(store, w, Vec::new(), &mut none);
                    }
                }
            }
        }
        self.run_copies(g, &mut ops, &mut owner, work);
        for w in work.iter_mut() {
            if w.failed.is_some() || !matches!(w.req.op, Op::Read | Op::Write) {
                continue;
            }
            // The hypervisor moved the data: done.
            let sectors: u64 = w.segs.iter().map(Segment::sectors).sum();
            if w.req.op == Op::Read {
                self.stats.rd_sect = self.stats.rd_sect.saturating_add(sectors);
            } else {
                self.stats.wr_sect = self.stats.wr_sect.saturating_add(sectors);
            }
            if let Some(q) = self.queues.get_mut(w.queue) {
                q.responses.push((w.req.id, w.req.rsp_op, BLKIF_RSP_OKAY));
            }
        }
    }

    /// Issues the queued copy ops (one call per batch limit); a failed op fails its request.
    fn run_copies<G: Grants<Mapping = M>>(
        &mut self,
        g: &mut G,
        ops: &mut Vec<CopyOp>,
        owner: &mut Vec<usize>,
        work: &mut [Work],
    ) {
        let limit = g.copy_batch_limit().max(1);
        for (chunk, owners) in ops.chunks(limit).zip(owner.chunks(limit)) {
            self.stats.copy_calls = self.stats.copy_calls.saturating_add(1);
            self.stats.copy_ops = self.stats.copy_ops.saturating_add(chunk.len() as u64);
            for (res, &wi) in g.copy(chunk).into_iter().zip(owners) {
                if res.is_err() {
                    if let Some(w) = work.get_mut(wi) {
                        w.failed = Some(Invalid::BadGrant);
                    }
                }
            }
        }
        ops.clear();
        owner.clear();
    }

    fn submit<S: BlockStore<Rc<M>>>(
        &mut self,
        store: &mut S,
        w: &mut Work,
        segs: Vec<IoSeg<Rc<M>>>,
        unmap: &mut Vec<M>,
    ) {
        // On the copy path the data has moved already: only the flush is left to do.
        let has_data = !w.segs.is_empty() && self.path == DataPath::Map;
        let op = match w.req.op {
            Op::Read => IoOp::Read,
            Op::Write => IoOp::Write { preflush: false, fua: false },
            Op::Flush if !has_data => IoOp::Flush,
            Op::Flush => IoOp::Write { preflush: true, fua: false },
            Op::Barrier if !has_data => IoOp::Flush,
            Op::Barrier => IoOp::Write { preflush: true, fua: true },
            Op::Discard { secure } => IoOp::Discard { secure },
        };
        let sectors = if let Op::Discard { .. } = w.req.op {
            w.req.nr_sectors
        } else {
            w.segs.iter().map(Segment::sectors).sum()
        };
        let tag = self.next_tag;
        self.next_tag = self.next_tag.wrapping_add(1);
        let io = StoreIo { tag, op, sector: w.req.sector, nr_sectors: w.req.nr_sectors, segs };
        match store.submit(io) {
            Ok(()) => {
                self.pending
                    .insert(tag, Pending { queue: w.queue, id: w.req.id, rsp_op: w.req.rsp_op, op: w.req.op, sectors });
            }
            Err((io, _)) => {
                // The store refused it: an error response, buffers released.
                self.stats.err_io = self.stats.err_io.saturating_add(1);
                if let Some(q) = self.queues.get_mut(w.queue) {
                    q.responses.push((w.req.id, w.req.rsp_op, BLKIF_RSP_ERROR));
                }
                for s in io.segs {
                    release(s.buf, unmap);
                }
            }
        }
    }

    fn finish(&mut self, io: StoreIo<Rc<M>>, res: Result<u64, crate::store::StoreError>, unmap: &mut Vec<M>) {
        for s in io.segs {
            release(s.buf, unmap);
        }
        let Some(p) = self.pending.remove(&io.tag) else {
            return;
        };
        let status = match res {
            Ok(moved) => {
                self.stats.cpu_bytes = self.stats.cpu_bytes.saturating_add(moved);
                match p.op {
                    Op::Read => self.stats.rd_sect = self.stats.rd_sect.saturating_add(p.sectors),
                    Op::Write | Op::Flush | Op::Barrier => {
                        self.stats.wr_sect = self.stats.wr_sect.saturating_add(p.sectors)
                    }
                    Op::Discard { .. } => {}
                }
                BLKIF_RSP_OKAY
            }
            Err(_) => {
                self.stats.err_io = self.stats.err_io.saturating_add(1);
                BLKIF_RSP_ERROR
            }
        };
        if let Some(q) = self.queues.get_mut(p.queue) {
            q.responses.push((p.id, p.rsp_op, status));
        }
    }

    /// Tears the connection down: waits for nothing (the store has completed everything a
    /// pass submitted, or hands it back here), unmaps rings and persistent grants in one
    /// batch, closes the event channels. Returns how many pages were unmapped.
    pub fn disconnect<G, E, S>(mut self, g: &mut G, ev: &mut E, store: &mut S) -> usize
    where
        G: Grants<Mapping = M>,
        E: EventChannel,
        S: BlockStore<Rc<M>>,
    {
        let mut unmap: Vec<M> = Vec::new();
        let mut done: Vec<Completion<Rc<M>>> = Vec::new();
        store.complete(&mut done);
        for (io, res) in done {
            self.finish(io, res, &mut unmap);
        }
        if let Some(p) = &mut self.persistent {
            unmap.extend(p.drain());
        }
        for q in self.queues {
            ev.close(q.port);
            unmap.extend(q.ring.into_pages());
        }
        let n = unmap.len();
        if n > 0 {
            g.unmap(unmap);
        }
        n
    }
}

/// Gives a buffer back: a transient mapping (nobody else holds it) goes to the unmap
/// batch; a persistent one stays in the pool.
fn release<M>(m: Rc<M>, unmap: &mut Vec<M>) {
    if let Ok(m) = Rc::try_unwrap(m) {
        unmap.push(m);
    }
}

fn count_request(s: &mut Stats, r: &Request) {
    let c = match r.op {
        Op::Read => &mut s.rd_req,
        Op::Write => &mut s.wr_req,
        Op::Flush | Op::Barrier => &mut s.f_req,
        Op::Discard { .. } => &mut s.ds_req,
    };
    *c = c.saturating_add(1);
}
