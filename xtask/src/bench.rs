//! `cargo xtask bench`: the O_DIRECT workload matrix from a dom0 frontend against each
//! backend, in one boot of the test bed so the figures compare. Prints a table, writes
//! JSON under `target/bench/`.
//!
//! dom0 runs on emulated CPU 0 and the driver domains on CPU 1 (docs/testbed.md), the ones
//! not being measured paused, so frontend and backend do not share a CPU. Every cell runs
//! `--repeats` times (3 by default) with the backends in a rotated order; the table gives
//! the median and the range, and a ratio is marked as shown only when the ranges do not
//! overlap (tests/scenarios/bench.sh has the method).
use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{json, Value};

use crate::cpio::Entry;
use crate::images;
use crate::sh::{self, Result};
use crate::testbed::{self, Outcome, Run};

/// Backends the bench knows: the Linux driver domain (the baseline, first: ratios are to
/// it) and the unikernel on each data path, plus its null store (the ceiling); then the
/// same pair on network storage: `linux-nbd` (the kernel's NBD client under xen-blkback)
/// and `uk-nbd` (the unikernel's own NBD client), both reaching one nbdkit in dom0 through
/// their vif. `*-nbd` rows are compared with `linux-nbd`.
///
/// `uk-pool1056` is `uk-persistent` with its pool held to Linux's per-queue default (the
/// pool-sizing lever, A/B in one run). `uk-hvm-*` are the same image run as an HVM driver
/// domain (the mode a driver domain owning a PCI device needs), for HVM against PVH.
///
/// The ceilings, measured in the same run: `dom0-null` (the frontend alone: the load on
/// `null_blk` in dom0, no driver domain), `uk-noop` and `uk-noop-np` (frontend and
/// transport: the unikernel answers every request without touching its grants, with and
/// without persistent grants negotiated).
const BACKENDS: &[Backend] = &[
    Backend { name: "linux", server: Server::Linux("linux-dd"), target: Target::Fixed("/dev/ram0") },
    Backend { name: "uk-persistent", server: Server::Unikernel("uk-dd"), target: Target::Ram("") },
    Backend { name: "uk-pool1056", server: Server::Unikernel("uk-dd"), target: Target::Ram(":pool=1056") },
    Backend { name: "uk-map", server: Server::Unikernel("uk-dd"), target: Target::Ram(":nopersist") },
    Backend { name: "uk-copy", server: Server::Unikernel("uk-dd"), target: Target::Ram(":copy:nopersist") },
    // Exchanges need the frontend's bounce pages: persistent grants stay on.
    Backend { name: "uk-swap", server: Server::Unikernel("uk-dd"), target: Target::Ram(":swap") },
    Backend { name: "uk-null", server: Server::Unikernel("uk-dd"), target: Target::Null("") },
    Backend { name: "uk-noop", server: Server::Unikernel("uk-dd"), target: Target::Null(":noop") },
    Backend { name: "uk-noop-np", server: Server::Unikernel("uk-dd"), target: Target::Null(":noop:nopersist") },
    // The same image as an HVM driver domain (in hvmloader's place, the mode that owns a
    // PCI device): what HVM costs against PVH on the same RAM-disk paths.
    Backend { name: "uk-hvm-persistent", server: Server::Unikernel("uk-hvm"), target: Target::Ram("") },
    Backend { name: "uk-hvm-map", server: Server::Unikernel("uk-hvm"), target: Target::Ram(":nopersist") },
    Backend { name: "dom0-null", server: Server::Dom0, target: Target::None },
    // Both export the same file in dom0 (one nbdkit): one disk at a time.
    Backend { name: "linux-nbd", server: Server::Linux("linux-nbd"), target: Target::Fixed("/dev/nbd0") },
    Backend { name: "uk-nbd", server: Server::Unikernel("uk-nbd"), target: Target::Fixed("nbd://192.0.2.1/disk0") },
];

/// One backend of the bench: its name in the table, what serves it, and the disk it serves.
#[derive(Debug, Clone, Copy)]
struct Backend {
    name: &'static str,
    server: Server,
    target: Target,
}

/// What serves a backend's disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Server {
    /// A Linux PVH driver domain (its xl name).
    Linux(&'static str),
    /// The unikernel (its xl name; one domain serves every RAM-disk path as a disk each).
    Unikernel(&'static str),
    /// No driver domain: the load on `null_blk` in dom0 (the frontend's own ceiling).
    Dom0,
}

impl Server {
    /// The driver domain to create, pause and unpause, if there is one.
    fn driver_domain(self) -> Option<&'static str> {
        match self {
            Server::Linux(d) | Server::Unikernel(d) => Some(d),
            Server::Dom0 => None,
        }
    }

    /// The domain whose CPU the backend's work is charged to (dom0 itself for `dom0-null`).
    fn cpu_domain(self) -> &'static str {
        self.driver_domain().unwrap_or("Domain-0")
    }
}

/// The disk a backend attaches (`target=` of `xl block-attach`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Target {
    /// As written (a device of the Linux driver domain, an NBD URI).
    Fixed(&'static str),
    /// A unikernel RAM disk the size of the region plus 32 MiB, with these options.
    Ram(&'static str),
    /// A unikernel null disk of that size, with these options.
    Null(&'static str),
    /// Nothing attached (`dom0-null` measures dom0's `null_blk`).
    None,
}

impl Target {
    fn render(self, span_mib: u32) -> String {
        let mib = span_mib + 32;
        match self {
            Target::Fixed(t) => t.to_string(),
            Target::Ram(o) => format!("ram:{mib}M{o}"),
            Target::Null(o) => format!("null:{mib}M{o}"),
            Target::None => String::from("-"),
        }
    }
}

fn backend(name: &str) -> Option<&'static Backend> {
    BACKENDS.iter().find(|b| b.name == name)
}

/// The table bench.sh reads (`/scenario/backends.tsv`), one backend a line: name, driver
/// domain (`-`: none), vdev and device id in the frontend (in the order given), target.
fn backend_table(selected: &[String], span_mib: u32) -> Result<String> {
    let mut out = String::new();
    for (i, name) in selected.iter().enumerate() {
        let b = backend(name).ok_or_else(|| format!("unknown backend `{name}`"))?;
        // xvdb, xvdc, ...: blkfront's device id is 202 << 8 | (disk index << 4).
        let idx = u8::try_from(i + 1).ok().filter(|i| *i < 26).ok_or("at most 25 backends")?;
        let vdev = format!("xvd{}", char::from(b'a' + idx));
        let devid = (202u32 << 8) | (u32::from(idx) << 4);
        let dom = b.server.driver_domain().unwrap_or("-");
        out.push_str(&format!("{}\t{dom}\t{vdev}\t{devid}\t{}\n", b.name, b.target.render(span_mib)));
    }
    Ok(out)
}

/// The backend a row is compared with: the Linux driver domain doing the same job.
fn baseline<'a>(b: &str, backends: &'a [String]) -> Option<&'a String> {
    let want = if b.ends_with("-nbd") { "linux-nbd" } else { "linux" };
    backends.iter().find(|x| *x == want)
}

/// (rw, block size, queue depth): 64 KiB random read/write at queue depth 8 (a
/// filesystem-like middle), 1 MiB sequential read/write and 4 KiB random read/write, each at
/// queue depth 1 and 32.
const WORKLOADS: &[(&str, u32, u32)] = &[
    ("randread", 65536, 8),
    ("randwrite", 65536, 8),
    ("read", 1 << 20, 1),
    ("read", 1 << 20, 32),
    ("write", 1 << 20, 1),
    ("write", 1 << 20, 32),
    ("randread", 4096, 1),
    ("randread", 4096, 32),
    ("randwrite", 4096, 1),
    ("randwrite", 4096, 32),
];

/// The RAM disk region the workloads use (MiB); the Linux driver domain's brd disks are
/// 256 MiB.
const SPAN_MIB: u32 = 128;

/// Workloads also run once per backend with blkload's psync threads instead of io_uring:
/// a cross-check of the load tool (the two should agree where dom0 is not the limit).
const CROSSCHECK: &str = "randread:4096:32";

/// A host binary and every library `ldd` resolves for it, at their own paths, for the
/// dom0 overlay.
pub(crate) fn host_elf(bin: &str) -> Result<Vec<(String, Entry)>> {
    let mut out = vec![(bin.trim_start_matches('/').to_string(), Entry::File { src: bin.into(), mode: 0o755 })];
    let ldd = sh::stdout(sh::cmd("ldd").arg(bin))?;
    for line in ldd.lines() {
        if line.contains("not found") {
            return Err(format!("{bin}: {}", line.trim()));
        }
        let path = match line.split_once("=> ") {
            Some((_, rhs)) => rhs.split_whitespace().next(),
            None => line.split_whitespace().next().filter(|p| p.starts_with('/')),
        };
        if let Some(p) = path.filter(|p| p.starts_with('/')) {
            // The library itself, not the symlink ldd names (the loader opens the name).
            let real = std::fs::canonicalize(p).map_err(|e| format!("{p}: {e}"))?;
            out.push((p.trim_start_matches('/').to_string(), Entry::File { src: real, mode: 0o755 }));
        }
    }
    Ok(out)
}

/// Median, minimum and maximum of the finite values.
fn stats(v: &[f64]) -> (f64, f64, f64) {
    let mut x: Vec<f64> = v.iter().copied().filter(|f| f.is_finite()).collect();
    if x.is_empty() {
        return (f64::NAN, f64::NAN, f64::NAN);
    }
    x.sort_by(f64::total_cmp);
    let n = x.len();
    let med = if n % 2 == 1 { x[n / 2] } else { (x[n / 2 - 1] + x[n / 2]) / 2.0 };
    (med, x[0], x[n - 1])
}

/// Builds the tools (release) that run in dom0: the load tool, and the hostile frontend
/// of the `hostile` scenario next to it (`target/release/hostile-fe`).
pub fn build_blkload() -> Result<std::path::PathBuf> {
    sh::timed("build blkload and hostile-fe (release)", || {
        sh::output(sh::cmd("cargo").current_dir(sh::root()).args([
            "build",
            "--release",
            "-q",
            "-p",
            "xtask",
            "--bin",
            "blkload",
            "--bin",
            "hostile-fe",
        ]))
        .map(|_| ())
    })?;
    Ok(sh::root().join("target/release/blkload"))
}

pub fn cmd_bench(args: &[String]) -> Result<i32> {
    let mut backends: Vec<String> = BACKENDS.iter().map(|b| b.name.to_string()).collect();
    let mut seconds = 5u32;
    let mut repeats = 3u32;
    let mut tsc = String::from("default");
    let mut fio = false;
    let mut pause = true;
    let mut only: Option<String> = None;
    // `--frontend domu`: the load runs in a Linux PVH domU (on CPU 0, where dom0's load
    // runs otherwise), on the patched hypervisor: what the swap path needs (Xen refuses
    // exchanges with PV dom0).
    let mut domu = false;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--backend" => {
                let v = it.next().ok_or("--backend needs a value")?;
                if v == "all" {
                    continue;
                }
                backends = v.split(',').map(str::to_string).collect();
                if let Some(b) = backends.iter().find(|b| backend(b).is_none()) {
                    let all: Vec<&str> = BACKENDS.iter().map(|b| b.name).collect();
                    return Err(format!("unknown backend `{b}`; available: {}", all.join(", ")));
                }
            }
            "--only" => {
                only = Some(it.next().ok_or("--only needs rw:bs:qd[,...]")?.clone());
            }
            "--seconds" => {
                seconds = it.next().ok_or("--seconds needs a value")?.parse().map_err(|e| format!("--seconds: {e}"))?;
            }
            "--repeats" => {
                repeats = it.next().ok_or("--repeats needs a value")?.parse().map_err(|e| format!("--repeats: {e}"))?;
                repeats = repeats.max(1);
            }
            "--tsc" => {
                tsc = it.next().ok_or("--tsc needs default|native")?.clone();
                if !["default", "native"].contains(&tsc.as_str()) {
                    return Err(format!("--tsc {tsc}: default|native"));
                }
            }
            "--fio" => fio = true,
            "--no-pause" => pause = false,
            "--frontend" => match it.next().map(String::as_str) {
                Some("dom0") => domu = false,
                Some("domu") => domu = true,
                o => return Err(format!("--frontend {o:?}: dom0|domu")),
            },
            o => return Err(format!("unknown bench argument `{o}`")),
        }
    }
    if domu {
        if let Some(b) = backends.iter().find(|b| !b.starts_with("uk-") || b.contains("nbd") || b.contains("noop")) {
            return Err(format!("--frontend domu serves the unikernel's RAM disks only, not `{b}`"));
        }
    } else if backends.iter().any(|b| b == "uk-swap") {
        return Err("uk-swap needs --frontend domu (Xen refuses frame exchanges with PV dom0)".into());
    }
    let mut images = images::build()?;
    if domu {
        images.xen = crate::xen::patched(&images::hypervisor_config()?)?;
    }
    let blkload = build_blkload()?;
    let uk = crate::kernel::build()?;
    let workloads: Vec<String> = WORKLOADS
        .iter()
        .map(|(rw, bs, qd)| format!("{rw}:{bs}:{qd}"))
        .filter(|w| only.as_ref().is_none_or(|o| o.split(',').any(|x| x == w)))
        .collect();
    let crosscheck: Vec<&str> = CROSSCHECK.split(' ').filter(|w| workloads.iter().any(|x| x == w)).collect();
    let env = format!(
        "BACKENDS=\"{}\"\nWORKLOADS=\"{}\"\nCROSSCHECK=\"{}\"\nSECONDS_PER={seconds}\nSPAN_MIB={SPAN_MIB}\nREPEATS={repeats}\nTSC_MODE={tsc}\nFIO={}\nPAUSE={}\nFRONTEND={}\n",
        backends.join(" "),
        workloads.join(" "),
        crosscheck.join(" "),
        u8::from(fio),
        u8::from(pause),
        if domu { "domu" } else { "dom0" }
    );
    // Per cell: the load, xl pause/unpause and the CPU readings; per domain: its start,
    // fill and idle measurement.
    let cells = backends.len() as u64 * (workloads.len() as u64 * u64::from(repeats) + crosscheck.len() as u64);
    let mut extra = vec![
        ("usr/bin/blkload".into(), Entry::File { src: blkload.clone(), mode: 0o755 }),
        ("boot/xen-blkback-rs".into(), Entry::File { src: uk.clone(), mode: 0o644 }),
        ("scenario/bench.env".into(), Entry::Data { data: env.into_bytes(), mode: 0o644 }),
        (
            "scenario/backends.tsv".into(),
            Entry::Data { data: backend_table(&backends, SPAN_MIB)?.into_bytes(), mode: 0o644 },
        ),
    ];
    if domu {
        // blkload for the domU: a second initramfs the script appends to the domU's (Linux
        // unpacks concatenated cpio archives in turn).
        let mut a = crate::cpio::Archive::new();
        for (path, e) in host_elf(&blkload.to_string_lossy())? {
            let path = if path.ends_with("/blkload") { String::from("usr/bin/blkload") } else { path };
            a.insert(&path, e);
        }
        let p = sh::root().join("target/bench/fe-extra.cpio");
        std::fs::create_dir_all(sh::root().join("target/bench")).map_err(|e| e.to_string())?;
        images::write_archive(&a, &p)?;
        extra.push(("boot/fe-extra.cpio".into(), Entry::File { src: p, mode: 0o644 }));
    }
    if backends.iter().any(|b| backend(b).is_some_and(|b| b.server == Server::Unikernel("uk-hvm"))) {
        // The HVM driver domain's device model, hvmloader's firmware, option ROMs.
        extra.extend(crate::scenarios::hvm_tools()?);
    }
    if fio {
        // Debian 12's fio with every library it links (about 80 MiB: ceph, gluster, rdma
        // clients...), from the host (Debian 12 too), for this run only.
        crate::host::ensure_packages(&["fio"])?;
        extra.extend(host_elf("/usr/bin/fio")?);
    }
    let run = Run {
        name: "bench",
        script: sh::root().join("tests/scenarios/bench.sh"),
        extra,
        timeout: Duration::from_secs(300 + 150 * backends.len() as u64 + cells * (u64::from(seconds) + 8)),
        verbose: false,
        nvme: None,
    };
    let report = testbed::boot(&images, &run)?;
    testbed::summarize(&report);
    if report.outcome != Outcome::Success {
        testbed::print_tails(&report, 40);
        return Err("the benchmark run did not complete".into());
    }

    // One run: bench.<backend>.<rw>.<bs>.<qd>.<r1..|psync> = blkload JSON, with the CPU
    // seconds of the driver domain and dom0 beside it.
    let one = |b: &str, key: &str, sfx: &str| -> Option<Value> {
        let mut v: Value =
            report.metric(&format!("bench.{b}.{key}.{sfx}")).and_then(|s| serde_json::from_str(s).ok())?;
        let num =
            |k: &str| report.metric(&format!("{b}.{key}.{sfx}.{k}")).and_then(|s| s.parse().ok()).unwrap_or(f64::NAN);
        let (cpu, dom0) = (num("dd_cpu_s"), num("dom0_cpu_s"));
        let gib = v["bytes"].as_f64().unwrap_or(0.0) / f64::from(1u32 << 30);
        let secs = v["secs"].as_f64().unwrap_or(f64::NAN);
        v["dd_cpu_s"] = json!(cpu);
        v["dd_cpu_s_per_gib"] = json!(if gib > 0.0 { cpu / gib } else { f64::NAN });
        // Busy fractions of the two CPUs: which side is the bottleneck.
        v["dd_cpu_busy"] = json!(cpu / secs);
        v["dom0_cpu_s"] = json!(dom0);
        v["dom0_cpu_busy"] = json!(dom0 / secs);
        Some(v)
    };
    let mut results: BTreeMap<String, Value> = BTreeMap::new();
    for b in &backends {
        let mut w = serde_json::Map::new();
        for (rw, bs, qd) in WORKLOADS {
            let key = format!("{rw}.{bs}.{qd}");
            let runs: Vec<Value> = (1..=repeats).filter_map(|r| one(b, &key, &format!("r{r}"))).collect();
            if runs.is_empty() {
                if workloads.contains(&format!("{rw}:{bs}:{qd}")) {
                    return Err(format!("no result for {b} {key}"));
                }
                continue;
            }
            let col = |k: &str| -> Vec<f64> { runs.iter().map(|v| fnum(&v[k])).collect() };
            let mut cell = serde_json::Map::new();
            for k in [
                "mib_s",
                "iops",
                "lat_p50_us",
                "lat_p99_us",
                "lat_max_us",
                "dd_cpu_s_per_gib",
                "dd_cpu_busy",
                "dom0_cpu_busy",
            ] {
                let (med, lo, hi) = stats(&col(k));
                cell.insert(k.into(), json!(med));
                cell.insert(format!("{k}_min"), json!(lo));
                cell.insert(format!("{k}_max"), json!(hi));
            }
            cell.insert("runs".into(), Value::Array(runs));
            if let Some(p) = one(b, &key, "psync") {
                cell.insert("psync".into(), p);
            }
            if let Some(x) = report.metric(&format!("fio.{b}.{key}")).and_then(|s| s.parse::<f64>().ok()) {
                cell.insert("fio_iops".into(), json!(x));
            }
            w.insert(key, Value::Object(cell));
        }
        let dom = backend(b).map_or("-", |x| x.server.cpu_domain());
        let fig = |k: &str| -> Value {
            report.metric(k).and_then(|s| s.parse::<f64>().ok()).map_or(Value::Null, |x| json!(x))
        };
        results.insert(
            b.clone(),
            json!({
                "driver_domain": dom,
                "workloads": w,
                "xl_create_s": fig(&format!("{dom}.xl_create_s")),
                "boot_to_ready_s": fig(&format!("{dom}.boot_to_ready_s")),
                "attach_to_initwait_s": fig(&format!("{b}.attach_to_initwait_s")),
                "memory_mib": fig(&format!("{dom}.memory_mib")),
                "dd_read_1m_mib_s": fig(&format!("{b}.dd_read_1m_mib_s")),
                "idle_cpu_s_per_s": fig(&format!("{dom}.idle_cpu_s_per_s")),
            }),
        );
    }
    print_table(&backends, &results);
    let out = json!({
        "seconds_per_workload": seconds,
        "repeats": repeats,
        "tsc_mode": tsc,
        "idle_domains_paused": pause,
        "span_mib": SPAN_MIB,
        "run_seconds": report.seconds,
        "testbed_faults": report.testbed_faults,
        "note": "dom0 frontend on CPU 0, driver domains on CPU 1 (those not measured paused); load: blkload io_uring at iodepth N on O_DIRECT (psync: N threads, cross-check); \
                 each cell: median of the repeats with _min/_max, backends in rotated order; \
                 dd_cpu_busy / dom0_cpu_busy = CPU seconds of the driver domain / dom0 per second of the workload (1.0 = that CPU saturated); \
                 xl_create_s includes Xen scrubbing memory of earlier domains; boot_to_ready_s = xl create returned until the domain said it serves; attach_to_initwait_s = block-attach until the backend reached InitWait",
        "backends": results,
    });
    let dir = sh::root().join("target/bench");
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let stamp = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let text = serde_json::to_string_pretty(&out).map_err(|e| e.to_string())?;
    for f in [dir.join(format!("bench-{stamp}.json")), dir.join("latest.json")] {
        std::fs::write(&f, &text).map_err(|e| format!("{}: {e}", f.display()))?;
    }
    sh::say(format!("wrote {}", dir.join("latest.json").display()));
    let svg = chart_svg(
        &backends,
        &results,
        &format!(
            "xen-blkback-rs vs a Linux driver domain (median of {repeats} x {seconds}s per workload, TCG test bed)"
        ),
    );
    let svg_path = dir.join("latest.svg");
    std::fs::write(&svg_path, svg).map_err(|e| e.to_string())?;
    let png_path = dir.join("latest.png");
    match crate::host::ensure_packages(&["librsvg2-bin"])
        .and_then(|()| sh::output(sh::cmd("rsvg-convert").arg(&svg_path).arg("-o").arg(&png_path)).map(|_| ()))
    {
        Ok(()) => {
            let _ = std::fs::copy(&png_path, dir.join(format!("bench-{stamp}.png")));
            sh::say(format!("chart: {}", png_path.display()));
        }
        Err(e) => sh::say(format!("chart: {} only (no PNG: {e})", svg_path.display())),
    }
    Ok(0)
}

fn workload_name(rw: &str, bs: u32, qd: u32) -> String {
    let size = if bs >= 1 << 20 { format!("{}M", bs >> 20) } else { format!("{}K", bs >> 10) };
    format!("{rw} {size} qd{qd}")
}

fn fnum(v: &Value) -> f64 {
    v.as_f64().unwrap_or(f64::NAN)
}

/// `median [min-max]` of a cell's field.
fn range(v: &Value, k: &str, prec: usize) -> String {
    format!(
        "{:.p$} [{:.p$}-{:.p$}]",
        fnum(&v[k]),
        fnum(&v[&format!("{k}_min")]),
        fnum(&v[&format!("{k}_max")]),
        p = prec
    )
}

/// The ratio of medians of `k`, and whether the two ranges are apart (only then is the
/// difference shown by the run; otherwise it is within the spread).
fn ratio(v: &Value, base: &Value, k: &str) -> (f64, bool) {
    let (lo, hi) = (fnum(&v[&format!("{k}_min")]), fnum(&v[&format!("{k}_max")]));
    let (blo, bhi) = (fnum(&base[&format!("{k}_min")]), fnum(&base[&format!("{k}_max")]));
    (fnum(&v[k]) / fnum(&base[k]), lo > bhi || hi < blo)
}

fn print_table(backends: &[String], r: &BTreeMap<String, Value>) {
    println!();
    println!("median [min-max] of the repeats; ratios to the Linux driver domain: IOPS / CPU per GiB, `~` = ranges overlap (not shown by this run)");
    println!(
        "{:<18} {:<14} {:>22} {:>9} {:>20} {:>8} {:>8} {:>16}",
        "workload", "backend", "IOPS", "p99 us", "cpu s/GiB", "dd busy", "dom0 bsy", "IOPS/CPU vs"
    );
    for (rw, bs, qd) in WORKLOADS {
        let key = format!("{rw}.{bs}.{qd}");
        if backends.iter().all(|b| r[b]["workloads"][&key].is_null()) {
            continue;
        }
        for b in backends {
            let v = &r[b]["workloads"][&key];
            if v.is_null() {
                continue;
            }
            let vs = match baseline(b, backends).filter(|x| *x != b) {
                Some(base) => {
                    let base = &r[base]["workloads"][&key];
                    let (io, io_apart) = ratio(v, base, "iops");
                    let (cpu, cpu_apart) = ratio(v, base, "dd_cpu_s_per_gib");
                    let mark = |apart: bool| if apart { "" } else { "~" };
                    format!("{}{io:.2}x/{}{cpu:.2}x", mark(io_apart), mark(cpu_apart))
                }
                None => String::from("-"),
            };
            println!(
                "{:<18} {:<14} {:>22} {:>9.0} {:>20} {:>8.2} {:>8.2} {:>16}",
                workload_name(rw, *bs, *qd),
                b,
                range(v, "iops", 0),
                fnum(&v["lat_p99_us"]),
                range(v, "dd_cpu_s_per_gib", 2),
                fnum(&v["dd_cpu_busy"]),
                fnum(&v["dom0_cpu_busy"]),
                vs
            );
        }
    }
    println!();
    for b in backends {
        for (key, v) in r[b]["workloads"].as_object().into_iter().flatten() {
            if let Some(p) = v.get("psync") {
                let fio = v.get("fio_iops").map(|f| format!(", fio io_uring {:.0} IOPS", fnum(f))).unwrap_or_default();
                println!(
                    "load tool cross-check, {b} {key}: blkload io_uring {:.0} IOPS (median), psync threads {:.0} IOPS{fio}",
                    fnum(&v["iops"]),
                    fnum(&p["iops"])
                );
            }
        }
    }
    println!();
    for b in backends {
        let x = &r[b];
        println!(
            "{b:<14} ({}) xl create {:>5}s  boot->ready {:>5}s  attach->InitWait {:>5}s  memory {:>4} MiB  idle CPU {} s/s  dd 1M read {} MiB/s",
            x["driver_domain"].as_str().unwrap_or("?"), x["xl_create_s"], x["boot_to_ready_s"], x["attach_to_initwait_s"], x["memory_mib"], x["idle_cpu_s_per_s"], x["dd_read_1m_mib_s"]
        );
    }
}

/// A grouped bar chart (throughput relative to the first backend, per workload) as SVG.
fn chart_svg(backends: &[String], r: &BTreeMap<String, Value>, title: &str) -> String {
    let colors = ["#777777", "#d95f02", "#1b9e77", "#7570b3", "#e7298a", "#66a61e", "#a6761d", "#1f78b4", "#e6ab02"];
    let (w, h, left, top, bottom) = (1100.0, 520.0, 70.0, 60.0, 110.0);
    let plot_h = h - top - bottom;
    let present: Vec<&(&str, u32, u32)> = WORKLOADS
        .iter()
        .filter(|(rw, bs, qd)| backends.iter().any(|b| !r[b]["workloads"][&format!("{rw}.{bs}.{qd}")].is_null()))
        .collect();
    let groups = present.len().max(1) as f64;
    let gw = (w - left - 20.0) / groups;
    let bw = (gw - 16.0) / backends.len() as f64;
    let ratios: Vec<Vec<f64>> = present
        .iter()
        .map(|(rw, bs, qd)| {
            let key = format!("{rw}.{bs}.{qd}");
            backends
                .iter()
                .map(|b| {
                    let base = baseline(b, backends).unwrap_or(&backends[0]);
                    fnum(&r[b]["workloads"][&key]["iops"]) / fnum(&r[base]["workloads"][&key]["iops"])
                })
                .collect()
        })
        .collect();
    let max = ratios.iter().flatten().copied().filter(|x| x.is_finite()).fold(1.0f64, f64::max).ceil().max(2.0);
    let y = |v: f64| top + plot_h * (1.0 - v / max);
    let mut s = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" font-family=\"sans-serif\" font-size=\"12\">\n\
         <rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n\
         <text x=\"{left}\" y=\"28\" font-size=\"17\">{title}</text>\n"
    );
    let mut t = 0.0;
    while t <= max {
        s += &format!(
            "<line x1=\"{left}\" x2=\"{}\" y1=\"{:.1}\" y2=\"{:.1}\" stroke=\"#dddddd\"/><text x=\"{}\" y=\"{:.1}\" text-anchor=\"end\">{t:.1}x</text>\n",
            w - 20.0,
            y(t),
            y(t),
            left - 6.0,
            y(t) + 4.0
        );
        t += if max > 6.0 { 1.0 } else { 0.5 };
    }
    for (gi, ((rw, bs, qd), rs)) in present.iter().zip(&ratios).enumerate() {
        let gx = left + gi as f64 * gw + 8.0;
        for (bi, v) in rs.iter().enumerate() {
            let v = if v.is_finite() { *v } else { 0.0 };
            let x = gx + bi as f64 * bw;
            s += &format!(
                "<rect x=\"{x:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{:.1}\" fill=\"{}\"/>\n<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\" font-size=\"9\">{v:.2}</text>\n",
                y(v),
                bw - 2.0,
                (top + plot_h - y(v)).max(0.0),
                colors[bi % colors.len()],
                x + bw / 2.0 - 1.0,
                y(v) - 3.0
            );
        }
        s += &format!(
            "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text>\n",
            gx + gw / 2.0 - 8.0,
            top + plot_h + 18.0,
            workload_name(rw, *bs, *qd)
        );
    }
    // The legend's entries share the chart's width (nine fit: the longest name is short).
    let step = ((w - left - 20.0) / backends.len().max(1) as f64).min(145.0);
    for (bi, b) in backends.iter().enumerate() {
        let x = left + bi as f64 * step;
        s += &format!(
            "<rect x=\"{x}\" y=\"{}\" width=\"14\" height=\"14\" fill=\"{}\"/><text x=\"{}\" y=\"{}\">{b}</text>\n",
            h - 40.0,
            colors[bi % colors.len()],
            x + 20.0,
            h - 28.0
        );
    }
    s += &format!("<text x=\"{left}\" y=\"{}\" fill=\"#555555\">throughput (IOPS) relative to the Linux driver domain doing the same job ({}); O_DIRECT from dom0, driver domain alone on its CPU</text>\n", h - 8.0, if backends.iter().any(|b| b.ends_with("-nbd")) {"linux, linux-nbd"} else {"linux"});
    s += "</svg>\n";
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_names_each_backend_its_domain_disk_and_target() {
        let sel: Vec<String> = ["linux", "uk-pool1056", "dom0-null", "uk-nbd"].iter().map(|s| s.to_string()).collect();
        let t = backend_table(&sel, 128).unwrap();
        let rows: Vec<Vec<&str>> = t.lines().map(|l| l.split('\t').collect()).collect();
        assert_eq!(rows[0], ["linux", "linux-dd", "xvdb", "51728", "/dev/ram0"]);
        assert_eq!(rows[1], ["uk-pool1056", "uk-dd", "xvdc", "51744", "ram:160M:pool=1056"]);
        assert_eq!(rows[2], ["dom0-null", "-", "xvdd", "51760", "-"]);
        assert_eq!(rows[3], ["uk-nbd", "uk-nbd", "xvde", "51776", "nbd://192.0.2.1/disk0"]);
        assert!(backend_table(&["nope".to_string()], 128).is_err());
        // dom0-null has no driver domain, but its CPU is dom0's.
        assert_eq!(backend("dom0-null").map(|b| b.server.cpu_domain()), Some("Domain-0"));
        assert_eq!(backend("uk-noop").map(|b| b.server.cpu_domain()), Some("uk-dd"));
    }
}
