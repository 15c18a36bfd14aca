//! How the `timonier` executable is linked, for the memory of its idle processes (the agent on
//! every node, each pod's shim):
//!
//! - position-dependent (`-no-pie`), as Go links k3s: a PIE's ~1.6 MB of relative relocations
//!   would be read, and ~1.2 MB of `.data.rel.ro` copied, by every process at start;
//! - in release builds, functions laid out in the order of `symbol-order.txt` (written by
//!   `cargo run --release -p timonier-bench --bin symbol-order`): the code an idle agent and an
//!   idle control plane run comes first, together, instead of spread over the whole `.text` —
//!   the kernel maps a process's code by 64 KiB windows, so spread code costs its windows.
//!   Needs LLD, rustc's default linker on x86_64 Linux since 1.90; names missing from the
//!   binary (the file lags behind the code) are skipped.
fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=symbol-order.txt");
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() != Ok("linux") {
        return;
    }
    println!("cargo:rustc-link-arg-bins=-no-pie");
    let Ok(dir) = std::env::var("CARGO_MANIFEST_DIR") else { return };
    let order = std::path::Path::new(&dir).join("symbol-order.txt");
    let lld_by_default = std::env::var("TARGET").as_deref() == Ok("x86_64-unknown-linux-gnu");
    if std::env::var("PROFILE").as_deref() == Ok("release") && lld_by_default && order.exists() {
        println!("cargo:rustc-link-arg-bins=-Wl,--symbol-ordering-file={}", order.display());
        println!("cargo:rustc-link-arg-bins=-Wl,--no-warn-symbol-ordering");
    }
}
