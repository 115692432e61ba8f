//! The stores a `target=` can name, as one type, and building one: the only place that
//! knows every kind of store.
use alloc::boxed::Box;
use alloc::vec::Vec;

use super::local::{LocalDisks, LocalStore};
use super::nbd::{Connector, NbdStore, Transport};
use super::{
    BlockStore, Completion, DiskInfo, FrameBacked, FrameDisk, NullStore, RamStore, RegionDisk, ScratchFrames,
    ScratchPool, StoreError, StoreIo, SCRATCH_PAGES,
};
use crate::engine::DataPath;
use crate::error::OpenError;
use crate::hv::{Frame, Frames, Page, Region};
use crate::target::{Target, TargetKind};

/// Memory a RAM disk must leave free (rings, mappings' page tables, the heap's neighbours).
pub const RAM_RESERVE: u64 = 2 << 20;

/// Every kind of store.
#[derive(Debug)]
pub enum AnyStore<F, R, T, B> {
    /// A RAM disk in frames of the driver domain's.
    Ram(RamStore<FrameDisk<F>, B>),
    /// A boot module and its index (it goes back to the pool when the device goes).
    Module(RamStore<RegionDisk<R>, B>, usize),
    /// Completes everything, stores nothing.
    Null(NullStore<B>),
    /// Boxed: its buffers and client state are large next to the others.
    Nbd(Box<NbdStore<T, B>>),
    /// A namespace on one of the driver domain's own controllers.
    Local(LocalStore<B>),
}

/// Calls `$e` on whichever store `$s` is.
macro_rules! each {
    ($s:expr, $x:ident => $e:expr) => {
        match $s {
            AnyStore::Ram($x) => $e,
            AnyStore::Module($x, _) => $e,
            AnyStore::Null($x) => $e,
            AnyStore::Nbd($x) => $e,
            AnyStore::Local($x) => $e,
        }
    };
}

impl<F: Frame, R: Region, T: Transport, B: Page> BlockStore<B> for AnyStore<F, R, T, B> {
    fn info(&self) -> DiskInfo {
        each!(self, s => s.info())
    }
    fn submit(&mut self, io: StoreIo<B>) -> Result<(), (StoreIo<B>, StoreError)> {
        each!(self, s => s.submit(io))
    }
    fn complete(&mut self, out: &mut Vec<Completion<B>>) {
        each!(self, s => s.complete(out))
    }
    fn poll(&mut self) {
        each!(self, s => s.poll())
    }
    fn ready(&self) -> bool {
        each!(self, s => s.ready())
    }
    fn has_work(&self) -> bool {
        each!(self, s => s.has_work())
    }
    fn failed(&self) -> Option<&str> {
        each!(self, s => s.failed())
    }
    fn counters(&self) -> Vec<(&'static str, u64)> {
        each!(self, s => s.counters())
    }
    fn cancel(&mut self, out: &mut Vec<StoreIo<B>>) {
        each!(self, s => s.cancel(out))
    }
}

impl<F: Frame, R: Region, T, B> FrameBacked for AnyStore<F, R, T, B> {
    fn frames(&self, off: u64, len: u32, out: &mut Vec<(u64, u16, u16)>) -> bool {
        match self {
            AnyStore::Ram(s) => s.frames(off, len, out),
            AnyStore::Module(s, _) => s.frames(off, len, out),
            AnyStore::Null(_) | AnyStore::Nbd(_) | AnyStore::Local(_) => false,
        }
    }
}

impl<F: Frame, R: Region, T, B> ScratchFrames for AnyStore<F, R, T, B> {
    fn scratch(&mut self) -> Option<&mut ScratchPool> {
        match self {
            AnyStore::Ram(s) => s.scratch(),
            AnyStore::Module(s, _) => s.scratch(),
            AnyStore::Null(_) | AnyStore::Nbd(_) | AnyStore::Local(_) => None,
        }
    }
}

/// What building a store may take: the driver domain's frames, its boot modules, its
/// network, and the heap the budget can spare.
#[derive(Debug)]
pub struct Resources<'a, F, R, C, B> {
    /// Frames for RAM disks.
    pub frames: &'a mut F,
    /// Boot modules; `None` while a device serves one.
    pub modules: &'a mut [Option<R>],
    /// Opens connections to NBD servers.
    pub net: &'a mut C,
    /// The driver domain's own controllers.
    pub local: &'a mut dyn LocalDisks<B>,
    /// Heap a RAM disk's frame list may take (`Budget::spare`).
    pub spare_heap: usize,
    /// How long I/O of an NBD disk waits for a lost server.
    pub nbd_window_ns: u64,
}

/// The store `t` names, or why it cannot be had. Nothing is kept on failure (frames taken
/// go back when the partial list drops).
pub fn open<F: Frames, R: Region, C: Connector, B: Page>(
    t: &Target,
    read_only: bool,
    res: &mut Resources<'_, F, R, C, B>,
) -> Result<AnyStore<F::Frame, R, C::T, B>, OpenError> {
    match &t.kind {
        &TargetKind::Ram(bytes) => {
            let free = res.frames.free_bytes();
            if bytes.saturating_add(RAM_RESERVE) > free {
                return Err(OpenError::RamTooLarge { mib: bytes >> 20, free_mib: free >> 20 });
            }
            let n = usize::try_from(bytes.div_ceil(4096)).map_err(|_| OpenError::FrameListHeap { bytes: None })?;
            let list = n.saturating_mul(core::mem::size_of::<F::Frame>());
            if list > res.spare_heap {
                return Err(OpenError::FrameListHeap { bytes: Some(list) });
            }
            let frames = alloc_frames(res.frames, n, "RAM disk").map_err(|e| match e {
                None => OpenError::FrameListHeap { bytes: None },
                Some(e) => e,
            })?;
            if t.path == Some(DataPath::Swap) {
                // The swap path's scratch frames and the zero frame they are reset from.
                let zero = res.frames.alloc().ok_or(OpenError::OutOfFrames("swap scratch pool"))?;
                let scratch = alloc_frames(res.frames, SCRATCH_PAGES, "swap scratch pool")
                    .map_err(|e| e.unwrap_or(OpenError::ScratchHeap))?;
                return Ok(AnyStore::Ram(RamStore::new(FrameDisk::with_scratch(frames, zero, scratch), read_only)));
            }
            Ok(AnyStore::Ram(RamStore::new(FrameDisk::new(frames), read_only)))
        }
        &TargetKind::Null(bytes) => Ok(AnyStore::Null(NullStore::new(bytes / 512))),
        TargetKind::Nbd(uri) => {
            let tr = res.net.connect(uri).map_err(OpenError::Network)?;
            Ok(AnyStore::Nbd(Box::new(NbdStore::new(tr, &uri.export, res.nbd_window_ns))))
        }
        &TargetKind::Module(n) => {
            let slot = res.modules.get_mut(n).ok_or(OpenError::NoModule(n))?;
            let region = slot.take().ok_or(OpenError::ModuleBusy(n))?;
            Ok(AnyStore::Module(RamStore::new(RegionDisk::new(region), read_only), n))
        }
        &TargetKind::Nvme { ctl, nsid } => Ok(AnyStore::Local(res.local.open(ctl, nsid, read_only)?)),
    }
}

/// `n` frames, or `Err(None)` if the list does not fit the heap, `Err(Some(_))` if the
/// frames ran out.
fn alloc_frames<F: Frames>(f: &mut F, n: usize, what: &'static str) -> Result<Vec<F::Frame>, Option<OpenError>> {
    let mut v = Vec::new();
    v.try_reserve_exact(n).map_err(|_| None)?;
    for _ in 0..n {
        v.push(f.alloc().ok_or(Some(OpenError::OutOfFrames(what)))?);
    }
    Ok(v)
}

impl Target {
    /// The data path this target is served on, given the command line's `default`: a null,
    /// NBD or NVMe disk has no frames of ours to copy to (map instead: an NVMe controller
    /// DMAs into the mapped pages), and only a RAM disk has scratch frames for the swap
    /// path (a module copies, the others map).
    pub fn effective_path(&self, default: DataPath) -> DataPath {
        let path = self.path.unwrap_or(default);
        match (&self.kind, path) {
            (TargetKind::Null(_) | TargetKind::Nbd(_) | TargetKind::Nvme { .. }, DataPath::Copy) => DataPath::Map,
            (TargetKind::Module(_), DataPath::Swap) => DataPath::Copy,
            (TargetKind::Null(_) | TargetKind::Nbd(_) | TargetKind::Nvme { .. }, DataPath::Swap) => DataPath::Map,
            (_, p) => p,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::target::parse;

    #[test]
    fn each_target_gets_a_path_its_store_can_serve() {
        let p = |t: &str, d| parse(t).unwrap().effective_path(d);
        assert_eq!(p("ram:4M", DataPath::Copy), DataPath::Copy);
        assert_eq!(p("ram:4M:swap", DataPath::Map), DataPath::Swap);
        assert_eq!(p("null:4M", DataPath::Copy), DataPath::Map);
        assert_eq!(p("null:4M", DataPath::Swap), DataPath::Map);
        assert_eq!(p("module", DataPath::Swap), DataPath::Copy);
        assert_eq!(p("module", DataPath::Copy), DataPath::Copy);
        assert_eq!(p("nbd://192.0.2.1/x", DataPath::Copy), DataPath::Map);
        assert_eq!(p("ram:4M:copy", DataPath::Map), DataPath::Copy);
        assert_eq!(p("nvme:0", DataPath::Copy), DataPath::Map);
        assert_eq!(p("nvme:0:copy", DataPath::Swap), DataPath::Map);
    }
}
