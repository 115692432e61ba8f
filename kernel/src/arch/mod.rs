//! x86_64 leaf code: the few privileged instructions the runtime needs (port I/O, CPUID,
//! MSRs, TSC, halt), the PVH entry (`boot`), page tables (`paging`) and exceptions
//! (`traps`). Nothing here calls up: an exception report goes through a hook the layer
//! above installs.
use core::arch::asm;

#[cfg(target_os = "none")]
pub mod boot;
pub mod paging;

/// Whether the image was entered through its Multiboot header (an HVM guest started by its
/// device model) rather than Xen's PVH entry.
pub fn started_by_multiboot() -> bool {
    #[cfg(target_os = "none")]
    return boot::multiboot();
    #[cfg(not(target_os = "none"))]
    false
}
pub mod traps;

/// Writes one byte to an I/O port.
pub fn outb(port: u16, v: u8) {
    // SAFETY: the only ports used are Xen's debug port 0xe9 (HVM guests' debug console,
    // printed by Xen as "(dN) ..."), which has no side effect on guest state.
    unsafe { asm!("out dx, al", in("dx") port, in("al") v, options(nomem, nostack, preserves_flags)) };
}

/// Reads a 32-bit I/O port.
///
/// # Safety
/// Reading `port` must have no effect the caller has not accounted for: here only PCI
/// configuration mechanism #1's data port (0xcfc), which the device model emulates for an
/// HVM guest (and Xen answers with all ones for a PVH guest, which has none).
pub unsafe fn inl(port: u16) -> u32 {
    let v: u32;
    // SAFETY: guaranteed by the caller.
    unsafe { asm!("in eax, dx", in("dx") port, out("eax") v, options(nomem, nostack, preserves_flags)) };
    v
}

/// Writes a 32-bit I/O port.
///
/// # Safety
/// As for [`inl`]: here only ports 0xcf8 (the configuration address) and 0xcfc.
pub unsafe fn outl(port: u16, v: u32) {
    // SAFETY: guaranteed by the caller.
    unsafe { asm!("out dx, eax", in("dx") port, in("eax") v, options(nomem, nostack, preserves_flags)) };
}

/// CPUID leaf `leaf`, subleaf 0: (eax, ebx, ecx, edx).
pub fn cpuid(leaf: u32) -> (u32, u32, u32, u32) {
    // CPUID is unprivileged and has no side effects (safe since Rust 1.87).
    let r = core::arch::x86_64::__cpuid_count(leaf, 0);
    (r.eax, r.ebx, r.ecx, r.edx)
}

/// Writes a model-specific register.
///
/// # Safety
/// The caller must know what writing `value` to `msr` does; here only Xen's
/// hypercall-page MSR is written.
pub unsafe fn wrmsr(msr: u32, value: u64) {
    // SAFETY: guaranteed by the caller.
    unsafe {
        asm!("wrmsr", in("ecx") msr, in("eax") value as u32, in("edx") (value >> 32) as u32, options(nostack, preserves_flags));
    }
}

/// The time-stamp counter.
pub fn rdtsc() -> u64 {
    // SAFETY: RDTSC only reads the TSC (Xen may emulate it; either way no side effect).
    unsafe { core::arch::x86_64::_rdtsc() }
}

/// Copies `words` 8-byte words from `src` to `dst` with one `rep movsq`.
///
/// Why not a loop of volatile loads and stores: under QEMU TCG every guest instruction of
/// such a loop is translated and bounds-checked on its own (about 20 per word with the
/// slice checks), while `rep movsq` is one instruction QEMU runs as a tight loop; the boot
/// probe (`time::probe_copy`) measures both. The asm block is opaque to the compiler, so
/// it assumes nothing about the memory it reads (shared pages may change under it).
///
/// # Safety
/// `[src, src + 8 * words)` must be readable, `[dst, dst + 8 * words)` writable, the two
/// must not overlap, and no Rust reference may cover `dst`'s range.
pub unsafe fn copy_words(dst: *mut u8, src: *const u8, words: usize) {
    // SAFETY: guaranteed by the caller; the direction flag is clear (System V ABI), so
    // the copy runs upwards.
    unsafe {
        asm!(
            "rep movsq",
            inout("rcx") words => _,
            inout("rdi") dst => _,
            inout("rsi") src => _,
            options(nostack, preserves_flags)
        );
    }
}

/// Stops the vCPU for good (after a failed shutdown hypercall).
pub fn halt_forever() -> ! {
    loop {
        // SAFETY: with interrupts off this parks the vCPU; Xen still can destroy it.
        unsafe { asm!("cli", "hlt", options(nomem, nostack)) };
    }
}
/// Raises #UD (the crash-report path's test: `crashtest=ud2`); never returns.
pub fn invalid_opcode() -> ! {
    // SAFETY: deliberately raises #UD; the exception path reports and never returns.
    unsafe { asm!("ud2", options(nomem, nostack, noreturn)) }
}
