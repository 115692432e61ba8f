//! Running host commands: every command is echoed before it runs, failures carry the
//! command line, and long steps report their elapsed time.
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::Instant;

pub type Result<T> = std::result::Result<T, String>;

fn start() -> Instant {
    static START: OnceLock<Instant> = OnceLock::new();
    *START.get_or_init(Instant::now)
}

/// Seconds since xtask started, for progress lines.
pub fn elapsed() -> f64 {
    start().elapsed().as_secs_f64()
}

/// A progress line: `[  12.3s] message`.
pub fn say(msg: impl AsRef<str>) {
    eprintln!("[{:7.1}s] {}", elapsed(), msg.as_ref());
}

/// Times a step and reports its duration when it ends.
pub fn timed<T>(what: &str, f: impl FnOnce() -> Result<T>) -> Result<T> {
    let t = Instant::now();
    say(format!("{what} ..."));
    let r = f();
    match &r {
        Ok(_) => say(format!("{what}: done in {:.1}s", t.elapsed().as_secs_f64())),
        Err(e) => say(format!("{what}: FAILED after {:.1}s: {e}", t.elapsed().as_secs_f64())),
    }
    r
}

fn describe(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for a in cmd.get_args() {
        s.push(' ');
        s.push_str(&a.to_string_lossy());
    }
    s
}

/// A command with the variables cargo sets for *this* build removed, so a nested cargo or
/// rustc does not inherit them (Hermit's xtask does the same).
pub fn cmd(program: impl AsRef<std::ffi::OsStr>) -> Command {
    let mut c = Command::new(program);
    for (k, _) in std::env::vars_os() {
        let k = k.to_string_lossy();
        if (k.starts_with("CARGO") && k != "CARGO_HOME" && k != "CARGO_TARGET_DIR")
            || k.starts_with("RUSTC")
            || k == "RUSTFLAGS"
            || k == "RUSTDOCFLAGS"
        {
            c.env_remove(k.as_ref());
        }
    }
    c
}

/// Runs a command with inherited stdio; an error names the command.
pub fn run(c: &mut Command) -> Result<()> {
    let d = describe(c);
    eprintln!("+ {d}");
    let st = c.status().map_err(|e| format!("{d}: {e}"))?;
    if st.success() {
        Ok(())
    } else {
        Err(format!("`{d}` failed: {st}"))
    }
}

/// Runs a command quietly, returning its output; an error carries stderr's tail.
pub fn output(c: &mut Command) -> Result<Output> {
    let d = describe(c);
    let o = c.stdin(Stdio::null()).output().map_err(|e| format!("{d}: {e}"))?;
    if o.status.success() {
        Ok(o)
    } else {
        let err = String::from_utf8_lossy(&o.stderr);
        let tail: Vec<&str> = err.lines().rev().take(15).collect();
        Err(format!("`{d}` failed: {}\n{}", o.status, tail.into_iter().rev().collect::<Vec<_>>().join("\n")))
    }
}

/// Runs a command and returns its stdout as text.
pub fn stdout(c: &mut Command) -> Result<String> {
    Ok(String::from_utf8_lossy(&output(c)?.stdout).into_owned())
}

/// The workspace root (xtask lives one level below it).
pub fn root() -> &'static Path {
    static ROOT: OnceLock<std::path::PathBuf> = OnceLock::new();
    ROOT.get_or_init(|| {
        Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("xtask is inside the workspace").to_path_buf()
    })
}
