//! The nested scenarios: one dom0 script each (`tests/scenarios/<name>.sh`), a
//! timeout, and the outcome `cargo xtask test` expects.
use std::time::Duration;

use crate::images::{self, Images};
use crate::sh::{self, Result};
use crate::testbed::{self, Outcome, Report, Run};

#[derive(Debug, Clone, Copy)]
pub enum Expect {
    Success,
    /// The run must end in FAILURE with this text in the message: the harness's own
    /// negative check.
    FailureContaining(&'static str),
}

/// Which hypervisor the test bed boots.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hypervisor {
    /// Debian's `xen-hypervisor-4.17-amd64`, as packaged.
    Stock,
    /// Debian's Xen source with `xen/patches/` (GNTTABOP_swap_frame), built by `xen.rs`.
    Patched,
}

#[derive(Debug, Clone, Copy)]
pub struct Scenario {
    pub name: &'static str,
    pub about: &'static str,
    pub timeout_s: u64,
    pub expect: Expect,
    /// Carries the unikernel image into dom0 as `/boot/xen-blkback-rs`.
    pub unikernel: bool,
    /// Carries the load and verify tool into dom0 as `/usr/bin/blkload`.
    pub blkload: bool,
    /// Carries the image built without networking as `/boot/xen-blkback-rs-nonet`.
    pub nonet: bool,
    /// The hypervisor it boots; the script finds which in `/etc/testbed-hypervisor`
    /// (`stock`, or `patched <vendor suffix>`).
    pub hypervisor: Hypervisor,
    /// The machine gets an emulated VT-d and an NVMe controller (`docs/testbed.md`, "PCI
    /// passthrough"); only the scenarios that use them pay for them.
    pub nvme: bool,
}

pub const SCENARIOS: &[Scenario] = &[
    Scenario {
        name: "linux-dd",
        about: "Linux PVH driver domain serves dom0 and a Linux domU; data verified; detach",
        timeout_s: 420,
        expect: Expect::Success,
        unikernel: false,
        blkload: false,
        nonet: false,
        hypervisor: Hypervisor::Stock,
        nvme: false,
    },
    Scenario {
        name: "selftest",
        about: "the unikernel boots from xl create and checks xenstore, event channels, grant tables on real Xen; crash paths; the image without networking serves",
        timeout_s: 300,
        expect: Expect::Success,
        unikernel: true,
        blkload: true,
        nonet: true,
        hypervisor: Hypervisor::Stock,
        nvme: false,
    },
    Scenario {
        name: "unikernel-dd",
        about:
            "the unikernel serves dom0 and a Linux domU: data, ext4, flush, discard, ro, detach, domU destroyed mid-I/O",
        timeout_s: 600,
        expect: Expect::Success,
        unikernel: true,
        blkload: true,
        nonet: false,
        hypervisor: Hypervisor::Stock,
        nvme: false,
    },
    Scenario {
        name: "nbd-dd",
        about: "the unikernel serves a disk from nbdkit over its vif (netfront, smoltcp, NBD): data in the server's file, ext4, flush, re-created driver domain",
        timeout_s: 600,
        expect: Expect::Success,
        unikernel: true,
        blkload: true,
        nonet: false,
        hypervisor: Hypervisor::Stock,
        nvme: false,
    },
    Scenario {
        name: "hostile",
        about: "hostile frontends on real Xen: state flips with a 3000-byte protocol and whole-disk discards while a good frontend reads (p99 bounded, data verified, domain alive)",
        timeout_s: 420,
        expect: Expect::Success,
        unikernel: true,
        blkload: true,
        nonet: false,
        hypervisor: Hypervisor::Stock,
        nvme: false,
    },
    Scenario {
        name: "detach-race",
        about: "detach a dom0 disk while writing, re-attach the same vdev at once, six times: every new frontend connects",
        timeout_s: 420,
        expect: Expect::Success,
        unikernel: true,
        blkload: true,
        nonet: false,
        hypervisor: Hypervisor::Stock,
        nvme: false,
    },
    Scenario {
        name: "selfcheck-fail",
        about: "negative self-check: blkload --verify and the checksum check must both catch a corrupted disk",
        timeout_s: 180,
        expect: Expect::FailureContaining("data mismatch"),
        unikernel: false,
        blkload: true,
        nonet: false,
        hypervisor: Hypervisor::Stock,
        nvme: false,
    },
    Scenario {
        name: "swap-dd",
        about: "GNTTABOP_swap_frame on the patched hypervisor: a PVH domU's disk served by frame exchange (512 B to 4 MiB, ext4 + fsck), dom0's PV disk falls back to copying, counters prove it",
        timeout_s: 600,
        expect: Expect::Success,
        unikernel: true,
        blkload: true,
        nonet: false,
        hypervisor: Hypervisor::Patched,
        nvme: false,
    },
    Scenario {
        name: "swap-dd-stock",
        about: "the same swap-dd workload on the packaged hypervisor: the probe fails, the copy fallback serves it",
        timeout_s: 600,
        expect: Expect::Success,
        unikernel: true,
        blkload: true,
        nonet: false,
        hypervisor: Hypervisor::Stock,
        nvme: false,
    },
    Scenario {
        name: "nvme-pt",
        about: "the passthrough test bed: Xen enables the emulated VT-d, dom0 drives the NVMe controller through it, xen-pciback makes it assignable, the unikernel as an HVM driver domain serves a verified disk, a Linux HVM domU owns the controller (device model, hvmloader, SeaBIOS in dom0) and DMAs through the IOMMU; both writes checked in the backing file from the host",
        timeout_s: 480,
        expect: Expect::Success,
        unikernel: true,
        blkload: true,
        nonet: false,
        hypervisor: Hypervisor::Stock,
        nvme: true,
    },
    Scenario {
        name: "nvme-dd",
        about: "the unikernel as an HVM driver domain owns the NVMe controller: dom0 (512 B to 4 MiB, ext4 + fsck) and a Linux PVH domU (a 4 KiB-block namespace) use its namespaces, DMA'd straight into their granted pages (0 bytes copied by the CPU); the IOMMU stops a DMA to an unmapped address; the driver domain re-created with the data there; the bytes checked in the backing files from the host",
        timeout_s: 600,
        expect: Expect::Success,
        unikernel: true,
        blkload: true,
        nonet: false,
        hypervisor: Hypervisor::Stock,
        nvme: true,
    },
];

/// What `nvme-pt` writes at the controller's first 4 MiB (the host checks its backing
/// file): this line, over and over.
pub const NVME_PATTERN: &[u8] = b"nvme-pt: written by dom0 through the emulated VT-d\n";

pub fn find(name: &str) -> Result<&'static Scenario> {
    SCENARIOS.iter().find(|s| s.name == name).ok_or_else(|| {
        let names: Vec<&str> = SCENARIOS.iter().map(|s| s.name).collect();
        format!("unknown scenario `{name}`; known: {}", names.join(", "))
    })
}

/// Runs a scenario; a run lost to a test-bed fault (no result, and fault lines in the
/// logs) is retried once. A failed check is never retried.
pub fn run(
    images: &Images,
    sc: &Scenario,
    verbose: bool,
    mut extra: Vec<(String, crate::cpio::Entry)>,
) -> Result<Report> {
    if sc.unikernel {
        let elf = crate::kernel::build()?;
        extra.push(("boot/xen-blkback-rs".into(), crate::cpio::Entry::File { src: elf, mode: 0o644 }));
    }
    if sc.nonet {
        let elf = crate::kernel::build_without_net()?;
        extra.push(("boot/xen-blkback-rs-nonet".into(), crate::cpio::Entry::File { src: elf, mode: 0o644 }));
    }
    if sc.blkload {
        let blkload = crate::bench::build_blkload()?;
        let hostile = blkload.with_file_name("hostile-fe");
        extra.push(("usr/bin/blkload".into(), crate::cpio::Entry::File { src: blkload, mode: 0o755 }));
        extra.push(("usr/bin/hostile-fe".into(), crate::cpio::Entry::File { src: hostile, mode: 0o755 }));
    }
    // Both swap scenarios run one script, which asks which hypervisor it got.
    let script_name = sc.name.strip_suffix("-stock").unwrap_or(sc.name);
    let script = sh::root().join(format!("tests/scenarios/{script_name}.sh"));
    let (images, which) = match sc.hypervisor {
        Hypervisor::Stock => (images.clone(), String::from("stock\n")),
        Hypervisor::Patched => {
            let mut i = images.clone();
            i.xen = crate::xen::patched(&images::hypervisor_config()?)?;
            (i, format!("patched {}\n", crate::xen::VENDOR_VERSION))
        }
    };
    extra.push(("etc/testbed-hypervisor".into(), crate::cpio::Entry::Data { data: which.into_bytes(), mode: 0o644 }));
    let images = &images;
    let nvme = if sc.nvme { Some(nvme_backing_file()?) } else { None };
    if sc.nvme {
        extra.extend(hvm_tools()?);
    }
    let run =
        Run { name: sc.name, script, extra, timeout: Duration::from_secs(sc.timeout_s), verbose, nvme: nvme.clone() };
    let mut report = testbed::boot(images, &run)?;
    testbed::summarize(&report);
    let lost = matches!(report.outcome, Outcome::Crash(_) | Outcome::Error(_)) && report.testbed_faults > 0;
    if lost {
        sh::say(format!(
            "TEST-BED FAULT ({} fault lines): the emulation failed, not a check; retrying once",
            report.testbed_faults
        ));
        testbed::print_tails(&report, 30);
        report = testbed::boot(images, &run)?;
        testbed::summarize(&report);
    }
    Ok(report)
}

/// What dom0 needs to create HVM guests (the passthrough scenarios only: the others stay
/// as small and fast as they were): Debian's device model `qemu-system-xen` (installed on
/// the host and carried with its libraries), `hvmloader` from the hypervisor's tools
/// package, SeaBIOS (which hvmloader hands control to), and QEMU's option ROMs for direct
/// kernel boot.
pub fn hvm_tools() -> Result<Vec<(String, crate::cpio::Entry)>> {
    crate::host::ensure_packages(&["qemu-system-xen", "seabios"])?;
    let mut v = crate::bench::host_elf("/usr/libexec/xen-qemu-system-i386")?;
    let hvmloader = images::cache_dir().join("root/usr/lib/xen-4.17/boot/hvmloader");
    if !hvmloader.is_file() {
        return Err(format!("{}: not in the extracted hypervisor tools", hvmloader.display()));
    }
    v.push(("usr/lib/xen-4.17/boot/hvmloader".into(), crate::cpio::Entry::File { src: hvmloader, mode: 0o644 }));
    let files = [
        "/usr/share/seabios/bios-256k.bin",
        "/usr/share/qemu/linuxboot.bin",
        "/usr/share/qemu/linuxboot_dma.bin",
        "/usr/share/qemu/kvmvapic.bin",
        "/usr/share/qemu/multiboot.bin",
        "/usr/share/qemu/multiboot_dma.bin",
        "/usr/share/qemu/pvh.bin",
        // `-vnc none` still reads the keymap.
        "/usr/share/qemu/keymaps/en-us",
    ];
    for f in files {
        let src = std::fs::canonicalize(f).map_err(|e| format!("{f}: {e}"))?;
        v.push((f.trim_start_matches('/').to_string(), crate::cpio::Entry::File { src, mode: 0o644 }));
    }
    Ok(v)
}

/// Fresh backing files for the emulated NVMe controller's namespaces (64 MiB and 32 MiB of
/// zeroes), under
/// `target/testbed/`: a real disk image that outlives the run.
fn nvme_backing_file() -> Result<std::path::PathBuf> {
    let p = images::cache_dir().join("nvme0.img");
    for (path, len) in [(p.clone(), 64u64 << 20), (p.with_file_name(testbed::NVME_NS2), 32 << 20)] {
        let f = std::fs::File::create(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        f.set_len(len).map_err(|e| format!("{}: {e}", path.display()))?;
    }
    Ok(p)
}

/// After `nvme-pt`: the backing file's first 4 MiB hold what dom0 wrote through the
/// controller.
fn check_nvme_backing_file() -> std::result::Result<(), String> {
    let p = images::cache_dir().join("nvme0.img");
    let data = std::fs::read(&p).map_err(|e| format!("{}: {e}", p.display()))?;
    let want: Vec<u8> = NVME_PATTERN.iter().copied().cycle().take(4 << 20).collect();
    match data.get(..want.len()) {
        Some(got) if got == want.as_slice() => check_domu_region(&data),
        Some(got) => {
            let at = got.iter().zip(&want).position(|(a, b)| a != b).unwrap_or(0);
            Err(format!("the NVMe backing file differs from what dom0 wrote at byte {at}"))
        }
        None => Err(String::from("the NVMe backing file is short")),
    }
}

/// The HVM domU's own 4 MiB at 8 MiB.
fn check_domu_region(data: &[u8]) -> std::result::Result<(), String> {
    let line: &[u8] = b"nvme-pt: written by the HVM domU\n";
    let want: Vec<u8> = line.iter().copied().cycle().take(4 << 20).collect();
    match data.get(8 << 20..(8 << 20) + want.len()) {
        Some(got) if got == want.as_slice() => Ok(()),
        _ => Err(String::from("the HVM domU's write is not in the NVMe backing file at 8 MiB")),
    }
}

/// What `nvme-dd` writes through the driver domain at 40 MiB of namespace 1, 4 MiB of it
/// (the host checks the backing file after the run).
pub const NVME_DD_PATTERN: &[u8] = b"nvme-dd: written by dom0 through the Rust driver domain\n";

/// After `nvme-dd`: namespace 1's file holds at 40 MiB what dom0 wrote through the driver
/// domain, and namespace 2's first 8 MiB are what the PVH domU wrote and read back through
/// it (the md5 the scenario reported as `nvme.ns2_md5`).
fn check_nvme_dd_files(report: &Report) -> std::result::Result<(), String> {
    let p = images::cache_dir().join("nvme0.img");
    let data = std::fs::read(&p).map_err(|e| format!("{}: {e}", p.display()))?;
    let want: Vec<u8> = NVME_DD_PATTERN.iter().copied().cycle().take(4 << 20).collect();
    if data.get(40 << 20..(40 << 20) + want.len()) != Some(want.as_slice()) {
        return Err(String::from("namespace 1's backing file does not hold dom0's write at 40 MiB"));
    }
    let ns2 = p.with_file_name(testbed::NVME_NS2);
    let out = sh::cmd("sh")
        .arg("-c")
        .arg(format!("head -c 8388608 '{}' | md5sum", ns2.display()))
        .output()
        .map_err(|e| format!("md5sum: {e}"))?;
    let got = String::from_utf8_lossy(&out.stdout).split_whitespace().next().unwrap_or("").to_string();
    match report.metric("nvme.ns2_md5") {
        Some(want) if want == got => Ok(()),
        Some(want) => Err(format!("namespace 2's backing file has md5 {got}, the domU read back {want}")),
        None => Err(String::from("the scenario reported no nvme.ns2_md5")),
    }
}

/// Whether a report is what the scenario expects.
pub fn judge(sc: &Scenario, report: &Report) -> std::result::Result<(), String> {
    match (sc.expect, &report.outcome) {
        (Expect::Success, Outcome::Success) if sc.name == "nvme-dd" => check_nvme_dd_files(report),
        (Expect::Success, Outcome::Success) if sc.nvme => check_nvme_backing_file(),
        (Expect::Success, Outcome::Success) => Ok(()),
        (Expect::FailureContaining(t), Outcome::Failure(m)) if m.contains(t) => Ok(()),
        (Expect::Success, o) => Err(format!("{}: expected SUCCESS, got {o:?}", sc.name)),
        (Expect::FailureContaining(t), o) => Err(format!("{}: expected FAILURE containing {t:?}, got {o:?}", sc.name)),
    }
}

/// `cargo xtask scenario <name>`: exit code from the outcome (0 success, 1 failure,
/// 2 error, 3 crash).
pub fn cmd_scenario(name: &str, verbose: bool) -> Result<i32> {
    let sc = find(name)?;
    let images = images::build()?;
    let report = run(&images, sc, verbose, Vec::new())?;
    if report.outcome == Outcome::Success {
        // What the scenario asks of the host after the run (nvme-pt: the backing file).
        if let Err(e) = judge(sc, &report) {
            sh::say(format!("FAILURE after the run: {e}"));
            return Ok(1);
        }
    }
    if report.outcome != Outcome::Success {
        testbed::print_tails(&report, 40);
        if let Some(s) = &report.last_step {
            sh::say(format!("failed in step: {s}"));
        }
    }
    Ok(report.outcome.exit_code())
}
