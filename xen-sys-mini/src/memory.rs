//! `memory.h`: `HYPERVISOR_memory_op` commands.
use crate::xen::{DomId, GuestHandle, XenPfn, XenUlong};

#[doc(alias = "XENMEM_increase_reservation")]
pub const XENMEM_INCREASE_RESERVATION: u32 = 0;
#[doc(alias = "XENMEM_decrease_reservation")]
pub const XENMEM_DECREASE_RESERVATION: u32 = 1;
#[doc(alias = "XENMEM_populate_physmap")]
pub const XENMEM_POPULATE_PHYSMAP: u32 = 6;
#[doc(alias = "XENMEM_add_to_physmap")]
pub const XENMEM_ADD_TO_PHYSMAP: u32 = 7;
#[doc(alias = "XENMEM_memory_map")]
pub const XENMEM_MEMORY_MAP: u32 = 9;
#[doc(alias = "XENMEM_remove_from_physmap")]
pub const XENMEM_REMOVE_FROM_PHYSMAP: u32 = 15;

#[doc(alias = "XENMAPSPACE_shared_info")]
pub const XENMAPSPACE_SHARED_INFO: u32 = 0;
#[doc(alias = "XENMAPSPACE_grant_table")]
pub const XENMAPSPACE_GRANT_TABLE: u32 = 1;
#[doc(alias = "XENMAPSPACE_gmfn")]
pub const XENMAPSPACE_GMFN: u32 = 2;
#[doc(alias = "XENMAPSPACE_gmfn_range")]
pub const XENMAPSPACE_GMFN_RANGE: u32 = 3;
#[doc(alias = "XENMAPSPACE_gmfn_foreign")]
pub const XENMAPSPACE_GMFN_FOREIGN: u32 = 4;
#[doc(alias = "XENMAPSPACE_dev_mmio")]
pub const XENMAPSPACE_DEV_MMIO: u32 = 5;

/// `struct xen_memory_reservation`
#[doc(alias = "xen_memory_reservation")]
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
pub struct XenMemoryReservation {
    /// `XEN_GUEST_HANDLE(xen_pfn_t)`
    pub extent_start: GuestHandle,
    pub nr_extents: XenUlong,
    pub extent_order: u32,
    pub mem_flags: u32,
    pub domid: DomId,
}
const _: () = assert!(core::mem::size_of::<XenMemoryReservation>() == 32);

/// `struct xen_add_to_physmap`
#[doc(alias = "xen_add_to_physmap")]
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
pub struct XenAddToPhysmap {
    pub domid: DomId,
    /// Pages in a `XENMAPSPACE_gmfn_range`.
    pub size: u16,
    /// `XENMAPSPACE_*`
    pub space: u32,
    /// Index into the space (e.g. the grant table frame number).
    pub idx: XenUlong,
    /// Guest frame to map it at.
    pub gpfn: XenPfn,
}
const _: () = assert!(core::mem::size_of::<XenAddToPhysmap>() == 24);

/// `struct xen_remove_from_physmap`
#[doc(alias = "xen_remove_from_physmap")]
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
pub struct XenRemoveFromPhysmap {
    pub domid: DomId,
    pub gpfn: XenPfn,
}
const _: () = assert!(core::mem::size_of::<XenRemoveFromPhysmap>() == 16);

/// `struct xen_memory_map`
#[doc(alias = "xen_memory_map")]
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
pub struct XenMemoryMap {
    pub nr_entries: u32,
    /// `XEN_GUEST_HANDLE(void)`: an e820 array.
    pub buffer: GuestHandle,
}
const _: () = assert!(core::mem::size_of::<XenMemoryMap>() == 16);
