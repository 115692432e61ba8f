//! `cargo xtask bench`: the O_DIRECT workload matrix from a dom0 frontend against each
//! backend, in one boot of the test bed so the figures compare. Prints a table, writes
//! JSON under `target/bench/`.
//!
//! dom0 runs on emulated CPU 0 and the driver domain alone on CPU 1 (shared/testbed.md),
//! so frontend and backend do not share a CPU.
use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{json, Value};

use crate::cpio::Entry;
use crate::images;
use crate::sh::{self, Result};
use crate::testbed::{self, Outcome, Run};

/// Backends the bench knows; the unikernel joins when it can serve a disk.
const BACKENDS: &[&str] = &["linux"];

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

/// Builds the load tool (release) that runs in dom0.
pub fn build_blkload() -> Result<std::path::PathBuf> {
    sh::timed("build blkload (release)", || {
        sh::output(sh::cmd("cargo").current_dir(sh::root()).args([
            "build",
            "--release",
            "-q",
            "-p",
            "xtask",
            "--bin",
            "blkload",
        ]))
        .map(|_| ())
    })?;
    Ok(sh::root().join("target/release/blkload"))
}

pub fn cmd_bench(args: &[String]) -> Result<i32> {
    let mut backends: Vec<String> = BACKENDS.iter().map(|s| (*s).to_string()).collect();
    let mut seconds = 8u32;
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
            "--seconds" => {
                seconds = it.next().ok_or("--seconds needs a value")?.parse().map_err(|e| format!("--seconds: {e}"))?;
            }
            o => return Err(format!("unknown bench argument `{o}`")),
        }
    }
    let images = images::build()?;
    let blkload = build_blkload()?;
    let workloads: Vec<String> = WORKLOADS.iter().map(|(rw, bs, qd)| format!("{rw}:{bs}:{qd}")).collect();
    let env = format!(
        "BACKENDS=\"{}\"\nWORKLOADS=\"{}\"\nSECONDS_PER={seconds}\nSPAN_MIB={SPAN_MIB}\n",
        backends.join(" "),
        workloads.join(" ")
    );
    let per_backend = 60 + u64::from(seconds) * WORKLOADS.len() as u64 * 2;
    let run = Run {
        name: "bench",
        script: sh::root().join("images/testbed/scenarios/bench.sh"),
        extra: vec![
            ("usr/bin/blkload".into(), Entry::File { src: blkload, mode: 0o755 }),
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
            let mut v: Value = report
                .metric(&format!("bench.{b}.{key}"))
                .and_then(|s| serde_json::from_str(s).ok())
                .ok_or(format!("no result for {b} {key}"))?;
            let cpu: f64 =
                report.metric(&format!("{b}.{key}.dd_cpu_s")).and_then(|s| s.parse().ok()).unwrap_or(f64::NAN);
            let gib = v["bytes"].as_f64().unwrap_or(0.0) / f64::from(1u32 << 30);
            v["dd_cpu_s"] = json!(cpu);
            v["dd_cpu_s_per_gib"] = json!(if gib > 0.0 { cpu / gib } else { f64::NAN });
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
                "create_to_ready_s": fig("create_to_ready_s"),
                "create_to_initwait_s": fig("create_to_initwait_s"),
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
                 create_to_initwait_s = xl create until the backend reached InitWait for a disk attached as soon as the domain said it was ready",
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
    Ok(0)
}

fn print_table(backends: &[String], r: &BTreeMap<String, Value>) {
    println!();
    println!(
        "{:<22} {:>9} {:>9} {:>9} {:>9} {:>11}  backend",
        "workload", "MiB/s", "IOPS", "p50 us", "p99 us", "cpu s/GiB"
    );
    for (rw, bs, qd) in WORKLOADS {
        let key = format!("{rw}.{bs}.{qd}");
        let name =
            format!("{rw} {} qd{qd}", if *bs >= 1 << 20 { format!("{}M", bs >> 20) } else { format!("{}K", bs >> 10) });
        for b in backends {
            let v = &r[b]["workloads"][&key];
            let base = &r[&backends[0]]["workloads"][&key];
            let ratio = if b == &backends[0] {
                String::new()
            } else {
                format!(
                    "  ({:.2}x IOPS of {})",
                    v["iops"].as_f64().unwrap_or(0.0) / base["iops"].as_f64().unwrap_or(f64::NAN),
                    backends[0]
                )
            };
            println!(
                "{:<22} {:>9.1} {:>9.0} {:>9} {:>9} {:>11.2}  {b}{ratio}",
                name,
                v["mib_s"].as_f64().unwrap_or(0.0),
                v["iops"].as_f64().unwrap_or(0.0),
                v["lat_p50_us"].as_u64().unwrap_or(0),
                v["lat_p99_us"].as_u64().unwrap_or(0),
                v["dd_cpu_s_per_gib"].as_f64().unwrap_or(f64::NAN),
            );
        }
    }
    println!();
    for b in backends {
        let x = &r[b];
        println!(
            "{b}: xl create {}s, create->ready {}s, create->InitWait {}s, memory {} MiB, idle CPU {} s/s, dd 1M O_DIRECT read {} MiB/s",
            x["xl_create_s"], x["create_to_ready_s"], x["create_to_initwait_s"], x["memory_mib"], x["idle_cpu_s_per_s"], x["dd_read_1m_mib_s"]
        );
    }
}
