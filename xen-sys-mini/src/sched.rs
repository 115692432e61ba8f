//! `sched.h`: `HYPERVISOR_sched_op` commands.
use crate::xen::GuestHandle;

#[doc(alias = "SCHEDOP_yield")]
pub const SCHEDOP_YIELD: u32 = 0;
#[doc(alias = "SCHEDOP_block")]
pub const SCHEDOP_BLOCK: u32 = 1;
#[doc(alias = "SCHEDOP_shutdown")]
pub const SCHEDOP_SHUTDOWN: u32 = 2;
#[doc(alias = "SCHEDOP_poll")]
pub const SCHEDOP_POLL: u32 = 3;
#[doc(alias = "SCHEDOP_remote_shutdown")]
pub const SCHEDOP_REMOTE_SHUTDOWN: u32 = 4;
#[doc(alias = "SCHEDOP_shutdown_code")]
pub const SCHEDOP_SHUTDOWN_CODE: u32 = 5;
#[doc(alias = "SCHEDOP_watchdog")]
pub const SCHEDOP_WATCHDOG: u32 = 6;

/// `SHUTDOWN_poweroff`: domain exited normally.
#[doc(alias = "SHUTDOWN_poweroff")]
pub const SHUTDOWN_POWEROFF: u32 = 0;
#[doc(alias = "SHUTDOWN_reboot")]
pub const SHUTDOWN_REBOOT: u32 = 1;
#[doc(alias = "SHUTDOWN_suspend")]
pub const SHUTDOWN_SUSPEND: u32 = 2;
/// `SHUTDOWN_crash`: tell the toolstack the domain crashed (keeps it for a dump).
#[doc(alias = "SHUTDOWN_crash")]
pub const SHUTDOWN_CRASH: u32 = 3;
#[doc(alias = "SHUTDOWN_watchdog")]
pub const SHUTDOWN_WATCHDOG: u32 = 4;
#[doc(alias = "SHUTDOWN_soft_reset")]
pub const SHUTDOWN_SOFT_RESET: u32 = 5;

/// `struct sched_shutdown`
#[doc(alias = "sched_shutdown")]
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
pub struct SchedShutdown {
    pub reason: u32,
}
const _: () = assert!(core::mem::size_of::<SchedShutdown>() == 4);

/// `struct sched_poll`: block until one of `ports` is pending or `timeout` (absolute
/// system time in ns, 0 = none) passes.
#[doc(alias = "sched_poll")]
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
pub struct SchedPoll {
    /// `XEN_GUEST_HANDLE(evtchn_port_t)`
    pub ports: GuestHandle,
    pub nr_ports: u32,
    pub timeout: u64,
}
const _: () = assert!(core::mem::size_of::<SchedPoll>() == 24);
