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

/// The Multiboot-1 information structure's fields we read (`multiboot.h` of the Multiboot
/// specification 0.6.96): flags, then at 16 the command line, at 20/24 the modules, at
/// 44/48 the memory map.
const MB_FLAG_CMDLINE: u32 = 1 << 2;
const MB_FLAG_MODS: u32 = 1 << 3;
const MB_FLAG_MMAP: u32 = 1 << 6;

/// Copies the start-of-day information of an HVM start (QEMU's Multiboot loader): the same
/// `BootInfo` as a PVH start, from the Multiboot information at `paddr`.
pub fn read_multiboot_info(paddr: u64) -> Result<BootInfo, &'static str> {
    // SAFETY: the loader passes the paddr of its information structure, in our RAM below
    // 4 GiB (identity-mapped); 52 bytes cover every field read.
    let mbi = unsafe { SharedMem::new(paddr, 52) };
    let word = |off: usize| mbi.read::<u32>(off).map_err(|_| "multiboot information unreadable");
    let flags = word(0)?;
    let mut cmdline: heapless::String<1024> =
        if flags & MB_FLAG_CMDLINE != 0 { read_cstr(u64::from(word(16)?)) } else { heapless::String::new() };
    // QEMU's loader puts the kernel's file name first (Multiboot's "boot loader" style):
    // the application's command line is what follows.
    if cmdline.starts_with('/') {
        let rest: heapless::String<1024> = cmdline.split_once(' ').map(|(_, r)| r).unwrap_or("").chars().collect();
        cmdline = rest;
    }
    let mut b = BootInfo { cmdline, memmap: heapless::Vec::new(), modules: heapless::Vec::new(), start_info: paddr };
    if flags & MB_FLAG_MMAP != 0 {
        let (len, addr) = (word(44)? as usize, u64::from(word(48)?));
        // SAFETY: the loader's memory map, `mmap_length` bytes, in our RAM.
        let mm = unsafe { SharedMem::new(addr, len) };
        let mut off = 0usize;
        // Entries: u32 size (of the rest), u64 base, u64 length, u32 type; the next at
        // off + size + 4.
        while off.saturating_add(24) <= len && b.memmap.len() < 64 {
            let (Ok(size), Ok(base), Ok(length), Ok(kind)) =
                (mm.read::<u32>(off), mm.read::<u64>(off + 4), mm.read::<u64>(off + 12), mm.read::<u32>(off + 20))
            else {
                break;
            };
            let _ = b.memmap.push(MemRange { start: base, end: base.saturating_add(length), kind });
            off = off.saturating_add(size as usize).saturating_add(4);
            if size < 20 {
                break;
            }
        }
    } else {
        return Err("no memory map in the multiboot information");
    }
    if flags & MB_FLAG_MODS != 0 {
        let (n, addr) = ((word(20)? as usize).min(8), u64::from(word(24)?));
        // SAFETY: the loader's module list, `mods_count` entries of 16 bytes, in our RAM.
        let ml = unsafe { SharedMem::new(addr, n * 16) };
        for i in 0..n {
            if let (Ok(start), Ok(end), Ok(s)) =
                (ml.read::<u32>(i * 16), ml.read::<u32>(i * 16 + 4), ml.read::<u32>(i * 16 + 8))
            {
                let size = u64::from(end.saturating_sub(start));
                let _ = b.modules.push((u64::from(start), size, read_cstr(u64::from(s))));
            }
        }
    }
    Ok(b)
}
