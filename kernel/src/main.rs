//! The driver domain's PVH runtime.
//!
//! Built for `x86_64-unknown-none` by `cargo xtask build`; the boot path, hypercalls and
//! Xen mechanisms land here (see the runtime issue). On the host this builds as a stub so
//! `cargo build --workspace` and clippy cover the crate.
#![cfg_attr(target_os = "none", no_std)]
#![cfg_attr(target_os = "none", no_main)]

#[cfg(target_os = "none")]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo<'_>) -> ! {
    loop {
        core::hint::spin_loop();
    }
}

#[cfg(not(target_os = "none"))]
fn main() {
    eprintln!(
        "the driver domain is a PVH guest image: build it with `cargo xtask build` (Xen {}.x ABI)",
        4
    );
    let _ = xen_sys_mini::DOMID_SELF;
}
