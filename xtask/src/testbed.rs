//! Boots QEMU (TCG) + Xen + dom0 with the stable configuration of docs/testbed.md,
//! watches the serial line, and maps the one `Test result:` line to an outcome.
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::cpio::{Archive, Entry};
use crate::images::{self, Images};
use crate::sh::{self, Result};

/// How a run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Success,
    /// A check failed (never retried).
    Failure(String),
    /// The scenario could not run its checks (set-up went wrong).
    Error(String),
    /// No result line: QEMU exited or the timeout passed first.
    Crash(String),
}

impl Outcome {
    pub fn exit_code(&self) -> i32 {
        match self {
            Outcome::Success => 0,
            Outcome::Failure(_) => 1,
            Outcome::Error(_) => 2,
            Outcome::Crash(_) => 3,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Report {
    pub outcome: Outcome,
    /// Lines that mean the emulation failed (segfaults, triple faults), not the project.
    pub testbed_faults: usize,
    pub steps: Vec<String>,
    pub last_step: Option<String>,
    /// `METRIC key value` lines, in order.
    pub metrics: Vec<(String, String)>,
    pub seconds: f64,
    pub log_dir: PathBuf,
}

impl Report {
    pub fn metric(&self, key: &str) -> Option<&str> {
        self.metrics.iter().rev().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }
}

/// One boot of the test bed.
#[derive(Debug)]
pub struct Run<'a> {
    pub name: &'a str,
    /// The dom0 script, run as `/scenario/run.sh`.
    pub script: PathBuf,
    /// Extra files laid over dom0's image (archive path → entry).
    pub extra: Vec<(String, Entry)>,
    pub timeout: Duration,
    /// Print every serial line (the demo), not just the protocol lines.
    pub verbose: bool,
    /// The backing file of an emulated NVMe controller behind an emulated VT-d, if the
    /// scenario wants one.
    pub nvme: Option<PathBuf>,
}

/// Kills QEMU on every exit path, including a panic or an early return.
struct KillOnDrop(Child);
impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The backing file of the NVMe controller's second namespace, next to the first's.
pub const NVME_NS2: &str = "nvme0n2.img";

const XEN_CMDLINE: &str = "console=com1 com1=115200,8n1 loglvl=all guest_loglvl=all \
    dom0_mem=1024M,max:1024M dom0_max_vcpus=1 dom0_vcpus_pin noreboot console_timestamps=boot \
    spec-ctrl=eager-fpu";
const DOM0_CMDLINE: &str = "console=hvc0 earlyprintk=xen loglevel=4";

fn is_fault(line: &str) -> bool {
    line.contains("segfault") || line.contains("Segmentation fault") || line.contains("Triple fault")
}

fn is_protocol(line: &str) -> bool {
    let l = line.strip_prefix('[').and_then(|r| r.split_once("] ")).map_or(line, |(_, rest)| rest);
    ["STEP ", "INFO ", "METRIC ", "Test result:", "TESTBED-END", "DD-", "FE-", "UK-", "BENCH "]
        .iter()
        .any(|p| l.starts_with(p))
        || is_fault(line)
}

pub fn boot(images: &Images, run: &Run<'_>) -> Result<Report> {
    let dir = images::cache_dir().join("runs").join(run.name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("consoles")).map_err(|e| e.to_string())?;

    // dom0's initrd: the cached base image with the scenario laid over it.
    let mut overlay = Archive::new();
    overlay.file("scenario/run.sh", &run.script, 0o644);
    for (at, entry) in &run.extra {
        overlay.insert(at, entry.clone());
    }
    let overlay_path = dir.join("overlay.cpio");
    images::write_archive(&overlay, &overlay_path)?;
    let initrd = dir.join("dom0.cpio");
    {
        let mut out = std::fs::File::create(&initrd).map_err(|e| e.to_string())?;
        for part in [&images.dom0_base, &overlay_path] {
            let mut f = std::fs::File::open(part).map_err(|e| format!("{}: {e}", part.display()))?;
            std::io::copy(&mut f, &mut out).map_err(|e| e.to_string())?;
        }
    }

    let mut qemu = sh::cmd("qemu-system-x86_64");
    qemu.args(["-machine", "q35", "-accel", "tcg,thread=multi"])
        .args(["-cpu", "max,-smap,-rdtscp,-avx,-avx2,-fma,-f16c", "-smp", "2", "-m", "3072"])
        .args(["-display", "none", "-monitor", "none", "-serial", "stdio", "-no-reboot"])
        // No emulated NIC: q35 would get QEMU's default one with user-mode networking; the
        // test bed's only network is dom0's bridge for the driver domain's vif.
        .args(["-nic", "none"]);
    if let Some(img) = &run.nvme {
        // Intel VT-d with interrupt remapping (Xen 4.17 accepts QEMU's DMAR table) and an
        // NVMe controller at 00:04.0: QEMU's xen-pt keeps a guest's slot 2 for graphics,
        // so the controller stays off it (docs/testbed.md, "PCI passthrough").
        // Two namespaces: 1 on `nvme0.img` (512-byte blocks), 2 on `nvme0n2.img` with 4 KiB
        // blocks (a 4Kn namespace: blkif sectors stay 512-byte units, `sector-size` says 4096).
        let ns2 = img.with_file_name(NVME_NS2);
        qemu.args(["-device", "intel-iommu,intremap=on"])
            .args(["-device", "nvme,id=nvc0,serial=nv0,addr=04.0"])
            .arg("-drive")
            .arg(format!("file={},if=none,id=nv0,format=raw", img.display()))
            .args(["-device", "nvme-ns,drive=nv0,bus=nvc0,nsid=1"])
            .arg("-drive")
            .arg(format!("file={},if=none,id=nv1,format=raw", ns2.display()))
            .args(["-device", "nvme-ns,drive=nv1,bus=nvc0,nsid=2,logical_block_size=4096,physical_block_size=4096"]);
    }
    qemu.arg("-kernel")
        .arg(&images.xen)
        .args(["-append", XEN_CMDLINE])
        .arg("-initrd")
        .arg(format!("{} {DOM0_CMDLINE},{}", images.vmlinuz.display(), initrd.display()))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(dir.join("qemu.stderr")).map_err(|e| e.to_string())?);
    sh::say(format!("boot test bed: {} (timeout {}s, logs in {})", run.name, run.timeout.as_secs(), dir.display()));
    let t0 = Instant::now();
    let mut child = KillOnDrop(qemu.spawn().map_err(|e| format!("qemu-system-x86_64: {e}"))?);
    let stdout = child.0.stdout.take().ok_or("no qemu stdout")?;

    // The reader stamps each line with seconds since QEMU start, files guests' lines
    // ("[<name>] ...", see dom0-init.sh) under consoles/, and forwards protocol lines.
    let (tx, rx) = mpsc::channel::<String>();
    let serial_path = dir.join("serial.log");
    let cons_dir = dir.join("consoles");
    let verbose = run.verbose;
    let reader = std::thread::spawn(move || -> std::io::Result<()> {
        let mut serial = std::io::BufWriter::new(std::fs::File::create(&serial_path)?);
        let mut consoles: std::collections::HashMap<String, std::fs::File> = Default::default();
        let mut r = BufReader::new(stdout);
        let mut buf = Vec::new();
        loop {
            buf.clear();
            if r.read_until(b'\n', &mut buf)? == 0 {
                break;
            }
            let line = String::from_utf8_lossy(&buf).trim_end_matches(['\r', '\n']).to_string();
            let stamped = format!("[{:7.2}] {line}", t0.elapsed().as_secs_f64());
            writeln!(serial, "{stamped}")?;
            serial.flush()?;
            if let Some((name, rest)) = line.strip_prefix('[').and_then(|r| r.split_once("] ")) {
                if !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
                    let f = match consoles.get_mut(name) {
                        Some(f) => f,
                        None => {
                            let f = std::fs::File::create(cons_dir.join(format!("{name}.log")))?;
                            consoles.entry(name.to_string()).or_insert(f)
                        }
                    };
                    writeln!(f, "[{:7.2}] {rest}", t0.elapsed().as_secs_f64())?;
                }
            }
            if verbose || is_protocol(&line) {
                eprintln!("  {stamped}");
            }
            if is_protocol(&line) && tx.send(line).is_err() {
                break;
            }
        }
        Ok(())
    });

    let mut seen = Parsed::default();
    let deadline = t0 + run.timeout;
    let mut exited = None;
    let mut ended = false;
    loop {
        match rx.recv_timeout(Duration::from_millis(200)) {
            Ok(line) => {
                seen.absorb(&line);
                if line == "TESTBED-END" {
                    // dom0 is done and synced; Xen's power-off adds nothing to check.
                    exited = child.0.try_wait().ok().flatten();
                    ended = true;
                    break;
                }
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                // QEMU closed its stdout: collect its exit status.
                exited = child.0.wait().ok();
                break;
            }
        }
        if let Ok(Some(st)) = child.0.try_wait() {
            exited = Some(st);
            // Drain what the reader still has.
            while let Ok(line) = rx.recv_timeout(Duration::from_millis(500)) {
                seen.absorb(&line);
            }
            break;
        }
        if Instant::now() > deadline {
            break;
        }
    }
    let seconds = t0.elapsed().as_secs_f64();
    let timed_out = exited.is_none() && !ended;
    drop(child); // kills QEMU if still running
    let _ = reader.join();

    let Parsed { steps, metrics, faults, result } = seen;
    let outcome = match result {
        Some(o) => o,
        None if timed_out => Outcome::Crash(format!("no result line within {}s", run.timeout.as_secs())),
        None => Outcome::Crash(format!(
            "QEMU exited ({}) without a result line",
            exited.map_or("?".into(), |s| s.to_string())
        )),
    };
    let report = Report {
        outcome,
        testbed_faults: faults,
        last_step: steps.last().cloned(),
        steps,
        metrics,
        seconds,
        log_dir: dir,
    };
    Ok(report)
}

/// What the protocol lines of one run said.
#[derive(Debug, Default)]
struct Parsed {
    steps: Vec<String>,
    metrics: Vec<(String, String)>,
    faults: usize,
    result: Option<Outcome>,
}

impl Parsed {
    fn absorb(&mut self, line: &str) {
        if is_fault(line) {
            self.faults += 1;
        }
        if line.starts_with('[') {
            return; // guests' lines never carry dom0's protocol
        }
        if let Some(s) = line.strip_prefix("STEP ") {
            self.steps.push(s.to_string());
        } else if let Some((k, v)) = line.strip_prefix("METRIC ").and_then(|m| m.split_once(' ')) {
            self.metrics.push((k.to_string(), v.trim().to_string()));
        } else if let Some(r) = line.strip_prefix("Test result: ") {
            // The first result line counts; dom0 prints exactly one.
            self.result.get_or_insert_with(|| {
                if r.trim() == "SUCCESS" {
                    Outcome::Success
                } else if let Some(m) = r.strip_prefix("FAILURE: ") {
                    Outcome::Failure(m.to_string())
                } else if let Some(m) = r.strip_prefix("ERROR: ") {
                    Outcome::Error(m.to_string())
                } else {
                    Outcome::Error(format!("unknown result line: {r}"))
                }
            });
        }
    }
}

/// Prints the tail of the serial log and of every guest console: what a developer needs
/// to see when a run fails.
pub fn print_tails(report: &Report, lines: usize) {
    let mut files = vec![report.log_dir.join("serial.log")];
    if let Ok(rd) = std::fs::read_dir(report.log_dir.join("consoles")) {
        let mut v: Vec<PathBuf> = rd.filter_map(|e| e.ok().map(|e| e.path())).collect();
        v.sort();
        files.extend(v);
    }
    for f in files {
        print_tail(&f, lines);
    }
}

fn print_tail(path: &Path, lines: usize) {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    eprintln!("----- last {} lines of {} -----", lines.min(all.len()), path.display());
    for l in &all[all.len().saturating_sub(lines)..] {
        eprintln!("  {l}");
    }
}

/// One line a human reads at the end of every run.
pub fn summarize(report: &Report) {
    let o = match &report.outcome {
        Outcome::Success => "SUCCESS".to_string(),
        Outcome::Failure(m) => format!("FAILURE: {m}"),
        Outcome::Error(m) => format!("ERROR: {m}"),
        Outcome::Crash(m) => format!("CRASH: {m}"),
    };
    sh::say(format!(
        "result: {o} ({:.1}s, {} steps, last step: {}); test-bed faults: {}",
        report.seconds,
        report.steps.len(),
        report.last_step.as_deref().unwrap_or("-"),
        report.testbed_faults
    ));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(lines: &[&str]) -> Parsed {
        let mut p = Parsed::default();
        for l in lines {
            p.absorb(l);
        }
        p
    }

    #[test]
    fn steps_metrics_and_the_first_result_line_count() {
        let p = parse(&[
            "STEP create the driver domain",
            "INFO uk-dd is domain 1",
            "METRIC uk.create_to_serving_s 0.52 ",
            "STEP attach",
            "Test result: FAILURE: attach: xvdb not Connected",
            "Test result: SUCCESS",
        ]);
        assert_eq!(p.steps, ["create the driver domain", "attach"]);
        assert_eq!(p.metrics, [("uk.create_to_serving_s".to_string(), "0.52".to_string())]);
        assert_eq!(p.result, Some(Outcome::Failure("attach: xvdb not Connected".into())));
        assert_eq!(p.faults, 0);
    }

    #[test]
    fn guests_lines_carry_no_protocol_but_their_faults_count() {
        let p = parse(&[
            "[fe-linux] Test result: SUCCESS",
            "[fe-linux] STEP not dom0's",
            "[fe-linux] busybox[42]: segfault at 0 ip 0",
            "Test result: ERROR: xenstored did not start",
        ]);
        assert!(p.steps.is_empty());
        assert_eq!(p.faults, 1);
        assert_eq!(p.result, Some(Outcome::Error("xenstored did not start".into())));
        assert_eq!(parse(&["Test result: MAYBE"]).result, Some(Outcome::Error("unknown result line: MAYBE".into())));
        assert_eq!(parse(&["STEP x"]).result, None, "no result line: the harness reports a crash");
    }
}
