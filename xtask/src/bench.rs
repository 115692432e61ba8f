//! `cargo xtask bench`: the O_DIRECT workload matrix from a dom0 frontend against each
//! backend, in one boot of the test bed so the figures compare. Prints a table, writes
//! JSON under `target/bench/`.
//!
//! dom0 runs on emulated CPU 0 and the driver domain alone on CPU 1 (docs/testbed.md),
//! so frontend and backend do not share a CPU.
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
const BACKENDS: &[&str] = &["linux", "uk-persistent", "uk-map", "uk-copy", "uk-null", "linux-nbd", "uk-nbd"];

/// The backend a row is compared with: the Linux driver domain doing the same job.
fn baseline<'a>(b: &str, backends: &'a [String]) -> Option<&'a String> {
    let want = if b.ends_with("-nbd") { "linux-nbd" } else { "linux" };
    backends.iter().find(|x| *x == want)
}

/// (rw, block size, queue depth): 1 MiB sequential read/write and 4 KiB random read/write,
/// each at queue depth 1 and 32.
const WORKLOADS: &[(&str, u32, u32)] = &[
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
    let mut backends: Vec<String> = BACKENDS.iter().map(|s| (*s).to_string()).collect();
    let mut seconds = 8u32;
    let mut only: Option<String> = None;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--backend" => {
                let v = it.next().ok_or("--backend needs a value")?;
                if v == "all" {
                    continue;
                }
                backends = v.split(',').map(str::to_string).collect();
                if let Some(b) = backends.iter().find(|b| !BACKENDS.contains(&b.as_str())) {
                    return Err(format!("unknown backend `{b}`; available: {}", BACKENDS.join(", ")));
                }
            }
            "--only" => {
                only = Some(it.next().ok_or("--only needs rw:bs:qd[,...]")?.clone());
            }
            "--seconds" => {
                seconds = it.next().ok_or("--seconds needs a value")?.parse().map_err(|e| format!("--seconds: {e}"))?;
            }
            o => return Err(format!("unknown bench argument `{o}`")),
        }
    }
    let images = images::build()?;
    let blkload = build_blkload()?;
    let uk = crate::kernel::build()?;
    let workloads: Vec<String> = WORKLOADS
        .iter()
        .map(|(rw, bs, qd)| format!("{rw}:{bs}:{qd}"))
        .filter(|w| only.as_ref().is_none_or(|o| o.split(',').any(|x| x == w)))
        .collect();
    let env = format!(
        "BACKENDS=\"{}\"\nWORKLOADS=\"{}\"\nSECONDS_PER={seconds}\nSPAN_MIB={SPAN_MIB}\n",
        backends.join(" "),
        workloads.join(" ")
    );
    let per_backend = 150 + u64::from(seconds) * WORKLOADS.len() as u64 * 2;
    let run = Run {
        name: "bench",
        script: sh::root().join("tests/scenarios/bench.sh"),
        extra: vec![
            ("usr/bin/blkload".into(), Entry::File { src: blkload, mode: 0o755 }),
            ("boot/xen-blkback-rs".into(), Entry::File { src: uk.clone(), mode: 0o644 }),
            ("scenario/bench.env".into(), Entry::Data { data: env.into_bytes(), mode: 0o644 }),
        ],
        timeout: Duration::from_secs(120 + per_backend * backends.len() as u64),
        verbose: false,
    };
    let report = testbed::boot(&images, &run)?;
    testbed::summarize(&report);
    if report.outcome != Outcome::Success {
        testbed::print_tails(&report, 40);
        return Err("the benchmark run did not complete".into());
    }

    // Collect: bench.<backend>.<rw>.<bs>.<qd> = blkload JSON; <backend>.<key> = figure.
    let mut results: BTreeMap<String, Value> = BTreeMap::new();
    for b in &backends {
        let mut w = serde_json::Map::new();
        for (rw, bs, qd) in WORKLOADS {
            let key = format!("{rw}.{bs}.{qd}");
            let Some(mut v): Option<Value> =
                report.metric(&format!("bench.{b}.{key}")).and_then(|s| serde_json::from_str(s).ok())
            else {
                if workloads.contains(&format!("{rw}:{bs}:{qd}")) {
                    return Err(format!("no result for {b} {key}"));
                }
                continue;
            };
            let cpu: f64 =
                report.metric(&format!("{b}.{key}.dd_cpu_s")).and_then(|s| s.parse().ok()).unwrap_or(f64::NAN);
            let dom0: f64 =
                report.metric(&format!("{b}.{key}.dom0_cpu_s")).and_then(|s| s.parse().ok()).unwrap_or(f64::NAN);
            let gib = v["bytes"].as_f64().unwrap_or(0.0) / f64::from(1u32 << 30);
            let secs = v["secs"].as_f64().unwrap_or(f64::NAN);
            v["dd_cpu_s"] = json!(cpu);
            v["dd_cpu_s_per_gib"] = json!(if gib > 0.0 { cpu / gib } else { f64::NAN });
            // Busy fractions of the two CPUs: which side is the bottleneck.
            v["dd_cpu_busy"] = json!(cpu / secs);
            v["dom0_cpu_s"] = json!(dom0);
            v["dom0_cpu_busy"] = json!(dom0 / secs);
            w.insert(key, v);
        }
        let fig = |k: &str| -> Value {
            report.metric(&format!("{b}.{k}")).and_then(|s| s.parse::<f64>().ok()).map_or(Value::Null, |x| json!(x))
        };
        results.insert(
            b.clone(),
            json!({
                "workloads": w,
                "xl_create_s": fig("xl_create_s"),
                "boot_to_ready_s": fig("boot_to_ready_s"),
                "attach_to_initwait_s": fig("attach_to_initwait_s"),
                "memory_mib": fig("memory_mib"),
                "dd_read_1m_mib_s": fig("dd_read_1m_mib_s"),
                "idle_cpu_s_per_s": fig("idle_cpu_s_per_s"),
            }),
        );
    }
    print_table(&backends, &results);
    let out = json!({
        "seconds_per_workload": seconds,
        "span_mib": SPAN_MIB,
        "run_seconds": report.seconds,
        "testbed_faults": report.testbed_faults,
        "note": "dom0 frontend on CPU 0, driver domain alone on CPU 1; QD N = N threads of O_DIRECT psync I/O; \
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
        &format!("xen-blkback-rs vs a Linux driver domain ({seconds}s per workload, TCG test bed)"),
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

fn print_table(backends: &[String], r: &BTreeMap<String, Value>) {
    println!();
    println!(
        "{:<18} {:<14} {:>9} {:>9} {:>9} {:>10} {:>8} {:>8} {:>12}",
        "workload", "backend", "MiB/s", "IOPS", "p99 us", "cpu s/GiB", "dd busy", "dom0 bsy", "IOPS/CPU vs"
    );
    for (rw, bs, qd) in WORKLOADS {
        let key = format!("{rw}.{bs}.{qd}");
        if backends.iter().all(|b| r[b]["workloads"][&key].is_null()) {
            continue;
        }
        for b in backends {
            let v = &r[b]["workloads"][&key];
            // IOPS and CPU per GiB relative to the Linux driver domain doing the same job.
            let ratio = match baseline(b, backends).filter(|x| *x != b) {
                Some(base) => {
                    let base = &r[base]["workloads"][&key];
                    format!(
                        "{:.2}x/{:.2}x",
                        fnum(&v["iops"]) / fnum(&base["iops"]),
                        fnum(&v["dd_cpu_s_per_gib"]) / fnum(&base["dd_cpu_s_per_gib"])
                    )
                }
                None => String::from("-"),
            };
            println!(
                "{:<18} {:<14} {:>9.1} {:>9.0} {:>9} {:>10.2} {:>8.2} {:>8.2} {:>12}",
                workload_name(rw, *bs, *qd),
                b,
                fnum(&v["mib_s"]),
                fnum(&v["iops"]),
                v["lat_p99_us"].as_u64().unwrap_or(0),
                fnum(&v["dd_cpu_s_per_gib"]),
                fnum(&v["dd_cpu_busy"]),
                fnum(&v["dom0_cpu_busy"]),
                ratio
            );
        }
    }
    println!();
    for b in backends {
        let x = &r[b];
        println!(
            "{b:<14} xl create {:>5}s  boot->ready {:>5}s  attach->InitWait {:>5}s  memory {:>4} MiB  idle CPU {} s/s  dd 1M read {} MiB/s",
            x["xl_create_s"], x["boot_to_ready_s"], x["attach_to_initwait_s"], x["memory_mib"], x["idle_cpu_s_per_s"], x["dd_read_1m_mib_s"]
        );
    }
}

/// A grouped bar chart (throughput relative to the first backend, per workload) as SVG.
fn chart_svg(backends: &[String], r: &BTreeMap<String, Value>, title: &str) -> String {
    let colors = ["#777777", "#d95f02", "#1b9e77", "#7570b3", "#e7298a", "#66a61e"];
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
    for (bi, b) in backends.iter().enumerate() {
        let x = left + bi as f64 * 145.0;
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
