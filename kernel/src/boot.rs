//! The boot sequence (Xen's mechanisms brought up in order, then the application's entry),
//! the crash and power-off paths, and the panic and exception reports.
use alloc::vec::Vec;

use xen_sys_mini::hvm::params::{
    HVM_PARAM_CONSOLE_EVTCHN, HVM_PARAM_CONSOLE_PFN, HVM_PARAM_STORE_EVTCHN, HVM_PARAM_STORE_PFN,
};
use xen_sys_mini::DomId;

use crate::{arch, console, gnttab, hvm, hypercall, mem, pci, sched, shared, time, xenstore};

pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// What the runtime hands the application once Xen's mechanisms are up.
#[derive(Debug)]
pub struct Runtime {
    /// The command line (`cmdline=` in the xl config), for the application to parse.
    pub cmdline: heapless::String<1024>,
    /// Our domain id (read from xenstore's `domid`).
    pub domid: DomId,
    pub xenstore: xenstore::XenStore,
    /// The boot modules (`ramdisk=`), owned.
    pub modules: Vec<mem::BootModule>,
}

/// Names the application's entry: `kernel::entry!(main)` with `fn main(rt: Runtime) -> !`.
/// The runtime boots, then calls it.
#[macro_export]
macro_rules! entry {
    ($main:path) => {
        #[unsafe(no_mangle)]
        extern "Rust" fn __xen_app_main(rt: $crate::Runtime) -> ! {
            let f: fn($crate::Runtime) -> ! = $main;
            f(rt)
        }
    };
}

/// Flushes the console, then tells the toolstack we crashed (`on_crash` applies).
pub fn crash() -> ! {
    console::flush();
    sched::crash()
}

/// Flushes the console, then powers the domain off.
pub fn poweroff() -> ! {
    console::flush();
    sched::poweroff()
}

fn fatal(what: &str) -> ! {
    console::emergency(format_args!("\nFATAL: {what}\n"));
    crash()
}

/// The exception report: a register dump on the console, then a crash.
fn report_exception(f: &arch::traps::ExceptionFrame, cr2: u64) -> ! {
    console::emergency(format_args!(
        "\nCPU EXCEPTION {} ({}) error_code={:#x}\n\
         rip={:#018x} cs={:#x} rflags={:#x} rsp={:#018x} ss={:#x} cr2={:#018x}\n\
         rax={:#018x} rbx={:#018x} rcx={:#018x} rdx={:#018x}\n\
         rsi={:#018x} rdi={:#018x} rbp={:#018x} r8 ={:#018x}\n\
         r9 ={:#018x} r10={:#018x} r11={:#018x} r12={:#018x}\n\
         r13={:#018x} r14={:#018x} r15={:#018x}\n",
        f.vector,
        arch::traps::name(f.vector),
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
    crash()
}

#[cfg(target_os = "none")]
#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    use core::sync::atomic::{AtomicBool, Ordering};
    static PANICKING: AtomicBool = AtomicBool::new(false);
    if PANICKING.swap(true, Ordering::SeqCst) {
        arch::halt_forever();
    }
    console::emergency(format_args!("\nPANIC: {info}\n"));
    crash()
}

#[cfg(target_os = "none")]
unsafe extern "Rust" {
    /// Defined by the application with `entry!`.
    fn __xen_app_main(rt: Runtime) -> !;
}

/// Called by `arch::boot`'s 64-bit entry with the `hvm_start_info` address.
#[cfg(target_os = "none")]
#[unsafe(no_mangle)]
extern "C" fn kernel_main(start_info: u64) -> ! {
    let rt = boot(start_info);
    // SAFETY: `entry!` defines the symbol with exactly this signature in the application.
    unsafe { __xen_app_main(rt) }
}

/// Brings Xen's mechanisms up: exceptions, hypercalls, memory, clock, console, xenstore,
/// grant table. Fatal errors end in a crash report.
pub fn boot(start_info: u64) -> Runtime {
    let tsc0 = arch::rdtsc();
    arch::traps::set_report_hook(report_exception);
    #[cfg(target_os = "none")]
    arch::traps::init_idt();
    if let Err(e) = hypercall::init() {
        // No hypercalls: the debug port is all we have.
        console::emergency(format_args!("FATAL: {e}\n"));
        arch::halt_forever();
    }
    // Copy the command line, modules and memory map out before memory is reused.
    let hvm = arch::started_by_multiboot();
    let boot = if hvm { mem::read_multiboot_info(start_info) } else { mem::read_boot_info(start_info) };
    let boot = boot.unwrap_or_else(|e| fatal(e));
    if let Err(e) = mem::init(&boot) {
        fatal(e);
    }
    pci::init(&boot.memmap);
    let entry_ns = time::system_time_ns().saturating_sub(time::tsc_to_ns(arch::rdtsc().wrapping_sub(tsc0)));
    time::mark_boot(entry_ns);
    match (hvm::get_param(HVM_PARAM_CONSOLE_PFN), hvm::get_param(HVM_PARAM_CONSOLE_EVTCHN)) {
        (Ok(pfn), Ok(port)) if pfn != 0 => console::init_pv(pfn, port as u32),
        _ => warn!("no PV console: output goes to Xen's debug port only"),
    }
    let (maj, min) = hvm::xen_version().unwrap_or((0, 0));
    info!("Rust PVH runtime {VERSION} on Xen {maj}.{min}, entry: {}", if hvm { "Multiboot" } else { "PVH start info" });
    info!(
        "memory: {} MiB RAM, {} MiB free after heap; heap {} KiB; grant region at {:#x}",
        mem::ram_bytes() >> 20,
        mem::free_bytes() >> 20,
        mem::heap::usage().1 >> 10,
        mem::grant_region_base() << 12
    );
    info!("cmdline: '{}'; {} module(s)", boot.cmdline, boot.modules.len());
    for (i, (_, size, name)) in boot.modules.iter().enumerate() {
        let note = if name.as_str() == mem::HVMLOADER_FIRMWARE { " (hvmloader's firmware: not served)" } else { "" };
        info!("module {i}: {} KiB, '{name}'{note}", size >> 10);
    }
    if let Some(base) = hypercall::xen_cpuid_base() {
        // Xen's CPUID leaf base+3: eax bit 0 = TSC emulated (every rdtsc traps).
        let (eax, ebx, _, _) = arch::cpuid(base + 3);
        info!("TSC: {} (tsc_mode {ebx})", if eax & 1 != 0 { "emulated by Xen" } else { "native" });
    }
    let (hc, tsc) = time::probe_world_switch();
    info!("world switch probe: {hc} ns per hypercall, {tsc} ns per rdtsc");
    if let Some(pa) = mem::alloc_frame() {
        // SAFETY: a frame we own, identity-mapped, that no reference covers; freed below.
        let page = unsafe { shared::SharedMem::new(pa, 4096) };
        let mut buf = alloc::vec![0u8; 4096];
        let (fast, slow) = time::probe_copy(&page, &mut buf);
        info!("copy probe: {fast} ns per 4 KiB (rep movsq), {slow} ns (word loop)");
        // SAFETY: from `alloc_frame`, and `page` is not used after this.
        unsafe { mem::free_frame(pa) };
    }
    let mut xs = match (hvm::get_param(HVM_PARAM_STORE_PFN), hvm::get_param(HVM_PARAM_STORE_EVTCHN)) {
        (Ok(pfn), Ok(port)) if pfn != 0 => {
            // SAFETY: the params name the xenstore ring page (below 4 GiB: identity
            // mapped since boot) and its event channel.
            unsafe { xenstore::XenStore::new(pfn, port as u32) }
        }
        _ => fatal("no xenstore ring (HVM_PARAM_STORE_PFN)"),
    };
    if let Err(e) = gnttab::init() {
        fatal(e);
    }
    // Said once, probed at boot (what the application does with it is its own business).
    if gnttab::swap_available() {
        info!("GNTTABOP_swap_frame: available (patched hypervisor)");
    } else {
        info!("GNTTABOP_swap_frame: not available (stock hypervisor)");
    }
    let domid =
        xs.read(0, "domid").ok().and_then(|d| d.parse::<u16>().ok()).unwrap_or_else(|| fatal("cannot read our domid"));
    let ready_ns = time::since_boot_ns();
    info!("ready: domain {domid}, entry to ready {}.{:03} ms", ready_ns / 1_000_000, (ready_ns / 1000) % 1000);
    // The banner's rule goes out raw through the embedded-io sink.
    let _ = embedded_io::Write::write_all(
        &mut console::Console,
        b"----------------------------------------------------------------\n",
    );
    let modules = mem::take_modules(&boot).unwrap_or_default();
    Runtime { cmdline: boot.cmdline, domid, xenstore: xs, modules }
}
