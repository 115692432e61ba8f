//! Hypercalls through the hypercall page.
//!
//! Why the page rather than issuing `vmcall`/`vmmcall` ourselves: Xen writes the right
//! instruction for the CPU vendor (here QEMU emulates AMD SVM, so `vmmcall`; on Intel,
//! `vmcall`) and may patch in a faster sequence; the guest needs no vendor check. The page
//! is found through Xen's CPUID leaves (`0x4000_0000 + n`, signature "XenVMMXenVMM"; leaf
//! +2 gives the MSR), pre-filled with `ret` (0xc3) and checked afterwards, so a Xen that
//! ignored the MSR write is detected instead of executing garbage.
//!
//! Arguments go in `rdi, rsi, rdx, r10, r8` (the x86_64 hypercall ABI, *not* `r9`); the
//! result comes back in `rax`; Xen may clobber the argument registers, so they are all
//! declared clobbered. The asm calls into the page, so it must not be `nostack`.
use core::arch::asm;
use core::sync::atomic::{AtomicU64, Ordering};

use crate::arch;

/// A negative Xen errno returned by a hypercall.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct XenError(pub i32);

impl XenError {
    pub fn name(self) -> &'static str {
        xen_sys_mini::errno::name(self.0)
    }
}

impl core::fmt::Display for XenError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "-{} ({})", self.0, self.name())
    }
}

pub type XenResult<T> = Result<T, XenError>;

#[repr(C, align(4096))]
struct HypercallPage([u8; 4096]);

static mut HYPERCALL_PAGE: HypercallPage = HypercallPage([0xc3; 4096]);

/// Hypercalls issued, by hypercall number (0..64).
static COUNTS: [AtomicU64; 64] = [const { AtomicU64::new(0) }; 64];

/// How many hypercalls of number `nr` were issued.
pub fn count(nr: u32) -> u64 {
    COUNTS.get(nr as usize).map_or(0, |c| c.load(Ordering::Relaxed))
}

/// Finds Xen's CPUID base leaf ("XenVMMXenVMM"), if any.
pub fn xen_cpuid_base() -> Option<u32> {
    (0x4000_0000..0x4001_0000).step_by(0x100).find(|&leaf| {
        let (eax, ebx, ecx, edx) = arch::cpuid(leaf);
        ebx == 0x566e_6558 && ecx == 0x65584d4d && edx == 0x4d4d566e && eax >= leaf + 2
    })
}

/// Installs the hypercall page. Must run before any hypercall.
pub fn init() -> Result<(), &'static str> {
    let base = xen_cpuid_base().ok_or("not running on Xen (no Xen CPUID leaves)")?;
    let (pages, msr, _, _) = arch::cpuid(base + 2);
    if pages < 1 {
        return Err("Xen reports no hypercall pages");
    }
    let page = (&raw const HYPERCALL_PAGE) as u64;
    // SAFETY: writing the page's guest-physical address (identity-mapped, so virtual ==
    // physical) to Xen's MSR asks Xen to fill the page with hypercall stubs; the page is
    // a static, 4 KiB aligned, used for nothing else.
    unsafe { arch::wrmsr(msr, page) };
    let first_byte = (&raw const HYPERCALL_PAGE).cast::<u8>();
    // SAFETY: reading our own static after Xen wrote it; no reference is formed.
    let first = unsafe { core::ptr::read_volatile(first_byte) };
    if first == 0xc3 {
        return Err("Xen did not fill the hypercall page");
    }
    Ok(())
}

/// Issues hypercall `nr` with up to five arguments.
///
/// # Safety
/// The arguments must be what Xen expects for `nr`: pointers must point to valid,
/// identity-mapped memory of the right type and size for as long as the call lasts.
#[inline]
pub unsafe fn hypercall(nr: u32, a1: u64, a2: u64, a3: u64, a4: u64, a5: u64) -> i64 {
    if let Some(c) = COUNTS.get(nr as usize) {
        c.fetch_add(1, Ordering::Relaxed);
    }
    let entry = (&raw const HYPERCALL_PAGE) as u64 + u64::from(nr) * 32;
    let ret: i64;
    // SAFETY: `entry` is the stub for `nr` in the page Xen filled (`init`); the caller
    // guarantees the arguments. Every argument register is declared clobbered; the stack
    // is used by `call`, so no `nostack`.
    unsafe {
        asm!(
            "call {entry}",
            entry = in(reg) entry,
            inlateout("rax") 0i64 => ret,
            inlateout("rdi") a1 => _,
            inlateout("rsi") a2 => _,
            inlateout("rdx") a3 => _,
            inlateout("r10") a4 => _,
            inlateout("r8") a5 => _,
            lateout("rcx") _,
            lateout("r11") _,
        );
    }
    ret
}

/// Maps a raw hypercall return to a typed result.
pub fn check(ret: i64) -> XenResult<u64> {
    if ret < 0 {
        Err(XenError(i32::try_from(-ret).unwrap_or(i32::MAX)))
    } else {
        Ok(ret.cast_unsigned())
    }
}

/// `nr(cmd, arg)` where `arg` points to a `T`: the form of most hypercalls used here.
///
/// # Safety
/// `T` must be the structure Xen expects for (`nr`, `cmd`).
pub unsafe fn op<T>(nr: u32, cmd: u32, arg: &mut T) -> XenResult<u64> {
    // SAFETY: `arg` is a live exclusive reference to identity-mapped memory; the caller
    // guarantees it is the right type for the operation.
    check(unsafe { hypercall(nr, u64::from(cmd), core::ptr::from_mut(arg) as u64, 0, 0, 0) })
}

/// `nr(cmd, array, count)`: the batched form (grant table ops).
///
/// # Safety
/// `T` must be the element type Xen expects for (`nr`, `cmd`).
pub unsafe fn op_array<T>(nr: u32, cmd: u32, arg: &mut [T]) -> XenResult<u64> {
    // SAFETY: the slice is live, exclusive and identity-mapped; its length is passed.
    check(unsafe { hypercall(nr, u64::from(cmd), arg.as_mut_ptr() as u64, arg.len() as u64, 0, 0) })
}
