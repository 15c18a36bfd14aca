//! Test launcher: `shim-test --state-dir DIR --hostname NAME` behaves like `timonier shim ...`.
use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::prelude::*;

fn main() {
    // libcontainer logs from inside the container land on the container's stderr: errors only.
    let filter = Targets::new()
        .with_default(LevelFilter::INFO)
        .with_target("libcontainer", LevelFilter::ERROR)
        .with_target("libcgroups", LevelFilter::ERROR);
    tracing_subscriber::registry()
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                .with_ansi(false),
        )
        .with(filter)
        .init();
    std::process::exit(timonier_runtime::shim::run_shim_from_args(std::env::args().skip(1)));
}
