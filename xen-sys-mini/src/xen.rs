//! `xen.h`: basic types, hypercall numbers, `shared_info` and `vcpu_info`
//! (with `arch-x86/xen.h` for the x86 parts).

/// `domid_t`
pub type DomId = u16;
/// `evtchn_port_t` (`event_channel.h`)
pub type EvtchnPort = u32;
/// `grant_ref_t` (`grant_table.h`)
pub type GrantRef = u32;
/// `xen_pfn_t` on x86_64 (`arch-x86/xen.h`)
pub type XenPfn = u64;
/// `xen_ulong_t` on x86_64 (`arch-x86/xen.h`)
pub type XenUlong = u64;
/// A `XEN_GUEST_HANDLE(type)` on x86_64: a guest-virtual address held in 64 bits.
pub type GuestHandle = u64;

/// `DOMID_SELF`: the calling domain.
pub const DOMID_SELF: DomId = 0x7FF0;
/// `DOMID_IO`
pub const DOMID_IO: DomId = 0x7FF1;
/// `DOMID_XEN`
pub const DOMID_XEN: DomId = 0x7FF2;
/// `DOMID_FIRST_RESERVED`: every domid at or above this is special.
pub const DOMID_FIRST_RESERVED: DomId = 0x7FF0;

/// Hypercall numbers (`__HYPERVISOR_*`): the index into the hypercall page, 32 bytes each.
pub mod hypercall {
    #[doc(alias = "__HYPERVISOR_memory_op")]
    pub const MEMORY_OP: u32 = 12;
    #[doc(alias = "__HYPERVISOR_xen_version")]
    pub const XEN_VERSION: u32 = 17;
    #[doc(alias = "__HYPERVISOR_console_io")]
    pub const CONSOLE_IO: u32 = 18;
    #[doc(alias = "__HYPERVISOR_grant_table_op")]
    pub const GRANT_TABLE_OP: u32 = 20;
    #[doc(alias = "__HYPERVISOR_vcpu_op")]
    pub const VCPU_OP: u32 = 24;
    #[doc(alias = "__HYPERVISOR_sched_op")]
    pub const SCHED_OP: u32 = 29;
    #[doc(alias = "__HYPERVISOR_event_channel_op")]
    pub const EVENT_CHANNEL_OP: u32 = 32;
    #[doc(alias = "__HYPERVISOR_hvm_op")]
    pub const HVM_OP: u32 = 34;
}

/// `CONSOLEIO_write`
#[doc(alias = "CONSOLEIO_write")]
pub const CONSOLEIO_WRITE: u32 = 0;
/// `CONSOLEIO_read`
#[doc(alias = "CONSOLEIO_read")]
pub const CONSOLEIO_READ: u32 = 1;

/// `XENVER_version`: returns `major << 16 | minor`.
#[doc(alias = "XENVER_version")]
pub const XENVER_VERSION: u32 = 0;
/// `XENVER_extraversion`
#[doc(alias = "XENVER_extraversion")]
pub const XENVER_EXTRAVERSION: u32 = 1;
/// `XENVER_get_features`
#[doc(alias = "XENVER_get_features")]
pub const XENVER_GET_FEATURES: u32 = 6;

/// `XEN_LEGACY_MAX_VCPUS` (`arch-x86/xen.h`): `vcpu_info` slots in `shared_info`.
pub const XEN_LEGACY_MAX_VCPUS: usize = 32;

/// Number of `xen_ulong_t` words in the 2-level event channel bitmaps
/// (`sizeof(xen_ulong_t) * 8` of them, `xen.h`).
pub const EVTCHN_WORDS: usize = 64;

/// `struct vcpu_time_info`: the pv clock of one vCPU.
#[doc(alias = "vcpu_time_info")]
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
pub struct VcpuTimeInfo {
    /// Odd while Xen updates the record: read it again.
    pub version: u32,
    pub pad0: u32,
    pub tsc_timestamp: u64,
    pub system_time: u64,
    pub tsc_to_system_mul: u32,
    pub tsc_shift: i8,
    pub flags: u8,
    pub pad1: [u8; 2],
}
const _: () = assert!(core::mem::size_of::<VcpuTimeInfo>() == 32);

/// `struct arch_vcpu_info` (x86)
#[doc(alias = "arch_vcpu_info")]
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
pub struct ArchVcpuInfo {
    pub cr2: u64,
    pub pad: u64,
}
const _: () = assert!(core::mem::size_of::<ArchVcpuInfo>() == 16);

/// `struct vcpu_info`
#[doc(alias = "vcpu_info")]
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
pub struct VcpuInfo {
    pub evtchn_upcall_pending: u8,
    pub evtchn_upcall_mask: u8,
    pub evtchn_pending_sel: XenUlong,
    pub arch: ArchVcpuInfo,
    pub time: VcpuTimeInfo,
}
const _: () = assert!(core::mem::size_of::<VcpuInfo>() == 64);

/// `struct arch_shared_info` (x86)
#[doc(alias = "arch_shared_info")]
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
pub struct ArchSharedInfo {
    pub max_pfn: u64,
    pub pfn_to_mfn_frame_list_list: XenPfn,
    pub nmi_reason: u64,
    pub p2m_cr3: u64,
    pub p2m_vaddr: u64,
    pub p2m_generation: u64,
}
const _: () = assert!(core::mem::size_of::<ArchSharedInfo>() == 48);

/// `struct shared_info`: one page Xen shares with the guest (mapped with
/// `XENMEM_add_to_physmap(XENMAPSPACE_shared_info)` on PVH).
#[doc(alias = "shared_info")]
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct SharedInfo {
    pub vcpu_info: [VcpuInfo; XEN_LEGACY_MAX_VCPUS],
    pub evtchn_pending: [XenUlong; EVTCHN_WORDS],
    pub evtchn_mask: [XenUlong; EVTCHN_WORDS],
    pub wc_version: u32,
    pub wc_sec: u32,
    pub wc_nsec: u32,
    pub wc_sec_hi: u32,
    pub arch: ArchSharedInfo,
}
const _: () = assert!(core::mem::size_of::<SharedInfo>() == 3136);

/// Page size and shift every Xen x86 interface uses (`XEN_PAGE_SHIFT`).
pub const XEN_PAGE_SHIFT: u32 = 12;
/// `XEN_PAGE_SIZE`
pub const XEN_PAGE_SIZE: usize = 1 << XEN_PAGE_SHIFT;
