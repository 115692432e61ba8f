//! `GnttabSwapFrame` against the header of this repository's hypervisor patch
//! (`xen/patches/0001-gnttab-swap-frame.patch`): the struct is not in any installed Xen
//! header, so the probe takes its C definition from the patch itself, compiles it against
//! the installed `xen/grant_table.h` types, and asserts size and offsets for 64- and 32-bit
//! callers (the patch promises the same layout for both).
#![cfg(feature = "grant-swap")]

use std::mem::{offset_of, size_of};
use std::process::Command;

use xen_sys_mini::grant_table::{GnttabSwapFrame, GNTTABOP_SWAP_FRAME};

fn patch_text() -> String {
    let p = concat!(env!("CARGO_MANIFEST_DIR"), "/../xen/patches/0001-gnttab-swap-frame.patch");
    std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{p}: {e}"))
}

/// The added lines of the public header from `struct gnttab_swap_frame {` to `};`, and
/// the op number.
fn from_patch() -> (String, u32) {
    let text = patch_text();
    let added: Vec<&str> = text.lines().filter_map(|l| l.strip_prefix('+')).collect();
    let start = added.iter().position(|l| l.starts_with("struct gnttab_swap_frame {")).expect("struct in the patch");
    let end = start + added[start..].iter().position(|l| l.starts_with("};")).expect("end of the struct");
    let op = added
        .iter()
        .find_map(|l| l.strip_prefix("#define GNTTABOP_swap_frame"))
        .and_then(|v| v.trim().parse().ok())
        .expect("GNTTABOP_swap_frame in the patch");
    (added[start..=end].join("\n"), op)
}

fn probe(m32: bool) {
    let (def, _) = from_patch();
    let mut c =
        String::from("#include <stdint.h>\n#include <stddef.h>\n#include <xen/xen.h>\n#include <xen/grant_table.h>\n");
    c += &def;
    c += "\n";
    let fields = [
        ("gfn", offset_of!(GnttabSwapFrame, gfn)),
        ("ref", offset_of!(GnttabSwapFrame, ref_)),
        ("domid", offset_of!(GnttabSwapFrame, domid)),
        ("flags", offset_of!(GnttabSwapFrame, flags)),
        ("status", offset_of!(GnttabSwapFrame, status)),
        ("pad", offset_of!(GnttabSwapFrame, pad)),
    ];
    c += &format!(
        "_Static_assert(sizeof(struct gnttab_swap_frame) == {0}, \"MISMATCH size: Rust says {0}\");\n",
        size_of::<GnttabSwapFrame>()
    );
    for (f, off) in fields {
        c += &format!(
            "_Static_assert(offsetof(struct gnttab_swap_frame, {f}) == {off}, \"MISMATCH {f}: Rust says {off}\");\n"
        );
    }
    let dir = std::env::temp_dir().join(format!("xen-sys-mini-swap-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join(format!("swap-{m32}.c"));
    std::fs::write(&file, &c).unwrap();
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
    let mut cmd = Command::new(cc);
    cmd.args(["-fsyntax-only", "-ffreestanding", "-D__XEN_INTERFACE_VERSION__=__XEN_LATEST_INTERFACE_VERSION__"])
        .arg(&file);
    if m32 {
        cmd.arg("-m32");
    }
    let out = cmd.output().expect("running the C compiler");
    assert!(
        out.status.success(),
        "the patch's struct gnttab_swap_frame differs from GnttabSwapFrame (m32 {m32}):\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let _ = std::fs::remove_file(&file);
}

#[test]
fn swap_frame_matches_the_patch_header_64() {
    probe(false);
}

#[test]
fn swap_frame_matches_the_patch_header_32() {
    probe(true);
}

#[test]
fn swap_frame_op_number_matches_the_patch() {
    assert_eq!(from_patch().1, GNTTABOP_SWAP_FRAME);
}
