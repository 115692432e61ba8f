//! Checks every struct of `xen-sys-mini` against Xen's own C headers (Debian `libxen-dev`,
//! `/usr/include/xen`): the size, every field's offset, and the constants.
//!
//! The Rust side's numbers are turned into a C file of `_Static_assert`s which the C
//! compiler checks against the headers, once for x86_64 and once with `-m32` for the
//! layouts a 32-bit x86 frontend puts on a ring. Any mismatch fails the compile, and the
//! test reports each failing assertion by name.
//!
//! Set `XEN_INCLUDE` to look for the headers elsewhere than `/usr/include`.
#![allow(clippy::cast_possible_wrap, clippy::cast_possible_truncation)]

use std::collections::BTreeSet;
use std::mem::{offset_of, size_of};
use std::path::{Path, PathBuf};
use std::process::Command;

use xen_sys_mini::elfnote::*;
use xen_sys_mini::errno;
use xen_sys_mini::event_channel::*;
use xen_sys_mini::grant_table::*;
use xen_sys_mini::hvm::hvm_op::*;
use xen_sys_mini::hvm::params::*;
use xen_sys_mini::hvm::start_info::*;
use xen_sys_mini::io::blkif::*;
use xen_sys_mini::io::console::*;
use xen_sys_mini::io::netif::*;
use xen_sys_mini::io::ring::*;
use xen_sys_mini::io::xenbus::XenbusState;
use xen_sys_mini::io::xs_wire::*;
use xen_sys_mini::memory::*;
use xen_sys_mini::sched::*;
use xen_sys_mini::vcpu::*;
use xen_sys_mini::xen::*;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Abi {
    X86_64,
    X86_32,
}

/// One Rust struct and the C type it must match.
#[derive(Debug, Clone)]
struct Layout {
    abi: Abi,
    rust: &'static str,
    c: &'static str,
    size: usize,
    /// (C member designator, Rust offset)
    fields: Vec<(&'static str, usize)>,
}

/// One Rust constant and the C expression it must equal.
#[derive(Debug, Clone)]
struct Constant {
    c: &'static str,
    value: i128,
}

macro_rules! layouts {
    ($( $abi:ident $rust:ident => $c:literal { $( $($rf:ident).+ => $cf:literal ),* $(,)? } )*) => {
        vec![ $( Layout {
            abi: Abi::$abi,
            rust: stringify!($rust),
            c: $c,
            size: size_of::<$rust>(),
            fields: vec![ $( ($cf, offset_of!($rust, $($rf).+)) ),* ],
        } ),* ]
    };
}

macro_rules! constants {
    ($( $c:literal => $v:expr ),* $(,)?) => {
        vec![ $( Constant { c: $c, value: $v as i128 } ),* ]
    };
}

fn all_layouts() -> Vec<Layout> {
    layouts! {
        // xen.h / arch-x86/xen.h
        X86_64 VcpuTimeInfo => "struct vcpu_time_info" {
            version => "version", pad0 => "pad0", tsc_timestamp => "tsc_timestamp",
            system_time => "system_time", tsc_to_system_mul => "tsc_to_system_mul",
            tsc_shift => "tsc_shift", flags => "flags", pad1 => "pad1" }
        X86_64 ArchVcpuInfo => "struct arch_vcpu_info" { cr2 => "cr2", pad => "pad" }
        X86_64 VcpuInfo => "struct vcpu_info" {
            evtchn_upcall_pending => "evtchn_upcall_pending",
            evtchn_upcall_mask => "evtchn_upcall_mask",
            evtchn_pending_sel => "evtchn_pending_sel", arch => "arch", time => "time" }
        X86_64 ArchSharedInfo => "struct arch_shared_info" {
            max_pfn => "max_pfn", pfn_to_mfn_frame_list_list => "pfn_to_mfn_frame_list_list",
            nmi_reason => "nmi_reason", p2m_cr3 => "p2m_cr3", p2m_vaddr => "p2m_vaddr",
            p2m_generation => "p2m_generation" }
        X86_64 SharedInfo => "struct shared_info" {
            vcpu_info => "vcpu_info", evtchn_pending => "evtchn_pending",
            evtchn_mask => "evtchn_mask", wc_version => "wc_version", wc_sec => "wc_sec",
            wc_nsec => "wc_nsec", wc_sec_hi => "wc_sec_hi", arch => "arch" }
        // sched.h
        X86_64 SchedShutdown => "struct sched_shutdown" { reason => "reason" }
        X86_64 SchedPoll => "struct sched_poll" {
            ports => "ports", nr_ports => "nr_ports", timeout => "timeout" }
        // event_channel.h
        X86_64 EvtchnAllocUnbound => "struct evtchn_alloc_unbound" {
            dom => "dom", remote_dom => "remote_dom", port => "port" }
        X86_64 EvtchnBindInterdomain => "struct evtchn_bind_interdomain" {
            remote_dom => "remote_dom", remote_port => "remote_port", local_port => "local_port" }
        X86_64 EvtchnBindVirq => "struct evtchn_bind_virq" {
            virq => "virq", vcpu => "vcpu", port => "port" }
        X86_64 EvtchnSend => "struct evtchn_send" { port => "port" }
        X86_64 EvtchnClose => "struct evtchn_close" { port => "port" }
        X86_64 EvtchnUnmask => "struct evtchn_unmask" { port => "port" }
        X86_64 EvtchnStatus => "struct evtchn_status" {
            dom => "dom", port => "port", status => "status", vcpu => "vcpu",
            u.dom => "u.interdomain.dom", u.port => "u.interdomain.port" }
        X86_64 EvtchnStatusInterdomain => "struct evtchn_status" {}
        // grant_table.h
        X86_64 GrantEntryV1 => "struct grant_entry_v1" {
            flags => "flags", domid => "domid", frame => "frame" }
        X86_64 GnttabMapGrantRef => "struct gnttab_map_grant_ref" {
            host_addr => "host_addr", flags => "flags", ref_ => "ref", dom => "dom",
            status => "status", handle => "handle", dev_bus_addr => "dev_bus_addr" }
        X86_64 GnttabUnmapGrantRef => "struct gnttab_unmap_grant_ref" {
            host_addr => "host_addr", dev_bus_addr => "dev_bus_addr", handle => "handle",
            status => "status" }
        X86_64 GnttabSetupTable => "struct gnttab_setup_table" {
            dom => "dom", nr_frames => "nr_frames", status => "status",
            frame_list => "frame_list" }
        X86_64 GnttabQuerySize => "struct gnttab_query_size" {
            dom => "dom", nr_frames => "nr_frames", max_nr_frames => "max_nr_frames",
            status => "status" }
        X86_64 GnttabSetVersion => "struct gnttab_set_version" { version => "version" }
        X86_64 GnttabGetVersion => "struct gnttab_get_version" {
            dom => "dom", pad => "pad", version => "version" }
        X86_64 GnttabSwapGrantRef => "struct gnttab_swap_grant_ref" {
            ref_a => "ref_a", ref_b => "ref_b", status => "status" }
        X86_64 GnttabCopyPtr => "struct gnttab_copy_ptr" {
            u => "u.ref", u => "u.gmfn", domid => "domid", offset => "offset" }
        X86_64 GnttabCopy => "struct gnttab_copy" {
            source => "source", source.u => "source.u.ref", source.domid => "source.domid",
            source.offset => "source.offset", dest => "dest", dest.u => "dest.u.gmfn",
            dest.domid => "dest.domid", dest.offset => "dest.offset", len => "len",
            flags => "flags", status => "status" }
        // memory.h
        X86_64 XenMemoryReservation => "struct xen_memory_reservation" {
            extent_start => "extent_start", nr_extents => "nr_extents",
            extent_order => "extent_order", mem_flags => "mem_flags", domid => "domid" }
        X86_64 XenAddToPhysmap => "struct xen_add_to_physmap" {
            domid => "domid", size => "size", space => "space", idx => "idx", gpfn => "gpfn" }
        X86_64 XenRemoveFromPhysmap => "struct xen_remove_from_physmap" {
            domid => "domid", gpfn => "gpfn" }
        X86_64 XenMemoryMap => "struct xen_memory_map" {
            nr_entries => "nr_entries", buffer => "buffer" }
        // vcpu.h
        X86_64 VcpuSetSingleshotTimer => "struct vcpu_set_singleshot_timer" {
            timeout_abs_ns => "timeout_abs_ns", flags => "flags" }
        X86_64 VcpuRegisterVcpuInfo => "struct vcpu_register_vcpu_info" {
            mfn => "mfn", offset => "offset", rsvd => "rsvd" }
        // hvm/hvm_op.h
        X86_64 XenHvmParam => "struct xen_hvm_param" {
            domid => "domid", index => "index", value => "value" }
        X86_64 XenHvmEvtchnUpcallVector => "struct xen_hvm_evtchn_upcall_vector" {
            vcpu => "vcpu", vector => "vector" }
        // arch-x86/hvm/start_info.h (its layout is the same for 32-bit entry code)
        X86_64 HvmStartInfo => "struct hvm_start_info" {
            magic => "magic", version => "version", flags => "flags",
            nr_modules => "nr_modules", modlist_paddr => "modlist_paddr",
            cmdline_paddr => "cmdline_paddr", rsdp_paddr => "rsdp_paddr",
            memmap_paddr => "memmap_paddr", memmap_entries => "memmap_entries",
            reserved => "reserved" }
        X86_32 HvmStartInfo => "struct hvm_start_info" {
            modlist_paddr => "modlist_paddr", memmap_entries => "memmap_entries" }
        X86_64 HvmModlistEntry => "struct hvm_modlist_entry" {
            paddr => "paddr", size => "size", cmdline_paddr => "cmdline_paddr",
            reserved => "reserved" }
        X86_64 HvmMemmapTableEntry => "struct hvm_memmap_table_entry" {
            addr => "addr", size => "size", type_ => "type", reserved => "reserved" }
        // io/ring.h (the blkif instance of DEFINE_RING_TYPES)
        X86_64 SringHeader => "struct blkif_sring" {
            req_prod => "req_prod", req_event => "req_event", rsp_prod => "rsp_prod",
            rsp_event => "rsp_event", pvt => "pvt", pad => "__pad" }
        X86_32 SringHeader => "struct blkif_sring" {
            req_prod => "req_prod", req_event => "req_event", rsp_prod => "rsp_prod",
            rsp_event => "rsp_event", pvt => "pvt", pad => "__pad" }
        // io/blkif.h, native
        X86_64 BlkifRequestSegment => "struct blkif_request_segment" {
            gref => "gref", first_sect => "first_sect", last_sect => "last_sect" }
        X86_32 BlkifRequestSegment => "struct blkif_request_segment" {
            gref => "gref", first_sect => "first_sect", last_sect => "last_sect" }
        X86_64 BlkifRequest => "struct blkif_request" {
            operation => "operation", nr_segments => "nr_segments", handle => "handle",
            id => "id", sector_number => "sector_number", seg => "seg" }
        X86_64 BlkifRequestDiscard => "struct blkif_request_discard" {
            operation => "operation", flag => "flag", handle => "handle", id => "id",
            sector_number => "sector_number", nr_sectors => "nr_sectors" }
        X86_64 BlkifRequestIndirect => "struct blkif_request_indirect" {
            operation => "operation", indirect_op => "indirect_op",
            nr_segments => "nr_segments", id => "id", sector_number => "sector_number",
            handle => "handle", indirect_grefs => "indirect_grefs" }
        X86_64 BlkifResponse => "struct blkif_response" {
            id => "id", operation => "operation", status => "status" }
        // io/blkif.h as a 32-bit x86 frontend compiles it
        X86_32 BlkifX86_32Request => "struct blkif_request" {
            operation => "operation", nr_segments => "nr_segments", handle => "handle",
            id => "id", sector_number => "sector_number", seg => "seg" }
        X86_32 BlkifX86_32RequestDiscard => "struct blkif_request_discard" {
            operation => "operation", flag => "flag", handle => "handle", id => "id",
            sector_number => "sector_number", nr_sectors => "nr_sectors" }
        X86_32 BlkifX86_32RequestIndirect => "struct blkif_request_indirect" {
            operation => "operation", indirect_op => "indirect_op",
            nr_segments => "nr_segments", id => "id", sector_number => "sector_number",
            handle => "handle", indirect_grefs => "indirect_grefs", pad => "pad" }
        X86_32 BlkifX86_32Response => "struct blkif_response" {
            id => "id", operation => "operation", status => "status" }
        // io/xs_wire.h
        X86_64 XsdSockmsg => "struct xsd_sockmsg" {
            type_ => "type", req_id => "req_id", tx_id => "tx_id", len => "len" }
        X86_64 XenstoreDomainInterface => "struct xenstore_domain_interface" {
            req => "req", rsp => "rsp", req_cons => "req_cons", req_prod => "req_prod",
            rsp_cons => "rsp_cons", rsp_prod => "rsp_prod",
            server_features => "server_features", connection => "connection",
            error => "error" }
        // io/netif.h (the same on x86_32: only 16- and 32-bit fields)
        X86_64 NetifTxRequest => "struct netif_tx_request" {
            gref => "gref", offset => "offset", flags => "flags", id => "id", size => "size" }
        X86_32 NetifTxRequest => "struct netif_tx_request" {
            gref => "gref", offset => "offset", flags => "flags", id => "id", size => "size" }
        X86_64 NetifTxResponse => "struct netif_tx_response" { id => "id", status => "status" }
        X86_64 NetifRxRequest => "struct netif_rx_request" { id => "id", pad => "pad", gref => "gref" }
        X86_64 NetifRxResponse => "struct netif_rx_response" {
            id => "id", offset => "offset", flags => "flags", status => "status" }
        X86_64 NetifExtraInfo => "struct netif_extra_info" {
            type_ => "type", flags => "flags", gso_size => "u.gso.size", gso_type => "u.gso.type",
            gso_pad => "u.gso.pad", gso_features => "u.gso.features" }
        // io/console.h
        X86_64 XenconsInterface => "struct xencons_interface" {
            in_ => "in", out => "out", in_cons => "in_cons", in_prod => "in_prod",
            out_cons => "out_cons", out_prod => "out_prod" }
    }
}

fn fixups(mut v: Vec<Layout>) -> Vec<Layout> {
    // `EvtchnStatusInterdomain` is the anonymous `u.interdomain` member of `evtchn_status`:
    // compare it with that member's size.
    for l in &mut v {
        if l.rust == "EvtchnStatusInterdomain" {
            l.c = "((struct evtchn_status *)0)->u.interdomain";
        }
    }
    v
}

fn all_constants() -> Vec<Constant> {
    let mut c = constants! {
        "DOMID_SELF" => DOMID_SELF, "DOMID_IO" => DOMID_IO, "DOMID_XEN" => DOMID_XEN,
        "DOMID_FIRST_RESERVED" => DOMID_FIRST_RESERVED,
        "__HYPERVISOR_memory_op" => hypercall::MEMORY_OP,
        "__HYPERVISOR_xen_version" => hypercall::XEN_VERSION,
        "__HYPERVISOR_console_io" => hypercall::CONSOLE_IO,
        "__HYPERVISOR_grant_table_op" => hypercall::GRANT_TABLE_OP,
        "__HYPERVISOR_vcpu_op" => hypercall::VCPU_OP,
        "__HYPERVISOR_sched_op" => hypercall::SCHED_OP,
        "__HYPERVISOR_event_channel_op" => hypercall::EVENT_CHANNEL_OP,
        "__HYPERVISOR_hvm_op" => hypercall::HVM_OP,
        "CONSOLEIO_write" => CONSOLEIO_WRITE, "CONSOLEIO_read" => CONSOLEIO_READ,
        "XENVER_version" => XENVER_VERSION, "XENVER_extraversion" => XENVER_EXTRAVERSION,
        "XENVER_get_features" => XENVER_GET_FEATURES,
        "XEN_LEGACY_MAX_VCPUS" => XEN_LEGACY_MAX_VCPUS,
        "sizeof(xen_ulong_t) * 8" => EVTCHN_WORDS,
        "XEN_PAGE_SHIFT" => XEN_PAGE_SHIFT, "1 << XEN_PAGE_SHIFT" => XEN_PAGE_SIZE,
        "SCHEDOP_yield" => SCHEDOP_YIELD, "SCHEDOP_block" => SCHEDOP_BLOCK,
        "SCHEDOP_shutdown" => SCHEDOP_SHUTDOWN, "SCHEDOP_poll" => SCHEDOP_POLL,
        "SCHEDOP_remote_shutdown" => SCHEDOP_REMOTE_SHUTDOWN,
        "SCHEDOP_shutdown_code" => SCHEDOP_SHUTDOWN_CODE,
        "SCHEDOP_watchdog" => SCHEDOP_WATCHDOG,
        "SHUTDOWN_poweroff" => SHUTDOWN_POWEROFF, "SHUTDOWN_reboot" => SHUTDOWN_REBOOT,
        "SHUTDOWN_suspend" => SHUTDOWN_SUSPEND, "SHUTDOWN_crash" => SHUTDOWN_CRASH,
        "SHUTDOWN_watchdog" => SHUTDOWN_WATCHDOG, "SHUTDOWN_soft_reset" => SHUTDOWN_SOFT_RESET,
        "EVTCHNOP_bind_interdomain" => EVTCHNOP_BIND_INTERDOMAIN,
        "EVTCHNOP_bind_virq" => EVTCHNOP_BIND_VIRQ, "EVTCHNOP_close" => EVTCHNOP_CLOSE,
        "EVTCHNOP_send" => EVTCHNOP_SEND, "EVTCHNOP_status" => EVTCHNOP_STATUS,
        "EVTCHNOP_alloc_unbound" => EVTCHNOP_ALLOC_UNBOUND,
        "EVTCHNOP_bind_vcpu" => EVTCHNOP_BIND_VCPU, "EVTCHNOP_unmask" => EVTCHNOP_UNMASK,
        "EVTCHNSTAT_closed" => EVTCHNSTAT_CLOSED, "EVTCHNSTAT_unbound" => EVTCHNSTAT_UNBOUND,
        "EVTCHNSTAT_interdomain" => EVTCHNSTAT_INTERDOMAIN, "EVTCHNSTAT_pirq" => EVTCHNSTAT_PIRQ,
        "EVTCHNSTAT_virq" => EVTCHNSTAT_VIRQ, "EVTCHNSTAT_ipi" => EVTCHNSTAT_IPI,
        "VIRQ_TIMER" => VIRQ_TIMER,
        "GNTTABOP_map_grant_ref" => GNTTABOP_MAP_GRANT_REF,
        "GNTTABOP_unmap_grant_ref" => GNTTABOP_UNMAP_GRANT_REF,
        "GNTTABOP_setup_table" => GNTTABOP_SETUP_TABLE, "GNTTABOP_copy" => GNTTABOP_COPY,
        "GNTTABOP_query_size" => GNTTABOP_QUERY_SIZE,
        "GNTTABOP_set_version" => GNTTABOP_SET_VERSION,
        "GNTTABOP_get_version" => GNTTABOP_GET_VERSION,
        "GNTTABOP_swap_grant_ref" => GNTTABOP_SWAP_GRANT_REF,
        "GTF_invalid" => GTF_INVALID, "GTF_permit_access" => GTF_PERMIT_ACCESS,
        "GTF_accept_transfer" => GTF_ACCEPT_TRANSFER, "GTF_type_mask" => GTF_TYPE_MASK,
        "GTF_readonly" => GTF_READONLY, "GTF_reading" => GTF_READING,
        "GTF_writing" => GTF_WRITING,
        "GNTMAP_device_map" => GNTMAP_DEVICE_MAP, "GNTMAP_host_map" => GNTMAP_HOST_MAP,
        "GNTMAP_readonly" => GNTMAP_READONLY,
        "GNTMAP_application_map" => GNTMAP_APPLICATION_MAP,
        "GNTMAP_contains_pte" => GNTMAP_CONTAINS_PTE,
        "GNTCOPY_source_gref" => GNTCOPY_SOURCE_GREF, "GNTCOPY_dest_gref" => GNTCOPY_DEST_GREF,
        "GNTST_okay" => gntst::OKAY, "GNTST_general_error" => gntst::GENERAL_ERROR,
        "GNTST_bad_domain" => gntst::BAD_DOMAIN, "GNTST_bad_gntref" => gntst::BAD_GNTREF,
        "GNTST_bad_handle" => gntst::BAD_HANDLE, "GNTST_bad_virt_addr" => gntst::BAD_VIRT_ADDR,
        "GNTST_bad_dev_addr" => gntst::BAD_DEV_ADDR,
        "GNTST_no_device_space" => gntst::NO_DEVICE_SPACE,
        "GNTST_permission_denied" => gntst::PERMISSION_DENIED,
        "GNTST_bad_page" => gntst::BAD_PAGE, "GNTST_bad_copy_arg" => gntst::BAD_COPY_ARG,
        "GNTST_address_too_big" => gntst::ADDRESS_TOO_BIG, "GNTST_eagain" => gntst::EAGAIN,
        "GNTST_no_space" => gntst::NO_SPACE,
        "XENMEM_increase_reservation" => XENMEM_INCREASE_RESERVATION,
        "XENMEM_decrease_reservation" => XENMEM_DECREASE_RESERVATION,
        "XENMEM_populate_physmap" => XENMEM_POPULATE_PHYSMAP,
        "XENMEM_add_to_physmap" => XENMEM_ADD_TO_PHYSMAP,
        "XENMEM_memory_map" => XENMEM_MEMORY_MAP,
        "XENMEM_remove_from_physmap" => XENMEM_REMOVE_FROM_PHYSMAP,
        "XENMAPSPACE_shared_info" => XENMAPSPACE_SHARED_INFO,
        "XENMAPSPACE_grant_table" => XENMAPSPACE_GRANT_TABLE,
        "XENMAPSPACE_gmfn" => XENMAPSPACE_GMFN, "XENMAPSPACE_gmfn_range" => XENMAPSPACE_GMFN_RANGE,
        "XENMAPSPACE_gmfn_foreign" => XENMAPSPACE_GMFN_FOREIGN,
        "XENMAPSPACE_dev_mmio" => XENMAPSPACE_DEV_MMIO,
        "VCPUOP_is_up" => VCPUOP_IS_UP, "VCPUOP_stop_periodic_timer" => VCPUOP_STOP_PERIODIC_TIMER,
        "VCPUOP_set_singleshot_timer" => VCPUOP_SET_SINGLESHOT_TIMER,
        "VCPUOP_stop_singleshot_timer" => VCPUOP_STOP_SINGLESHOT_TIMER,
        "VCPUOP_register_vcpu_info" => VCPUOP_REGISTER_VCPU_INFO,
        "VCPU_SSHOTTMR_future" => VCPU_SSHOTTMR_FUTURE,
        "XEN_ELFNOTE_INFO" => XEN_ELFNOTE_INFO, "XEN_ELFNOTE_ENTRY" => XEN_ELFNOTE_ENTRY,
        "XEN_ELFNOTE_HYPERCALL_PAGE" => XEN_ELFNOTE_HYPERCALL_PAGE,
        "XEN_ELFNOTE_VIRT_BASE" => XEN_ELFNOTE_VIRT_BASE,
        "XEN_ELFNOTE_GUEST_OS" => XEN_ELFNOTE_GUEST_OS,
        "XEN_ELFNOTE_GUEST_VERSION" => XEN_ELFNOTE_GUEST_VERSION,
        "XEN_ELFNOTE_LOADER" => XEN_ELFNOTE_LOADER, "XEN_ELFNOTE_FEATURES" => XEN_ELFNOTE_FEATURES,
        "XEN_ELFNOTE_SUPPORTED_FEATURES" => XEN_ELFNOTE_SUPPORTED_FEATURES,
        "XEN_ELFNOTE_PHYS32_ENTRY" => XEN_ELFNOTE_PHYS32_ENTRY,
        "HVM_PARAM_CALLBACK_IRQ" => HVM_PARAM_CALLBACK_IRQ,
        "HVM_PARAM_CALLBACK_TYPE_VECTOR" => HVM_PARAM_CALLBACK_TYPE_VECTOR,
        "HVM_PARAM_STORE_PFN" => HVM_PARAM_STORE_PFN,
        "HVM_PARAM_STORE_EVTCHN" => HVM_PARAM_STORE_EVTCHN,
        "HVM_PARAM_CONSOLE_PFN" => HVM_PARAM_CONSOLE_PFN,
        "HVM_PARAM_CONSOLE_EVTCHN" => HVM_PARAM_CONSOLE_EVTCHN,
        "HVMOP_set_param" => HVMOP_SET_PARAM, "HVMOP_get_param" => HVMOP_GET_PARAM,
        "HVMOP_set_evtchn_upcall_vector" => HVMOP_SET_EVTCHN_UPCALL_VECTOR,
        "XEN_HVM_START_MAGIC_VALUE" => XEN_HVM_START_MAGIC_VALUE,
        "XEN_HVM_MEMMAP_TYPE_RAM" => XEN_HVM_MEMMAP_TYPE_RAM,
        "XEN_HVM_MEMMAP_TYPE_RESERVED" => XEN_HVM_MEMMAP_TYPE_RESERVED,
        "XEN_HVM_MEMMAP_TYPE_ACPI" => XEN_HVM_MEMMAP_TYPE_ACPI,
        "XEN_HVM_MEMMAP_TYPE_NVS" => XEN_HVM_MEMMAP_TYPE_NVS,
        "XEN_HVM_MEMMAP_TYPE_UNUSABLE" => XEN_HVM_MEMMAP_TYPE_UNUSABLE,
        "XEN_HVM_MEMMAP_TYPE_DISABLED" => XEN_HVM_MEMMAP_TYPE_DISABLED,
        "XEN_HVM_MEMMAP_TYPE_PMEM" => XEN_HVM_MEMMAP_TYPE_PMEM,
        "BLKIF_OP_READ" => BLKIF_OP_READ, "BLKIF_OP_WRITE" => BLKIF_OP_WRITE,
        "BLKIF_OP_WRITE_BARRIER" => BLKIF_OP_WRITE_BARRIER,
        "BLKIF_OP_FLUSH_DISKCACHE" => BLKIF_OP_FLUSH_DISKCACHE,
        "BLKIF_OP_RESERVED_1" => BLKIF_OP_RESERVED_1, "BLKIF_OP_DISCARD" => BLKIF_OP_DISCARD,
        "BLKIF_OP_INDIRECT" => BLKIF_OP_INDIRECT,
        "BLKIF_MAX_SEGMENTS_PER_REQUEST" => BLKIF_MAX_SEGMENTS_PER_REQUEST,
        "BLKIF_MAX_INDIRECT_PAGES_PER_REQUEST" => BLKIF_MAX_INDIRECT_PAGES_PER_REQUEST,
        "(1 << XEN_PAGE_SHIFT) / sizeof(struct blkif_request_segment)" => BLKIF_SEGS_PER_INDIRECT_FRAME,
        "BLKIF_DISCARD_SECURE" => BLKIF_DISCARD_SECURE,
        "BLKIF_RSP_EOPNOTSUPP" => BLKIF_RSP_EOPNOTSUPP, "BLKIF_RSP_ERROR" => BLKIF_RSP_ERROR,
        "BLKIF_RSP_OKAY" => BLKIF_RSP_OKAY,
        "VDISK_CDROM" => VDISK_CDROM, "VDISK_REMOVABLE" => VDISK_REMOVABLE,
        "VDISK_READONLY" => VDISK_READONLY,
        "sizeof(union blkif_sring_entry)" => BLKIF_X86_64_ENTRY_SIZE,
        "XEN_NETIF_NR_SLOTS_MIN" => XEN_NETIF_NR_SLOTS_MIN,
        "NETTXF_csum_blank" => NETTXF_CSUM_BLANK, "NETTXF_data_validated" => NETTXF_DATA_VALIDATED,
        "NETTXF_more_data" => NETTXF_MORE_DATA, "NETTXF_extra_info" => NETTXF_EXTRA_INFO,
        "NETRXF_data_validated" => NETRXF_DATA_VALIDATED, "NETRXF_csum_blank" => NETRXF_CSUM_BLANK,
        "NETRXF_more_data" => NETRXF_MORE_DATA, "NETRXF_extra_info" => NETRXF_EXTRA_INFO,
        "NETRXF_gso_prefix" => NETRXF_GSO_PREFIX,
        "XEN_NETIF_EXTRA_TYPE_NONE" => XEN_NETIF_EXTRA_TYPE_NONE,
        "XEN_NETIF_EXTRA_TYPE_GSO" => XEN_NETIF_EXTRA_TYPE_GSO,
        "XEN_NETIF_EXTRA_TYPE_MCAST_ADD" => XEN_NETIF_EXTRA_TYPE_MCAST_ADD,
        "XEN_NETIF_EXTRA_TYPE_MCAST_DEL" => XEN_NETIF_EXTRA_TYPE_MCAST_DEL,
        "XEN_NETIF_EXTRA_TYPE_HASH" => XEN_NETIF_EXTRA_TYPE_HASH,
        "XEN_NETIF_EXTRA_TYPE_MAX" => XEN_NETIF_EXTRA_TYPE_MAX,
        "XEN_NETIF_EXTRA_FLAG_MORE" => XEN_NETIF_EXTRA_FLAG_MORE,
        "XEN_NETIF_GSO_TYPE_NONE" => XEN_NETIF_GSO_TYPE_NONE,
        "XEN_NETIF_GSO_TYPE_TCPV4" => XEN_NETIF_GSO_TYPE_TCPV4,
        "XEN_NETIF_GSO_TYPE_TCPV6" => XEN_NETIF_GSO_TYPE_TCPV6,
        "NETIF_RSP_DROPPED" => NETIF_RSP_DROPPED, "NETIF_RSP_ERROR" => NETIF_RSP_ERROR,
        "NETIF_RSP_OKAY" => NETIF_RSP_OKAY, "NETIF_RSP_NULL" => NETIF_RSP_NULL,
        "sizeof(union netif_tx_sring_entry)" => NETIF_TX_ENTRY_SIZE,
        "sizeof(union netif_rx_sring_entry)" => NETIF_RX_ENTRY_SIZE,
        "__CONST_RING_SIZE(netif_tx, 4096)" => NET_TX_RING_SIZE,
        "__CONST_RING_SIZE(netif_rx, 4096)" => NET_RX_RING_SIZE,
        "__CONST_RING_SIZE(blkif, 4096)" => blk_ring_size_x86_64(1),
        "__CONST_RING_SIZE(blkif, 4096 * 16)" => blk_ring_size_x86_64(16),
        "offsetof(struct blkif_sring, ring)" => SRING_HEADER_SIZE,
        "XS_CONTROL" => xs::CONTROL, "XS_DIRECTORY" => xs::DIRECTORY, "XS_READ" => xs::READ,
        "XS_GET_PERMS" => xs::GET_PERMS, "XS_WATCH" => xs::WATCH, "XS_UNWATCH" => xs::UNWATCH,
        "XS_TRANSACTION_START" => xs::TRANSACTION_START,
        "XS_TRANSACTION_END" => xs::TRANSACTION_END, "XS_INTRODUCE" => xs::INTRODUCE,
        "XS_RELEASE" => xs::RELEASE, "XS_GET_DOMAIN_PATH" => xs::GET_DOMAIN_PATH,
        "XS_WRITE" => xs::WRITE, "XS_MKDIR" => xs::MKDIR, "XS_RM" => xs::RM,
        "XS_SET_PERMS" => xs::SET_PERMS, "XS_WATCH_EVENT" => xs::WATCH_EVENT,
        "XS_ERROR" => xs::ERROR, "XS_IS_DOMAIN_INTRODUCED" => xs::IS_DOMAIN_INTRODUCED,
        "XS_RESUME" => xs::RESUME, "XS_SET_TARGET" => xs::SET_TARGET,
        "XS_RESET_WATCHES" => xs::RESET_WATCHES, "XS_DIRECTORY_PART" => xs::DIRECTORY_PART,
        "XS_TYPE_COUNT" => xs::TYPE_COUNT,
        "XENSTORE_RING_SIZE" => XENSTORE_RING_SIZE, "XENSTORE_PAYLOAD_MAX" => XENSTORE_PAYLOAD_MAX,
        "XENSTORE_ABS_PATH_MAX" => XENSTORE_ABS_PATH_MAX,
        "XENSTORE_REL_PATH_MAX" => XENSTORE_REL_PATH_MAX,
        "XENSTORE_SERVER_FEATURE_RECONNECTION" => XENSTORE_SERVER_FEATURE_RECONNECTION,
        "XENSTORE_SERVER_FEATURE_ERROR" => XENSTORE_SERVER_FEATURE_ERROR,
        "XENSTORE_CONNECTED" => XENSTORE_CONNECTED, "XENSTORE_RECONNECT" => XENSTORE_RECONNECT,
        "sizeof(((struct xencons_interface *)0)->in)" => XENCONS_IN_SIZE,
        "sizeof(((struct xencons_interface *)0)->out)" => XENCONS_OUT_SIZE,
        "XenbusStateUnknown" => XenbusState::Unknown,
        "XenbusStateInitialising" => XenbusState::Initialising,
        "XenbusStateInitWait" => XenbusState::InitWait,
        "XenbusStateInitialised" => XenbusState::Initialised,
        "XenbusStateConnected" => XenbusState::Connected,
        "XenbusStateClosing" => XenbusState::Closing, "XenbusStateClosed" => XenbusState::Closed,
        "XenbusStateReconfiguring" => XenbusState::Reconfiguring,
        "XenbusStateReconfigured" => XenbusState::Reconfigured,
    };
    // errno.h: every XEN_E* name the header defines is also in the crate.
    c.extend(errno_constants());
    c
}

fn errno_constants() -> Vec<Constant> {
    use errno::*;
    constants! {
        "XEN_EPERM" => EPERM, "XEN_ENOENT" => ENOENT, "XEN_ESRCH" => ESRCH,
        "XEN_EIO" => EIO, "XEN_ENXIO" => ENXIO, "XEN_E2BIG" => E2BIG, "XEN_ENOEXEC" => ENOEXEC,
        "XEN_EBADF" => EBADF, "XEN_ECHILD" => ECHILD, "XEN_EAGAIN" => EAGAIN,
        "XEN_EWOULDBLOCK" => EWOULDBLOCK, "XEN_ENOMEM" => ENOMEM, "XEN_EACCES" => EACCES,
        "XEN_EFAULT" => EFAULT, "XEN_EBUSY" => EBUSY, "XEN_EEXIST" => EEXIST,
        "XEN_EXDEV" => EXDEV, "XEN_ENODEV" => ENODEV, "XEN_EISDIR" => EISDIR,
        "XEN_EINVAL" => EINVAL, "XEN_ENOSPC" => ENOSPC, "XEN_EROFS" => EROFS,
        "XEN_ENOSYS" => ENOSYS, "XEN_ENOTEMPTY" => ENOTEMPTY, "XEN_EOPNOTSUPP" => EOPNOTSUPP,
        "XEN_ETIMEDOUT" => ETIMEDOUT, "XEN_EISCONN" => EISCONN, "XEN_ENOTCONN" => ENOTCONN,
        "XEN_EDEADLK" => EDEADLK, "XEN_ERANGE" => ERANGE, "XEN_ETIME" => ETIME,
    }
}

// ---------------------------------------------------------------------------------------
// The probe

fn include_dir() -> PathBuf {
    std::env::var_os("XEN_INCLUDE").map_or_else(|| PathBuf::from("/usr/include"), PathBuf::from)
}

const HEADERS: &[&str] = &[
    "xen/xen.h",
    "xen/version.h",
    "xen/sched.h",
    "xen/event_channel.h",
    "xen/grant_table.h",
    "xen/memory.h",
    "xen/vcpu.h",
    "xen/elfnote.h",
    "xen/errno.h",
    "xen/hvm/params.h",
    "xen/hvm/hvm_op.h",
    "xen/arch-x86/hvm/start_info.h",
    "xen/io/ring.h",
    "xen/io/blkif.h",
    "xen/io/netif.h",
    "xen/io/xs_wire.h",
    "xen/io/console.h",
    "xen/io/xenbus.h",
];

/// A C identifier-safe label for an assertion, so a failure names what differs.
fn label(s: &str) -> String {
    s.chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '_' }).collect()
}

fn probe_source(abi: Abi, layouts: &[Layout], constants: &[Constant]) -> String {
    let mut s = String::from("#include <stdint.h>\n#include <stddef.h>\n");
    for h in HEADERS {
        s += &format!("#include <{h}>\n");
    }
    for l in layouts.iter().filter(|l| l.abi == abi) {
        let what = format!("{:?} {} vs {}", l.abi, l.rust, l.c);
        // An sring's C type includes `ring[1]`: the header ends where the ring starts.
        let size_expr =
            if l.rust == "SringHeader" { format!("offsetof({}, ring)", l.c) } else { format!("sizeof({})", l.c) };
        s +=
            &format!("_Static_assert({size_expr} == {}, \"MISMATCH size of {what}: Rust says {}\");\n", l.size, l.size);
        for (field, off) in &l.fields {
            s += &format!(
                "_Static_assert(offsetof({}, {field}) == {off}, \"MISMATCH offset of {what}.{field}: Rust says {off}\");\n",
                l.c
            );
        }
    }
    if abi == Abi::X86_64 {
        for c in constants {
            s += &format!(
                "_Static_assert((long long)({}) == {}LL, \"MISMATCH constant {} ({}): Rust says {}\");\n",
                c.c,
                c.value,
                label(c.c),
                c.c.replace('"', "'"),
                c.value
            );
        }
    }
    s
}

/// Compiles the probe; returns every mismatch the compiler reported (empty = all equal).
fn run_probe(abi: Abi, layouts: &[Layout], constants: &[Constant]) -> Vec<String> {
    let inc = include_dir();
    assert!(
        inc.join("xen/io/blkif.h").exists(),
        "Xen's public headers are not in {}: install Debian's libxen-dev (the layout check \
         needs them; `cargo xtask test` installs it)",
        inc.display()
    );
    let dir = std::env::temp_dir().join(format!("xen-sys-mini-probe-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    // Tests run in parallel threads: each probe gets its own file.
    static SEQ: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let seq = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let file = dir.join(format!("probe-{abi:?}-{seq}.c"));
    std::fs::write(&file, probe_source(abi, layouts, constants)).unwrap();
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
    let mut cmd = Command::new(cc);
    cmd.arg("-fsyntax-only")
        .arg("-ffreestanding")
        .arg("-fmax-errors=0")
        .arg("-D__XEN_INTERFACE_VERSION__=__XEN_LATEST_INTERFACE_VERSION__")
        .arg(format!("-I{}", inc.display()))
        .arg(&file);
    if abi == Abi::X86_32 {
        cmd.arg("-m32");
    }
    let out = cmd.output().expect("running the C compiler");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let mismatches: Vec<String> = stderr
        .lines()
        .filter(|l| l.contains("static assertion failed"))
        .filter_map(|l| l.find("MISMATCH ").map(|i| l[i + 9..].trim_end_matches('"').to_string()))
        .collect();
    // Any other compile error means the probe itself is wrong (e.g. an unknown C name):
    // that must fail too, never pass as "no mismatch".
    assert!(out.status.success() || !mismatches.is_empty(), "the C probe did not compile:\n{stderr}");
    let other_errors: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("error:") && !l.contains("static assertion failed: \"MISMATCH "))
        .collect();
    assert!(other_errors.is_empty(), "the C probe has errors besides mismatches:\n{stderr}");
    let _ = std::fs::remove_file(&file);
    mismatches
}

fn check(abi: Abi) {
    let layouts = fixups(all_layouts());
    let mismatches = run_probe(abi, &layouts, &all_constants());
    assert!(
        mismatches.is_empty(),
        "{} layout/constant mismatch(es) with Xen's headers ({abi:?}):\n  {}",
        mismatches.len(),
        mismatches.join("\n  ")
    );
}

#[test]
fn x86_64_layouts_and_constants_match_xen_headers() {
    check(Abi::X86_64);
}

#[test]
fn x86_32_layouts_match_xen_headers_compiled_with_m32() {
    check(Abi::X86_32);
}

/// The probe must be able to fail: a deliberately wrong offset, size and constant are each
/// reported, by name, and nothing else is.
#[test]
fn probe_reports_a_wrong_layout() {
    let mut wrong = fixups(all_layouts());
    let req = wrong.iter_mut().find(|l| l.rust == "BlkifRequest" && l.abi == Abi::X86_64).unwrap();
    req.fields.iter_mut().find(|(f, _)| *f == "id").unwrap().1 = 4; // the x86_32 offset
    let resp = wrong.iter_mut().find(|l| l.rust == "BlkifResponse").unwrap();
    resp.size = 12;
    let consts = vec![Constant { c: "BLKIF_OP_INDIRECT", value: 7 }];
    let m = run_probe(Abi::X86_64, &wrong, &consts);
    assert_eq!(m.len(), 3, "{m:?}");
    assert!(m.iter().any(|s| s.contains("offset of X86_64 BlkifRequest vs struct blkif_request.id")));
    assert!(m.iter().any(|s| s.contains("size of X86_64 BlkifResponse")));
    assert!(m.iter().any(|s| s.contains("constant BLKIF_OP_INDIRECT")));

    // The native layout is not the x86_32 one: checking the x86_32 structs against the
    // native header must fail.
    let mut swapped: Vec<Layout> =
        fixups(all_layouts()).into_iter().filter(|l| l.rust.starts_with("BlkifX86_32")).collect();
    for l in &mut swapped {
        l.abi = Abi::X86_64;
        // The `__i386__`-only tail pad has no native member to compare.
        l.fields.retain(|(f, _)| *f != "pad");
    }
    let m = run_probe(Abi::X86_64, &swapped, &[]);
    assert!(m.iter().any(|s| s.contains("BlkifX86_32Request vs struct blkif_request")), "{m:?}");
}

/// Every `#[repr(C)]` struct in the crate's sources has an entry in the table above, so a
/// struct added later cannot escape the check.
#[test]
fn every_repr_c_struct_is_checked() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut declared = BTreeSet::new();
    let mut stack = vec![src];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(dir).unwrap() {
            let p = entry.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|e| e == "rs") {
                let text = std::fs::read_to_string(&p).unwrap();
                let mut repr_c = false;
                for line in text.lines() {
                    let t = line.trim();
                    if t.starts_with("#[repr(C") {
                        repr_c = true;
                    } else if let Some(rest) = t.strip_prefix("pub struct ") {
                        if repr_c {
                            let name: String = rest.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
                            declared.insert(name);
                        }
                        repr_c = false;
                    } else if !t.starts_with("#[") && !t.starts_with("///") {
                        repr_c = false;
                    }
                }
            }
        }
    }
    assert!(declared.len() >= 40, "found only {} structs: the scan is broken", declared.len());
    // Checked against this repository's hypervisor patch instead (tests/swap_layout.rs):
    // no installed header has it.
    let elsewhere = ["GnttabSwapFrame"];
    let checked: BTreeSet<String> =
        all_layouts().iter().map(|l| l.rust.to_string()).chain(elsewhere.map(String::from)).collect();
    let missing: Vec<&String> = declared.difference(&checked).collect();
    assert!(missing.is_empty(), "#[repr(C)] structs with no layout check: {missing:?}");
}
