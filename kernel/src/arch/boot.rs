//! The PVH entry (cf. XTF's `arch/x86/boot/head_hvm.S`): Xen enters `pvh_start32` in 32-bit
//! protected mode, paging off, flat segments, `%ebx` = physical address of `hvm_start_info`,
//! no stack. We zero `.bss`, build page tables identity-mapping the first 4 GiB with 2 MiB
//! pages, turn on PAE + SSE, set `EFER.LME`, enable paging, load a 64-bit GDT and far-jump to
//! 64-bit code, which calls `kernel_main(start_info_paddr)` (in `lib.rs`).
//!
//! The same image boots as an HVM guest (a driver domain that owns a PCI device must be
//! HVM: libxl refuses `pci=` for PVH). libxl hands an HVM guest's `kernel=` to its device
//! model as `-kernel`, and QEMU's i386 loader takes an ELF64 only through a Multiboot-1
//! header with the a.out kludge (flags bit 16: load and entry addresses in the header):
//! the header below, first in `.text`, within the file's first 8 KiB. QEMU then loads the
//! file from the header's offset minus `header_addr - load_addr` to `load_addr` (1 MiB),
//! `load_end_addr - load_addr` bytes, zeroes up to `bss_end_addr`, and enters `mb_start32`
//! in 32-bit protected mode, paging off, `%eax` = 0x2BADB002, `%ebx` = the Multiboot
//! information (cmdline, modules, the E820 map hvmloader built). `xtask` checks that every
//! PT_LOAD sits at `load_addr` + its file offset, so the flat load is the ELF's layout.
//! `boot_protocol` says which entry ran (0 PVH, 1 Multiboot).
//!
//! Only built for the PVH target: the code refers to the linker script's symbols.
use core::arch::global_asm;

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
    /* Multiboot-1 header with the a.out kludge (flags: bit 1 memory map, bit 16 addresses). */
    .balign 4
    .global multiboot_header
multiboot_header:
    .long 0x1BADB002
    .long 0x00010002
    .long 0x100000000 - (0x1BADB002 + 0x00010002)
    .long multiboot_header              /* header_addr */
    .long __image_start                 /* load_addr */
    .long __data_end                    /* load_end_addr: the file's content ends there */
    .long __bss_end                     /* bss_end_addr */
    .long mb_start32                    /* entry_addr */

    .global mb_start32
mb_start32:
    cld
    cli
    mov %ebx, %esi                      /* multiboot_info paddr, kept in esi */
    mov $1, %ebp                        /* boot_protocol: Multiboot */
    jmp 0f

    .global pvh_start32
pvh_start32:
    cld
    cli
    mov %ebx, %esi                      /* hvm_start_info paddr, kept in esi */
    xor %ebp, %ebp                      /* boot_protocol: PVH */
0:

    /* Zero .bss (boot stack and page tables live there). */
    mov $__bss_start, %edi
    mov $__bss_end, %ecx
    sub %edi, %ecx
    xor %eax, %eax
    rep stosb
    mov %ebp, boot_protocol

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
    .global boot_protocol
    .balign 4
boot_protocol: .skip 4
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
    static boot_protocol: u32;
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

/// Which entry the loader used: `false` PVH (`hvm_start_info`), `true` Multiboot (an HVM
/// guest started by its device model).
pub fn multiboot() -> bool {
    // SAFETY: written once by the entry code before any Rust runs, never after.
    unsafe { core::ptr::addr_of!(boot_protocol).read_volatile() == 1 }
}

/// The page-table root built at boot (identity-mapped, 4 KiB).
pub fn pml4() -> *mut u64 {
    core::ptr::addr_of!(boot_pml4) as u64 as *mut u64
}
