//! PCI for a device passed through to an HVM driver domain: configuration space through
//! mechanism #1 (ports 0xcf8/0xcfc), memory BARs placed and mapped uncached, bus mastering.
//!
//! Who is on the other side: for an HVM guest, Xen forwards config-space port I/O to the
//! device model (QEMU's `xen-pt` for a passed-through function), which emulates the
//! registers and, when we program a BAR and enable memory decoding, maps the device's real
//! BAR into our p2m at that address (`XEN_DOMCTL_memory_mapping`). A PVH guest has no
//! device model: Xen answers its config reads with all ones, so a scan finds nothing.
//!
//! Nothing places BARs for us: the image runs in hvmloader's place (`firmware_override`),
//! and hvmloader is what assigns BARs for ordinary HVM guests. We take addresses from the
//! start of the below-4 GiB MMIO hole libxl leaves for HVM guests (`0xf0000000`, where
//! hvmloader starts too, up to the first memory-map entry above it or `0xfc000000`, where
//! the IOAPIC, HPET and LAPIC live), and refuse a BAR that would not fit or would overlap
//! an entry of the memory map.
//!
//! The device is untrusted like a frontend: a BAR size that is not a power of two, is
//! below 4 KiB or above [`MAX_BAR`] is refused, and every register access through [`Bar`]
//! is bounds-checked (an offset a hostile controller's CAP.DSTRD computes reads all ones
//! and writes nothing outside the BAR).
use alloc::vec::Vec;
use core::fmt;

use spin::Mutex;

use crate::arch;
use crate::mem::MemRange;

/// Configuration address and data ports (PCI Local Bus 3.0, 3.2.2.3.2).
const CONFIG_ADDRESS: u16 = 0xcf8;
const CONFIG_DATA: u16 = 0xcfc;

/// Config-space offsets and bits (PCI Local Bus 3.0, 6.1, 6.2).
const VENDOR: u16 = 0x00;
const COMMAND: u16 = 0x04;
const CLASS: u16 = 0x08;
const HEADER: u16 = 0x0c;
const BAR0: u16 = 0x10;
const CMD_IO: u32 = 1 << 0;
const CMD_MEM: u32 = 1 << 1;
const CMD_MASTER: u32 = 1 << 2;
const CMD_INTX_OFF: u32 = 1 << 10;

/// The class code of an NVMe controller: mass storage, non-volatile memory, NVM Express
/// I/O controller (NVMe over PCIe, 2.1.3).
pub const CLASS_NVME: u32 = 0x01_08_02;

/// The largest BAR we map (an NVMe BAR0 is 16 KiB plus doorbells and the MSI-X table).
pub const MAX_BAR: u64 = 64 << 20;

/// The default HVM MMIO hole below 4 GiB (libxl's `HVM_BELOW_4G_MMIO_START`) and where the
/// fixed platform devices start.
const HOLE_START: u64 = 0xf000_0000;
const HOLE_END: u64 = 0xfc00_0000;

/// A function's address on the bus.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Bdf {
    pub bus: u8,
    pub dev: u8,
    pub func: u8,
}

impl fmt::Display for Bdf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:02x}:{:02x}.{}", self.bus, self.dev, self.func)
    }
}

/// A function found by [`scan`]. Not `Clone`: [`enable`] takes it, so one function is
/// mapped once.
#[derive(Debug, PartialEq, Eq)]
pub struct Function {
    pub bdf: Bdf,
    pub vendor: u16,
    pub device: u16,
    /// Class, subclass and programming interface.
    pub class: u32,
}

/// Why a function could not be enabled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PciError {
    /// BAR0 is an I/O BAR, or reads back a size that is not a power of two in range.
    BadBar(u64),
    /// No room left in the MMIO hole for a BAR of that size.
    NoRoom(u64),
    /// The page tables could not make the BAR uncached.
    Map(&'static str),
}

impl fmt::Display for PciError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PciError::BadBar(v) => write!(f, "unusable BAR0 ({v:#x})"),
            PciError::NoRoom(sz) => write!(f, "no room in the MMIO hole for a {sz:#x}-byte BAR"),
            PciError::Map(e) => write!(f, "cannot map the BAR: {e}"),
        }
    }
}

/// Serialises the two-step address/data accesses.
static CONFIG: Mutex<()> = Mutex::new(());
/// The next free address of the MMIO hole, and its end.
static HOLE: Mutex<(u64, u64)> = Mutex::new((HOLE_START, HOLE_END));

fn address(bdf: Bdf, off: u16) -> u32 {
    0x8000_0000
        | (u32::from(bdf.bus) << 16)
        | (u32::from(bdf.dev & 31) << 11)
        | (u32::from(bdf.func & 7) << 8)
        | u32::from(off & 0xfc)
}

/// A dword of `bdf`'s configuration space.
pub fn read32(bdf: Bdf, off: u16) -> u32 {
    let _g = CONFIG.lock();
    // SAFETY: mechanism #1: the address port selects a register (no effect by itself)...
    unsafe { arch::outl(CONFIG_ADDRESS, address(bdf, off)) };
    // SAFETY: ...and the data port reads it; config reads have no side effects on the
    // devices a guest sees (PCI 3.0, 6.1).
    unsafe { arch::inl(CONFIG_DATA) }
}

/// Writes a dword of `bdf`'s configuration space.
pub fn write32(bdf: Bdf, off: u16, v: u32) {
    let _g = CONFIG.lock();
    // SAFETY: as for `read32`: selects the register.
    unsafe { arch::outl(CONFIG_ADDRESS, address(bdf, off)) };
    // SAFETY: only this module writes config space, and only the command register and BARs
    // of functions it enables.
    unsafe { arch::outl(CONFIG_DATA, v) };
}

/// Narrows the MMIO hole to what the memory map leaves free: it ends at the first entry
/// that starts inside it (whatever its type: libxl's special pages, ACPI tables).
pub fn init(memmap: &[MemRange]) {
    let mut end = HOLE_END;
    for r in memmap {
        if r.end > HOLE_START && r.start < end {
            end = end.min(r.start.max(HOLE_START));
        }
    }
    *HOLE.lock() = (HOLE_START, end);
}

/// Every function on bus 0 (a device model puts every device an HVM guest sees there).
pub fn scan() -> Vec<Function> {
    let mut out = Vec::new();
    for dev in 0..32u8 {
        for func in 0..8u8 {
            let bdf = Bdf { bus: 0, dev, func };
            let id = read32(bdf, VENDOR);
            if id & 0xffff == 0xffff {
                if func == 0 {
                    break;
                }
                continue;
            }
            let class = read32(bdf, CLASS) >> 8;
            out.push(Function { bdf, vendor: (id & 0xffff) as u16, device: (id >> 16) as u16, class });
            // Header type bit 7: more functions than 0.
            if func == 0 && (read32(bdf, HEADER) >> 16) & 0x80 == 0 {
                break;
            }
        }
    }
    out
}

/// A memory BAR, identity-mapped uncached: bounds-checked 32-bit register access.
#[derive(Debug)]
pub struct Bar {
    base: u64,
    len: u64,
}

impl Bar {
    /// Its guest-physical address.
    pub fn base(&self) -> u64 {
        self.base
    }

    /// Its size in bytes.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether it has no bytes (never, for a BAR [`enable`] mapped).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn ptr(&self, off: usize) -> Option<*mut u32> {
        let off = u64::try_from(off).ok()?;
        (off.is_multiple_of(4) && off.checked_add(4)? <= self.len).then(|| (self.base + off) as *mut u32)
    }

    /// The register at `off`; all ones outside the BAR (what a missing device reads).
    pub fn read32(&self, off: usize) -> u32 {
        match self.ptr(off) {
            // SAFETY: inside the BAR `enable` mapped uncached and nothing else maps; volatile
            // because a register read is an access to the device.
            Some(p) => unsafe { p.read_volatile() },
            None => u32::MAX,
        }
    }

    /// Writes the register at `off`; ignored outside the BAR.
    pub fn write32(&self, off: usize, v: u32) {
        if let Some(p) = self.ptr(off) {
            // SAFETY: as for `read32`.
            unsafe { p.write_volatile(v) };
        }
    }
}

/// Sizes BAR0 of `f`, places it in the MMIO hole, maps it uncached, and enables memory
/// decoding and bus mastering (INTx off: the drivers poll).
pub fn enable(f: Function) -> Result<Bar, PciError> {
    let bdf = f.bdf;
    let cmd = read32(bdf, COMMAND) & 0xffff;
    // Decoding off while the BAR reads back its size (PCI 3.0, 6.2.5.1).
    write32(bdf, COMMAND, cmd & !(CMD_IO | CMD_MEM));
    let orig = read32(bdf, BAR0);
    if orig & 1 != 0 {
        return Err(PciError::BadBar(u64::from(orig)));
    }
    let wide = (orig >> 1) & 3 == 2;
    write32(bdf, BAR0, u32::MAX);
    let lo = read32(bdf, BAR0) & !0xf;
    let hi = if wide {
        write32(bdf, BAR0 + 4, u32::MAX);
        read32(bdf, BAR0 + 4)
    } else {
        u32::MAX
    };
    let mask = (u64::from(hi) << 32) | u64::from(lo);
    let size = (!mask).wrapping_add(1);
    if lo == 0 || !size.is_power_of_two() || !(4096..=MAX_BAR).contains(&size) {
        return Err(PciError::BadBar(mask));
    }
    let base = {
        let mut h = HOLE.lock();
        let base = h.0.checked_next_multiple_of(size).ok_or(PciError::NoRoom(size))?;
        if base.checked_add(size).is_none_or(|e| e > h.1) {
            return Err(PciError::NoRoom(size));
        }
        // Whole 2 MiB pages become uncached: the next BAR starts past them.
        h.0 = (base + size).next_multiple_of(2 << 20);
        base
    };
    write32(bdf, BAR0, base as u32);
    if wide {
        write32(bdf, BAR0 + 4, (base >> 32) as u32);
    }
    map_uncached(base, size).map_err(PciError::Map)?;
    write32(bdf, COMMAND, (cmd & !CMD_IO) | CMD_MEM | CMD_MASTER | CMD_INTX_OFF);
    Ok(Bar { base, len: size })
}

#[cfg(target_os = "none")]
fn map_uncached(base: u64, size: u64) -> Result<(), &'static str> {
    // SAFETY: the boot page tables are active; `[base, base + size)` is in the MMIO hole,
    // which holds no RAM (the hole's end is checked against the memory map by `init`, and
    // RAM below 4 GiB ends before it), and the hole's allocator hands out whole 2 MiB pages.
    unsafe { arch::paging::set_uncached(arch::boot::pml4(), base, base + size) }
}

#[cfg(not(target_os = "none"))]
fn map_uncached(_: u64, _: u64) -> Result<(), &'static str> {
    Err("no page tables of ours on the host")
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;

    #[test]
    fn config_addresses_follow_mechanism_one() {
        let bdf = Bdf { bus: 0, dev: 4, func: 0 };
        assert_eq!(address(bdf, 0x10), 0x8000_2010);
        // The low two bits are the dword's, not the address's.
        assert_eq!(address(Bdf { bus: 1, dev: 31, func: 7 }, 0x0e), 0x8001_ff0c);
        assert_eq!(bdf.to_string(), "00:04.0");
    }

    #[test]
    fn a_bar_access_outside_the_bar_never_reaches_memory() {
        // Never dereferenced: every offset here is refused before an access.
        let bar = Bar { base: 0xf000_0000, len: 0x4000 };
        assert_eq!(bar.ptr(0x3ffc), Some(0xf000_3ffc as *mut u32));
        for off in [0x4000usize, 0x3ffd, 0x2, usize::MAX, 0x1_0000_0000] {
            assert_eq!(bar.ptr(off), None, "{off:#x}");
        }
        assert_eq!(bar.read32(0x4000), u32::MAX);
        bar.write32(0x4000, 1);
    }

    #[test]
    fn the_mmio_hole_ends_where_the_memory_map_has_something() {
        let e = |start: u64, end: u64| MemRange { start, end, kind: 2 };
        init(&[e(0, 0x0400_0000), e(0xfc00_0000, 0x1_0000_0000)]);
        assert_eq!(*HOLE.lock(), (HOLE_START, HOLE_END));
        init(&[e(0xf800_0000, 0xf800_1000)]);
        assert_eq!(*HOLE.lock(), (HOLE_START, 0xf800_0000));
        // RAM running into the hole leaves none.
        init(&[e(0, 0xf100_0000)]);
        assert_eq!(*HOLE.lock(), (HOLE_START, HOLE_START));
        init(&[]);
    }
}
