//! Links `timonier` as a position-dependent executable: a PIE's ~1.6 MB of relative
//! relocations would be read, and ~1.2 MB of `.data.rel.ro` copied, by every process at start
//! — the agent, and each pod's shim — which is most of what the agent's idle memory goal leaves.
fn main() {
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux") {
        println!("cargo:rustc-link-arg-bins=-no-pie");
    }
}
