//! `cargo xtask build`: the unikernel image, checked for the PVH entry note.
use std::path::PathBuf;

use crate::sh::{self, Result};

pub const TARGET: &str = "x86_64-unknown-none";

/// Builds the image (release) and returns its path after checking it.
pub fn build() -> Result<PathBuf> {
    build_variant(true)
}

/// Builds the image without the `net` feature (no vif, no TCP/IP, no `nbd://` disks):
/// `target/xen-blkback-rs-nonet.elf`.
pub fn build_without_net() -> Result<PathBuf> {
    build_variant(false)
}

fn build_variant(net: bool) -> Result<PathBuf> {
    let what = if net { "" } else { ", without the net feature" };
    sh::timed(&format!("build the unikernel (release, x86_64-unknown-none{what})"), || {
        let mut c = sh::cmd("cargo");
        c.current_dir(sh::root()).args(["build", "--release", "-q", "-p", "xen-blkback-rs", "--target", TARGET]);
        if !net {
            c.arg("--no-default-features");
        }
        sh::run(&mut c)
    })?;
    let full = sh::root().join(format!("target/{TARGET}/release/xen-blkback-rs"));
    // The image Xen loads carries no symbol table; the unstripped one stays next to it
    // for addr2line on a crash dump's rip (of the variant built last).
    let elf = sh::root().join(if net { "target/xen-blkback-rs.elf" } else { "target/xen-blkback-rs-nonet.elf" });
    sh::output(sh::cmd("objcopy").arg("--strip-all").arg(&full).arg(&elf))?;
    let bytes = std::fs::read(&elf).map_err(|e| format!("{}: {e}", elf.display()))?;
    let entry = pvh_entry(&bytes)?;
    let loaded = load_size(&bytes)?;
    multiboot_layout(&bytes)?;
    sh::say(format!(
        "image {} ({} KiB, unstripped: {}), {} KiB loaded, PVH entry (XEN_ELFNOTE_PHYS32_ENTRY) at {entry:#x}",
        elf.display(),
        bytes.len() / 1024,
        full.display(),
        loaded / 1024
    ));
    Ok(elf)
}

fn u16_at(b: &[u8], o: usize) -> Result<u16> {
    b.get(o..o + 2).map(|s| u16::from_le_bytes([s[0], s[1]])).ok_or_else(|| "truncated ELF".to_string())
}
fn u32_at(b: &[u8], o: usize) -> Result<u32> {
    b.get(o..o + 4).map(|s| u32::from_le_bytes([s[0], s[1], s[2], s[3]])).ok_or_else(|| "truncated ELF".to_string())
}
fn u64_at(b: &[u8], o: usize) -> Result<u64> {
    b.get(o..o + 8)
        .map(|s| u64::from_le_bytes(s.try_into().unwrap_or([0; 8])))
        .ok_or_else(|| "truncated ELF".to_string())
}

/// (p_type, p_offset, p_filesz, p_memsz) of every program header of an ELF64 file.
fn phdrs(b: &[u8]) -> Result<Vec<(u32, u64, u64, u64)>> {
    if b.get(..4) != Some(b"\x7fELF") || b.get(4) != Some(&2) {
        return Err("not an ELF64 file".into());
    }
    let phoff = u64_at(b, 0x20)? as usize;
    let phentsize = u16_at(b, 0x36)? as usize;
    let phnum = u16_at(b, 0x38)? as usize;
    (0..phnum)
        .map(|i| {
            let o = phoff + i * phentsize;
            Ok((u32_at(b, o)?, u64_at(b, o + 8)?, u64_at(b, o + 32)?, u64_at(b, o + 40)?))
        })
        .collect()
}

/// Bytes the loader places in memory (sum of PT_LOAD memsz).
fn load_size(b: &[u8]) -> Result<u64> {
    Ok(phdrs(b)?.iter().filter(|p| p.0 == 1).map(|p| p.3).sum())
}

/// The address in the "Xen" note of type `XEN_ELFNOTE_PHYS32_ENTRY` (18), found in a
/// PT_NOTE segment, as Xen's loader finds it.
pub fn pvh_entry(b: &[u8]) -> Result<u64> {
    for (ty, off, filesz, _) in phdrs(b)? {
        if ty != 4 {
            continue;
        }
        let (mut o, end) = (off as usize, (off + filesz) as usize);
        while o + 12 <= end {
            let namesz = u32_at(b, o)? as usize;
            let descsz = u32_at(b, o + 4)? as usize;
            let nty = u32_at(b, o + 8)?;
            let name = b.get(o + 12..o + 12 + namesz).unwrap_or_default();
            let desc_off = o + 12 + namesz.next_multiple_of(4);
            if name == b"Xen\0" && nty == 18 && descsz >= 4 {
                return Ok(u64::from(u32_at(b, desc_off)?));
            }
            o = desc_off + descsz.next_multiple_of(4);
        }
    }
    Err("no XEN_ELFNOTE_PHYS32_ENTRY note in a PT_NOTE segment: Xen would not boot it as PVH".into())
}

/// The Multiboot-1 header (a.out kludge) an HVM start goes through: found 4-byte aligned in
/// the file's first 8 KiB, its checksum right, and the flat load it describes (the file
/// from `offset - (header_addr - load_addr)`, `load_end_addr - load_addr` bytes, at
/// `load_addr`) the same bytes at the same addresses as the ELF's PT_LOAD segments.
fn multiboot_layout(b: &[u8]) -> Result<()> {
    let at = (0..8192usize.min(b.len().saturating_sub(32)))
        .step_by(4)
        .find(|&i| u32_at(b, i).ok() == Some(0x1BAD_B002))
        .ok_or("no Multiboot header in the image's first 8 KiB: an HVM start would not load it")?;
    let f: Vec<u32> = (0..8).map(|k| u32_at(b, at + 4 * k)).collect::<Result<_>>()?;
    let (magic, flags, sum, header, load, load_end, _bss_end, _entry) =
        (f[0], f[1], f[2], f[3], f[4], f[5], f[6], f[7]);
    if magic.wrapping_add(flags).wrapping_add(sum) != 0 || flags & (1 << 16) == 0 {
        return Err("the Multiboot header's checksum or a.out-kludge flag is wrong".into());
    }
    let start = (at as u64).checked_sub(u64::from(header - load)).ok_or("Multiboot load starts before the file")?;
    if start + u64::from(load_end - load) > b.len() as u64 {
        return Err("the Multiboot load runs past the end of the file".into());
    }
    let phoff = u64_at(b, 0x20)? as usize;
    let phentsize = u16_at(b, 0x36)? as usize;
    for i in 0..u16_at(b, 0x38)? as usize {
        let o = phoff + i * phentsize;
        let (ty, off, vaddr, filesz) = (u32_at(b, o)?, u64_at(b, o + 8)?, u64_at(b, o + 16)?, u64_at(b, o + 32)?);
        if ty == 1 && filesz > 0 && vaddr.wrapping_sub(off) != u64::from(load).wrapping_sub(start) {
            return Err(format!(
                "PT_LOAD at {vaddr:#x} (file offset {off:#x}) is not where the Multiboot flat load puts it"
            ));
        }
    }
    Ok(())
}
