//! The driver domain's PVH runtime: a bare-metal Rust guest that boots from `xl create`
//! and drives Xen directly through hypercalls.
//!
//! Built for `x86_64-unknown-none` by `cargo xtask build`. On the host it builds as a stub
//! so `cargo build --workspace` covers the crate; clippy checks the real thing with
//! `--target x86_64-unknown-none` (`cargo xtask test` does both).
//!
//! Modules are leaves, one Xen mechanism each (cf. Mini-OS): `arch` (entry, page tables,
//! exceptions), `hypercall`, `console`, `time`, `sched`, `mem`, `shared` (access to
//! memory others write), `evtchn`, `gnttab`, `xenstore`, `hvm`; `selftest` exercises them
//! against Xen itself. All of the project's `unsafe` lives in this crate.
#![cfg_attr(target_os = "none", no_std)]
// x86_64 only: `usize` is 64 bits, and register-sized values are converted all over the
// boot and hypercall code. Values that come from other domains (xenstore replies, ring
// indices) are range-checked explicitly before any conversion.
#![allow(clippy::cast_possible_truncation)]
#![cfg_attr(target_os = "none", no_main)]

#[cfg(target_os = "none")]
extern crate alloc;

#[cfg(target_os = "none")]
#[macro_use]
mod console;
#[cfg(target_os = "none")]
mod arch;
#[cfg(target_os = "none")]
mod blk;
#[cfg(target_os = "none")]
mod evtchn;
#[cfg(target_os = "none")]
mod gnttab;
#[cfg(target_os = "none")]
mod hvm;
#[cfg(target_os = "none")]
mod hypercall;
#[cfg(target_os = "none")]
mod mem;
#[cfg(target_os = "none")]
mod sched;
#[cfg(target_os = "none")]
mod selftest;
#[cfg(target_os = "none")]
mod service;
#[cfg(target_os = "none")]
mod shared;
#[cfg(target_os = "none")]
mod time;
#[cfg(target_os = "none")]
mod xenstore;

#[cfg(target_os = "none")]
mod runtime {
    use core::sync::atomic::{AtomicBool, Ordering};

    use xen_sys_mini::hvm::params::*;

    use crate::console::Level;
    use crate::{arch, console, gnttab, hvm, hypercall, mem, sched, selftest, time, xenstore};

    pub const VERSION: &str = env!("CARGO_PKG_VERSION");

    static PANICKING: AtomicBool = AtomicBool::new(false);

    #[panic_handler]
    fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
        if PANICKING.swap(true, Ordering::SeqCst) {
            arch::halt_forever();
        }
        console::emergency(format_args!("\nPANIC: {info}\n"));
        sched::crash()
    }

    fn fatal(what: &str) -> ! {
        console::emergency(format_args!("\nFATAL: {what}\n"));
        sched::crash()
    }

    /// Called by `arch`'s 64-bit entry with the `hvm_start_info` address.
    #[unsafe(no_mangle)]
    extern "C" fn kernel_main(start_info: u64) -> ! {
        let tsc0 = arch::rdtsc();
        arch::init_idt();
        if let Err(e) = hypercall::init() {
            // No hypercalls: the debug port is all we have.
            console::emergency(format_args!("FATAL: {e}\n"));
            arch::halt_forever();
        }
        // Copy the command line, modules and memory map out before memory is reused.
        let boot = mem::read_boot_info(start_info).unwrap_or_else(|e| fatal(e));
        if let Err(e) = mem::init(&boot) {
            fatal(e);
        }
        let entry_ns = time::system_time_ns().saturating_sub(time::tsc_to_ns(arch::rdtsc().wrapping_sub(tsc0)));
        time::mark_boot(entry_ns);
        if boot.cmdline.split_whitespace().any(|w| w == "debug") {
            console::set_max_level(Level::Debug);
        }
        match (hvm::get_param(HVM_PARAM_CONSOLE_PFN), hvm::get_param(HVM_PARAM_CONSOLE_EVTCHN)) {
            (Ok(pfn), Ok(port)) if pfn != 0 => console::init_pv(pfn, port as u32),
            _ => warn!("no PV console: output goes to Xen's debug port only"),
        }
        let (maj, min) = hvm::xen_version().unwrap_or((0, 0));
        info!("xen-blkback-rs {VERSION}: Rust PVH driver domain on Xen {maj}.{min}");
        info!(
            "memory: {} MiB RAM, {} MiB free after heap; heap {} KiB; grant region at {:#x}",
            mem::ram_bytes() >> 20,
            mem::free_bytes() >> 20,
            mem::heap_usage().1 >> 10,
            mem::grant_region_base() << 12
        );
        info!("cmdline: '{}'; {} module(s)", boot.cmdline, boot.modules.len());
        if let Some(base) = hypercall::xen_cpuid_base() {
            // Xen's CPUID leaf base+3: eax bit 0 = TSC emulated (every rdtsc traps).
            let (eax, ebx, _, _) = arch::cpuid(base + 3);
            info!("TSC: {} (tsc_mode {ebx})", if eax & 1 != 0 { "emulated by Xen" } else { "native" });
        }

        let store = match (hvm::get_param(HVM_PARAM_STORE_PFN), hvm::get_param(HVM_PARAM_STORE_EVTCHN)) {
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
        let mut store = store;
        let domid = store
            .read(0, "domid")
            .ok()
            .and_then(|d| d.parse::<u16>().ok())
            .unwrap_or_else(|| fatal("cannot read our domid"));
        let ready_ns = time::since_boot_ns();
        info!("ready: domain {domid}, entry to ready {}.{:03} ms", ready_ns / 1_000_000, (ready_ns / 1000) % 1000);

        // `crashtest=ud2|panic`: prove the crash paths (register dump / panic message on the
        // console, then SHUTDOWN_crash) in the test bed.
        for w in boot.cmdline.split_whitespace() {
            match w {
                "crashtest=ud2" => {
                    info!("crashtest: executing ud2");
                    // SAFETY: deliberately raises #UD; the exception path never returns.
                    unsafe { core::arch::asm!("ud2") };
                }
                "crashtest=panic" => panic!("crashtest: deliberate panic"),
                _ => {}
            }
        }
        // The banner's rule goes out raw through the embedded-io sink.
        let _ = embedded_io::Write::write_all(
            &mut console::Console,
            b"----------------------------------------------------------------\n",
        );
        if boot.cmdline.split_whitespace().any(|w| w == "selftest") {
            let ok = selftest::run(&mut store, domid);
            console::flush();
            if ok {
                sched::poweroff()
            } else {
                sched::crash()
            }
        }
        // Service defaults: `path=copy|map`, `persistent=0|1`, `indirect=<segments>`.
        let mut defaults = crate::service::Defaults { copy: false, persistent: true, max_indirect_segments: 256 };
        for w in boot.cmdline.split_whitespace() {
            match w.split_once('=') {
                Some(("path", v)) => defaults.copy = v == "copy",
                Some(("persistent", v)) => defaults.persistent = v != "0",
                Some(("indirect", v)) => {
                    if let Some(n) = v.parse::<u16>().ok().filter(|n| (12..=4096).contains(n)) {
                        defaults.max_indirect_segments = n;
                    }
                }
                _ => {}
            }
        }
        let modules = boot.modules.iter().map(|(pa, size, _)| (*pa, *size)).collect();
        crate::service::Service::new(store, domid, defaults, modules).run()
    }
}

#[cfg(not(target_os = "none"))]
fn main() {
    eprintln!("the driver domain is a PVH guest image: build it with `cargo xtask build`");
    let _ = xen_sys_mini::DOMID_SELF;
}
