//! Physical memory: what Xen handed over at boot (`bootinfo`), the frame allocator
//! (`frames`), the heap (`heap`), the `shared_info` page, and the reserved region where
//! foreign grants are mapped.
//!
//! Everything is identity-mapped (virtual == guest-physical): the boot page tables cover
//! the first 4 GiB, and `init` adds the grant region above that.
//!
//! **The grant region.** A PVH backend maps a frontend's grant at a guest-physical address
//! of its choosing (`gnttab_map_grant_ref.host_addr`, `GNTMAP_host_map`), and Xen puts the
//! foreign frame into our p2m there, replacing whatever was at that frame. So the region
//! must hold neither RAM nor anything Xen placed for us (the console and xenstore rings,
//! ACPI tables, the LAPIC...). All of those appear in the `hvm_start_info` memory map, so the
//! region starts at the first 1 GiB boundary above both 4 GiB and the end of every memory
//! map entry, whatever its type, and is 1 GiB long: no entry can overlap it, and it stays
//! clear of the below-4 GiB area where Xen and libxl put special pages and MMIO.
mod bootinfo;
mod frames;
pub mod heap;
mod region;

pub use bootinfo::{read_boot_info, read_multiboot_info, BootInfo, MemRange};
pub use frames::{
    alloc_frame, free_bytes, free_frame, ram_bytes, take_modules, BootModule, FrameAllocator, Page, SharedPage,
    HVMLOADER_FIRMWARE,
};
pub use region::{add_to_physmap, grant_region_base, init, shared_info, GRANT_REGION_PAGES, PAGE_SIZE};
