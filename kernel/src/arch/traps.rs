//! Exceptions: every vector 0..32 gets a stub that pushes a dummy error code where the CPU
//! does not, then the vector, and jumps to a common path that saves the registers and calls
//! `exception_handler`, which hands the frame to the report hook the runtime installed (it
//! prints a dump and shuts the domain down as crashed) or, without one, halts.
//!
//! The stubs and the IDT are only built for the PVH target (they are the entry points the
//! CPU jumps to); the frame and the hook are plain Rust.
use core::sync::atomic::{AtomicPtr, Ordering};

/// Registers saved by the common exception path, in push order reversed.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct ExceptionFrame {
    pub r15: u64,
    pub r14: u64,
    pub r13: u64,
    pub r12: u64,
    pub r11: u64,
    pub r10: u64,
    pub r9: u64,
    pub r8: u64,
    pub rbp: u64,
    pub rdi: u64,
    pub rsi: u64,
    pub rdx: u64,
    pub rcx: u64,
    pub rbx: u64,
    pub rax: u64,
    pub vector: u64,
    pub error_code: u64,
    pub rip: u64,
    pub cs: u64,
    pub rflags: u64,
    pub rsp: u64,
    pub ss: u64,
}

/// What runs on an exception: reports it and never returns.
pub type ReportHook = fn(&ExceptionFrame, cr2: u64) -> !;

static HOOK: AtomicPtr<()> = AtomicPtr::new(core::ptr::null_mut());

/// Installs the exception report (once the console exists).
pub fn set_report_hook(hook: ReportHook) {
    HOOK.store(hook as *mut (), Ordering::Release);
}

/// The name of exception vector `v`.
pub fn name(v: u64) -> &'static str {
    usize::try_from(v).ok().and_then(|v| EXCEPTION_NAMES.get(v)).copied().unwrap_or("?")
}

#[cfg(target_os = "none")]
mod stubs {
    use core::arch::{asm, global_asm};
    use core::sync::atomic::Ordering;

    use super::{ExceptionFrame, ReportHook, HOOK};

    macro_rules! exception_stubs {
        ($($n:literal $err:ident),*) => {
            global_asm!(
                ".pushsection .text",
                $(
                    concat!(".global exc_stub_", $n),
                    concat!("exc_stub_", $n, ":"),
                    exception_stubs!(@push $err),
                    concat!("push ", $n),
                    "jmp exc_common",
                )*
                "exc_common:",
                "push rax", "push rbx", "push rcx", "push rdx", "push rsi", "push rdi", "push rbp",
                "push r8", "push r9", "push r10", "push r11", "push r12", "push r13", "push r14", "push r15",
                "mov rdi, rsp",
                "and rsp, -16",
                "call exception_handler",
                "2: hlt",
                "jmp 2b",
                ".popsection",
                ".pushsection .rodata",
                ".balign 8",
                "exc_stub_table:",
                $( concat!(".quad exc_stub_", $n), )*
                ".popsection",
            );
        };
        (@push noerr) => { "push 0" };
        (@push err) => { "" };
    }

    exception_stubs!(
        0 noerr, 1 noerr, 2 noerr, 3 noerr, 4 noerr, 5 noerr, 6 noerr, 7 noerr, 8 err, 9 noerr,
        10 err, 11 err, 12 err, 13 err, 14 err, 15 noerr, 16 noerr, 17 err, 18 noerr, 19 noerr,
        20 noerr, 21 err, 22 noerr, 23 noerr, 24 noerr, 25 noerr, 26 noerr, 27 noerr, 28 noerr,
        29 err, 30 err, 31 noerr
    );

    unsafe extern "C" {
        static exc_stub_table: [u64; 32];
    }

    #[repr(C, align(16))]
    struct Idt([u64; 64]);

    static IDT: spin::Mutex<Idt> = spin::Mutex::new(Idt([0; 64]));

    /// Installs the IDT (exceptions only: the runtime never enables interrupts).
    pub fn init_idt() {
        let mut idt = IDT.lock();
        // SAFETY: the table has 32 entries, filled by the linker with the stubs' addresses,
        // and is never written.
        let stubs = unsafe { exc_stub_table };
        for (v, handler) in stubs.into_iter().enumerate() {
            // 64-bit interrupt gate: selector 0x08, present, DPL0, type 0xE.
            let low = (handler & 0xffff) | (0x08 << 16) | (0x8E00u64 << 32) | ((handler & 0xffff_0000) << 32);
            idt.0[2 * v] = low;
            idt.0[2 * v + 1] = handler >> 32;
        }
        let ptr = (core::mem::size_of::<Idt>() as u64 - 1) | ((idt.0.as_ptr() as u64) << 16);
        let desc: [u64; 2] = [ptr, (idt.0.as_ptr() as u64) >> 48];
        // SAFETY: `desc` is a valid 10-byte IDT descriptor for a static table that lives
        // forever; LIDT reads it once.
        unsafe { asm!("lidt [{}]", in(reg) desc.as_ptr().cast::<u8>(), options(readonly, nostack, preserves_flags)) };
    }

    #[unsafe(no_mangle)]
    extern "C" fn exception_handler(frame: *const ExceptionFrame) -> ! {
        // SAFETY: the common stub passes a pointer to the frame it just pushed on our stack.
        let f = unsafe { frame.read() };
        let cr2: u64;
        // SAFETY: reading CR2 has no side effect.
        unsafe { asm!("mov {}, cr2", out(reg) cr2, options(nomem, nostack, preserves_flags)) };
        let hook = HOOK.load(Ordering::Acquire);
        if !hook.is_null() {
            // SAFETY: HOOK only ever holds a `ReportHook` stored by `set_report_hook`.
            let hook: ReportHook = unsafe { core::mem::transmute::<*mut (), ReportHook>(hook) };
            hook(&f, cr2);
        }
        crate::arch::halt_forever()
    }
}

#[cfg(target_os = "none")]
pub use stubs::init_idt;

const EXCEPTION_NAMES: [&str; 32] = [
    "#DE divide error",
    "#DB debug",
    "NMI",
    "#BP breakpoint",
    "#OF overflow",
    "#BR bound",
    "#UD invalid opcode",
    "#NM device not available",
    "#DF double fault",
    "coprocessor overrun",
    "#TS invalid TSS",
    "#NP segment not present",
    "#SS stack fault",
    "#GP general protection",
    "#PF page fault",
    "reserved 15",
    "#MF x87",
    "#AC alignment",
    "#MC machine check",
    "#XM SIMD",
    "#VE virtualization",
    "#CP control protection",
    "reserved 22",
    "reserved 23",
    "reserved 24",
    "reserved 25",
    "reserved 26",
    "reserved 27",
    "#HV",
    "#VC",
    "#SX",
    "reserved 31",
];
