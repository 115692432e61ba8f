//! What Xen hands over at boot (`hvm_start_info`, `hvm/start_info.h`): the command line,
//! the memory map and the module list, copied out before any of that memory is reused.
use xen_sys_mini::hvm::start_info::*;

use crate::shared::SharedMem;

/// One entry of the memory map Xen gave us.
#[derive(Debug, Clone, Copy)]
pub struct MemRange {
    pub start: u64,
    pub end: u64,
    pub kind: u32,
}

/// What `hvm_start_info` said, copied out before any of that memory is reused.
#[derive(Debug)]
pub struct BootInfo {
    pub cmdline: heapless::String<1024>,
    pub memmap: heapless::Vec<MemRange, 64>,
    pub modules: heapless::Vec<(u64, u64, heapless::String<256>), 8>,
    pub start_info: u64,
}

fn read_cstr<const N: usize>(paddr: u64) -> heapless::String<N> {
    let mut s = heapless::String::new();
    if paddr == 0 {
        return s;
    }
    // SAFETY: Xen places the strings in our RAM, identity-mapped; N bytes at most are read
    // (a string Xen wrote may be shorter and end with NUL).
    let mem = unsafe { SharedMem::new(paddr, N) };
    for i in 0..N {
        match mem.read::<u8>(i) {
            Ok(0) | Err(_) => break,
            Ok(b) => {
                if s.push(if b.is_ascii() { b as char } else { '?' }).is_err() {
                    break;
                }
            }
        }
    }
    s
}

/// Copies the start-of-day information. Fails if the magic is wrong (not a PVH start).
pub fn read_boot_info(paddr: u64) -> Result<BootInfo, &'static str> {
    // SAFETY: Xen passes the paddr of a `hvm_start_info` in our RAM (identity-mapped).
    let si = unsafe { SharedMem::new(paddr, core::mem::size_of::<HvmStartInfo>()) };
    let info: HvmStartInfo = si.read(0).map_err(|_| "start_info unreadable")?;
    if info.magic != XEN_HVM_START_MAGIC_VALUE {
        return Err("bad hvm_start_info magic: not started as a PVH guest");
    }
    let mut b = BootInfo {
        cmdline: read_cstr(info.cmdline_paddr),
        memmap: heapless::Vec::new(),
        modules: heapless::Vec::new(),
        start_info: paddr,
    };
    if info.version >= 1 && info.memmap_paddr != 0 {
        let n = (info.memmap_entries as usize).min(64);
        // SAFETY: Xen's memory map array, `memmap_entries` entries, in our RAM.
        let mm = unsafe { SharedMem::new(info.memmap_paddr, n * core::mem::size_of::<HvmMemmapTableEntry>()) };
        for i in 0..n {
            if let Ok(e) = mm.read::<HvmMemmapTableEntry>(i * core::mem::size_of::<HvmMemmapTableEntry>()) {
                let _ = b.memmap.push(MemRange { start: e.addr, end: e.addr.saturating_add(e.size), kind: e.type_ });
            }
        }
    }
    if info.nr_modules > 0 && info.modlist_paddr != 0 {
        let n = (info.nr_modules as usize).min(8);
        // SAFETY: Xen's module list, `nr_modules` entries, in our RAM.
        let ml = unsafe { SharedMem::new(info.modlist_paddr, n * core::mem::size_of::<HvmModlistEntry>()) };
        for i in 0..n {
            if let Ok(m) = ml.read::<HvmModlistEntry>(i * core::mem::size_of::<HvmModlistEntry>()) {
                let _ = b.modules.push((m.paddr, m.size, read_cstr(m.cmdline_paddr)));
            }
        }
    }
    Ok(b)
}
