//! `HYPERVISOR_sched_op`: shutdown, yield, and the one blocking primitive the runtime has,
//! `SCHEDOP_poll`.
//!
//! Why poll and not an upcall vector + `SCHEDOP_block`: the runtime never enables
//! interrupts, so there is no handler to race with and no re-entrancy; `SCHEDOP_poll`
//! sleeps until one of a list of ports is pending (masked or not) or an absolute timeout
//! passes, which is exactly "wait for the rings or the timer". Xen caps the list at 128
//! ports (`xen/common/sched/core.c: do_poll`); beyond that we pass no list, which wakes on
//! any port of the domain, and cap the sleep so a wake-up lost between scan and poll costs
//! at most that cap.
use xen_sys_mini::hypercall::SCHED_OP;
use xen_sys_mini::sched::*;
use xen_sys_mini::EvtchnPort;

use crate::hypercall::{self, XenResult};

/// Xen's limit on `sched_poll.nr_ports`.
pub const MAX_POLL_PORTS: usize = 128;

fn shutdown(reason: u32) -> XenResult<u64> {
    let mut arg = SchedShutdown { reason };
    // SAFETY: `sched_shutdown` is the argument of SCHEDOP_shutdown.
    unsafe { hypercall::op(SCHED_OP, SCHEDOP_SHUTDOWN, &mut arg) }
}

/// Powers the domain off (normal exit). Flush the console first (`crate::poweroff`).
pub fn poweroff() -> ! {
    let _ = shutdown(SHUTDOWN_POWEROFF);
    crate::arch::halt_forever()
}

/// Tells the toolstack the domain crashed (`on_crash` applies). Flush the console first
/// (`crate::crash`), so it shows why.
pub fn crash() -> ! {
    let _ = shutdown(SHUTDOWN_CRASH);
    crate::arch::halt_forever()
}

/// Sleeps until one of `ports` is pending or Xen system time reaches `deadline_ns`
/// (0 = no deadline). Returns at once if a port is already pending.
pub fn poll(ports: &[EvtchnPort], deadline_ns: u64) -> XenResult<()> {
    let (ptr, n, deadline) = if ports.len() <= MAX_POLL_PORTS {
        (ports.as_ptr() as u64, ports.len() as u32, deadline_ns)
    } else {
        let cap = crate::time::system_time_ns() + 10_000_000;
        (0, 0, if deadline_ns == 0 { cap } else { deadline_ns.min(cap) })
    };
    let mut arg = SchedPoll { ports: ptr, nr_ports: n, timeout: deadline };
    // SAFETY: `sched_poll` with a pointer to `n` live ports (or none).
    unsafe { hypercall::op(SCHED_OP, SCHEDOP_POLL, &mut arg) }.map(|_| ())
}
