//! `vcpu.h`: `HYPERVISOR_vcpu_op` commands.

#[doc(alias = "VCPUOP_is_up")]
pub const VCPUOP_IS_UP: u32 = 3;
#[doc(alias = "VCPUOP_stop_periodic_timer")]
pub const VCPUOP_STOP_PERIODIC_TIMER: u32 = 7;
#[doc(alias = "VCPUOP_set_singleshot_timer")]
pub const VCPUOP_SET_SINGLESHOT_TIMER: u32 = 8;
#[doc(alias = "VCPUOP_stop_singleshot_timer")]
pub const VCPUOP_STOP_SINGLESHOT_TIMER: u32 = 9;
#[doc(alias = "VCPUOP_register_vcpu_info")]
pub const VCPUOP_REGISTER_VCPU_INFO: u32 = 10;

/// `VCPU_SSHOTTMR_future`: fail with `-ETIME` if the deadline already passed.
#[doc(alias = "VCPU_SSHOTTMR_future")]
pub const VCPU_SSHOTTMR_FUTURE: u32 = 1;

/// `struct vcpu_set_singleshot_timer`
#[doc(alias = "vcpu_set_singleshot_timer")]
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
pub struct VcpuSetSingleshotTimer {
    /// Absolute Xen system time, ns.
    pub timeout_abs_ns: u64,
    /// `VCPU_SSHOTTMR_*`
    pub flags: u32,
}
const _: () = assert!(core::mem::size_of::<VcpuSetSingleshotTimer>() == 16);

/// `struct vcpu_register_vcpu_info`
#[doc(alias = "vcpu_register_vcpu_info")]
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
pub struct VcpuRegisterVcpuInfo {
    pub mfn: u64,
    pub offset: u32,
    pub rsvd: u32,
}
const _: () = assert!(core::mem::size_of::<VcpuRegisterVcpuInfo>() == 16);
