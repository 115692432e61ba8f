//! Our own memory: private frames, frames shared with another domain, boot-module regions.
use crate::Page;

/// One of our own frames: private memory (no other domain maps it), so the owner may take
/// references into it; the copy path names it by GFN.
pub trait Frame {
    fn gfn(&self) -> u64;
    fn bytes(&self) -> &[u8];
    fn bytes_mut(&mut self) -> &mut [u8];
}

/// Where our own frames come from.
pub trait Frames {
    type Frame: Frame;
    /// A zeroed frame, or `None` when memory is exhausted.
    fn alloc(&mut self) -> Option<Self::Frame>;
    /// Bytes still free for frames.
    fn free_bytes(&self) -> u64;
}

/// One of our frames that another domain may map (a ring page, a packet buffer): accessed
/// only as a [`Page`] (volatile copies, atomics), never by reference.
pub trait SharedFrame: Page {
    fn gfn(&self) -> u64;
}

/// Where frames to share come from.
pub trait SharedFrames {
    type Shared: SharedFrame;
    /// A zeroed frame, or `None` when memory is exhausted.
    fn alloc_shared(&mut self) -> Option<Self::Shared>;
}

/// A physically contiguous region of our own memory handed over at boot (a boot module),
/// owned by whoever holds the value.
pub trait Region {
    fn bytes(&self) -> &[u8];
    fn bytes_mut(&mut self) -> &mut [u8];
    /// The GFN and in-frame offset of byte `off`, if inside the region.
    fn gfn(&self, off: u64) -> Option<(u64, u16)>;
}
