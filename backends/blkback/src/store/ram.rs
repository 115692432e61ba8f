//! RAM stores: the memory behind them (`RamBacking`: a `Vec<u8>`, frames of ours) and the
//! store over it (`RamStore`: reads and writes at once, discards zeroed piecewise).
use crate::hv::Count;
use alloc::collections::VecDeque;
use alloc::vec::Vec;

use super::traits::*;
use crate::hv::{Frame, MemError, Page};

/// The memory behind a RAM store. A plain `Vec<u8>` works (no copy path); the kernel
/// provides frames it can name by GFN.
pub trait RamBacking {
    /// Size in bytes.
    fn size(&self) -> u64;
    /// Copies disk bytes `[off, off + len)` into `page` at `page_off` (a read).
    fn to_page(&self, off: u64, page: &dyn Page, page_off: usize, len: usize) -> Result<(), MemError>;
    /// Copies `len` bytes of `page` at `page_off` to disk offset `off` (a write).
    fn store_page(&mut self, off: u64, page: &dyn Page, page_off: usize, len: usize) -> Result<(), MemError>;
    fn zero(&mut self, off: u64, len: u64);
    /// The GFN and offset of disk byte `off`, for the copy path.
    fn gfn(&self, _off: u64) -> Option<(u64, u16)> {
        None
    }
    /// Scratch frames for the swap path, if this memory has them.
    fn scratch(&mut self) -> Option<&mut ScratchPool> {
        None
    }
}

impl RamBacking for Vec<u8> {
    fn size(&self) -> u64 {
        self.len() as u64
    }
    fn to_page(&self, off: u64, page: &dyn Page, page_off: usize, len: usize) -> Result<(), MemError> {
        let s = usize::try_from(off).map_err(|_| MemError::OutOfBounds)?;
        let src = self.get(s..).and_then(|d| d.get(..len)).ok_or(MemError::OutOfBounds)?;
        page.write(page_off, src)
    }
    fn store_page(&mut self, off: u64, page: &dyn Page, page_off: usize, len: usize) -> Result<(), MemError> {
        let s = usize::try_from(off).map_err(|_| MemError::OutOfBounds)?;
        let dst = self.get_mut(s..).and_then(|d| d.get_mut(..len)).ok_or(MemError::OutOfBounds)?;
        page.read(page_off, dst)
    }
    fn zero(&mut self, off: u64, len: u64) {
        let (Ok(s), Ok(n)) = (usize::try_from(off), usize::try_from(len)) else {
            return;
        };
        if let Some(d) = self.get_mut(s..).and_then(|d| d.get_mut(..n)) {
            d.fill(0);
        }
    }
}

/// Splits disk range `[off, off + len)` into per-frame pieces: (frame index, offset in the
/// frame, offset in the range, length).
fn pieces(off: u64, len: usize) -> impl Iterator<Item = (usize, usize, usize, usize)> {
    let mut done = 0usize;
    core::iter::from_fn(move || {
        if done >= len {
            return None;
        }
        let at = off.checked_add(u64::try_from(done).ok()?)?;
        let in_frame = usize::try_from(at % 4096).ok()?;
        let n = 4096usize.saturating_sub(in_frame).min(len.saturating_sub(done));
        let item = (usize::try_from(at / 4096).ok()?, in_frame, done, n);
        done = done.saturating_add(n);
        Some(item)
    })
}

/// A RAM disk made of our own frames (one per 4 KiB, not contiguous); the copy path names
/// them by GFN. The frames go back to the runtime when the disk is dropped.
#[derive(Debug)]
pub struct FrameDisk<F> {
    frames: Vec<F>,
    /// The swap path's frames (owned here, named by GFN in `pool`), if any.
    scratch: Vec<F>,
    pool: Option<ScratchPool>,
}

impl<F: Frame> FrameDisk<F> {
    pub fn new(frames: Vec<F>) -> Self {
        Self { frames, scratch: Vec::new(), pool: None }
    }

    /// A disk with scratch frames for the swap path: `zero` must be zeroed (frames come
    /// zeroed from `Frames::alloc`), and is never written.
    pub fn with_scratch(frames: Vec<F>, zero: F, scratch: Vec<F>) -> Self {
        let pool = ScratchPool { zero: zero.gfn(), pages: scratch.iter().map(|f| (f.gfn(), None)).collect() };
        let mut owned = scratch;
        owned.push(zero);
        Self { frames, scratch: owned, pool: Some(pool) }
    }

    /// Frames held besides the disk's own (scratch and the zero frame).
    pub fn scratch_frames(&self) -> usize {
        self.scratch.len()
    }
}

impl<F: Frame> RamBacking for FrameDisk<F> {
    fn size(&self) -> u64 {
        u64::try_from(self.frames.len()).unwrap_or(0).saturating_mul(4096)
    }
    // One copy each way, straight between our frame and the frontend's page.
    fn to_page(&self, off: u64, page: &dyn Page, page_off: usize, len: usize) -> Result<(), MemError> {
        for (fi, in_frame, done, n) in pieces(off, len) {
            let f = self.frames.get(fi).ok_or(MemError::OutOfBounds)?;
            let src = f.bytes().get(in_frame..).and_then(|b| b.get(..n)).ok_or(MemError::OutOfBounds)?;
            page.write(page_off.saturating_add(done), src)?;
        }
        Ok(())
    }
    fn store_page(&mut self, off: u64, page: &dyn Page, page_off: usize, len: usize) -> Result<(), MemError> {
        for (fi, in_frame, done, n) in pieces(off, len) {
            let f = self.frames.get_mut(fi).ok_or(MemError::OutOfBounds)?;
            let dst = f.bytes_mut().get_mut(in_frame..).and_then(|b| b.get_mut(..n)).ok_or(MemError::OutOfBounds)?;
            page.read(page_off.saturating_add(done), dst)?;
        }
        Ok(())
    }
    fn zero(&mut self, off: u64, len: u64) {
        for (fi, in_frame, _, n) in pieces(off, usize::try_from(len).unwrap_or(0)) {
            if let Some(d) = self.frames.get_mut(fi).and_then(|f| f.bytes_mut().get_mut(in_frame..)?.get_mut(..n)) {
                d.fill(0);
            }
        }
    }
    fn gfn(&self, off: u64) -> Option<(u64, u16)> {
        let f = self.frames.get(usize::try_from(off / 4096).ok()?)?;
        Some((f.gfn(), u16::try_from(off % 4096).ok()?))
    }
    fn scratch(&mut self) -> Option<&mut ScratchPool> {
        self.pool.as_mut()
    }
}

/// Bytes of a discard a RAM store zeroes per `complete` (once per engine pass) at most.
/// A frontend's whole-disk discards are spread over passes: one `process()` of the engine
/// (8 passes) zeroes at most 4 MiB, so a neighbour waits for that, not for the disk size
/// times the ring's depth.
pub const ZERO_PER_PASS: u64 = 512 * 1024;

/// A disk in memory. Reads and writes complete at once (still handed back through
/// `complete`); discards zero their range `ZERO_PER_PASS` bytes at a time.
#[derive(Debug)]
pub struct RamStore<M, B> {
    mem: M,
    read_only: bool,
    done: Vec<Completion<B>>,
    /// Discards being zeroed, in order: the I/O, the next byte, the end.
    zeroing: VecDeque<(StoreIo<B>, u64, u64)>,
    zeroed: u64,
}

/// Counters of what a store did, for tests and statistics.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct StoreCounters {
    pub flushes: u64,
    pub discards: u64,
}

impl<M: RamBacking, B: Page> RamStore<M, B> {
    pub fn new(mem: M, read_only: bool) -> Self {
        Self { mem, read_only, done: Vec::new(), zeroing: VecDeque::new(), zeroed: 0 }
    }
    /// Bytes zeroed for discards so far.
    pub fn zeroed(&self) -> u64 {
        self.zeroed
    }
    pub fn backing(&self) -> &M {
        &self.mem
    }
    pub fn backing_mut(&mut self) -> &mut M {
        &mut self.mem
    }
    /// The memory back (a boot module returns to its pool when its device goes).
    pub fn into_backing(self) -> M {
        self.mem
    }

    /// A discard's byte range, checked.
    fn discard_range(&self, io: &StoreIo<B>) -> Result<(u64, u64), StoreError> {
        if self.read_only {
            return Err(StoreError::ReadOnly);
        }
        let off = io.sector.checked_mul(512).ok_or(StoreError::OutOfRange)?;
        let len = io.nr_sectors.checked_mul(512).ok_or(StoreError::OutOfRange)?;
        let end = off.checked_add(len).filter(|&e| e <= self.mem.size()).ok_or(StoreError::OutOfRange)?;
        Ok((off, end))
    }

    /// Zeroes the next piece of the oldest discard; completes it when its range is done.
    fn zero_some(&mut self) {
        let Some((_, next, end)) = self.zeroing.front_mut() else { return };
        let n = end.saturating_sub(*next).min(ZERO_PER_PASS);
        // Discarded sectors read back as zeroes (secure or not).
        self.mem.zero(*next, n);
        *next = next.saturating_add(n);
        self.zeroed.add_sat(n);
        if *next >= *end {
            if let Some((io, ..)) = self.zeroing.pop_front() {
                self.done.push((io, Ok(0)));
            }
        }
    }

    fn run(&mut self, io: &StoreIo<B>) -> Result<u64, StoreError> {
        let cap = self.mem.size();
        if io.op == IoOp::Flush {
            // No sectors: `sector` means nothing here.
            return Ok(0);
        }
        let mut off = io.sector.checked_mul(512).ok_or(StoreError::OutOfRange)?;
        match io.op {
            IoOp::Flush => Ok(0),
            // `submit` queues discards for `zero_some`.
            IoOp::Discard { .. } => Err(StoreError::Unsupported),
            IoOp::Read | IoOp::Write { .. } => {
                if matches!(io.op, IoOp::Write { .. }) && self.read_only {
                    return Err(StoreError::ReadOnly);
                }
                let mut moved = 0u64;
                for s in &io.segs {
                    let len = u64::from(s.len);
                    if off.checked_add(len).is_none_or(|e| e > cap) {
                        return Err(StoreError::OutOfRange);
                    }
                    let r = match io.op {
                        IoOp::Read => self.mem.to_page(off, &s.buf, usize::from(s.offset), usize::from(s.len)),
                        _ => self.mem.store_page(off, &s.buf, usize::from(s.offset), usize::from(s.len)),
                    };
                    r.map_err(StoreError::Buffer)?;
                    off = off.saturating_add(len);
                    moved = moved.saturating_add(len);
                }
                Ok(moved)
            }
        }
    }
}

impl<M: RamBacking, B: Page> BlockStore<B> for RamStore<M, B> {
    fn info(&self) -> DiskInfo {
        DiskInfo {
            sectors: self.mem.size() / 512,
            sector_size: 512,
            physical_sector_size: 4096,
            read_only: self.read_only,
            flush: true,
            discard: true,
            discard_secure: true,
        }
    }

    fn submit(&mut self, io: StoreIo<B>) -> Result<(), (StoreIo<B>, StoreError)> {
        if let IoOp::Discard { .. } = io.op {
            match self.discard_range(&io) {
                Ok((off, end)) if off < end => self.zeroing.push_back((io, off, end)),
                r => self.done.push((io, r.map(|_| 0))),
            }
            return Ok(());
        }
        let r = self.run(&io);
        // RAM is done at once; the I/O waits here to be handed back by `complete`.
        self.done.push((io, r));
        Ok(())
    }

    fn complete(&mut self, out: &mut Vec<Completion<B>>) {
        self.zero_some();
        out.append(&mut self.done);
    }

    fn has_work(&self) -> bool {
        !self.zeroing.is_empty()
    }

    fn cancel(&mut self, out: &mut Vec<StoreIo<B>>) {
        // A discard cut short leaves its range partly zeroed: the frontend is gone.
        out.extend(self.zeroing.drain(..).map(|(io, ..)| io));
    }
}

impl<M: RamBacking, B> ScratchFrames for RamStore<M, B> {
    fn scratch(&mut self) -> Option<&mut ScratchPool> {
        self.mem.scratch()
    }
}

impl<M: RamBacking, B> FrameBacked for RamStore<M, B> {
    fn frames(&self, off: u64, len: u32, out: &mut Vec<(u64, u16, u16)>) -> bool {
        let mut off = off;
        let mut left = u64::from(len);
        if off.checked_add(left).is_none_or(|e| e > self.mem.size()) {
            return false;
        }
        while left > 0 {
            let Some((gfn, in_frame)) = self.mem.gfn(off) else {
                return false;
            };
            let n = 4096u64.saturating_sub(u64::from(in_frame)).min(left);
            out.push((gfn, in_frame, u16::try_from(n).unwrap_or(0)));
            off = off.saturating_add(n);
            left = left.saturating_sub(n);
        }
        true
    }
}
