//! Access to memory another party writes concurrently: ring pages, grant-mapped pages,
//! `shared_info`, the console and xenstore rings.
//!
//! No `&T` or `&[u8]` is ever formed into such memory (the other side may change it at any
//! time, which a reference's aliasing rules forbid). A [`SharedMem`] is an address and a
//! length; every access is bounds-checked and volatile or atomic (cf. Asterinas'
//! `VmReader`, vm-memory's `VolatileSlice`).
use core::sync::atomic::{AtomicU16, AtomicU32, AtomicU64, Ordering};

/// Plain data: every bit pattern is a valid value, so a copy of untrusted bytes is one.
///
/// # Safety
/// Implement only for integers and `#[repr(C)]` aggregates of them without padding that
/// must hold particular values.
pub unsafe trait Pod: Copy {}

macro_rules! pod {
    ($($t:ty),*) => { $(
        // SAFETY: integers and `#[repr(C)]` structs/arrays of integers (checked against
        // Xen's headers in xen-sys-mini): any bit pattern is valid.
        unsafe impl Pod for $t {}
    )* };
}
pod!(u8, u16, u32, u64, i16, i32, i64);
pod!(
    xen_sys_mini::io::blkif::BlkifRequest,
    xen_sys_mini::io::blkif::BlkifRequestSegment,
    xen_sys_mini::io::blkif::BlkifResponse,
    xen_sys_mini::io::xs_wire::XsdSockmsg,
    xen_sys_mini::grant_table::GrantEntryV1,
    xen_sys_mini::hvm::start_info::HvmStartInfo,
    xen_sys_mini::hvm::start_info::HvmModlistEntry,
    xen_sys_mini::hvm::start_info::HvmMemmapTableEntry,
    xen_sys_mini::VcpuTimeInfo
);
// SAFETY: an array of Pod is Pod.
unsafe impl<T: Pod, const N: usize> Pod for [T; N] {}

/// A window of identity-mapped shared memory.
#[derive(Debug, Clone, Copy)]
pub struct SharedMem {
    addr: u64,
    len: usize,
}

/// An access outside the window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutOfBounds;

impl SharedMem {
    /// # Safety
    /// `[addr, addr + len)` must be mapped (identity) for as long as the value and its
    /// copies are used, and must not overlap memory Rust code holds references to.
    pub const unsafe fn new(addr: u64, len: usize) -> Self {
        Self { addr, len }
    }

    pub const fn len(&self) -> usize {
        self.len
    }

    pub const fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn check(&self, off: usize, size: usize, align: usize) -> Result<*mut u8, OutOfBounds> {
        let end = off.checked_add(size).ok_or(OutOfBounds)?;
        if end > self.len || !(self.addr as usize + off).is_multiple_of(align) {
            return Err(OutOfBounds);
        }
        Ok((self.addr as usize + off) as *mut u8)
    }

    /// Copies a `T` out of the window, byte by byte (volatile): a snapshot the other side
    /// can no longer change. Validate the copy, never the window.
    pub fn read<T: Pod>(&self, off: usize) -> Result<T, OutOfBounds> {
        let mut v = core::mem::MaybeUninit::<T>::zeroed();
        // SAFETY: the MaybeUninit is `size_of::<T>()` writable bytes we own.
        let bytes = unsafe { core::slice::from_raw_parts_mut(v.as_mut_ptr().cast::<u8>(), core::mem::size_of::<T>()) };
        self.read_bytes(off, bytes)?;
        // SAFETY: `T: Pod`: every bit pattern is a valid `T`, and all bytes were written.
        Ok(unsafe { v.assume_init() })
    }

    /// Writes a `T` into the window, byte by byte (volatile).
    pub fn write<T: Pod>(&self, off: usize, v: &T) -> Result<(), OutOfBounds> {
        // SAFETY: `T: Pod` has no padding-dependent invariants we rely on; viewing its
        // bytes is fine for a `Copy` value we hold a reference to.
        let bytes =
            unsafe { core::slice::from_raw_parts(core::ptr::from_ref(v).cast::<u8>(), core::mem::size_of::<T>()) };
        self.write_bytes(off, bytes)
    }

    /// Copies bytes out of the window: bytes up to the first 8-byte boundary, the body with
    /// one `rep movsq` (`arch::copy_words`: never a reference into the window), bytes at
    /// the end. Data pages are page-aligned, so a whole segment is one instruction.
    pub fn read_bytes(&self, off: usize, out: &mut [u8]) -> Result<(), OutOfBounds> {
        let p = self.check(off, out.len(), 1)?;
        let head = p.align_offset(8).min(out.len());
        for (i, o) in out[..head].iter_mut().enumerate() {
            // SAFETY: `off + i` is inside the checked window; volatile byte read.
            *o = unsafe { p.wrapping_add(i).read_volatile() };
        }
        let words = (out.len() - head) / 8;
        // SAFETY: `[off + head, off + head + 8 * words)` is inside the checked window and
        // `out[head..]` is at least that long; `out` is our own buffer, so they do not
        // overlap, and we hold `out` mutably.
        unsafe { crate::arch::copy_words(out[head..].as_mut_ptr(), p.wrapping_add(head), words) };
        for (i, o) in out.iter_mut().enumerate().skip(head + 8 * words) {
            // SAFETY: inside the checked window; volatile byte read.
            *o = unsafe { p.wrapping_add(i).read_volatile() };
        }
        Ok(())
    }

    /// Copies bytes into the window (same access pattern as `read_bytes`).
    pub fn write_bytes(&self, off: usize, data: &[u8]) -> Result<(), OutOfBounds> {
        let p = self.check(off, data.len(), 1)?;
        let head = p.align_offset(8).min(data.len());
        for (i, b) in data[..head].iter().enumerate() {
            // SAFETY: inside the checked window; volatile byte write.
            unsafe { p.wrapping_add(i).write_volatile(*b) };
        }
        let words = (data.len() - head) / 8;
        // SAFETY: the destination range is inside the checked window (no Rust reference
        // covers shared memory); the source is `data[head..]`, at least `8 * words` long,
        // our own memory, so they do not overlap.
        unsafe { crate::arch::copy_words(p.wrapping_add(head), data[head..].as_ptr(), words) };
        for (i, b) in data.iter().enumerate().skip(head + 8 * words) {
            // SAFETY: inside the checked window; volatile byte write.
            unsafe { p.wrapping_add(i).write_volatile(*b) };
        }
        Ok(())
    }

    /// The copy `read_bytes` used before `rep movsq`: a volatile load per aligned word.
    /// Kept only as the baseline of the boot copy probe (`time::probe_copy`).
    pub fn read_bytes_by_word(&self, off: usize, out: &mut [u8]) -> Result<(), OutOfBounds> {
        let p = self.check(off, out.len(), 1)?;
        let mut i = 0;
        while i < out.len() {
            let q = p.wrapping_add(i);
            if (q as usize).is_multiple_of(8) && out.len() - i >= 8 {
                #[allow(clippy::cast_ptr_alignment)] // 8-byte alignment checked just above
                let q64 = q.cast::<u64>();
                // SAFETY: `[off + i, off + i + 8)` is inside the checked window and 8-byte
                // aligned (checked just above); a volatile load of plain data.
                let v = unsafe { q64.read_volatile() };
                out[i..i + 8].copy_from_slice(&v.to_ne_bytes());
                i += 8;
            } else {
                // SAFETY: `off + i` is inside the checked window; volatile byte read.
                out[i] = unsafe { q.read_volatile() };
                i += 1;
            }
        }
        Ok(())
    }

    /// Fills bytes of the window.
    pub fn fill(&self, off: usize, len: usize, v: u8) -> Result<(), OutOfBounds> {
        let p = self.check(off, len, 1)?;
        for i in 0..len {
            // SAFETY: in bounds as above.
            unsafe { p.wrapping_add(i).write_volatile(v) };
        }
        Ok(())
    }

    /// An aligned `u32` of the window as an atomic (ring indices).
    pub fn atomic_u32(&self, off: usize) -> Result<&AtomicU32, OutOfBounds> {
        let p = self.check(off, 4, 4)?;
        // SAFETY: aligned, in bounds, mapped for the window's lifetime; every access to it
        // goes through atomics (here and on the other side of the ring).
        Ok(unsafe { AtomicU32::from_ptr(p.cast()) })
    }

    /// An aligned `u16` of the window as an atomic (grant entry flags).
    pub fn atomic_u16(&self, off: usize) -> Result<&AtomicU16, OutOfBounds> {
        let p = self.check(off, 2, 2)?;
        // SAFETY: as for `atomic_u32`.
        Ok(unsafe { AtomicU16::from_ptr(p.cast()) })
    }

    /// An aligned `u64` of the window as an atomic (event channel bitmaps).
    pub fn atomic_u64(&self, off: usize) -> Result<&AtomicU64, OutOfBounds> {
        let p = self.check(off, 8, 8)?;
        // SAFETY: as for `atomic_u32`.
        Ok(unsafe { AtomicU64::from_ptr(p.cast()) })
    }
}

/// A full barrier between our accesses to shared memory and the other side's.
pub fn mb() {
    core::sync::atomic::fence(Ordering::SeqCst);
}

#[cfg(test)]
mod tests {
    use super::SharedMem;
    use alloc::{vec, vec::Vec};

    /// Every head/body/tail split of `rep movsq` copies exactly the asked bytes, both ways,
    /// and nothing around them.
    #[test]
    fn copies_every_alignment_and_length_exactly() {
        let mut win = [0u8; 64];
        for off in 0..17 {
            for len in 0..40 {
                let pattern: Vec<u8> = (0..len).map(|i| (i as u8).wrapping_mul(7).wrapping_add(1)).collect();
                win.fill(0xee);
                // SAFETY: `win` lives through the test and no reference to it is used
                // while the window is.
                let m = unsafe { SharedMem::new(win.as_mut_ptr() as u64, win.len()) };
                m.write_bytes(off, &pattern).unwrap();
                let mut back = vec![0u8; len];
                m.read_bytes(off, &mut back).unwrap();
                let mut old = vec![0u8; len];
                m.read_bytes_by_word(off, &mut old).unwrap();
                assert_eq!(back, pattern, "off {off} len {len}");
                assert_eq!(old, pattern, "off {off} len {len}");
                assert!(win[..off].iter().all(|&b| b == 0xee), "before, off {off} len {len}");
                assert!(win[off + len..].iter().all(|&b| b == 0xee), "after, off {off} len {len}");
            }
        }
        // SAFETY: as above.
        let m = unsafe { SharedMem::new(win.as_mut_ptr() as u64, win.len()) };
        assert!(m.read_bytes(60, &mut [0u8; 5]).is_err());
        assert!(m.write_bytes(64, &[1]).is_err());
    }
}
