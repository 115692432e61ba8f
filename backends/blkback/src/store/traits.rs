//! The store contract: an I/O and its buffers, the split-phase core trait, and the small
//! capability traits only one data path needs.
use alloc::vec::Vec;

use crate::hv::{MemError, Page};

/// What the disk is, as advertised to the frontend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DiskInfo {
    /// Size in 512-byte sectors (the unit of `sectors` and of `sector_number`).
    pub sectors: u64,
    pub sector_size: u32,
    pub physical_sector_size: u32,
    pub read_only: bool,
    pub flush: bool,
    pub discard: bool,
    pub discard_secure: bool,
}

/// The operation of one store I/O.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IoOp {
    Read,
    /// A write; `preflush`: flush earlier writes first; `fua`: flush this one after.
    Write {
        preflush: bool,
        fua: bool,
    },
    Flush,
    Discard {
        secure: bool,
    },
}

/// One piece of a frontend page: `len` bytes at `offset`.
#[derive(Debug)]
pub struct IoSeg<B> {
    pub buf: B,
    pub offset: u16,
    pub len: u16,
}

/// One I/O, with its buffers; handed back by `complete`.
#[derive(Debug)]
pub struct StoreIo<B> {
    /// The engine's tag (which request this belongs to).
    pub tag: u64,
    pub op: IoOp,
    /// First 512-byte sector.
    pub sector: u64,
    /// For `Discard`: sectors; otherwise ignored (the segments say).
    pub nr_sectors: u64,
    pub segs: Vec<IoSeg<B>>,
}

/// Why an I/O failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreError {
    /// Outside the disk (should have been refused by validation).
    OutOfRange,
    ReadOnly,
    Unsupported,
    /// The frontend's page could not be read or written (e.g. a read-only mapping).
    Buffer(MemError),
    /// The device failed.
    Io,
}

/// A finished I/O: the I/O back, and the bytes the CPU moved or why it failed.
pub type Completion<B> = (StoreIo<B>, Result<u64, StoreError>);

/// A block store. `B` is the engine's buffer type (a mapped frontend page).
pub trait BlockStore<B: Page> {
    fn info(&self) -> DiskInfo;
    /// Starts an I/O; if the store cannot take it now, it comes straight back.
    fn submit(&mut self, io: StoreIo<B>) -> Result<(), (StoreIo<B>, StoreError)>;
    /// Moves every finished I/O into `out`.
    fn complete(&mut self, out: &mut Vec<Completion<B>>);
    /// Lets the store make progress outside `submit`/`complete` (a network store moves its
    /// handshake and replies): called every loop, connected or not.
    fn poll(&mut self) {}
    /// The store's own counters, published with the disk's statistics.
    fn counters(&self) -> Vec<(&'static str, u64)> {
        Vec::new()
    }
    /// Why the store cannot serve at all (a network store whose server refused it or is
    /// unreachable): a device not yet connected is then refused with this reason.
    fn failed(&self) -> Option<&str> {
        None
    }
    /// Whether the store knows its disk (`info` means something). A network store is not
    /// ready until it has negotiated with its server: the device offers itself (InitWait)
    /// at once, but connects to the frontend only once the store is ready.
    fn ready(&self) -> bool {
        true
    }
    /// Whether the store has work of its own to do on the CPU before it can complete what
    /// it holds (a RAM store zeroing a large discard piecewise): the loop must not sleep.
    fn has_work(&self) -> bool {
        false
    }
    /// Hands back, unfinished, every I/O the store still holds (a disconnect): their
    /// buffers are released before the frontend's pages are unmapped, and anything the
    /// store later learns about them is dropped. Stores that finish at once hold nothing.
    fn cancel(&mut self, _out: &mut Vec<StoreIo<B>>) {}
}

/// A capability of the copy path (cf. cloud-hypervisor's `disk_file.rs`: one small trait
/// per capability): the store is made of our frames, so `GNTTABOP_copy` can move bytes
/// between them and the frontend's pages directly.
pub trait FrameBacked {
    /// Where bytes `[off, off + len)` of the disk live, as `(gfn, offset in frame, len)`
    /// pieces appended to `out`; `false` if the store has no frames of ours (the default).
    fn frames(&self, _off: u64, _len: u32, _out: &mut Vec<(u64, u16, u16)>) -> bool {
        false
    }
}

/// A capability of the swap path: frames of ours a pass exchanges with the frontend's
/// pages (a RAM disk served with `:swap`).
pub trait ScratchFrames {
    /// The scratch pool, if the store has one (the default: none).
    fn scratch(&mut self) -> Option<&mut ScratchPool> {
        None
    }
}

/// What the engine serves from: the core trait and both capabilities (a store without a
/// capability keeps its default, and that data path falls back: copy maps, swap copies).
pub trait Store<B: Page>: BlockStore<B> + FrameBacked + ScratchFrames {}

impl<B: Page, S: BlockStore<B> + FrameBacked + ScratchFrames> Store<B> for S {}

/// Frames of ours the swap path exchanges with frontends' pages (docs/grant-swap.md).
///
/// After an exchange a scratch GFN holds the frontend's *former* frame, and the frontend
/// gets the scratch frame with whatever it held: so each page remembers whose data it may
/// hold, and goes to another frontend only zeroed (copied over from `zero`, a frame
/// nobody writes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScratchPool {
    /// A zeroed frame of ours, the source of zeroing copies.
    pub zero: u64,
    /// (GFN, the frontend whose data it may hold; `None`: zeroed).
    pub pages: Vec<(u64, Option<crate::hv::DomId>)>,
}

/// Scratch frames a RAM disk served with `path=swap` keeps: one pass exchanges at most this
/// many segments per round (1 MiB, one largest request), then reuses them.
pub const SCRATCH_PAGES: usize = 256;
