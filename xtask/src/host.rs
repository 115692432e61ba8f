//! Host set-up: the Debian packages the test bed and the tests need, installed when
//! missing (idempotent, never prompts).
use crate::sh::{self, Result};

/// Host packages: QEMU for the test bed, busybox for the images, Xen's public headers
/// for the layout check, gcc for that check's C probe, binutils to strip the image.
pub const HOST_PACKAGES: &[&str] =
    &["qemu-system-x86", "busybox-static", "libxen-dev", "gcc", "binutils", "shellcheck"];

fn installed(pkg: &str) -> bool {
    sh::output(sh::cmd("dpkg-query").args(["-W", "-f=${Status}", pkg]))
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("install ok installed"))
}

/// `apt-get update` once per xtask run, and only when the package lists are needed.
pub fn apt_update() -> Result<()> {
    static DONE: std::sync::OnceLock<()> = std::sync::OnceLock::new();
    if DONE.get().is_some() {
        return Ok(());
    }
    sh::timed("apt-get update", || sh::output(sh::cmd("apt-get").args(["update", "-q"])).map(|_| ()))?;
    let _ = DONE.set(());
    Ok(())
}

/// Whether apt knows `pkg` (a fresh machine's lists may be empty until an update).
pub fn apt_knows(pkg: &str) -> bool {
    sh::stdout(sh::cmd("apt-cache").args(["policy", pkg]))
        .is_ok_and(|s| s.contains("Candidate:") && !s.contains("Candidate: (none)"))
}

pub fn ensure_packages(pkgs: &[&str]) -> Result<()> {
    let missing: Vec<&str> = pkgs.iter().copied().filter(|p| !installed(p)).collect();
    if missing.is_empty() {
        return Ok(());
    }
    apt_update()?;
    sh::timed(&format!("apt-get install {}", missing.join(" ")), || {
        sh::output(
            sh::cmd("apt-get")
                .env("DEBIAN_FRONTEND", "noninteractive")
                .args(["install", "-y", "-q", "--no-install-recommends"])
                .args(&missing),
        )
        .map(|_| ())
    })
}

pub fn ensure_host() -> Result<()> {
    ensure_packages(HOST_PACKAGES)
}
