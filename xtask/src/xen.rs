//! The patched hypervisor for the GNTTABOP_swap flow (`xen/patches/`, docs/grant-swap.md):
//! Debian's Xen source package, our patches, Debian's own binary configuration, and only
//! the hypervisor built. Cached by (source version, patches, config) under
//! `target/testbed/xen-swap-<key>/`: a fresh machine pays the build once (about 2-3 min on
//! two cores), later runs reuse it.
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};

use crate::host;
use crate::images::cache_dir;
use crate::sh::{self, Result};

/// What the patched build calls itself: Xen prints it in its boot banner ("Xen version
/// 4.17.5+swap1 ..."), and `swap-dd` asserts it, so the packaged hypervisor cannot pass
/// for the patched one.
pub const VENDOR_VERSION: &str = "+swap1";

/// What building the hypervisor needs besides what the test bed already installs.
const BUILD_PACKAGES: &[&str] =
    &["dpkg-dev", "make", "gcc", "binutils", "bison", "flex", "python3", "patch", "xz-utils"];

/// The source index `apt-get source` needs; Debian 12 images often ship only binary ones.
const SRC_LIST: &str = "/etc/apt/sources.list.d/xen-blkback-rs-src.sources";

fn patches() -> Result<Vec<PathBuf>> {
    let dir = sh::root().join("xen/patches");
    let mut v: Vec<PathBuf> = std::fs::read_dir(&dir)
        .map_err(|e| format!("{}: {e}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "patch"))
        .collect();
    v.sort();
    Ok(v)
}

/// The version `apt-get source xen` would fetch, adding a deb-src index first if apt
/// has none.
fn source_version() -> Result<String> {
    let showsrc = || {
        sh::stdout(sh::cmd("apt-cache").args(["showsrc", "xen"]))
            .ok()
            .and_then(|s| s.lines().find_map(|l| l.strip_prefix("Version: ").map(str::to_string)))
    };
    if let Some(v) = showsrc() {
        return Ok(v);
    }
    if !Path::new(SRC_LIST).exists() {
        let codename = sh::stdout(sh::cmd("sh").args(["-c", ". /etc/os-release; echo $VERSION_CODENAME"]))?;
        let text = format!(
            "# Added by cargo xtask (xtask/src/xen.rs): Debian's Xen source package for the\n\
             # patched test-bed hypervisor.\nTypes: deb-src\nURIs: http://deb.debian.org/debian\n\
             Suites: {}\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n",
            codename.trim()
        );
        std::fs::write(SRC_LIST, text).map_err(|e| format!("{SRC_LIST}: {e}"))?;
        sh::say(format!("added a deb-src index: {SRC_LIST}"));
    }
    sh::timed("apt-get update (source index)", || sh::output(sh::cmd("apt-get").args(["update", "-q"])).map(|_| ()))?;
    showsrc().ok_or_else(|| "apt knows no source package `xen` even with a deb-src index".to_string())
}

/// Builds (or reuses) the patched hypervisor; returns its uncompressed ELF (what QEMU's
/// multiboot loader takes). `config` is the packaged hypervisor's own `.config`.
pub fn patched(config: &Path) -> Result<PathBuf> {
    let version = source_version()?;
    let patches = patches()?;
    let mut h = std::collections::hash_map::DefaultHasher::new();
    version.hash(&mut h);
    VENDOR_VERSION.hash(&mut h);
    include_str!("xen.rs").hash(&mut h);
    for p in patches.iter().chain(std::iter::once(&config.to_path_buf())) {
        std::fs::read(p).map_err(|e| format!("{}: {e}", p.display()))?.hash(&mut h);
    }
    let out = cache_dir().join(format!("xen-swap-{:016x}", h.finish()));
    let elf = out.join("xen.elf");
    if elf.exists() {
        sh::say(format!("patched hypervisor up to date ({})", elf.display()));
        return Ok(elf);
    }
    host::ensure_packages(BUILD_PACKAGES)?;
    let work = cache_dir().join("xen-swap-build");
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work).map_err(|e| e.to_string())?;
    sh::timed(&format!("apt-get source xen={version}"), || {
        sh::output(sh::cmd("apt-get").current_dir(&work).args(["source", "-q"]).arg(format!("xen={version}")))
            .map(|_| ())
    })?;
    let src = std::fs::read_dir(&work)
        .map_err(|e| e.to_string())?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.is_dir() && p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with("xen-")))
        .ok_or("apt-get source left no xen-* directory")?;
    for p in &patches {
        sh::run(sh::cmd("patch").current_dir(&src).args(["-p1", "--forward", "--quiet", "-i"]).arg(p))?;
    }
    std::fs::copy(config, src.join("xen/.config")).map_err(|e| e.to_string())?;
    let jobs = std::thread::available_parallelism().map_or(2, |n| n.get()).to_string();
    // Debian's `make_args_xen` (debian/rules), our vendor suffix for the banner; no
    // network (GIT/WGET) during the build.
    let args = |c: &mut std::process::Command| {
        c.current_dir(src.join("xen"))
            .env("DEB_VERSION", format!("{version}{VENDOR_VERSION}"))
            .args([
                "XEN_TARGET_ARCH=x86_64",
                "XEN_COMPILE_ARCH=x86_64",
                "CC=gcc",
                "LD=ld",
                "GIT=/bin/false",
                "WGET=/bin/false",
            ])
            .arg(format!("XEN_VENDORVERSION={VENDOR_VERSION}"));
    };
    let mut c = sh::cmd("make");
    args(&mut c);
    sh::output(c.arg("olddefconfig"))?;
    sh::timed(&format!("build the patched hypervisor (make -j{jobs})"), || {
        let mut c = sh::cmd("nice");
        c.args(["-n", "10", "make"]).arg(format!("-j{jobs}"));
        args(&mut c);
        sh::output(&mut c).map(|_| ())
    })?;
    let tmp = cache_dir().join("xen-swap.tmp");
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp).map_err(|e| e.to_string())?;
    // `xen/xen` is the ELF (xen.gz is the same, compressed, for GRUB).
    std::fs::copy(src.join("xen/xen"), tmp.join("xen.elf")).map_err(|e| format!("xen/xen: {e}"))?;
    let _ = std::fs::remove_dir_all(&out);
    std::fs::rename(&tmp, &out).map_err(|e| e.to_string())?;
    let _ = std::fs::remove_dir_all(&work);
    sh::say(format!("patched hypervisor: {}", elf.display()));
    Ok(elf)
}
