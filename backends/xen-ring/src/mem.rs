//! Several pages seen as one byte range: a multi-page ring is contiguous to the side that
//! allocated it, but each page is granted and mapped separately.
use alloc::vec::Vec;

use xen_hv::{MemError, Page};
use xen_sys_mini::io::ring::{const_ring_size, SRING_HEADER_SIZE};
use xen_sys_mini::XEN_PAGE_SIZE;

/// The pages of one ring, in ring order, and the slot geometry over them.
#[derive(Debug)]
pub struct RingMem<P> {
    pages: Vec<P>,
    slot: usize,
    size: u32,
}

impl<P: Page> RingMem<P> {
    /// The ring over `pages` with `slot`-byte entries: `__CONST_RING_SIZE` slots.
    /// `Err` gives the pages back (they may be granted or mapped: the owner releases them).
    pub fn new(pages: Vec<P>, slot: usize) -> Result<Self, Vec<P>> {
        let bytes = pages.len().saturating_mul(XEN_PAGE_SIZE);
        let n = const_ring_size(bytes, slot);
        let fits = n.checked_mul(slot).and_then(|b| b.checked_add(SRING_HEADER_SIZE)).is_some_and(|b| b <= bytes);
        match u32::try_from(n) {
            Ok(size) if size > 0 && fits => Ok(Self { pages, slot, size }),
            _ => Err(pages),
        }
    }

    /// The pages back, in order.
    pub fn into_pages(self) -> Vec<P> {
        self.pages
    }

    /// The pages, in order.
    pub fn pages(&self) -> &[P] {
        &self.pages
    }

    /// Slots in the ring (a power of two).
    pub fn size(&self) -> u32 {
        self.size
    }

    /// Bytes per slot.
    pub fn slot_size(&self) -> usize {
        self.slot
    }

    /// Byte offset of the slot for free-running index `idx` (`RING_GET_REQUEST` /
    /// `RING_GET_RESPONSE`: `idx & (size - 1)`).
    pub fn slot_offset(&self, idx: u32) -> usize {
        let i = (idx & self.size.wrapping_sub(1)) as usize;
        i.saturating_mul(self.slot).saturating_add(SRING_HEADER_SIZE)
    }

    fn page(&self, off: usize) -> Result<(&P, usize), MemError> {
        let p = self.pages.get(off / XEN_PAGE_SIZE).ok_or(MemError::OutOfBounds)?;
        Ok((p, off % XEN_PAGE_SIZE))
    }

    /// The page holding the header (indices are loaded and stored there as atomics).
    pub(crate) fn header(&self) -> Result<&P, MemError> {
        self.pages.first().ok_or(MemError::OutOfBounds)
    }

    /// Copies `dst.len()` bytes at `off`, across page boundaries.
    pub fn read(&self, mut off: usize, dst: &mut [u8]) -> Result<(), MemError> {
        let mut done = 0;
        while done < dst.len() {
            let (p, in_page) = self.page(off)?;
            let n = XEN_PAGE_SIZE.saturating_sub(in_page).min(dst.len().saturating_sub(done));
            let end = done.saturating_add(n);
            p.read(in_page, dst.get_mut(done..end).ok_or(MemError::OutOfBounds)?)?;
            done = end;
            off = off.saturating_add(n);
        }
        Ok(())
    }

    /// Copies `src` to `off`, across page boundaries.
    pub fn write(&self, mut off: usize, src: &[u8]) -> Result<(), MemError> {
        let mut done = 0;
        while done < src.len() {
            let (p, in_page) = self.page(off)?;
            let n = XEN_PAGE_SIZE.saturating_sub(in_page).min(src.len().saturating_sub(done));
            let end = done.saturating_add(n);
            p.write(in_page, src.get(done..end).ok_or(MemError::OutOfBounds)?)?;
            done = end;
            off = off.saturating_add(n);
        }
        Ok(())
    }

    /// Reads slot `idx` into `out` (at most one slot's bytes).
    pub(crate) fn read_slot(&self, idx: u32, out: &mut [u8]) -> Result<(), MemError> {
        let n = out.len().min(self.slot);
        self.read(self.slot_offset(idx), out.get_mut(..n).unwrap_or_default())
    }

    /// Writes `bytes` (at most one slot) into slot `idx`.
    pub(crate) fn write_slot(&self, idx: u32, bytes: &[u8]) -> Result<(), MemError> {
        if bytes.len() > self.slot {
            return Err(MemError::OutOfBounds);
        }
        self.write(self.slot_offset(idx), bytes)
    }
}

/// `RING_PUSH_*_AND_CHECK_NOTIFY`'s predicate: the other side asked (with its `*_event`
/// index) to be notified of an entry in `(old, new]`.
pub(crate) fn needs_notify(old: u32, new: u32, event: u32) -> bool {
    new.wrapping_sub(event) < new.wrapping_sub(old)
}
