//! `grant_table.h`: grant table v1 entries and `HYPERVISOR_grant_table_op` commands.
use crate::xen::{DomId, GrantRef, GuestHandle, XenPfn};

#[doc(alias = "GNTTABOP_map_grant_ref")]
pub const GNTTABOP_MAP_GRANT_REF: u32 = 0;
#[doc(alias = "GNTTABOP_unmap_grant_ref")]
pub const GNTTABOP_UNMAP_GRANT_REF: u32 = 1;
#[doc(alias = "GNTTABOP_setup_table")]
pub const GNTTABOP_SETUP_TABLE: u32 = 2;
#[doc(alias = "GNTTABOP_copy")]
pub const GNTTABOP_COPY: u32 = 5;
#[doc(alias = "GNTTABOP_query_size")]
pub const GNTTABOP_QUERY_SIZE: u32 = 6;
#[doc(alias = "GNTTABOP_set_version")]
pub const GNTTABOP_SET_VERSION: u32 = 8;
#[doc(alias = "GNTTABOP_get_version")]
pub const GNTTABOP_GET_VERSION: u32 = 10;
#[doc(alias = "GNTTABOP_swap_grant_ref")]
pub const GNTTABOP_SWAP_GRANT_REF: u32 = 11;

/// `struct grant_entry_v1`: one slot of the table a domain uses to grant its frames.
#[doc(alias = "grant_entry_v1")]
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
pub struct GrantEntryV1 {
    /// `GTF_*`; written last by the granter, `GTF_reading`/`GTF_writing` set by Xen.
    pub flags: u16,
    /// The domain allowed to use the frame.
    pub domid: DomId,
    /// The granted frame (a GFN for an auto-translated granter such as PVH).
    pub frame: u32,
}
const _: () = assert!(core::mem::size_of::<GrantEntryV1>() == 8);

#[doc(alias = "GTF_invalid")]
pub const GTF_INVALID: u16 = 0;
#[doc(alias = "GTF_permit_access")]
pub const GTF_PERMIT_ACCESS: u16 = 1;
#[doc(alias = "GTF_accept_transfer")]
pub const GTF_ACCEPT_TRANSFER: u16 = 2;
#[doc(alias = "GTF_type_mask")]
pub const GTF_TYPE_MASK: u16 = 3;
#[doc(alias = "GTF_readonly")]
pub const GTF_READONLY: u16 = 1 << 2;
/// Set by Xen while the grantee has the frame mapped or copies from it.
#[doc(alias = "GTF_reading")]
pub const GTF_READING: u16 = 1 << 3;
/// Set by Xen while the grantee has the frame mapped writable or copies to it.
#[doc(alias = "GTF_writing")]
pub const GTF_WRITING: u16 = 1 << 4;

#[doc(alias = "GNTMAP_device_map")]
pub const GNTMAP_DEVICE_MAP: u32 = 1 << 0;
#[doc(alias = "GNTMAP_host_map")]
pub const GNTMAP_HOST_MAP: u32 = 1 << 1;
#[doc(alias = "GNTMAP_readonly")]
pub const GNTMAP_READONLY: u32 = 1 << 2;
#[doc(alias = "GNTMAP_application_map")]
pub const GNTMAP_APPLICATION_MAP: u32 = 1 << 3;
#[doc(alias = "GNTMAP_contains_pte")]
pub const GNTMAP_CONTAINS_PTE: u32 = 1 << 4;

/// A grant handle returned by a map, needed to unmap (`grant_handle_t`).
pub type GrantHandle = u32;

/// `struct gnttab_map_grant_ref`
#[doc(alias = "gnttab_map_grant_ref")]
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
pub struct GnttabMapGrantRef {
    /// For PVH: the guest-physical address the frame appears at.
    pub host_addr: u64,
    pub flags: u32,
    pub ref_: GrantRef,
    pub dom: DomId,
    /// OUT: `GNTST_*`
    pub status: i16,
    /// OUT
    pub handle: GrantHandle,
    /// OUT
    pub dev_bus_addr: u64,
}
const _: () = assert!(core::mem::size_of::<GnttabMapGrantRef>() == 32);

/// `struct gnttab_unmap_grant_ref`
#[doc(alias = "gnttab_unmap_grant_ref")]
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
pub struct GnttabUnmapGrantRef {
    pub host_addr: u64,
    pub dev_bus_addr: u64,
    pub handle: GrantHandle,
    /// OUT: `GNTST_*`
    pub status: i16,
}
const _: () = assert!(core::mem::size_of::<GnttabUnmapGrantRef>() == 24);

/// `struct gnttab_setup_table`
#[doc(alias = "gnttab_setup_table")]
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
pub struct GnttabSetupTable {
    pub dom: DomId,
    pub nr_frames: u32,
    /// OUT: `GNTST_*`
    pub status: i16,
    /// `XEN_GUEST_HANDLE(xen_pfn_t)`: OUT frame list.
    pub frame_list: GuestHandle,
}
const _: () = assert!(core::mem::size_of::<GnttabSetupTable>() == 24);

/// `struct gnttab_query_size`
#[doc(alias = "gnttab_query_size")]
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
pub struct GnttabQuerySize {
    pub dom: DomId,
    /// OUT
    pub nr_frames: u32,
    /// OUT
    pub max_nr_frames: u32,
    /// OUT: `GNTST_*`
    pub status: i16,
}
const _: () = assert!(core::mem::size_of::<GnttabQuerySize>() == 16);

/// `struct gnttab_set_version`
#[doc(alias = "gnttab_set_version")]
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
pub struct GnttabSetVersion {
    /// IN/OUT
    pub version: u32,
}
const _: () = assert!(core::mem::size_of::<GnttabSetVersion>() == 4);

/// `struct gnttab_get_version`
#[doc(alias = "gnttab_get_version")]
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
pub struct GnttabGetVersion {
    pub dom: DomId,
    pub pad: u16,
    /// OUT
    pub version: u32,
}
const _: () = assert!(core::mem::size_of::<GnttabGetVersion>() == 8);

/// `struct gnttab_swap_grant_ref`: exchange the contents of two of the caller's own
/// grant entries.
#[doc(alias = "gnttab_swap_grant_ref")]
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
pub struct GnttabSwapGrantRef {
    pub ref_a: GrantRef,
    pub ref_b: GrantRef,
    /// OUT: `GNTST_*`
    pub status: i16,
}
const _: () = assert!(core::mem::size_of::<GnttabSwapGrantRef>() == 12);

/// `struct gnttab_copy_ptr`. `u` is the C union of `ref` (a grant reference, low 32
/// bits) and `gmfn` (a frame of the caller), chosen by `GNTCOPY_{source,dest}_gref`.
#[doc(alias = "gnttab_copy_ptr")]
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
pub struct GnttabCopyPtr {
    pub u: XenPfn,
    pub domid: DomId,
    pub offset: u16,
}
const _: () = assert!(core::mem::size_of::<GnttabCopyPtr>() == 16);

/// `struct gnttab_copy`
#[doc(alias = "gnttab_copy")]
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
pub struct GnttabCopy {
    pub source: GnttabCopyPtr,
    pub dest: GnttabCopyPtr,
    pub len: u16,
    /// `GNTCOPY_*`
    pub flags: u16,
    /// OUT: `GNTST_*`
    pub status: i16,
}
const _: () = assert!(core::mem::size_of::<GnttabCopy>() == 40);

#[doc(alias = "GNTCOPY_source_gref")]
pub const GNTCOPY_SOURCE_GREF: u16 = 1 << 0;
#[doc(alias = "GNTCOPY_dest_gref")]
pub const GNTCOPY_DEST_GREF: u16 = 1 << 1;

/// `GNTST_*`: per-op status codes of grant table operations.
pub mod gntst {
    #[doc(alias = "GNTST_okay")]
    pub const OKAY: i16 = 0;
    #[doc(alias = "GNTST_general_error")]
    pub const GENERAL_ERROR: i16 = -1;
    #[doc(alias = "GNTST_bad_domain")]
    pub const BAD_DOMAIN: i16 = -2;
    #[doc(alias = "GNTST_bad_gntref")]
    pub const BAD_GNTREF: i16 = -3;
    #[doc(alias = "GNTST_bad_handle")]
    pub const BAD_HANDLE: i16 = -4;
    #[doc(alias = "GNTST_bad_virt_addr")]
    pub const BAD_VIRT_ADDR: i16 = -5;
    #[doc(alias = "GNTST_bad_dev_addr")]
    pub const BAD_DEV_ADDR: i16 = -6;
    #[doc(alias = "GNTST_no_device_space")]
    pub const NO_DEVICE_SPACE: i16 = -7;
    #[doc(alias = "GNTST_permission_denied")]
    pub const PERMISSION_DENIED: i16 = -8;
    #[doc(alias = "GNTST_bad_page")]
    pub const BAD_PAGE: i16 = -9;
    #[doc(alias = "GNTST_bad_copy_arg")]
    pub const BAD_COPY_ARG: i16 = -10;
    #[doc(alias = "GNTST_address_too_big")]
    pub const ADDRESS_TOO_BIG: i16 = -11;
    #[doc(alias = "GNTST_eagain")]
    pub const EAGAIN: i16 = -12;
    #[doc(alias = "GNTST_no_space")]
    pub const NO_SPACE: i16 = -13;

    /// The C name of a status (`GNTTABOP_error_msgs` in grant_table.h), for messages.
    pub const fn name(status: i16) -> &'static str {
        match status {
            OKAY => "GNTST_okay",
            GENERAL_ERROR => "GNTST_general_error",
            BAD_DOMAIN => "GNTST_bad_domain",
            BAD_GNTREF => "GNTST_bad_gntref",
            BAD_HANDLE => "GNTST_bad_handle",
            BAD_VIRT_ADDR => "GNTST_bad_virt_addr",
            BAD_DEV_ADDR => "GNTST_bad_dev_addr",
            NO_DEVICE_SPACE => "GNTST_no_device_space",
            PERMISSION_DENIED => "GNTST_permission_denied",
            BAD_PAGE => "GNTST_bad_page",
            BAD_COPY_ARG => "GNTST_bad_copy_arg",
            ADDRESS_TOO_BIG => "GNTST_address_too_big",
            EAGAIN => "GNTST_eagain",
            NO_SPACE => "GNTST_no_space",
            _ => "unknown GNTST",
        }
    }
}

/// `GNTTABOP_swap_frame`: **not in Xen**. Added by this repository's hypervisor patch
/// (`xen/patches/0001-gnttab-swap-frame.patch`; docs/grant-swap.md): exchanges the frame
/// behind one of the caller's GFNs with the frame behind a page granted to it. Stock Xen
/// answers `-ENOSYS`; a count of 0 is the probe.
#[cfg(feature = "grant-swap")]
#[doc(alias = "GNTTABOP_swap_frame")]
pub const GNTTABOP_SWAP_FRAME: u32 = 13;

/// `struct gnttab_swap_frame` (the patch's `public/grant_table.h`): 24 bytes, the same
/// for 32- and 64-bit callers.
#[cfg(feature = "grant-swap")]
#[doc(alias = "gnttab_swap_frame")]
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
pub struct GnttabSwapFrame {
    /// The caller's own GFN.
    pub gfn: u64,
    /// A grant of `domid` to the caller.
    pub ref_: GrantRef,
    pub domid: DomId,
    /// Must be 0.
    pub flags: u16,
    /// OUT: `GNTST_*`
    pub status: i16,
    /// Must be 0.
    pub pad: [u16; 3],
}
#[cfg(feature = "grant-swap")]
const _: () = assert!(core::mem::size_of::<GnttabSwapFrame>() == 24);
#[cfg(feature = "grant-swap")]
const _: () = assert!(core::mem::offset_of!(GnttabSwapFrame, status) == 16);
