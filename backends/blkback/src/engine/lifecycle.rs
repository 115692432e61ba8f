//! The life of one request, as types (cf. Firecracker's `Request` → `PendingRequest` →
//! `FinishedRequest`): taken from the ring and validated ([`Taken`]), its segments known
//! ([`Resolved`], after its indirect pages were read), handed to the store ([`InFlight`]),
//! and answered. Every request, valid or not, leaves through [`Answers::answer`] (cf. Linux
//! blkback's `make_response`): the only place that builds a response and counts it.
use crate::hv::Count;
use alloc::vec::Vec;

use xen_sys_mini::io::blkif::{BLKIF_RSP_ERROR, BLKIF_RSP_OKAY};

use crate::request::{Invalid, Op, Request, Segment};
use crate::stats::Stats;

/// Taken from ring `queue` and validated; an indirect request's segments are still in its
/// indirect pages.
#[derive(Debug)]
pub(super) struct Taken {
    pub queue: usize,
    pub req: Request,
}

/// Segments known and validated: ready for the data path.
#[derive(Debug)]
pub(super) struct Resolved {
    pub queue: usize,
    pub req: Request,
    pub segs: Vec<Segment>,
}

impl Resolved {
    /// Sectors the request moves (a discard: the range it names).
    pub fn sectors(&self) -> u64 {
        match self.req.op {
            Op::Discard { .. } => self.req.nr_sectors,
            _ => self.segs.iter().map(Segment::sectors).sum(),
        }
    }
}

/// Handed to the store under a tag; answered when the store completes it.
#[derive(Debug)]
pub(super) struct InFlight {
    pub queue: usize,
    pub id: u64,
    pub rsp_op: u8,
    pub op: Op,
    pub sectors: u64,
}

/// How a request ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Outcome {
    /// Done: `sectors` moved (or flushed, or discarded), `cpu_bytes` of it by our CPU.
    Done { op: Op, sectors: u64, cpu_bytes: u64 },
    /// Refused: the frontend's request (or its grants) was unusable.
    Refused(Invalid),
    /// The store failed it.
    Failed,
    /// An allocation for it failed (the heap room is checked before a request is taken,
    /// so this is the fallback, not the plan).
    NoMemory,
}

/// One response, as it goes on the ring.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Answer {
    pub id: u64,
    pub op: u8,
    pub status: i16,
}

/// The responses of a pass, per ring, and the counters they feed.
#[derive(Debug, Default)]
pub(super) struct Answers {
    pub per_queue: Vec<Vec<Answer>>,
}

impl Answers {
    pub fn new(queues: usize) -> Self {
        Self { per_queue: (0..queues).map(|_| Vec::new()).collect() }
    }

    /// Answers request `id` of ring `queue` with `outcome`, and counts it.
    pub fn answer(&mut self, stats: &mut Stats, queue: usize, id: u64, rsp_op: u8, outcome: Outcome) {
        let status = match outcome {
            Outcome::Done { op, sectors, cpu_bytes } => {
                stats.cpu_bytes.add_sat(cpu_bytes);
                match op {
                    Op::Read => stats.rd_sect = stats.rd_sect.saturating_add(sectors),
                    Op::Write | Op::Flush | Op::Barrier => stats.wr_sect = stats.wr_sect.saturating_add(sectors),
                    Op::Discard { .. } => {}
                }
                BLKIF_RSP_OKAY
            }
            Outcome::Refused(e) => {
                stats.count_invalid(e);
                e.status()
            }
            Outcome::Failed => {
                stats.err_io.inc();
                BLKIF_RSP_ERROR
            }
            Outcome::NoMemory => {
                stats.err_nomem.inc();
                BLKIF_RSP_ERROR
            }
        };
        if let Some(q) = self.per_queue.get_mut(queue) {
            // An answer that finds no heap is lost to the frontend: the domain goes on.
            if q.try_reserve(1).is_ok() {
                q.push(Answer { id, op: rsp_op, status });
            }
        }
    }
}

/// Counts a request taken and validated (Linux's `rd_req`, `wr_req`, `f_req`, `ds_req`).
pub(super) fn count_request(s: &mut Stats, r: &Request) {
    let c = match r.op {
        Op::Read => &mut s.rd_req,
        Op::Write => &mut s.wr_req,
        Op::Flush | Op::Barrier => &mut s.f_req,
        Op::Discard { .. } => &mut s.ds_req,
    };
    *c = c.saturating_add(1);
}
