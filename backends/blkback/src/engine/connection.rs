//! The connection: see the module's documentation (`engine`).
use crate::hv::Count;
use alloc::collections::BTreeMap;
use alloc::rc::Rc;
use alloc::vec::Vec;

use crate::abi::{decode_request, encode_response, Abi, MAX_SLOT};
use crate::hv::{DomId, EventChannel, EvtchnPort, GrantRef, Grants, MapReq, Page};
use crate::request::{self, Limits};
use crate::stats::Stats;
use crate::store::{Completion, StoreError, StoreIo};
use xen_ring::{BackRing, RingError};

use super::lifecycle::{count_request, Answers, InFlight, Outcome, Taken};
use super::path::Path;
use super::swap::SwapMode;

/// How data moves between the frontend's pages and the store (the driver domain's choice;
/// with persistent grants negotiated, `Map` keeps its mappings).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataPath {
    /// Map the grants (kept mapped when persistent grants are negotiated).
    Map,
    /// `GNTTABOP_copy` between grants and store frames; no data page is mapped. Indirect
    /// descriptor pages (metadata) are still mapped, read once and unmapped.
    Copy,
    /// No data moves: every valid request is answered as done right after it is taken,
    /// touching none of its grants (not even indirect pages) and no store. The benchmark's
    /// frontend-plus-transport ceiling (`null:<size>:noop`); never for a disk with data.
    Noop,
    /// The copy path, except that data segments move by frame exchange
    /// (`GNTTABOP_swap_frame`, a patched hypervisor: docs/grant-swap.md) where the
    /// hypervisor has it and the frontend allows it; per segment, anything refused is
    /// copied. RAM disks only (they keep the scratch frames).
    Swap,
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
    /// The frontend's `feature-grant-swap` bits (the swap path only).
    pub grant_swap: u8,
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
pub(super) struct Queue<M> {
    pub(super) ring: BackRing<M>,
    pub(super) port: EvtchnPort,
    /// Requests taken from this ring and not yet answered on it.
    pub(super) inflight: usize,
}

/// A connected frontend.
#[derive(Debug)]
pub struct Connection<M> {
    pub dom: DomId,
    pub(super) abi: Abi,
    pub(super) queues: Vec<Queue<M>>,
    pub(super) path: Path<M>,
    pub(super) limits: Limits,
    pub(super) max_inflight: usize,
    pub(super) max_segments: usize,
    /// The queue the next pass looks at first (rotates, so no queue is always last).
    pub(super) first_queue: usize,
    /// Heap the next `process` call may use for its passes (`set_heap_room`).
    pub(super) heap_room: usize,
    pub(super) in_flight: BTreeMap<u64, InFlight>,
    pub(super) next_tag: u64,
    /// The swap path: whether this connection exchanges frames, or why not.
    pub(super) swap_mode: SwapMode,
    pub stats: Stats,
}

/// What a call to `process` found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PassReport {
    pub requests: u64,
    pub responses: u64,
    /// Requests are waiting: call `process` again before sleeping.
    pub more: bool,
    /// The heap room ran out: requests were left on the ring for a later turn (when
    /// other I/O has given memory back), not taken now.
    pub heap_wait: bool,
}

/// Rounds of passes `process` runs before yielding to other frontends.
const MAX_ROUNDS: usize = 8;

/// Turns of normal processing a disconnect spends serving what is on the ring (at most
/// `TURN_SEGMENTS` of work each); the rest is answered with errors.
const DRAIN_TURNS: usize = 4;

/// Work one `process` call (a frontend's turn) takes at most, in 4 KiB units (segments, or
/// a discard's range): 32 MiB, one full pass. Past it the frontend yields with `more` set
/// and the other frontends have their turn, so a neighbour waits for at most this much of
/// anyone's work (before: up to 8 passes of `max_segments_per_pass`, 383 MiB measured
/// with `indirect=4096`). At least one request is taken per pass whatever its size.
/// 8 MiB was tried: 1 MiB writes at QD32 fell from 214 to 126 MiB/s (more, smaller passes,
/// each paying the persistent pool's eviction; a lever of the performance issue).
pub const TURN_SEGMENTS: usize = 8192;

pub use crate::budget::pass_heap_bytes;

/// A vector with room for `n` elements, or `None` when the heap has no such room (the
/// caller throttles or fails the requests concerned; the domain does not abort).
pub(crate) fn try_vec<T>(n: usize) -> Option<Vec<T>> {
    let mut v = Vec::new();
    v.try_reserve_exact(n).ok()?;
    Some(v)
}

impl<M: Page> Connection<M> {
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
            match BackRing::attach(pages, p.abi.slot_size()) {
                Ok(ring) => match ev.bind(p.frontend, q.evtchn) {
                    Ok(port) => {
                        bound.push(port);
                        queues.push(Queue { ring, port, inflight: 0 });
                    }
                    Err(e) => {
                        ok.extend(ring.into_pages());
                        fail = Some(ConnError::Evtchn(e));
                        break;
                    }
                },
                Err((pages, e)) => {
                    ok.extend(pages);
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
        // The pool holds what the frontend can keep granted at most: every slot of every
        // ring with a request of the largest size and its indirect pages (Linux blkfront's
        // working set: 32 × 257 = 8,224 grants for one ring page and 256 segments), within
        // what the domain's budget gave this connection.
        let per_request = usize::from(p.limits.max_indirect_segments)
            .saturating_add(usize::from(p.limits.max_indirect_segments).div_ceil(512))
            .max(xen_sys_mini::io::blkif::BLKIF_MAX_SEGMENTS_PER_REQUEST);
        let slots: usize = queues.iter().map(|q| q.ring.size() as usize).sum();
        let cap = p.persistent_cap.min(slots.saturating_mul(per_request));
        // Probed only on the swap path (one hypercall per connection on stock Xen).
        let swap_mode = if p.path == DataPath::Swap {
            SwapMode::new(g.can_swap(), p.grant_swap, p.persistent)
        } else {
            SwapMode::NoHypervisorOp
        };
        stats.swap_mode = if p.path == DataPath::Swap { swap_mode.code() } else { 0 };
        Ok(Self {
            dom: p.frontend,
            abi: p.abi,
            queues,
            path: Path::new(p.path, p.persistent, cap),
            limits: p.limits,
            max_inflight: p.max_inflight.max(1),
            max_segments: p.max_segments_per_pass.max(1),
            in_flight: BTreeMap::new(),
            heap_room: usize::MAX,
            next_tag: 0,
            first_queue: 0,
            swap_mode,
            stats,
        })
    }

    /// The event channels, one per queue (no allocation: the loop asks every turn).
    pub fn ports(&self) -> impl Iterator<Item = EvtchnPort> + '_ {
        self.queues.iter().map(|q| q.port)
    }

    /// Whether this connection exchanges frames, or why it copies (the swap path).
    pub fn swap_mode(&self) -> Option<SwapMode> {
        self.path.is_swap().then_some(self.swap_mode)
    }

    pub fn abi(&self) -> Abi {
        self.abi
    }

    /// Grants kept mapped (persistent grants on the map path).
    pub fn persistent_len(&self) -> usize {
        self.path.pool_len()
    }

    /// How many grants this connection may keep mapped (0 without persistent grants).
    pub fn persistent_cap(&self) -> usize {
        self.path.pool_cap()
    }

    /// The heap the next `process` call may use (the driver domain's free heap less what it
    /// keeps for everything else). Requests are taken while their worst case fits; the rest
    /// stay on the ring (`heap_waits`) until a later turn.
    pub fn set_heap_room(&mut self, bytes: usize) {
        self.heap_room = bytes;
    }

    /// Requests handed to the store and not completed.
    pub fn in_flight(&self) -> usize {
        self.in_flight.len()
    }

    /// Runs ring passes until the rings are idle (or `MAX_ROUNDS`, to be fair to other
    /// frontends). A ring protocol violation is an error: disconnect this frontend.
    pub fn process<G, E, S>(&mut self, g: &mut G, ev: &mut E, store: &mut S) -> Result<PassReport, RingError>
    where
        G: Grants<Mapping = M>,
        E: EventChannel,
        S: crate::store::Store<Rc<M>>,
    {
        let mut report = PassReport::default();
        let mut turn = TURN_SEGMENTS;
        // What the passes of this call may allocate; charged as if nothing came back
        // between passes (a store may hold what a pass handed it).
        let mut heap = self.heap_room;
        for _ in 0..MAX_ROUNDS {
            let before = self.stats.heap_waits;
            let (reqs, rsps) = self.pass(g, store, &mut turn, &mut heap)?;
            report.heap_wait |= self.stats.heap_waits != before;
            report.requests.add_sat(reqs);
            report.responses.add_sat(rsps);
            // Publish, notify, and look once more before going idle. A store with work of
            // its own (a discard being zeroed) needs another pass too.
            let mut more = store.has_work();
            for q in &mut self.queues {
                if q.ring.push_responses_and_check_notify()? {
                    ev.notify(q.port);
                    self.stats.notifications.inc();
                }
                if q.ring.final_check_for_requests()? && q.inflight < self.max_inflight {
                    more = true;
                }
            }
            report.more = more;
            if !more || turn == 0 || report.heap_wait {
                break;
            }
        }
        Ok(report)
    }

    /// One pass over every queue. Returns (requests taken, responses written).
    fn pass<G, S>(
        &mut self,
        g: &mut G,
        store: &mut S,
        turn: &mut usize,
        heap: &mut usize,
    ) -> Result<(u64, u64), RingError>
    where
        G: Grants<Mapping = M>,
        S: crate::store::Store<Rc<M>>,
    {
        self.stats.passes.inc();
        self.path.next_pass();
        let misses_before = self.stats.persistent_misses;
        let mut ans = Answers::new(self.queues.len());
        let mut unmap: Vec<M> = Vec::new();
        // 1. Take and validate; nothing while the store still works on an earlier request
        // (a discard being zeroed): what follows it on the ring runs after it.
        let (taken, n_taken) = if store.has_work() { (Vec::new(), 0) } else { self.take(&mut ans, turn, heap)? };
        if self.path.is_noop() {
            // The transport ceiling: answered, nothing mapped, nothing stored.
            for t in taken {
                let outcome = Outcome::Done { op: t.req.op, sectors: 0, cpu_bytes: 0 };
                ans.answer(&mut self.stats, t.queue, t.req.id, t.req.rsp_op, outcome);
            }
            return self.push_answers(ans, n_taken);
        }
        // 2. Indirect pages: one map batch for all of them.
        let resolved = self.resolve(g, taken, &mut ans, &mut unmap);
        // 3 + 4. Data.
        if self.path.is_copy() {
            self.submit_copied(g, store, &resolved, &mut ans);
        } else if self.path.is_swap() {
            self.submit_swapped(g, store, resolved, &mut ans);
            self.stats.swap_mode = self.swap_mode.code();
        } else {
            self.submit_mapped(g, store, resolved, &mut ans, &mut unmap);
        }
        let mut done: Vec<Completion<Rc<M>>> = Vec::new();
        store.complete(&mut done);
        for (io, res) in done {
            self.finish(io, res, &mut ans, &mut unmap);
        }
        // Make room in a full persistent pool: drop some idle entries, only when this pass
        // missed (a pool that serves the frontend's working set is left alone).
        unmap.extend(self.path.make_room(self.stats.persistent_misses > misses_before));
        // 5. One unmap batch for everything transient of this pass.
        if !unmap.is_empty() {
            self.stats.unmap_calls.inc();
            self.stats.unmap_ops.add_sat(unmap.len() as u64);
            g.unmap(unmap);
        }
        self.push_answers(ans, n_taken)
    }

    /// Writes a pass's answers on their rings. Returns (requests taken, responses written).
    fn push_answers(&mut self, ans: Answers, n_taken: u64) -> Result<(u64, u64), RingError> {
        let mut written = 0u64;
        let abi = self.abi;
        for (q, answers) in self.queues.iter_mut().zip(ans.per_queue) {
            for a in answers {
                let (rsp, n) = encode_response(abi, a.id, a.op, a.status);
                if q.ring.push_response(rsp.get(..n).unwrap_or_default())? {
                    written = written.saturating_add(1);
                    q.inflight = q.inflight.saturating_sub(1);
                }
            }
        }
        Ok((n_taken, written))
    }

    /// Takes as many requests as the in-flight bound and the pass's segment budget allow,
    /// copies each out once and validates the copy; refusals are answered at once. A
    /// discard ends the take: a store may zero its range over several passes, and what
    /// comes after it must not overtake it.
    ///
    /// The budget is the pass's (`max_segments_per_pass`) within what is left of the turn,
    /// charged with what a request really costs once validated (a refused one costs 1, not
    /// the segment count it claims); the queues are visited from a rotating first one.
    ///
    /// Heap: a request is taken only while the worst case of a request (the advertised
    /// segment maximum) fits in `heap`, which is then charged with what the request really
    /// needs; the rest stays on the ring (`heap_waits`) for a later turn.
    fn take(&mut self, ans: &mut Answers, turn: &mut usize, heap: &mut usize) -> Result<(Vec<Taken>, u64), RingError> {
        let mut taken: Vec<Taken> = Vec::new();
        let worst = pass_heap_bytes(1, usize::from(self.limits.max_indirect_segments));
        let mut n = 0u64;
        let budget = self.max_segments.min(*turn).max(1);
        let mut seg_budget = budget;
        let nq = self.queues.len().max(1);
        let first = self.first_queue.checked_rem(nq).unwrap_or(0);
        self.first_queue = first.wrapping_add(1).checked_rem(nq).unwrap_or(0);
        let (tail, head) = self.queues.split_at_mut(first);
        let order = head.iter_mut().enumerate().map(|(i, q)| (i.wrapping_add(first), q));
        let order = order.chain(tail.iter_mut().enumerate());
        'queues: for (qi, q) in order {
            let avail = q.ring.unconsumed()? as usize;
            let room = self.max_inflight.saturating_sub(q.inflight);
            if avail > room {
                self.stats.oo_req.inc();
            }
            for _ in 0..avail.min(room) {
                if seg_budget == 0 {
                    // The segment budget of this pass is spent: the rest waits on the ring.
                    self.stats.oo_req.inc();
                    break;
                }
                if *heap < worst || taken.try_reserve(1).is_err() {
                    // No heap for one more request: it waits on the ring (nothing is lost;
                    // the frontend is throttled, not refused).
                    self.stats.heap_waits.inc();
                    break 'queues;
                }
                let Some(slot) = q.ring.take::<MAX_SLOT>()? else { break };
                n = n.saturating_add(1);
                q.inflight = q.inflight.saturating_add(1);
                let raw = decode_request(self.abi, &slot);
                match request::validate(&raw, &self.limits) {
                    Ok(req) => {
                        // The work in 4 KiB units: data segments, or a discard's range (a
                        // RAM store zeroes it; a whole-disk discard uses up a pass alone).
                        let cost = match req.op {
                            request::Op::Discard { .. } => {
                                usize::try_from(req.nr_sectors.div_ceil(8)).unwrap_or(usize::MAX)
                            }
                            _ => match &req.segs {
                                request::Segments::Direct(v) => v.len(),
                                // Validated against the advertised maximum already.
                                request::Segments::Indirect { count, .. } => usize::from(*count),
                            },
                        };
                        seg_budget = seg_budget.saturating_sub(cost.max(1));
                        let segments = if matches!(req.op, request::Op::Discard { .. }) { 0 } else { cost };
                        *heap = heap.saturating_sub(pass_heap_bytes(1, segments));
                        count_request(&mut self.stats, &req);
                        let discard = matches!(req.op, request::Op::Discard { .. });
                        taken.push(Taken { queue: qi, req });
                        if discard {
                            break 'queues;
                        }
                    }
                    Err(e) => {
                        seg_budget = seg_budget.saturating_sub(1);
                        *heap = heap.saturating_sub(pass_heap_bytes(1, 0));
                        ans.answer(&mut self.stats, qi, raw.id, request::rsp_op_of(&raw), Outcome::Refused(e));
                    }
                }
            }
        }
        *turn = turn.saturating_sub(budget.saturating_sub(seg_budget));
        Ok((taken, n))
    }

    /// A completion from the store: its buffers released, its request answered.
    fn finish(&mut self, io: StoreIo<Rc<M>>, res: Result<u64, StoreError>, ans: &mut Answers, unmap: &mut Vec<M>) {
        for s in io.segs {
            release(s.buf, unmap);
        }
        let Some(p) = self.in_flight.remove(&io.tag) else {
            return;
        };
        let outcome = match res {
            Ok(moved) => Outcome::Done { op: p.op, sectors: p.sectors, cpu_bytes: moved },
            Err(_) => Outcome::Failed,
        };
        ans.answer(&mut self.stats, p.queue, p.id, p.rsp_op, outcome);
    }

    /// Tears the connection down without leaving the frontend waiting: every request it
    /// put on the ring gets a response before the rings are unmapped. Linux blkfront
    /// (since 5.19) writes Closed with requests still in flight and keeps its interrupt
    /// handler; a request never answered holds its bio forever, and then `del_gendisk`
    /// in `blkfront_remove` blocks dom0's xenwatch thread, so no later device of that
    /// domain is ever probed (seen: `xl block-detach` during a write, then `xl
    /// block-attach` of the same vdev, stuck in Initialising; the kernel's hung-task dump
    /// showed xenwatch in `del_gendisk` and the writer in `submit_bio_wait`).
    ///
    /// So: up to `DRAIN_TURNS` turns of normal processing (what the ring holds is served),
    /// then what the store still holds comes back and is answered with `BLKIF_RSP_ERROR`,
    /// as is anything left on the ring; responses are pushed and the frontend notified;
    /// then rings and persistent grants are unmapped in one batch and the event channels
    /// closed. Returns how many pages were unmapped.
    pub fn disconnect<G, E, S>(mut self, g: &mut G, ev: &mut E, store: &mut S) -> usize
    where
        G: Grants<Mapping = M>,
        E: EventChannel,
        S: crate::store::Store<Rc<M>>,
    {
        let mut broken = false;
        for _ in 0..DRAIN_TURNS {
            match self.process(g, ev, store) {
                Ok(r) if r.more => {}
                Ok(_) => break,
                // A broken ring: nothing more is read from it.
                Err(_) => {
                    broken = true;
                    break;
                }
            }
        }
        let mut unmap: Vec<M> = Vec::new();
        let mut done: Vec<Completion<Rc<M>>> = Vec::new();
        let mut ans = Answers::new(self.queues.len());
        store.complete(&mut done);
        for (io, res) in done {
            self.finish(io, res, &mut ans, &mut unmap);
        }
        // What the store still holds comes back unfinished: its buffers are released here,
        // so no mapping outlives the connection, and the request is answered with an error.
        let mut held: Vec<StoreIo<Rc<M>>> = Vec::new();
        store.cancel(&mut held);
        for io in held {
            if let Some(p) = self.in_flight.remove(&io.tag) {
                ans.answer(&mut self.stats, p.queue, p.id, p.rsp_op, Outcome::Failed);
            }
            for s in io.segs {
                release(s.buf, &mut unmap);
            }
        }
        // Requests still on the ring (past the drain's bound): answered, not served.
        if !broken {
            for (qi, q) in self.queues.iter_mut().enumerate() {
                for _ in 0..q.ring.unconsumed().unwrap_or(0) {
                    let Ok(Some(slot)) = q.ring.take::<MAX_SLOT>() else { break };
                    let raw = decode_request(self.abi, &slot);
                    ans.answer(&mut self.stats, qi, raw.id, request::rsp_op_of(&raw), Outcome::Failed);
                }
            }
        }
        for (q, answers) in self.queues.iter_mut().zip(ans.per_queue) {
            for a in answers {
                let (rsp, n) = encode_response(self.abi, a.id, a.op, a.status);
                let _ = q.ring.push_response(rsp.get(..n).unwrap_or_default());
            }
            if q.ring.push_responses_and_check_notify().unwrap_or(false) {
                ev.notify(q.port);
            }
        }
        unmap.extend(self.path.drain());
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
pub(super) fn release<M>(m: Rc<M>, unmap: &mut Vec<M>) {
    if let Ok(m) = Rc::try_unwrap(m) {
        unmap.push(m);
    }
}
