//! `hvm/hvm_op.h`: `HYPERVISOR_hvm_op` commands.
use crate::xen::DomId;

#[doc(alias = "HVMOP_set_param")]
pub const HVMOP_SET_PARAM: u32 = 0;
#[doc(alias = "HVMOP_get_param")]
pub const HVMOP_GET_PARAM: u32 = 1;
#[doc(alias = "HVMOP_set_evtchn_upcall_vector")]
pub const HVMOP_SET_EVTCHN_UPCALL_VECTOR: u32 = 23;

/// `struct xen_hvm_param`
#[doc(alias = "xen_hvm_param")]
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
pub struct XenHvmParam {
    pub domid: DomId,
    /// `HVM_PARAM_*`
    pub index: u32,
    /// IN for set, OUT for get.
    pub value: u64,
}
const _: () = assert!(core::mem::size_of::<XenHvmParam>() == 16);

/// `struct xen_hvm_evtchn_upcall_vector`
#[doc(alias = "xen_hvm_evtchn_upcall_vector")]
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
pub struct XenHvmEvtchnUpcallVector {
    pub vcpu: u32,
    pub vector: u8,
}
const _: () = assert!(core::mem::size_of::<XenHvmEvtchnUpcallVector>() == 8);
