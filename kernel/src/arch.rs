//! x86_64 leaf code: the PVH entry, long mode, the identity map, the IDT and exception
//! dumps, and the few privileged instructions the runtime needs (port I/O, CPUID, MSRs,
//! TSC).
//!
//! Boot (cf. XTF's `arch/x86/boot/head_hvm.S`): Xen enters `pvh_start32` in 32-bit protected
//! mode, paging off, flat segments, `%ebx` = physical address of `hvm_start_info`, no stack.
//! We zero `.bss`, build page tables identity-mapping the first 4 GiB with 2 MiB pages, turn
//! on PAE + SSE, set `EFER.LME`, enable paging, load a 64-bit GDT and far-jump to 64-bit
//! code, which calls `kernel_main(start_info_paddr)`.
use core::arch::{asm, global_asm};

use xen_sys_mini::elfnote::{XEN_ELFNOTE_GUEST_OS, XEN_ELFNOTE_PHYS32_ENTRY};

/// Size of the boot stack (the only stack: one vCPU, no interrupts).
pub const STACK_SIZE: usize = 128 * 1024;

// The Xen ELF notes: `XEN_ELFNOTE_PHYS32_ENTRY` makes libxl's loader treat the image as a
// PVH kernel. Each note: namesz, descsz, type, "Xen\0", desc (4-byte aligned).
global_asm!(
    ".pushsection .note.Xen, \"a\", @note",
    ".balign 4",
    ".long 4, 4, {phys32}",
    ".asciz \"Xen\"",
    ".long pvh_start32",
    ".balign 4",
    ".long 4, 16, {guest_os}",
    ".asciz \"Xen\"",
    ".asciz \"xen-blkback-rs\"",
    ".balign 4",
    ".popsection",
    phys32 = const XEN_ELFNOTE_PHYS32_ENTRY,
    guest_os = const XEN_ELFNOTE_GUEST_OS,
);

global_asm!(
    r#"
    .pushsection .text.pvh_entry, "ax"
    .code32
    .global pvh_start32
pvh_start32:
    cld
    cli
    mov %ebx, %esi                      /* hvm_start_info paddr, kept in esi */

    /* Zero .bss (boot stack and page tables live there). */
    mov $__bss_start, %edi
    mov $__bss_end, %ecx
    sub %edi, %ecx
    xor %eax, %eax
    rep stosb

    mov $boot_stack_top, %esp

    /* PML4[0] -> PDPT; PDPT[0..4] -> PD0..PD3; PDn[i] = 2 MiB page (n*1 GiB + i*2 MiB). */
    mov $boot_pdpt, %eax
    or $0x3, %eax                       /* present | writable */
    mov %eax, boot_pml4
    mov $boot_pd, %edi
    mov $boot_pdpt, %ebx
    xor %ecx, %ecx
1:  mov %edi, %eax
    or $0x3, %eax
    mov %eax, (%ebx, %ecx, 8)
    add $4096, %edi
    inc %ecx
    cmp $4, %ecx
    jne 1b
    mov $boot_pd, %edi
    xor %ecx, %ecx                      /* ecx: 2 MiB page index 0..2047 */
2:  mov %ecx, %eax
    shl $21, %eax
    or $0x83, %eax                      /* present | writable | PS (2 MiB) */
    mov %eax, (%edi, %ecx, 8)
    mov %ecx, %eax
    shr $11, %eax                       /* bits 32+ of the address: index >> 11 */
    mov %eax, 4(%edi, %ecx, 8)
    inc %ecx
    cmp $2048, %ecx
    jne 2b

    /* CR4: PAE, OSFXSR, OSXMMEXCPT (SSE usable). */
    mov %cr4, %eax
    or $((1 << 5) | (1 << 9) | (1 << 10)), %eax
    mov %eax, %cr4
    mov $boot_pml4, %eax
    mov %eax, %cr3
    /* EFER: LME | NXE. */
    mov $0xC0000080, %ecx
    rdmsr
    or $((1 << 8) | (1 << 11)), %eax
    wrmsr
    /* CR0: PG | PE | MP, clear EM (FPU/SSE present), keep WP. */
    mov %cr0, %eax
    or $((1 << 31) | (1 << 16) | (1 << 1) | 1), %eax
    and $~(1 << 2), %eax
    mov %eax, %cr0

    lgdt boot_gdt_ptr
    ljmp $0x08, $pvh_start64

    .code64
pvh_start64:
    mov $0x10, %eax
    mov %eax, %ds
    mov %eax, %es
    mov %eax, %ss
    xor %eax, %eax
    mov %eax, %fs
    mov %eax, %gs
    mov $boot_stack_top, %rsp
    xor %ebp, %ebp
    mov %esi, %edi                      /* kernel_main(start_info_paddr) */
    call kernel_main
3:  hlt
    jmp 3b
    .popsection

    .pushsection .rodata
    .balign 16
boot_gdt:
    .quad 0                             /* null */
    .quad 0x00af9b000000ffff            /* 0x08: 64-bit code, DPL0 */
    .quad 0x00cf93000000ffff            /* 0x10: data, DPL0 */
boot_gdt_end:
    .balign 4
boot_gdt_ptr:
    .word boot_gdt_end - boot_gdt - 1
    .long boot_gdt
    .popsection

    .pushsection .bss
    .balign 4096
    .global boot_pml4
boot_pml4:  .skip 4096
boot_pdpt:  .skip 4096
boot_pd:    .skip 4096 * 4
    .balign 16
boot_stack: .skip {stack}
    .global boot_stack_top
boot_stack_top:
    .popsection
    "#,
    stack = const STACK_SIZE,
    options(att_syntax)
);

unsafe extern "C" {
    static boot_pml4: u8;
    static __image_start: u8;
    static __image_end: u8;
}

/// Physical range `[start, end)` of the loaded image, `.bss` included.
pub fn image_range() -> (u64, u64) {
    // The linker script defines both symbols; only their addresses are taken.
    let start = core::ptr::addr_of!(__image_start) as u64;
    let end = core::ptr::addr_of!(__image_end) as u64;
    (start, end)
}

/// Identity-maps `[start, end)` (2 MiB aligned, above 4 GiB) with 2 MiB pages, allocating
/// page-directory pages with `alloc_page` (which returns a zeroed, identity-mapped page).
/// Used for the reserved region where foreign grants are mapped.
pub fn map_identity_2m(start: u64, end: u64, mut alloc_page: impl FnMut() -> Option<u64>) -> Result<(), &'static str> {
    const P: u64 = 1;
    const RW: u64 = 2;
    const PS: u64 = 1 << 7;
    const TWO_MB: u64 = 2 << 20;
    if !start.is_multiple_of(TWO_MB) || !end.is_multiple_of(TWO_MB) || end <= start || end > (1 << 46) {
        return Err("bad region for the identity map");
    }
    // boot_pml4 is the page-table root built at boot, identity-mapped, 4 KiB.
    let pml4 = core::ptr::addr_of!(boot_pml4) as u64 as *mut u64;
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

/// Reloads CR3: drops every cached translation.
pub fn flush_tlb() {
    // SAFETY: rewriting CR3 with its own value only flushes non-global TLB entries.
    unsafe {
        asm!("mov {t}, cr3", "mov cr3, {t}", t = out(reg) _, options(nostack, preserves_flags));
    }
}

/// Writes one byte to an I/O port.
pub fn outb(port: u16, v: u8) {
    // SAFETY: the only ports used are Xen's debug port 0xe9 (HVM guests' debug console,
    // printed by Xen as "(dN) ..."), which has no side effect on guest state.
    unsafe { asm!("out dx, al", in("dx") port, in("al") v, options(nomem, nostack, preserves_flags)) };
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

/// Stops the vCPU for good (after a failed shutdown hypercall).
pub fn halt_forever() -> ! {
    loop {
        // SAFETY: with interrupts off this parks the vCPU; Xen still can destroy it.
        unsafe { asm!("cli", "hlt", options(nomem, nostack)) };
    }
}

// ---------------------------------------------------------------------------------------
// Exceptions: every vector 0..32 gets a stub that pushes a dummy error code where the CPU
// does not, then the vector, and jumps to a common path that saves the registers and calls
// `exception_handler`, which prints a dump and shuts the domain down as crashed.

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

#[unsafe(no_mangle)]
extern "C" fn exception_handler(frame: *const ExceptionFrame) -> ! {
    // SAFETY: the common stub passes a pointer to the frame it just pushed on our stack.
    let f = unsafe { frame.read() };
    let cr2: u64;
    // SAFETY: reading CR2 has no side effect.
    unsafe { asm!("mov {}, cr2", out(reg) cr2, options(nomem, nostack, preserves_flags)) };
    let name = EXCEPTION_NAMES.get(f.vector as usize).copied().unwrap_or("?");
    crate::console::emergency(format_args!(
        "\nCPU EXCEPTION {} ({name}) error_code={:#x}\n\
         rip={:#018x} cs={:#x} rflags={:#x} rsp={:#018x} ss={:#x} cr2={:#018x}\n\
         rax={:#018x} rbx={:#018x} rcx={:#018x} rdx={:#018x}\n\
         rsi={:#018x} rdi={:#018x} rbp={:#018x} r8 ={:#018x}\n\
         r9 ={:#018x} r10={:#018x} r11={:#018x} r12={:#018x}\n\
         r13={:#018x} r14={:#018x} r15={:#018x}\n",
        f.vector,
        f.error_code,
        f.rip,
        f.cs,
        f.rflags,
        f.rsp,
        f.ss,
        cr2,
        f.rax,
        f.rbx,
        f.rcx,
        f.rdx,
        f.rsi,
        f.rdi,
        f.rbp,
        f.r8,
        f.r9,
        f.r10,
        f.r11,
        f.r12,
        f.r13,
        f.r14,
        f.r15
    ));
    crate::sched::crash()
}
