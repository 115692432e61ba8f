//! Time from Xen's pv clock (`vcpu_time_info` in `shared_info`, `xen.h`):
//! `system_time + ((tsc - tsc_timestamp) << tsc_shift) * tsc_to_system_mul >> 32`,
//! retried while `version` is odd or changes (Xen is updating the record).
use core::sync::atomic::{AtomicU64, Ordering};

use xen_sys_mini::VcpuTimeInfo;

use crate::{arch, mem};

static BOOT_NS: AtomicU64 = AtomicU64::new(0);

/// Xen system time in ns (the clock `SCHEDOP_poll` timeouts use); 0 before `shared_info`
/// is mapped.
pub fn system_time_ns() -> u64 {
    let Some(si) = mem::shared_info() else {
        return 0;
    };
    // vcpu_info[0].time sits at offset 32 of vcpu_info (2 + pad + 8 + arch 16 = 32).
    let off = core::mem::offset_of!(xen_sys_mini::VcpuInfo, time);
    loop {
        let Ok(t) = si.read::<VcpuTimeInfo>(off) else {
            return 0;
        };
        let tsc = arch::rdtsc();
        crate::shared::mb();
        let Ok(v2) = si.read::<u32>(off) else {
            return 0;
        };
        if t.version & 1 != 0 || t.version != v2 {
            core::hint::spin_loop();
            continue;
        }
        let mut delta = tsc.wrapping_sub(t.tsc_timestamp);
        if t.tsc_shift >= 0 {
            delta <<= t.tsc_shift;
        } else {
            delta >>= -i32::from(t.tsc_shift);
        }
        let scaled = ((u128::from(delta) * u128::from(t.tsc_to_system_mul)) >> 32) as u64;
        return t.system_time.wrapping_add(scaled);
    }
}

/// Records the moment the kernel started (for log timestamps and boot-time figures).
pub fn mark_boot(ns: u64) {
    BOOT_NS.store(ns, Ordering::Relaxed);
}

/// ns since `kernel_main` started (0 before the clock exists).
pub fn since_boot_ns() -> u64 {
    let b = BOOT_NS.load(Ordering::Relaxed);
    let now = system_time_ns();
    if b == 0 || now < b {
        0
    } else {
        now - b
    }
}

/// Converts a TSC delta to ns with the pv clock's current scale (0 before it exists).
pub fn tsc_to_ns(delta: u64) -> u64 {
    let Some(si) = mem::shared_info() else {
        return 0;
    };
    let off = core::mem::offset_of!(xen_sys_mini::VcpuInfo, time);
    let Ok(t) = si.read::<VcpuTimeInfo>(off) else {
        return 0;
    };
    let d = if t.tsc_shift >= 0 { delta << t.tsc_shift } else { delta >> -i32::from(t.tsc_shift) };
    ((u128::from(d) * u128::from(t.tsc_to_system_mul)) >> 32) as u64
}

/// What one world switch costs here, measured at boot: (ns per trivial hypercall, ns per
/// `rdtsc`). Under QEMU TCG each hypercall is an emulated VM exit and entry, and `rdtsc`
/// is one too when Xen emulates the TSC (no invariant TSC): the unit of cost of the test
/// bed (docs/benchmarks.md). 0 before the probe ran.
static PROBE_HYPERCALL_NS: AtomicU64 = AtomicU64::new(0);
static PROBE_RDTSC_NS: AtomicU64 = AtomicU64::new(0);

/// Iterations of each probe: a few ms at boot under TCG.
const PROBE_N: u64 = 64;

/// Times `PROBE_N` `XENVER_version` hypercalls and `PROBE_N` `rdtsc`s with Xen's clock
/// (each clock read is itself one `rdtsc`: two per probe, spread over `PROBE_N`).
pub fn probe_world_switch() -> (u64, u64) {
    let t0 = system_time_ns();
    for _ in 0..PROBE_N {
        let _ = crate::hvm::xen_version();
    }
    let t1 = system_time_ns();
    let mut sink = 0u64;
    for _ in 0..PROBE_N {
        sink = sink.wrapping_add(arch::rdtsc());
    }
    core::hint::black_box(sink);
    let t2 = system_time_ns();
    let (hc, tsc) = (t1.saturating_sub(t0) / PROBE_N, t2.saturating_sub(t1) / PROBE_N);
    PROBE_HYPERCALL_NS.store(hc, Ordering::Relaxed);
    PROBE_RDTSC_NS.store(tsc, Ordering::Relaxed);
    (hc, tsc)
}

/// ns per 4 KiB copied out of a page: (`rep movsq`, the old word loop); 0 before the probe.
static PROBE_COPY_NS: AtomicU64 = AtomicU64::new(0);
static PROBE_COPY_LOOP_NS: AtomicU64 = AtomicU64::new(0);

/// Times `PROBE_N` copies of a 4 KiB page into `buf` with `SharedMem::read_bytes`
/// (`rep movsq`) and with the word loop it replaced: what one page of the persistent and
/// RAM paths costs in the CPU, measured where it runs (TCG translates the two very
/// differently).
pub fn probe_copy(page: &crate::shared::SharedMem, buf: &mut [u8]) -> (u64, u64) {
    let t0 = system_time_ns();
    for _ in 0..PROBE_N {
        let _ = page.read_bytes(0, buf);
        core::hint::black_box(&mut *buf);
    }
    let t1 = system_time_ns();
    for _ in 0..PROBE_N {
        let _ = page.read_bytes_by_word(0, buf);
        core::hint::black_box(&mut *buf);
    }
    let t2 = system_time_ns();
    let (fast, slow) = (t1.saturating_sub(t0) / PROBE_N, t2.saturating_sub(t1) / PROBE_N);
    PROBE_COPY_NS.store(fast, Ordering::Relaxed);
    PROBE_COPY_LOOP_NS.store(slow, Ordering::Relaxed);
    (fast, slow)
}

/// The copy probe's figures: (ns per 4 KiB with `rep movsq`, with the word loop).
pub fn copy_probe() -> (u64, u64) {
    (PROBE_COPY_NS.load(Ordering::Relaxed), PROBE_COPY_LOOP_NS.load(Ordering::Relaxed))
}

/// The boot probe's figures: (ns per hypercall, ns per `rdtsc`).
pub fn world_switch() -> (u64, u64) {
    (PROBE_HYPERCALL_NS.load(Ordering::Relaxed), PROBE_RDTSC_NS.load(Ordering::Relaxed))
}
