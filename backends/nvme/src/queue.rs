//! One submission/completion queue pair, each in one page of ours: the SQ holds 64 entries
//! of 64 bytes, the CQ as many of 16. The driver owns the SQ tail and the CQ head; the
//! device writes completions and, in each, its view of the SQ head.
//!
//! Completions are the device's words: an entry is taken only if its phase tag is the one
//! expected for this pass over the CQ, and then only if it names this SQ, a command id that
//! is outstanding, and an SQ head between the head already known and the tail we wrote.
//! Anything else is a broken device (the controller is then reset, never trusted further).
use alloc::vec;
use alloc::vec::Vec;

use xen_hv::{Count, MemError};

use crate::cmd::{Command, Completion};
use crate::{DmaPage, Mmio};

/// Entries per queue: one page of submission entries.
pub const ENTRIES: u16 = 64;

/// A completion the device should not have written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BadCompletion {
    /// For another submission queue.
    WrongQueue {
        /// The SQ it named.
        sq_id: u16,
    },
    /// A command id not outstanding (never submitted, or already completed).
    UnknownCid(u16),
    /// An SQ head outside what was submitted.
    BadSqHead(u16),
    /// The queue's memory failed.
    Memory(MemError),
}

/// One queue pair.
#[derive(Debug)]
pub struct QueuePair<P> {
    /// Queue id (0: admin).
    pub qid: u16,
    sq: P,
    cq: P,
    entries: u16,
    sq_tail: u16,
    sq_head: u16,
    cq_head: u16,
    phase: bool,
    /// cid → the caller's tag, for commands outstanding.
    slots: Vec<Option<u64>>,
    outstanding: u16,
}

impl<P: DmaPage> QueuePair<P> {
    /// A queue pair over two zeroed pages, `entries` entries (at most [`ENTRIES`], at least 2).
    pub fn new(qid: u16, sq: P, cq: P, entries: u16) -> Self {
        let entries = entries.clamp(2, ENTRIES);
        Self {
            qid,
            sq,
            cq,
            entries,
            sq_tail: 0,
            sq_head: 0,
            cq_head: 0,
            phase: true,
            slots: vec![None; usize::from(entries)],
            outstanding: 0,
        }
    }

    /// Entries in each queue.
    pub fn entries(&self) -> u16 {
        self.entries
    }

    /// The SQ's and CQ's bus addresses.
    pub fn addrs(&self) -> (u64, u64) {
        (self.sq.dma_addr(), self.cq.dma_addr())
    }

    /// Commands submitted and not completed.
    pub fn outstanding(&self) -> u16 {
        self.outstanding
    }

    /// Whether another command fits (one SQ slot stays empty: a full queue is
    /// `tail + 1 == head`).
    pub fn has_room(&self) -> bool {
        let next = step(self.sq_tail, 1, self.entries);
        next != self.sq_head && usize::from(self.outstanding) < self.slots.len().saturating_sub(1)
    }

    /// Writes `cmd` (its cid chosen here) at the tail and rings the SQ doorbell at
    /// `doorbell`; `None` if the queue is full.
    pub fn submit<M: Mmio>(&mut self, mmio: &mut M, doorbell: usize, mut cmd: Command, tag: u64) -> Option<u16> {
        if !self.has_room() {
            return None;
        }
        let cid = self.slots.iter().position(Option::is_none)?;
        let cid16 = u16::try_from(cid).ok()?;
        cmd.cid = cid16;
        let off = usize::from(self.sq_tail).saturating_mul(64);
        self.sq.write(off, &cmd.encode()).ok()?;
        if let Some(s) = self.slots.get_mut(cid) {
            *s = Some(tag);
        }
        self.outstanding.inc();
        self.sq_tail = step(self.sq_tail, 1, self.entries);
        // The entry is in memory before the doorbell (the page's writes are ordered before
        // the MMIO write by the runtime's fence).
        self.sq.fence();
        mmio.write32(doorbell, u32::from(self.sq_tail));
        Some(cid16)
    }

    /// Takes every new completion (by phase) into `out` as (tag, completion), then rings the
    /// CQ head doorbell once. A bad entry stops it: the device is broken.
    pub fn reap<M: Mmio>(
        &mut self,
        mmio: &mut M,
        doorbell: usize,
        out: &mut Vec<(u64, Completion)>,
    ) -> Result<usize, BadCompletion> {
        let mut n = 0usize;
        let result = loop {
            let mut b = [0u8; 16];
            if let Err(e) = self.cq.read(usize::from(self.cq_head).saturating_mul(16), &mut b) {
                break Err(BadCompletion::Memory(e));
            }
            let c = Completion::decode(&b);
            if c.phase != self.phase {
                break Ok(n);
            }
            if c.sq_id != self.qid {
                break Err(BadCompletion::WrongQueue { sq_id: c.sq_id });
            }
            // The SQ head may only move forward, up to the tail we wrote.
            let span = step(self.sq_tail, self.entries.wrapping_sub(self.sq_head), self.entries);
            let moved = step(c.sq_head, self.entries.wrapping_sub(self.sq_head), self.entries);
            if c.sq_head >= self.entries || moved > span {
                break Err(BadCompletion::BadSqHead(c.sq_head));
            }
            let Some(tag) = self.slots.get_mut(usize::from(c.cid)).and_then(Option::take) else {
                break Err(BadCompletion::UnknownCid(c.cid));
            };
            self.sq_head = c.sq_head;
            self.outstanding = self.outstanding.saturating_sub(1);
            out.push((tag, c));
            n.inc();
            self.cq_head = step(self.cq_head, 1, self.entries);
            if self.cq_head == 0 {
                // A pass over the CQ ends: the device writes the other phase from now on.
                self.phase = !self.phase;
            }
        };
        if n > 0 {
            mmio.write32(doorbell, u32::from(self.cq_head));
        }
        result
    }

    /// Forgets every outstanding command (the controller was reset): their tags.
    pub fn drain(&mut self) -> Vec<u64> {
        self.outstanding = 0;
        self.slots.iter_mut().filter_map(Option::take).collect()
    }

    /// The pages back.
    pub fn into_pages(self) -> (P, P) {
        (self.sq, self.cq)
    }
}

/// `(i + by) mod n` for ring indices below `n` (at most 64: no overflow in u16).
fn step(i: u16, by: u16, n: u16) -> u16 {
    i.wrapping_add(by).checked_rem(n).unwrap_or(0)
}
