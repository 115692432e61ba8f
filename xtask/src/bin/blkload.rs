//! `blkload`: the test bed's block load generator, run inside dom0 against a frontend
//! disk. It reports what fio would (MiB/s, IOPS, latency p50/p99) for one workload.
//!
//! Two engines (`--engine`):
//! - `uring` (the bench's): one thread keeps N requests in flight through io_uring on one
//!   O_DIRECT descriptor (fio's `ioengine=io_uring, iodepth=N`): submissions and reaps are
//!   batched, so queue depth N is N requests at the device, not N sleeping threads. Its
//!   few `unsafe` blocks hand buffers to the kernel (test tooling for dom0, like
//!   `hostile-fe`; the product's `unsafe` stays in `kernel/`).
//! - `psync`: N threads each doing synchronous `pread`/`pwrite` on its own O_DIRECT
//!   descriptor (fio's `ioengine=psync, numjobs=N`): a syscall, two context switches and a
//!   wake-up per I/O; kept as a cross-check of the load tool itself.
//!
//! Sequential workloads share one offset counter so the requests walk the span together;
//! random ones draw block-aligned offsets from a xorshift.
//!
//! Output: one line `METRIC bench.<label> <json>` on stdout.
//!
//! `blkload --verify --dev DEV --span-mib M [--seed S] [--ops N]` instead checks data: every
//! I/O size from 512 B to 4 MiB written sequentially, then N writes and reads of random
//! sizes at random 512-byte-aligned offsets, everything read back with O_DIRECT and compared
//! with an in-memory model of the span. Prints `METRIC verify <json>`; exits 1 on the first
//! mismatch (with where it is). `--inject-loss OFF` (the harness's negative self-check) writes
//! one 4 KiB block at OFF behind the model's back just before the final read-back, as a
//! backend that lost or misplaced a write would: the run must then fail.
#![allow(clippy::cast_possible_truncation, clippy::cast_precision_loss, clippy::cast_sign_loss)]

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
    uring: bool,
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
        uring: false,
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
            "--span-mib" => a.span = v()?.parse::<u64>().map_err(|e| format!("--span-mib: {e}"))? << 20,
            "--label" => a.label = v()?,
            "--engine" => match v()?.as_str() {
                "uring" => a.uring = true,
                "psync" => a.uring = false,
                o => return Err(format!("--engine {o}: uring|psync")),
            },
            o => return Err(format!("unknown argument {o}")),
        }
    }
    if a.dev.is_empty() || a.bs == 0 || !a.bs.is_multiple_of(512) || a.qd == 0 || a.qd > 256 {
        return Err("usage: blkload --dev DEV --rw read|write|randread|randwrite --bs N --qd N --seconds S [--span-mib M] [--label L] [--engine uring|psync]".into());
    }
    Ok(a)
}

/// A `bs`-byte window of a buffer, aligned for O_DIRECT, found without `unsafe`.
fn aligned(buf: &mut [u8], bs: usize) -> &mut [u8] {
    let addr = buf.as_ptr() as usize;
    let off = (ALIGN - addr % ALIGN) % ALIGN;
    &mut buf[off..off + bs]
}

/// The device, O_DIRECT, writable only for write workloads.
fn open_direct(a: &Args) -> Result<std::fs::File, String> {
    OpenOptions::new()
        .read(true)
        .write(a.write)
        .custom_flags(O_DIRECT)
        .open(&a.dev)
        .map_err(|e| format!("{}: {e}", a.dev))
}

fn worker(a: &Args, seq: &AtomicU64, seed: u64, deadline: Instant) -> Result<(u64, Vec<u32>), String> {
    let f = open_direct(a)?;
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
        let n = if a.write { f.write_at(buf, off) } else { f.read_at(buf, off) }
            .map_err(|e| format!("{} at {off}: {e}", if a.write { "write" } else { "read" }))?;
        if n != a.bs {
            return Err(format!("short I/O at {off}: {n} of {}", a.bs));
        }
        lat.push(t.elapsed().as_micros().min(u128::from(u32::MAX)) as u32);
        bytes += n as u64;
    }
    Ok((bytes, lat))
}

/// Sizes the verify mode walks through, 512 B to 4 MiB.
const VERIFY_SIZES: [usize; 9] = [512, 1024, 4096, 8192, 65536, 131072, 1 << 20, 3 << 20, 4 << 20];

fn rng(x: &mut u64) -> u64 {
    *x ^= *x << 13;
    *x ^= *x >> 7;
    *x ^= *x << 17;
    *x
}

fn verify_main(argv: &[String]) -> i32 {
    let mut dev = String::new();
    let mut span_mib = 16usize;
    let mut seed = 1u64;
    let mut ops = 200usize;
    let mut inject: Option<usize> = None;
    let mut it = argv.iter();
    while let Some(k) = it.next() {
        let v = it.next().cloned().unwrap_or_default();
        match k.as_str() {
            "--dev" => dev = v,
            "--span-mib" => span_mib = v.parse().unwrap_or(16),
            "--seed" => seed = v.parse().unwrap_or(1),
            "--ops" => ops = v.parse().unwrap_or(200),
            "--inject-loss" => inject = v.parse::<usize>().ok().map(|o| o & !(ALIGN - 1)),
            _ => {}
        }
    }
    let span = span_mib << 20;
    let f = match OpenOptions::new().read(true).write(true).custom_flags(O_DIRECT).open(&dev) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("blkload: {dev}: {e}");
            return 1;
        }
    };
    let max = *VERIFY_SIZES.last().unwrap_or(&4096);
    let mut raw = vec![0u8; max + ALIGN];
    let mut model = vec![0u8; span];
    let mut x = seed | 1;
    let mut written = 0u64;
    let mut checks = 0u64;
    // The disk holds whatever earlier runs left: start the model from what it reads.
    let mut off = 0;
    while off < span {
        let len = (1 << 20).min(span - off);
        let buf = aligned(&mut raw, len);
        if let Err(e) = f.read_exact_at(buf, off as u64) {
            eprintln!("blkload: initial read {len} at {off}: {e}");
            return 1;
        }
        model[off..off + len].copy_from_slice(buf);
        off += len;
    }
    let mut io = |write: bool, off: usize, len: usize, model: &mut Vec<u8>, x: &mut u64| -> Result<(), String> {
        let buf = aligned(&mut raw, len);
        if write {
            for b in buf.iter_mut() {
                *b = rng(x) as u8;
            }
            f.write_all_at(buf, off as u64).map_err(|e| format!("write {len} at {off}: {e}"))?;
            model[off..off + len].copy_from_slice(buf);
        } else {
            f.read_exact_at(buf, off as u64).map_err(|e| format!("read {len} at {off}: {e}"))?;
            if buf[..] != model[off..off + len] {
                let want = &model[off..off + len];
                let first = buf.iter().zip(want).position(|(a, b)| a != b).unwrap_or(0);
                let last = buf.iter().zip(want).rposition(|(a, b)| a != b).unwrap_or(0);
                let ndiff = buf.iter().zip(want).filter(|(a, b)| a != b).count();
                let zeros = buf[first..=last].iter().all(|&b| b == 0);
                return Err(format!(
                    "MISMATCH reading {len} bytes at {off}: {ndiff} bytes differ, from {} to {} (disk offsets){}",
                    off + first,
                    off + last,
                    if zeros { ", read back as zeroes" } else { "" }
                ));
            }
        }
        Ok(())
    };
    let mut inject_buf = vec![0u8; 2 * ALIGN];
    let mut run = || -> Result<(), String> {
        // Sequential: each size, back to back from the start, then read back.
        let mut off = 0;
        for &len in &VERIFY_SIZES {
            if off + len > span {
                off = 0;
            }
            io(true, off, len, &mut model, &mut x)?;
            io(false, off, len, &mut model, &mut x)?;
            written += len as u64;
            checks += 1;
            off += len;
        }
        // Random sizes and offsets; reads interleaved.
        for _ in 0..ops {
            let len = VERIFY_SIZES[(rng(&mut x) % VERIFY_SIZES.len() as u64) as usize].min(span);
            let off = (rng(&mut x) as usize % (span - len + 1)) & !511;
            let write = rng(&mut x).is_multiple_of(2);
            io(write, off, len, &mut model, &mut x)?;
            if write {
                written += len as u64;
            }
            checks += 1;
        }
        if let Some(at) = inject.filter(|&at| at + ALIGN <= span) {
            let buf = aligned(&mut inject_buf, ALIGN);
            buf.fill(0x5A);
            f.write_all_at(buf, at as u64).map_err(|e| format!("inject at {at}: {e}"))?;
            eprintln!("blkload: injected a lost write: 4096 bytes at {at} changed behind the model");
        }
        // The whole span, in 1 MiB reads.
        let mut off = 0;
        while off < span {
            let len = (1 << 20).min(span - off);
            io(false, off, len, &mut model, &mut x)?;
            checks += 1;
            off += len;
        }
        Ok(())
    };
    let r = run();
    let ok = r.is_ok();
    if let Err(e) = &r {
        eprintln!("blkload: verify: {e}");
    }
    println!(
        "METRIC verify {}",
        serde_json::json!({ "ok": ok, "written": written, "checks": checks, "span": span, "error": r.err() })
    );
    i32::from(!ok)
}

fn main() {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    if argv.first().is_some_and(|a| a == "--verify") {
        std::process::exit(verify_main(&argv[1..]));
    }
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
    let (bytes, lat) = if a.uring {
        match uring::run(&a, deadline) {
            Ok(r) => r,
            Err(e) => {
                eprintln!("blkload: {e}");
                std::process::exit(1);
            }
        }
    } else {
        threads(&a, &seq, deadline)
    };
    report(&a, start, bytes, lat);
}

/// The `psync` engine: N threads, one request each.
fn threads(a: &Arc<Args>, seq: &Arc<AtomicU64>, deadline: Instant) -> (u64, Vec<u32>) {
    let handles: Vec<_> = (0..a.qd)
        .map(|i| {
            let (a, seq) = (Arc::clone(a), Arc::clone(seq));
            std::thread::spawn(move || {
                worker(&a, &seq, 0x9E37_79B9_7F4A_7C15 ^ ((i as u64 + 1) * 0x1000_0001), deadline)
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
    (bytes, lat)
}

fn report(a: &Args, start: Instant, bytes: u64, mut lat: Vec<u32>) {
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
        "engine": if a.uring { "uring" } else { "psync" },
        "bytes": bytes,
        "ios": ios,
        "secs": secs,
        "mib_s": bytes as f64 / 1_048_576.0 / secs,
        "iops": ios as f64 / secs,
        "lat_p50_us": pct(0.50),
        "lat_p99_us": pct(0.99),
        "lat_max_us": pct(1.0),
    });
    println!("METRIC bench.{} {}", a.label, j);
}

/// The `uring` engine: N requests in flight from one thread.
mod uring {
    use std::os::fd::AsRawFd;
    use std::time::Instant;

    use io_uring::{opcode, types, IoUring};

    use super::{Args, ALIGN};

    /// One request slot: its buffer (owned here for the whole run, so the kernel's view of
    /// it never dangles) and when its request was submitted.
    struct Slot {
        raw: Vec<u8>,
        off: usize,
        started: Instant,
    }

    pub fn run(a: &Args, deadline: Instant) -> Result<(u64, Vec<u32>), String> {
        let f = super::open_direct(a)?;
        let fd = types::Fd(f.as_raw_fd());
        let qd = u32::try_from(a.qd).map_err(|_| "queue depth")?;
        let mut ring = IoUring::new(qd.next_power_of_two()).map_err(|e| format!("io_uring_setup: {e}"))?;
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut slots: Vec<Slot> = (0..a.qd)
            .map(|_| {
                let mut raw = vec![0u8; a.bs + ALIGN];
                let off = (ALIGN - raw.as_ptr() as usize % ALIGN) % ALIGN;
                for b in &mut raw[off..off + a.bs] {
                    *b = super::rng(&mut x) as u8;
                }
                Slot { raw, off, started: Instant::now() }
            })
            .collect();
        let blocks = (a.span / a.bs as u64).max(1);
        let mut seq = 0u64;
        let mut next_offset = |x: &mut u64| {
            let block = if a.random {
                super::rng(x) % blocks
            } else {
                seq += 1;
                (seq - 1) % blocks
            };
            block * a.bs as u64
        };
        let mut lat = Vec::with_capacity(65536);
        let (mut bytes, mut in_flight) = (0u64, 0usize);
        let submit = |ring: &mut IoUring, i: usize, slot: &mut Slot, off: u64| -> Result<(), String> {
            let buf = slot.raw[slot.off..slot.off + a.bs].as_mut_ptr();
            let len = a.bs as u32;
            let e = if a.write {
                opcode::Write::new(fd, buf, len).offset(off).build()
            } else {
                opcode::Read::new(fd, buf, len).offset(off).build()
            }
            .user_data(i as u64);
            slot.started = Instant::now();
            // SAFETY: the buffer is the slot's, which lives (and is not touched) until this
            // request's completion is reaped below; the descriptor outlives the ring.
            unsafe { ring.submission().push(&e) }.map_err(|_| "submission queue full".to_string())
        };
        for (i, slot) in slots.iter_mut().enumerate() {
            submit(&mut ring, i, slot, next_offset(&mut x))?;
            in_flight += 1;
        }
        while in_flight > 0 {
            ring.submit_and_wait(1).map_err(|e| format!("io_uring_enter: {e}"))?;
            let done: Vec<(u64, i32)> = ring.completion().map(|c| (c.user_data(), c.result())).collect();
            for (i, res) in done {
                in_flight -= 1;
                let slot = slots.get_mut(i as usize).ok_or("bad completion")?;
                if res < 0 || res as usize != a.bs {
                    return Err(format!("{} returned {res}", if a.write { "write" } else { "read" }));
                }
                lat.push(slot.started.elapsed().as_micros().min(u128::from(u32::MAX)) as u32);
                bytes += a.bs as u64;
                if Instant::now() < deadline {
                    submit(&mut ring, i as usize, slot, next_offset(&mut x))?;
                    in_flight += 1;
                }
            }
        }
        Ok((bytes, lat))
    }
}
