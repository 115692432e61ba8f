//! `cargo xtask`: builds the image, builds and boots the nested Xen test bed, runs the
//! scenarios, benchmarks, and the whole test suite.
//!
//! Every external command is echoed; long steps print their elapsed time; QEMU is killed
//! on every exit path. See README.md for the commands.
#![allow(clippy::cast_possible_truncation, clippy::cast_sign_loss, clippy::cast_precision_loss)]

mod bench;
mod cpio;
mod host;
mod images;
mod kernel;
mod scenarios;
mod sh;
mod testbed;
mod xen;

use sh::Result;

const USAGE: &str = "\
usage: cargo xtask <command>

  demo                       boot the test bed: the Rust driver domain serves disks to Linux guests
  test                       everything CI runs: fmt, clippy, host tests, nested scenarios
  scenario <name> [-v]       run one nested scenario (`cargo xtask scenario list`)
  bench [--backend linux] [--seconds N]
                             O_DIRECT workloads from dom0, table on stdout, JSON in target/bench
  build [--no-net]           build the unikernel image (checks its PVH entry note, prints its size);
                             --no-net: without the vif, TCP/IP and nbd:// disks
  images                     build (or reuse) the test-bed images
  host-setup                 install the host packages the test bed and tests need
";

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let code = match dispatch(&args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("xtask: error: {e}");
            2
        }
    };
    std::process::exit(code);
}

fn dispatch(args: &[String]) -> Result<i32> {
    let verbose = args.iter().any(|a| a == "-v" || a == "--verbose");
    match args.first().map(String::as_str) {
        Some("host-setup") => host::ensure_host().map(|()| 0),
        Some("images") => images::build().map(|_| 0),
        Some("build") => match args.get(1).map(String::as_str) {
            None => kernel::build().map(|_| 0),
            Some("--no-net") => kernel::build_without_net().map(|_| 0),
            Some(o) => Err(format!("unknown build argument `{o}` (--no-net builds without networking)")),
        },
        Some("scenario") => match args.get(1).map(String::as_str) {
            None | Some("list") => {
                for s in scenarios::SCENARIOS {
                    println!("{:16} {}", s.name, s.about);
                }
                Ok(0)
            }
            Some(name) => scenarios::cmd_scenario(name, verbose),
        },
        Some("demo") => scenarios::cmd_scenario("unikernel-dd", false),
        Some("bench") => bench::cmd_bench(&args[1..]),
        Some("test") => cmd_test(),
        Some("-h" | "--help" | "help") | None => {
            print!("{USAGE}");
            Ok(0)
        }
        Some(other) => Err(format!("unknown command `{other}`\n{USAGE}")),
    }
}

/// shellcheck over every script of the test bed (POSIX sh, as busybox runs them), at
/// severity warning: style notes (quoting a number, `A && B || C`) are left to review.
fn shellcheck() -> Result<()> {
    let mut scripts = Vec::new();
    for dir in ["tests/testbed", "tests/testbed/roles", "tests/scenarios"] {
        let rd = std::fs::read_dir(sh::root().join(dir)).map_err(|e| format!("{dir}: {e}"))?;
        for entry in rd.flatten() {
            if entry.path().extension().is_some_and(|x| x == "sh") {
                scripts.push(entry.path());
            }
        }
    }
    scripts.sort();
    if scripts.is_empty() {
        return Err(String::from("no scripts found under tests/"));
    }
    sh::run(sh::cmd("shellcheck").current_dir(sh::root()).args(["-s", "sh", "-S", "warning"]).args(&scripts))
}

/// `cargo xtask test`: the whole suite, as CI runs it. Ends with one
/// `N passed, M failed` line.
fn cmd_test() -> Result<i32> {
    host::ensure_host()?;
    let mut passed = 0usize;
    let mut failed: Vec<String> = Vec::new();
    let cargo = "cargo";
    let mut check = |name: &str, r: Result<()>| match r {
        Ok(()) => {
            sh::say(format!("PASS {name}"));
            passed += 1;
        }
        Err(e) => {
            sh::say(format!("FAIL {name}: {e}"));
            failed.push(name.to_string());
        }
    };
    check("fmt", sh::run(sh::cmd(cargo).current_dir(sh::root()).args(["fmt", "--all", "--", "--check"])));
    // Clippy on the host build, then on the unikernel itself (the runtime's entry, exception
    // stubs, allocator and panic path only exist for the bare-metal target), with and
    // without its network stack.
    let clippy: [(&str, &[&str]); 3] = [
        ("clippy", &["--workspace", "--all-targets"]),
        (
            "clippy (unikernel target)",
            &["-p", "kernel", "-p", "xen-blkback-rs", "--target", kernel::TARGET, "--release"],
        ),
        (
            "clippy (unikernel target, without networking)",
            &["-p", "xen-blkback-rs", "--no-default-features", "--target", kernel::TARGET, "--release"],
        ),
    ];
    for (name, args) in clippy {
        let r = sh::run(sh::cmd(cargo).current_dir(sh::root()).arg("clippy").args(args).args(["--", "-D", "warnings"]));
        check(name, r);
    }
    // Broken intra-doc links fail (as rust-vmm's CI runs it).
    let mut doc = sh::cmd(cargo);
    doc.current_dir(sh::root()).args(["doc", "--workspace", "--no-deps"]).env("RUSTDOCFLAGS", "-D warnings");
    check("docs", sh::run(&mut doc));
    check("shellcheck", shellcheck());
    check("host tests", sh::run(sh::cmd(cargo).current_dir(sh::root()).args(["test", "--workspace"])));
    match images::build() {
        Ok(images) => {
            for sc in scenarios::SCENARIOS {
                let r = scenarios::run(&images, sc, false, Vec::new()).and_then(|report| {
                    let j = scenarios::judge(sc, &report);
                    if j.is_err() {
                        testbed::print_tails(&report, 40);
                    }
                    j
                });
                check(&format!("scenario {}", sc.name), r);
            }
        }
        Err(e) => check("test-bed images", Err(e)),
    }
    if !failed.is_empty() {
        sh::say(format!("failed: {}", failed.join(", ")));
    }
    println!("{passed} passed, {} failed", failed.len());
    Ok(i32::from(!failed.is_empty()))
}
