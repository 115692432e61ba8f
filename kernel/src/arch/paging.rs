//! Page tables after boot: identity mappings above 4 GiB for the grant region, and
//! uncached device registers below it.
use core::arch::asm;

/// Identity-maps `[start, end)` (2 MiB aligned, above 4 GiB) with 2 MiB pages, allocating
/// page-directory pages with `alloc_page` (which returns a zeroed, identity-mapped page).
/// Used for the reserved region where foreign grants are mapped.
///
/// # Safety
/// `pml4` must be the active page-table root (identity-mapped), and no live memory may sit
/// in `[start, end)`: its translations are replaced.
pub unsafe fn map_identity_2m(
    pml4: *mut u64,
    start: u64,
    end: u64,
    mut alloc_page: impl FnMut() -> Option<u64>,
) -> Result<(), &'static str> {
    const P: u64 = 1;
    const RW: u64 = 2;
    const PS: u64 = 1 << 7;
    const TWO_MB: u64 = 2 << 20;
    if !start.is_multiple_of(TWO_MB) || !end.is_multiple_of(TWO_MB) || end <= start || end > (1 << 46) {
        return Err("bad region for the identity map");
    }
    let mut va = start;
    while va < end {
        let i4 = ((va >> 39) & 511) as usize;
        let i3 = ((va >> 30) & 511) as usize;
        let i2 = ((va >> 21) & 511) as usize;
        let e4p = pml4.wrapping_add(i4);
        // SAFETY: i4 < 512 indexes inside the PML4 page; volatile because the MMU reads it.
        let e4 = unsafe { e4p.read_volatile() };
        let pdpt = if e4 & P == 0 {
            let p = alloc_page().ok_or("out of memory for page tables")?;
            // SAFETY: as above; `p` is a fresh zeroed page used only as this PDPT.
            unsafe { e4p.write_volatile(p | P | RW) };
            p
        } else {
            e4 & 0x000f_ffff_ffff_f000
        } as *mut u64;
        let e3p = pdpt.wrapping_add(i3);
        // SAFETY: `pdpt` is a page-table page (from boot or alloc_page), i3 < 512.
        let e3 = unsafe { e3p.read_volatile() };
        let pd = if e3 & P == 0 {
            let p = alloc_page().ok_or("out of memory for page tables")?;
            // SAFETY: as above.
            unsafe { e3p.write_volatile(p | P | RW) };
            p
        } else if e3 & PS != 0 {
            return Err("region overlaps a 1 GiB mapping");
        } else {
            e3 & 0x000f_ffff_ffff_f000
        } as *mut u64;
        let e2p = pd.wrapping_add(i2);
        // SAFETY: `pd` is a page-directory page, i2 < 512.
        unsafe { e2p.write_volatile(va | P | RW | PS) };
        va += TWO_MB;
    }
    flush_tlb();
    Ok(())
}

/// Makes the boot identity map of `[start, end)` (inside the first 4 GiB, which the boot
/// page tables map with 2 MiB pages) uncached: PCD and PWT select PAT entry 3, UC, which
/// device registers need (a write-back mapping could merge, reorder or defer doorbell
/// writes; Xen maps a passed-through BAR UC in the p2m too, but the guest's own attribute
/// is what it combines with). Whole 2 MiB pages: the caller puts nothing else in them.
///
/// # Safety
/// `pml4` must be the active page-table root built by the boot code, and no memory the
/// program uses as RAM may sit in the 2 MiB pages touched (it would become uncached).
pub unsafe fn set_uncached(pml4: *mut u64, start: u64, end: u64) -> Result<(), &'static str> {
    const P: u64 = 1;
    const PWT: u64 = 1 << 3;
    const PCD: u64 = 1 << 4;
    const PS: u64 = 1 << 7;
    const TWO_MB: u64 = 2 << 20;
    if end <= start || end > (4 << 30) {
        return Err("uncached range outside the first 4 GiB");
    }
    let mut va = start & !(TWO_MB - 1);
    while va < end {
        // SAFETY: PML4[0] and PDPT[0..4] are the boot tables (identity-mapped pages).
        let e4 = unsafe { pml4.read_volatile() };
        if e4 & P == 0 {
            return Err("no boot mapping of the first 4 GiB");
        }
        let pdpt = (e4 & 0x000f_ffff_ffff_f000) as *mut u64;
        // SAFETY: va < 4 GiB, so the index is < 4, inside the PDPT page.
        let e3 = unsafe { pdpt.wrapping_add(((va >> 30) & 511) as usize).read_volatile() };
        if e3 & P == 0 || e3 & PS != 0 {
            return Err("unexpected boot mapping of the first 4 GiB");
        }
        let pd = (e3 & 0x000f_ffff_ffff_f000) as *mut u64;
        let e2p = pd.wrapping_add(((va >> 21) & 511) as usize);
        // SAFETY: a boot page-directory page, index < 512; volatile because the MMU reads it.
        let e2 = unsafe { e2p.read_volatile() };
        if e2 & P == 0 || e2 & PS == 0 {
            return Err("unexpected boot mapping of the first 4 GiB");
        }
        // SAFETY: as above; only the two cache-control bits change.
        unsafe { e2p.write_volatile(e2 | PWT | PCD) };
        va += TWO_MB;
    }
    flush_tlb();
    Ok(())
}

/// Reloads CR3: drops every cached translation.
pub fn flush_tlb() {
    // SAFETY: rewriting CR3 with its own value only flushes non-global TLB entries.
    unsafe {
        asm!("mov {t}, cr3", "mov cr3, {t}", t = out(reg) _, options(nostack, preserves_flags));
    }
}
