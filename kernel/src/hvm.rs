//! `HYPERVISOR_hvm_op` and `HYPERVISOR_xen_version`.
use xen_sys_mini::hvm::hvm_op::{XenHvmParam, HVMOP_GET_PARAM};
use xen_sys_mini::hypercall::{HVM_OP, XEN_VERSION};
use xen_sys_mini::{DOMID_SELF, XENVER_VERSION};

use crate::hypercall::{self, XenResult};

/// `HVMOP_get_param` for ourselves (`HVM_PARAM_*`).
pub fn get_param(index: u32) -> XenResult<u64> {
    let mut p = XenHvmParam { domid: DOMID_SELF, index, value: 0 };
    // SAFETY: `xen_hvm_param` is the argument of HVMOP_get_param.
    unsafe { hypercall::op(HVM_OP, HVMOP_GET_PARAM, &mut p) }.map(|_| p.value)
}

/// Xen's (major, minor) version.
pub fn xen_version() -> XenResult<(u32, u32)> {
    // SAFETY: XENVER_version takes no argument buffer.
    let v = hypercall::check(unsafe { hypercall::hypercall(XEN_VERSION, u64::from(XENVER_VERSION), 0, 0, 0, 0) })?;
    Ok(((v >> 16) as u32, (v & 0xffff) as u32))
}
