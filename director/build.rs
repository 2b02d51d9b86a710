//! Builds the XDP program (director-ebpf) with the nightly toolchain and
//! bpf-linker, so that a plain `cargo build` produces a daemon with the
//! program embedded. `cargo xtask setup` installs what this needs.

fn main() -> anyhow::Result<()> {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../director-ebpf");
    aya_build::build_ebpf(
        [aya_build::Package { name: "director-ebpf", root_dir: root, ..Default::default() }],
        aya_build::Toolchain::default(),
    )
}
