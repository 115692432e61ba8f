//! `blkload`: the test bed's block load generator, run inside dom0 against a frontend
//! disk. It reports what fio would (MiB/s, IOPS, latency p50/p99) for one workload.
//!
//! Queue depth N is N threads each doing synchronous `pread`/`pwrite` on its own O_DIRECT
//! descriptor (fio's `ioengine=psync, numjobs=N`): every thread keeps exactly one request
//! in flight, so the block layer sees N outstanding requests. It needs no libaio and no
//! `unsafe`. Sequential workloads share one offset counter so the N threads walk the span
//! together; random ones draw block-aligned offsets from a per-thread xorshift.
//!
//! Output: one line `METRIC bench.<label> <json>` on stdout.
#![allow(
    clippy::cast_possible_truncation,
    clippy::cast_precision_loss,
    clippy::cast_sign_loss
)]

use std::fs::OpenOptions;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// `O_DIRECT` on x86_64 Linux (`asm-generic/fcntl.h`).
const O_DIRECT: i32 = 0o40000;
const ALIGN: usize = 4096;

#[derive(Debug, Clone)]
struct Args {
    dev: String,
    write: bool,
    random: bool,
    bs: usize,
    qd: usize,
    seconds: f64,
    span: u64,
    label: String,
}

fn parse() -> Result<Args, String> {
    let mut a = Args {
        dev: String::new(),
        write: false,
        random: false,
        bs: 4096,
        qd: 1,
        seconds: 5.0,
        span: 0,
        label: "run".into(),
    };
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let mut it = argv.iter();
    while let Some(k) = it.next() {
        let mut v = || it.next().cloned().ok_or(format!("{k} needs a value"));
        match k.as_str() {
            "--dev" => a.dev = v()?,
            "--rw" => match v()?.as_str() {
                "read" => (a.write, a.random) = (false, false),
                "write" => (a.write, a.random) = (true, false),
                "randread" => (a.write, a.random) = (false, true),
                "randwrite" => (a.write, a.random) = (true, true),
                o => return Err(format!("--rw {o}: read|write|randread|randwrite")),
            },
            "--bs" => a.bs = v()?.parse().map_err(|e| format!("--bs: {e}"))?,
            "--qd" => a.qd = v()?.parse().map_err(|e| format!("--qd: {e}"))?,
            "--seconds" => a.seconds = v()?.parse().map_err(|e| format!("--seconds: {e}"))?,
            "--span-mib" => {
                a.span = v()?
                    .parse::<u64>()
                    .map_err(|e| format!("--span-mib: {e}"))?
                    << 20
            }
            "--label" => a.label = v()?,
            o => return Err(format!("unknown argument {o}")),
        }
    }
    if a.dev.is_empty() || a.bs == 0 || !a.bs.is_multiple_of(512) || a.qd == 0 || a.qd > 256 {
        return Err("usage: blkload --dev DEV --rw read|write|randread|randwrite --bs N --qd N --seconds S [--span-mib M] [--label L]".into());
    }
    Ok(a)
}

/// A `bs`-byte window of a buffer, aligned for O_DIRECT, found without `unsafe`.
fn aligned(buf: &mut [u8], bs: usize) -> &mut [u8] {
    let addr = buf.as_ptr() as usize;
    let off = (ALIGN - addr % ALIGN) % ALIGN;
    &mut buf[off..off + bs]
}

fn worker(
    a: &Args,
    seq: &AtomicU64,
    seed: u64,
    deadline: Instant,
) -> Result<(u64, Vec<u32>), String> {
    let f = OpenOptions::new()
        .read(true)
        .write(a.write)
        .custom_flags(O_DIRECT)
        .open(&a.dev)
        .map_err(|e| format!("{}: {e}", a.dev))?;
    let mut raw = vec![0u8; a.bs + ALIGN];
    let buf = aligned(&mut raw, a.bs);
    let mut x = seed | 1;
    for b in buf.iter_mut() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        *b = x as u8;
    }
    let blocks = (a.span / a.bs as u64).max(1);
    let mut lat = Vec::with_capacity(4096);
    let mut bytes = 0u64;
    while Instant::now() < deadline {
        let block = if a.random {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x % blocks
        } else {
            seq.fetch_add(1, Ordering::Relaxed) % blocks
        };
        let off = block * a.bs as u64;
        let t = Instant::now();
        let n = if a.write {
            f.write_at(buf, off)
        } else {
            f.read_at(buf, off)
        }
        .map_err(|e| format!("{} at {off}: {e}", if a.write { "write" } else { "read" }))?;
        if n != a.bs {
            return Err(format!("short I/O at {off}: {n} of {}", a.bs));
        }
        lat.push(t.elapsed().as_micros().min(u128::from(u32::MAX)) as u32);
        bytes += n as u64;
    }
    Ok((bytes, lat))
}

fn main() {
    let a = match parse() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("blkload: {e}");
            std::process::exit(2);
        }
    };
    let mut a = a;
    if a.span == 0 {
        // The whole device.
        a.span = std::fs::File::open(&a.dev)
            .and_then(|f| {
                use std::io::{Seek, SeekFrom};
                let mut f = f;
                f.seek(SeekFrom::End(0))
            })
            .unwrap_or(0);
    }
    let a = Arc::new(a);
    let seq = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let deadline = start + Duration::from_secs_f64(a.seconds);
    let handles: Vec<_> = (0..a.qd)
        .map(|i| {
            let (a, seq) = (Arc::clone(&a), Arc::clone(&seq));
            std::thread::spawn(move || {
                worker(
                    &a,
                    &seq,
                    0x9E37_79B9_7F4A_7C15 ^ ((i as u64 + 1) * 0x1000_0001),
                    deadline,
                )
            })
        })
        .collect();
    let mut bytes = 0u64;
    let mut lat: Vec<u32> = Vec::new();
    for h in handles {
        match h.join() {
            Ok(Ok((b, l))) => {
                bytes += b;
                lat.extend(l);
            }
            Ok(Err(e)) => {
                eprintln!("blkload: {e}");
                std::process::exit(1);
            }
            Err(_) => {
                eprintln!("blkload: a worker panicked");
                std::process::exit(1);
            }
        }
    }
    let secs = start.elapsed().as_secs_f64();
    lat.sort_unstable();
    let pct = |p: f64| -> u32 {
        if lat.is_empty() {
            0
        } else {
            lat[((lat.len() - 1) as f64 * p).round() as usize]
        }
    };
    let ios = lat.len() as u64;
    let j = serde_json::json!({
        "rw": if a.write { if a.random { "randwrite" } else { "write" } } else if a.random { "randread" } else { "read" },
        "bs": a.bs,
        "qd": a.qd,
        "bytes": bytes,
        "ios": ios,
        "secs": secs,
        "mib_s": bytes as f64 / 1_048_576.0 / secs,
        "iops": ios as f64 / secs,
        "lat_p50_us": pct(0.50),
        "lat_p99_us": pct(0.99),
    });
    println!("METRIC bench.{} {}", a.label, j);
}
