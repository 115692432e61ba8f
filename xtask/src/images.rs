//! The test bed's images, built from Debian packages without installing them:
//! `apt-get download`, `dpkg-deb -x`, then cpio archives written directly (no root
//! filesystem images, no loop mounts). Everything is cached under `target/testbed/`,
//! keyed by a hash of the inputs, and rebuilt only when they change.
//!
//! - `xen.elf`: the hypervisor, uncompressed (QEMU's multiboot loader needs the ELF).
//! - `vmlinuz`: Debian's kernel, for dom0 and every Linux domU.
//! - `dom0-base.cpio`: busybox, bash, flock, the Xen tools and their libraries, kernel
//!   modules, `/init`, the xl configs, and `/boot/{vmlinuz,domu.cpio}` for the guests.
//! - `domu.cpio` (inside dom0's image): busybox, xenstore tools, modules, role scripts.
use std::collections::{BTreeMap, BTreeSet};
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};

use crate::cpio::Archive;
use crate::host;
use crate::sh::{self, Result};

/// Packages carried into the images (docs/testbed.md, "Packages").
const XEN_PACKAGES: &[&str] = &[
    "xen-hypervisor-4.17-amd64",
    "xen-utils-4.17",
    "xen-utils-common",
    "xenstore-utils",
    "libxenmisc4.17",
    "libxencall1",
    "libxenevtchn1",
    "libxenforeignmemory1",
    "libxengnttab1",
    "libxenstore4",
    "libxentoollog1",
    "libxendevicemodel1",
    "libxenhypfs1",
    "libxentoolcore1",
    "libyajl2",
];

/// The NBD server dom0 runs for the network-storage scenario (nbdkit: small, serves many
/// connections, fault-injection filters), the client the Linux driver domain uses for the
/// same job (Debian's `nbd-client`, which hands the socket to the kernel's `nbd` driver),
/// and the libraries they link, downloaded like the Xen packages rather than taken from
/// the host.
const NBD_PACKAGES: &[&str] = &[
    "nbdkit",
    "nbd-client",
    "libnl-3-200",
    "libnl-genl-3-200",
    "libgnutls30",
    "libunistring2",
    "libp11-kit0",
    "libnettle8",
    "libhogweed6",
    "libgmp10",
    "libidn2-0",
    "libtasn1-6",
    "libffi8",
    "libselinux1",
    "libpcre2-8-0",
];

/// Kernel modules both kinds of image carry (with their dependencies).
const MODULES: &[&str] = &[
    "xen-evtchn",
    "xen-gntdev",
    "xen-gntalloc",
    "xen-privcmd",
    "xenfs",
    "xen-blkfront",
    "xen-blkback",
    "brd",
    "ext4",
    // ext4's checksums need a crc32c driver (a soft dependency, not in `depends=`).
    "crc32c_generic",
    "loop",
    // The passthrough test bed (nvme-pt): dom0 drives the controller, then hands it to
    // xen-pciback for a driver domain.
    "nvme",
    "xen-pciback",
    // dom0's side of the driver domain's vif: netback and the bridge it joins.
    "xen-netback",
    "bridge",
    // The Linux driver domain's side of the NBD baseline: its vif and the kernel NBD client.
    "xen-netfront",
    "nbd",
    // The bench's frontend-only ceiling: the load on a null block device in dom0.
    "null_blk",
];

/// Bump when the image layout changes in a way the input hash cannot see.
const IMAGE_FORMAT: u32 = 1;

#[derive(Debug, Clone)]
pub struct Images {
    pub xen: PathBuf,
    pub vmlinuz: PathBuf,
    pub dom0_base: PathBuf,
    pub kernel_release: String,
}

/// The packaged hypervisor's own build configuration (`/boot/xen-*.config` of
/// `xen-hypervisor-4.17-amd64`): the patched build uses it unchanged.
pub fn hypervisor_config() -> Result<PathBuf> {
    let boot = cache_dir().join("root/boot");
    std::fs::read_dir(&boot)
        .map_err(|e| format!("{}: {e}", boot.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| {
            p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with("xen-") && n.ends_with(".config"))
        })
        .ok_or_else(|| String::from("no xen-*.config in the hypervisor package"))
}

pub fn cache_dir() -> PathBuf {
    sh::root().join("target/testbed")
}

/// The versioned kernel package `linux-image-amd64` points at.
fn kernel_package() -> Result<String> {
    let deps = sh::stdout(sh::cmd("apt-cache").args(["depends", "linux-image-amd64"]))?;
    deps.lines()
        .filter_map(|l| l.trim().strip_prefix("Depends: "))
        .find(|p| p.starts_with("linux-image-") && p.ends_with("-amd64"))
        .map(str::to_string)
        .ok_or_else(|| format!("no kernel package in `apt-cache depends linux-image-amd64`:\n{deps}"))
}

/// Downloads (once) every package the images need; returns the .deb files.
fn download() -> Result<Vec<PathBuf>> {
    if !host::apt_knows("xen-hypervisor-4.17-amd64") || !host::apt_knows("linux-image-amd64") {
        host::apt_update()?;
    }
    let kernel = kernel_package()?;
    let dir = cache_dir().join("debs");
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let mut want: Vec<String> = XEN_PACKAGES.iter().chain(NBD_PACKAGES).map(|s| (*s).to_string()).collect();
    want.push(kernel);
    let have = |pkg: &str| -> Option<PathBuf> {
        std::fs::read_dir(&dir).ok()?.filter_map(|e| e.ok()).map(|e| e.path()).find(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(&format!("{pkg}_")) && n.ends_with(".deb"))
        })
    };
    let missing: Vec<&String> = want.iter().filter(|p| have(p).is_none()).collect();
    if !missing.is_empty() {
        sh::timed(&format!("apt-get download ({} packages)", missing.len()), || {
            sh::output(sh::cmd("apt-get").current_dir(&dir).arg("download").args(&missing)).map(|_| ())
        })?;
    }
    want.iter().map(|p| have(p).ok_or_else(|| format!("{p}: not downloaded"))).collect()
}

/// Extracts each .deb once into `target/testbed/root`.
fn extract(debs: &[PathBuf]) -> Result<PathBuf> {
    let root = cache_dir().join("root");
    let stamps = cache_dir().join("extracted");
    std::fs::create_dir_all(&stamps).map_err(|e| e.to_string())?;
    for deb in debs {
        let stamp = stamps.join(deb.file_name().unwrap_or_default());
        if stamp.exists() {
            continue;
        }
        sh::output(sh::cmd("dpkg-deb").arg("-x").arg(deb).arg(&root))?;
        std::fs::write(&stamp, b"").map_err(|e| e.to_string())?;
    }
    Ok(root)
}

fn hash_inputs(debs: &[PathBuf], extra: &[PathBuf]) -> Result<String> {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    IMAGE_FORMAT.hash(&mut h);
    for d in debs {
        d.file_name().hash(&mut h);
    }
    for f in extra {
        f.file_name().hash(&mut h);
        std::fs::read(f).map_err(|e| format!("{}: {e}", f.display()))?.hash(&mut h);
    }
    // The builder itself and the host binaries copied in.
    include_str!("images.rs").hash(&mut h);
    for b in ["/bin/busybox", "/bin/bash", "/usr/bin/flock"] {
        std::fs::metadata(b).map(|m| m.len()).unwrap_or(0).hash(&mut h);
    }
    Ok(format!("{:016x}", h.finish()))
}

fn testbed_files() -> Result<Vec<PathBuf>> {
    let mut v = Vec::new();
    for sub in ["tests/testbed", "tests/testbed/roles"] {
        let dir = sh::root().join(sub);
        let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
            .map_err(|e| format!("{}: {e}", dir.display()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.is_file())
            .collect();
        files.sort();
        v.extend(files);
    }
    Ok(v)
}

/// Builds (or reuses) every image; the first run on a machine downloads and extracts.
pub fn build() -> Result<Images> {
    host::ensure_host()?;
    let debs = download()?;
    let root = sh::timed("extract packages", || extract(&debs))?;
    let key = hash_inputs(&debs, &testbed_files()?)?;
    let out = cache_dir().join(format!("images-{key}"));
    let modules_dir = root.join("lib/modules");
    let kernel_release = std::fs::read_dir(&modules_dir)
        .map_err(|e| e.to_string())?
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .max()
        .ok_or("no kernel modules extracted")?;
    let images = Images {
        xen: out.join("xen.elf"),
        vmlinuz: root.join(format!("boot/vmlinuz-{kernel_release}")),
        dom0_base: out.join("dom0-base.cpio"),
        kernel_release,
    };
    if images.dom0_base.exists() && images.xen.exists() {
        sh::say(format!("images up to date ({})", out.display()));
        return Ok(images);
    }
    sh::timed("build images", || {
        let tmp = cache_dir().join(format!("images-{key}.tmp"));
        let _ = std::fs::remove_dir_all(&tmp);
        std::fs::create_dir_all(&tmp).map_err(|e| e.to_string())?;
        let xen_gz = std::fs::read_dir(root.join("boot"))
            .map_err(|e| e.to_string())?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .find(|p| {
                p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with("xen-") && n.ends_with(".gz"))
            })
            .ok_or("no xen-*.gz in the hypervisor package")?;
        let elf = sh::output(sh::cmd("zcat").arg(&xen_gz))?.stdout;
        std::fs::write(tmp.join("xen.elf"), elf).map_err(|e| e.to_string())?;

        let b = Builder { root: root.clone(), kernel_release: images.kernel_release.clone() };
        let domu = b.domu()?;
        let domu_path = tmp.join("domu.cpio");
        write_archive(&domu, &domu_path)?;
        let dom0 = b.dom0(&images.vmlinuz, &domu_path)?;
        write_archive(&dom0, &tmp.join("dom0-base.cpio"))?;
        let _ = std::fs::remove_dir_all(&out);
        std::fs::rename(&tmp, &out).map_err(|e| e.to_string())?;
        Ok(())
    })?;
    Ok(images)
}

pub fn write_archive(a: &Archive, path: &Path) -> Result<()> {
    let f = std::fs::File::create(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut w = std::io::BufWriter::new(f);
    let n = a.write_to(&mut w).map_err(|e| format!("{}: {e}", path.display()))?;
    std::io::Write::flush(&mut w).map_err(|e| e.to_string())?;
    sh::say(format!(
        "  {}: {} entries, {:.1} MiB",
        path.file_name().unwrap_or_default().to_string_lossy(),
        a.len(),
        n as f64 / 1048576.0
    ));
    Ok(())
}

struct Builder {
    root: PathBuf,
    kernel_release: String,
}

impl Builder {
    fn lib_path(&self) -> String {
        format!("{0}/usr/lib/x86_64-linux-gnu:{0}/lib/x86_64-linux-gnu", self.root.display())
    }

    /// Adds an ELF binary and every library `ldd` resolves for it. Libraries from the
    /// extracted packages keep their package path; host libraries keep theirs.
    fn elf(&self, a: &mut Archive, at: &str, src: &Path) -> Result<()> {
        a.file(at, src, 0o755);
        let out = sh::stdout(sh::cmd("ldd").env("LD_LIBRARY_PATH", self.lib_path()).arg(src))?;
        for line in out.lines() {
            let line = line.trim();
            let path = if let Some((_, rhs)) = line.split_once("=> ") {
                rhs.split_whitespace().next()
            } else {
                line.split_whitespace().next().filter(|p| p.starts_with('/'))
            };
            let Some(path) = path else { continue };
            if line.contains("not found") {
                return Err(format!("{}: library not found: {line}", src.display()));
            }
            let p = Path::new(path);
            let at = p.strip_prefix(&self.root).unwrap_or(p).to_string_lossy().into_owned();
            if !a.contains(&at) {
                let real = std::fs::canonicalize(p).map_err(|e| format!("{path}: {e}"))?;
                a.file(&at, &real, 0o755);
            }
        }
        Ok(())
    }

    fn busybox(&self, a: &mut Archive) -> Result<()> {
        a.file("bin/busybox", Path::new("/bin/busybox"), 0o755);
        let list = sh::stdout(sh::cmd("/bin/busybox").arg("--list-full"))?;
        for applet in list.lines().map(str::trim).filter(|l| !l.is_empty()) {
            if !a.contains(applet) {
                let depth = applet.matches('/').count();
                a.symlink(applet, &format!("{}bin/busybox", "../".repeat(depth)));
            }
        }
        Ok(())
    }

    /// Kernel modules with their dependencies, in load order, as `/lib/modules/load/<m>.list`.
    fn modules(&self, a: &mut Archive) -> Result<()> {
        let kdir = self.root.join("lib/modules").join(&self.kernel_release);
        let mut index: BTreeMap<String, PathBuf> = BTreeMap::new();
        let mut stack = vec![kdir.join("kernel")];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).map_err(|e| e.to_string())?.filter_map(|e| e.ok()) {
                let p = e.path();
                if p.is_dir() {
                    stack.push(p);
                } else if let Some(n) = p.file_name().and_then(|n| n.to_str()).and_then(|n| n.strip_suffix(".ko")) {
                    index.insert(n.replace('-', "_"), p.clone());
                }
            }
        }
        let builtin = std::fs::read_to_string(kdir.join("modules.builtin")).unwrap_or_default();
        a.data("lib/modules/builtin.txt", builtin.clone(), 0o644);
        for m in MODULES {
            let m = m.replace('-', "_");
            let mut order = Vec::new();
            let mut seen = BTreeSet::new();
            resolve(&m, &index, &mut order, &mut seen)?;
            if order.is_empty() {
                if builtin.contains(&format!("/{}.ko", m.replace('_', "-"))) || builtin.contains(&format!("/{m}.ko")) {
                    continue;
                }
                return Err(format!("module {m} is neither built in nor in the package"));
            }
            let mut list = String::new();
            for name in &order {
                let src = &index[name];
                let at =
                    format!("lib/modules/{}/{}", self.kernel_release, src.strip_prefix(&kdir).unwrap_or(src).display());
                a.file(&at, src, 0o644);
                list.push('/');
                list.push_str(&at);
                list.push('\n');
            }
            a.data(&format!("lib/modules/load/{m}.list"), list, 0o644);
        }
        Ok(())
    }

    fn common(&self, a: &mut Archive) -> Result<()> {
        self.busybox(a)?;
        self.modules(a)?;
        let tb = sh::root().join("tests/testbed");
        a.file("lib/testbed/common.sh", &tb.join("common.sh"), 0o644);
        for d in ["proc", "sys", "dev", "tmp", "run", "root", "etc", "var/log", "mnt"] {
            a.dir(d);
        }
        // ext4 tools for the filesystem checks (dom0's and a domU frontend's), from the
        // host (Debian's e2fsprogs).
        for (at, src) in [("sbin/mke2fs", "/sbin/mke2fs"), ("sbin/e2fsck", "/sbin/e2fsck")] {
            self.elf(a, at, Path::new(src))?;
        }
        a.symlink("sbin/mkfs.ext4", "mke2fs");
        a.symlink("sbin/fsck.ext4", "e2fsck");
        if Path::new("/etc/mke2fs.conf").exists() {
            a.file("etc/mke2fs.conf", Path::new("/etc/mke2fs.conf"), 0o644);
        }
        a.data("etc/passwd", "root:x:0:0:root:/root:/bin/sh\n", 0o644);
        a.data("etc/group", "root:x:0:\n", 0o644);
        let x = self.root.join("usr/bin/xenstore");
        self.elf(a, "usr/bin/xenstore", &x)?;
        for t in ["read", "write", "ls", "list", "rm", "exists", "watch", "chmod"] {
            a.symlink(&format!("usr/bin/xenstore-{t}"), "xenstore");
        }
        Ok(())
    }

    /// `xl` (and other Xen tools), every library of the Xen packages, `xl.conf` and the
    /// hotplug scripts with what they run (bash, flock): dom0's toolstack, and what a Linux
    /// driver domain needs for `xl devd`.
    fn xen_tools(&self, a: &mut Archive, bins: &[&str]) -> Result<()> {
        self.elf(a, "bin/bash", Path::new("/bin/bash"))?;
        self.elf(a, "usr/bin/flock", Path::new("/usr/bin/flock"))?;
        // xl aborts without it ("libgcc_s.so.1 must be installed for pthread_cancel").
        a.file(
            "lib/x86_64-linux-gnu/libgcc_s.so.1",
            &std::fs::canonicalize("/lib/x86_64-linux-gnu/libgcc_s.so.1").map_err(|e| e.to_string())?,
            0o755,
        );
        let xb = self.root.join("usr/lib/xen-4.17/bin");
        for b in bins {
            self.elf(a, &format!("usr/lib/xen-4.17/bin/{b}"), &xb.join(b))?;
        }
        // Every shared library of the Xen packages (libxl dlopens nothing we know of, but
        // a missing one would only show at run time).
        let libdir = self.root.join("usr/lib/x86_64-linux-gnu");
        for e in std::fs::read_dir(&libdir).map_err(|e| e.to_string())?.filter_map(|e| e.ok()) {
            let p = e.path();
            let n = e.file_name().to_string_lossy().into_owned();
            if n.starts_with("libxen") || n.starts_with("libxl") || n.starts_with("libyajl") {
                let at = format!("usr/lib/x86_64-linux-gnu/{n}");
                if !a.contains(&at) {
                    a.file(&at, &std::fs::canonicalize(&p).map_err(|e| e.to_string())?, 0o755);
                }
            }
        }
        let etc = self.root.join("etc/xen");
        a.file("etc/xen/xl.conf", &etc.join("xl.conf"), 0o644);
        for e in std::fs::read_dir(etc.join("scripts")).map_err(|e| e.to_string())?.filter_map(|e| e.ok()) {
            a.file(&format!("etc/xen/scripts/{}", e.file_name().to_string_lossy()), &e.path(), 0o755);
        }
        for d in ["var/lib/xen", "var/log/xen"] {
            a.dir(d);
        }
        Ok(())
    }

    fn domu(&self) -> Result<Archive> {
        let mut a = Archive::new();
        self.common(&mut a)?;
        // A Linux driver domain runs the real `xl devd` (as deployments do).
        self.xen_tools(&mut a, &["xl"])?;
        // Its NBD client for the network-storage baseline (the kernel's nbd driver does the I/O).
        self.elf(&mut a, "sbin/nbd-client", &self.root.join("sbin/nbd-client"))?;
        let tb = sh::root().join("tests/testbed");
        a.file("init", &tb.join("domu-init.sh"), 0o755);
        for e in std::fs::read_dir(tb.join("roles")).map_err(|e| e.to_string())?.filter_map(|e| e.ok()) {
            let p = e.path();
            if let Some(n) = p.file_name().and_then(|n| n.to_str()) {
                a.file(&format!("roles/{n}"), &p, 0o644);
            }
        }
        Ok(a)
    }

    fn dom0(&self, vmlinuz: &Path, domu: &Path) -> Result<Archive> {
        let mut a = Archive::new();
        self.common(&mut a)?;
        let tb = sh::root().join("tests/testbed");
        a.file("init", &tb.join("dom0-init.sh"), 0o755);
        a.file("lib/testbed/dom0.sh", &tb.join("dom0.sh"), 0o644);
        self.xen_tools(&mut a, &["xl", "xenstored", "xenconsoled", "xen-init-dom0", "xenstore-control"])?;
        // nbdkit with the plugin and filters the scenarios use.
        self.elf(&mut a, "usr/bin/nbdkit", &self.root.join("usr/bin/nbdkit"))?;
        let plugins = "usr/lib/x86_64-linux-gnu/nbdkit";
        for p in ["plugins/nbdkit-file-plugin.so", "filters/nbdkit-log-filter.so", "filters/nbdkit-error-filter.so"] {
            self.elf(&mut a, &format!("{plugins}/{p}"), &self.root.join(format!("{plugins}/{p}")))?;
        }
        for e in std::fs::read_dir(&tb).map_err(|e| e.to_string())?.filter_map(|e| e.ok()) {
            let p = e.path();
            if p.extension().is_some_and(|x| x == "cfg") {
                a.file(&format!("etc/xen/testbed/{}", e.file_name().to_string_lossy()), &p, 0o644);
            }
        }
        for d in ["var/log/xen/console", "var/lib/xenstored"] {
            a.dir(d);
        }
        a.symlink("var/run", "../run");
        a.file("boot/vmlinuz", vmlinuz, 0o644);
        a.file("boot/domu.cpio", domu, 0o644);
        Ok(a)
    }
}

/// Depth-first: dependencies before the module itself.
fn resolve(
    m: &str,
    index: &BTreeMap<String, PathBuf>,
    order: &mut Vec<String>,
    seen: &mut BTreeSet<String>,
) -> Result<()> {
    if !seen.insert(m.to_string()) {
        return Ok(());
    }
    let Some(path) = index.get(m) else {
        return Ok(());
    };
    let bytes = std::fs::read(path).map_err(|e| e.to_string())?;
    if let Some(deps) = modinfo_field(&bytes, b"depends=") {
        for d in deps.split(',').filter(|d| !d.is_empty()) {
            resolve(&d.replace('-', "_"), index, order, seen)?;
        }
    }
    order.push(m.to_string());
    Ok(())
}

/// A `key=value` string of a module's `.modinfo` section, found by scanning the file.
fn modinfo_field(bytes: &[u8], key: &[u8]) -> Option<String> {
    let mut i = 0;
    while let Some(pos) = bytes[i..].windows(key.len()).position(|w| w == key) {
        let start = i + pos;
        // A field starts after a NUL (fields are NUL-separated).
        if start == 0 || bytes[start - 1] == 0 {
            let v = &bytes[start + key.len()..];
            let end = v.iter().position(|&b| b == 0).unwrap_or(v.len());
            return Some(String::from_utf8_lossy(&v[..end]).into_owned());
        }
        i = start + 1;
    }
    None
}
