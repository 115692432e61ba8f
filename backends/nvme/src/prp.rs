//! Physical Region Page entries ("Data Pointer", NVMe over PCIe): how one command names its
//! data. With 4 KiB memory pages (`CC.MPS` = 0):
//! - PRP1 is the address of the first byte (any dword-aligned offset in its page);
//! - a transfer within that page needs nothing else; one that ends in the next page has
//!   that page's address in PRP2; a longer one has in PRP2 the address of a PRP list: one
//!   page-aligned entry per further page;
//! - every page but the first starts at offset 0, and every page but the last ends at the
//!   page's end (the data is contiguous in the device's view).
//!
//! blkif segments are pieces of pages (`first_sect..=last_sect`): [`runs`] cuts a request's
//! segments where that contiguity breaks, and each run becomes one command.
use alloc::vec::Vec;

use crate::PAGE;

/// One piece of data: `len` bytes at `off` in the page at bus address `addr`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Piece {
    /// The page's bus address (page-aligned).
    pub addr: u64,
    /// Offset in the page.
    pub off: u16,
    /// Bytes.
    pub len: u16,
}

impl Piece {
    fn end(&self) -> usize {
        usize::from(self.off).saturating_add(usize::from(self.len))
    }
}

/// The entries of a PRP list page at most (one page, no chaining): 512 pages, 2 MiB.
pub const LIST_ENTRIES: usize = PAGE / 8;

/// Why pieces cannot be one command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PrpError {
    /// No data.
    Empty,
    /// A page address not page-aligned, an offset not dword-aligned, or a piece past its page.
    Misaligned,
    /// A piece that does not continue the one before (a hole).
    NotContiguous,
    /// More pages than one PRP list holds, or than the controller takes (MDTS).
    TooLong,
}

/// Splits `pieces` into runs (index ranges) that each make one command: contiguous in the
/// device's view, at most `max_pages` pages. Fails only for pieces no command can carry.
pub fn runs(pieces: &[Piece], max_pages: usize) -> Result<Vec<core::ops::Range<usize>>, PrpError> {
    let max_pages = max_pages.clamp(1, LIST_ENTRIES.saturating_add(1));
    let mut out = Vec::new();
    let mut start = 0;
    let mut pages = 0usize;
    for (i, p) in pieces.iter().enumerate() {
        check_piece(p)?;
        let joins = i > start && pieces.get(i.wrapping_sub(1)).is_some_and(|q| q.end() == PAGE) && p.off == 0;
        if i > start && (!joins || pages >= max_pages) {
            out.push(start..i);
            start = i;
            pages = 0;
        }
        pages = pages.saturating_add(1);
    }
    if pieces.is_empty() {
        return Err(PrpError::Empty);
    }
    out.push(start..pieces.len());
    Ok(out)
}

fn check_piece(p: &Piece) -> Result<(), PrpError> {
    if !p.addr.is_multiple_of(PAGE as u64) || !p.off.is_multiple_of(4) || p.len == 0 || p.end() > PAGE {
        return Err(PrpError::Misaligned);
    }
    Ok(())
}

/// The data pointer of one run: PRP1, PRP2, and the PRP list's entries when PRP2 points to
/// a list (the caller writes them into a page of its own and passes that page's address as
/// `list_addr`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataPointer {
    /// PRP entry 1.
    pub prp1: u64,
    /// PRP entry 2 (0, a page, or `list_addr`).
    pub prp2: u64,
    /// The list's entries (empty unless PRP2 is the list).
    pub list: Vec<u64>,
    /// Bytes the command transfers.
    pub bytes: u32,
}

/// Builds the data pointer of a run of contiguous pieces (as `runs` makes them).
pub fn build(run: &[Piece], list_addr: u64) -> Result<DataPointer, PrpError> {
    let first = run.first().ok_or(PrpError::Empty)?;
    let mut bytes = 0u32;
    for (i, p) in run.iter().enumerate() {
        check_piece(p)?;
        if i > 0 {
            let prev = run.get(i.wrapping_sub(1)).ok_or(PrpError::Empty)?;
            if prev.end() != PAGE || p.off != 0 {
                return Err(PrpError::NotContiguous);
            }
        }
        bytes = bytes.saturating_add(u32::from(p.len));
    }
    if run.len() > LIST_ENTRIES.saturating_add(1) {
        return Err(PrpError::TooLong);
    }
    let prp1 = first.addr.saturating_add(u64::from(first.off));
    let (prp2, list) = match run {
        [_] => (0, Vec::new()),
        [_, second] => (second.addr, Vec::new()),
        [_, rest @ ..] => {
            if !list_addr.is_multiple_of(PAGE as u64) {
                return Err(PrpError::Misaligned);
            }
            (list_addr, rest.iter().map(|p| p.addr).collect())
        }
        [] => return Err(PrpError::Empty),
    };
    Ok(DataPointer { prp1, prp2, list, bytes })
}

#[cfg(test)]
#[allow(clippy::arithmetic_side_effects)]
mod tests {
    use super::*;

    fn page(n: u64, off: u16, len: u16) -> Piece {
        Piece { addr: n * 4096, off, len }
    }

    #[test]
    fn one_two_and_many_pages() {
        let one = build(&[page(5, 512, 1024)], 0).unwrap();
        assert_eq!((one.prp1, one.prp2, one.bytes), (5 * 4096 + 512, 0, 1024));
        let two = build(&[page(5, 2048, 2048), page(9, 0, 512)], 0).unwrap();
        assert_eq!((two.prp1, two.prp2, two.list.len()), (5 * 4096 + 2048, 9 * 4096, 0));
        let many: Vec<Piece> = (10..14).map(|n| page(n, 0, 4096)).collect();
        let d = build(&many, 0x7000).unwrap();
        assert_eq!((d.prp1, d.prp2, d.bytes), (10 * 4096, 0x7000, 16384));
        assert_eq!(d.list, [11 * 4096, 12 * 4096, 13 * 4096]);
    }

    #[test]
    fn holes_misalignment_and_length_are_refused() {
        assert_eq!(build(&[page(1, 0, 2048), page(2, 0, 4096)], 0), Err(PrpError::NotContiguous));
        assert_eq!(build(&[page(1, 0, 4096), page(2, 512, 512)], 0), Err(PrpError::NotContiguous));
        assert_eq!(build(&[Piece { addr: 4097, off: 0, len: 512 }], 0), Err(PrpError::Misaligned));
        assert_eq!(build(&[page(1, 2, 512)], 0), Err(PrpError::Misaligned));
        assert_eq!(build(&[page(1, 3584, 1024)], 0), Err(PrpError::Misaligned));
        assert_eq!(build(&[], 0), Err(PrpError::Empty));
        let long: Vec<Piece> = (0..514).map(|n| page(n, 0, 4096)).collect();
        assert_eq!(build(&long, 0x1000), Err(PrpError::TooLong));
    }

    #[test]
    fn runs_cut_at_holes_and_at_the_page_limit() {
        // blkif segments: a full page, a partial one (hole after it), then two full pages.
        let segs = [page(1, 0, 4096), page(2, 0, 1024), page(3, 0, 4096), page(4, 0, 4096)];
        assert_eq!(runs(&segs, 32).unwrap(), [0..2, 2..4]);
        let full: Vec<Piece> = (0..10).map(|n| page(n, 0, 4096)).collect();
        assert_eq!(runs(&full, 4).unwrap(), [0..4, 4..8, 8..10]);
        assert_eq!(runs(&[], 4), Err(PrpError::Empty));
        for r in runs(&full, 4).unwrap() {
            assert!(build(&full[r], 0x2000).is_ok());
        }
    }
}
