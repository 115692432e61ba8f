//! `arch-x86/hvm/start_info.h`: what Xen hands a PVH guest in `%ebx` at entry.

/// `XEN_HVM_START_MAGIC_VALUE`
pub const XEN_HVM_START_MAGIC_VALUE: u32 = 0x336e_c578;

pub const XEN_HVM_MEMMAP_TYPE_RAM: u32 = 1;
pub const XEN_HVM_MEMMAP_TYPE_RESERVED: u32 = 2;
pub const XEN_HVM_MEMMAP_TYPE_ACPI: u32 = 3;
pub const XEN_HVM_MEMMAP_TYPE_NVS: u32 = 4;
pub const XEN_HVM_MEMMAP_TYPE_UNUSABLE: u32 = 5;
pub const XEN_HVM_MEMMAP_TYPE_DISABLED: u32 = 6;
pub const XEN_HVM_MEMMAP_TYPE_PMEM: u32 = 7;

/// `struct hvm_start_info`
#[doc(alias = "hvm_start_info")]
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
pub struct HvmStartInfo {
    pub magic: u32,
    /// 0: up to `rsdp_paddr`; 1: adds the memory map.
    pub version: u32,
    pub flags: u32,
    pub nr_modules: u32,
    pub modlist_paddr: u64,
    pub cmdline_paddr: u64,
    pub rsdp_paddr: u64,
    pub memmap_paddr: u64,
    pub memmap_entries: u32,
    pub reserved: u32,
}
const _: () = assert!(core::mem::size_of::<HvmStartInfo>() == 56);

/// `struct hvm_modlist_entry`
#[doc(alias = "hvm_modlist_entry")]
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
pub struct HvmModlistEntry {
    pub paddr: u64,
    pub size: u64,
    pub cmdline_paddr: u64,
    pub reserved: u64,
}
const _: () = assert!(core::mem::size_of::<HvmModlistEntry>() == 32);

/// `struct hvm_memmap_table_entry`
#[doc(alias = "hvm_memmap_table_entry")]
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
pub struct HvmMemmapTableEntry {
    pub addr: u64,
    pub size: u64,
    /// `XEN_HVM_MEMMAP_TYPE_*`
    pub type_: u32,
    pub reserved: u32,
}
const _: () = assert!(core::mem::size_of::<HvmMemmapTableEntry>() == 24);
