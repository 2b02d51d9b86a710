//! Packet fixtures: an input frame, the verdict we expect, and the exact
//! output frame, run through the real program with BPF_PROG_TEST_RUN.

use anyhow::{Context, Result, ensure};
use aya::programs::{TestRun, TestRunOptions, Xdp};

pub const XDP_ABORTED: u32 = 0;
pub const XDP_DROP: u32 = 1;
pub const XDP_PASS: u32 = 2;
pub const XDP_TX: u32 = 3;
pub const XDP_REDIRECT: u32 = 4;

/// One table row.
pub struct Fixture {
    pub name: &'static str,
    pub input: Vec<u8>,
    pub verdict: u32,
    /// The frame after the program ran; None means "unchanged".
    pub output: Option<Vec<u8>>,
}

/// What one run of the program produced.
pub struct Outcome {
    pub verdict: u32,
    pub output: Vec<u8>,
    pub duration_ns: u128,
}

/// Runs the program once on `input`.
pub fn run_once(prog: &Xdp, input: &[u8]) -> Result<Outcome> {
    // Room for encapsulation headers the program may push.
    let mut out = vec![0u8; input.len() + 256];
    let res = prog
        .test_run(TestRunOptions { data_in: Some(input), data_out: Some(&mut out), repeat: 1, ..Default::default() })
        .context("BPF_PROG_TEST_RUN")?;
    out.truncate(res.data_size_out as usize);
    Ok(Outcome { verdict: res.return_value, output: out, duration_ns: res.duration.as_nanos() })
}

/// Runs one fixture and checks verdict and output byte for byte.
pub fn check(prog: &Xdp, f: &Fixture) -> Result<()> {
    let got = run_once(prog, &f.input).with_context(|| f.name.to_string())?;
    ensure!(
        got.verdict == f.verdict,
        "{}: verdict {} ({}), expected {} ({})",
        f.name,
        got.verdict,
        verdict_name(got.verdict),
        f.verdict,
        verdict_name(f.verdict)
    );
    let want = f.output.as_ref().unwrap_or(&f.input);
    ensure!(
        &got.output == want,
        "{}: output frame differs\n got: {}\nwant: {}",
        f.name,
        hex(&got.output),
        hex(want)
    );
    Ok(())
}

pub fn verdict_name(v: u32) -> &'static str {
    match v {
        XDP_ABORTED => "XDP_ABORTED",
        XDP_DROP => "XDP_DROP",
        XDP_PASS => "XDP_PASS",
        XDP_TX => "XDP_TX",
        XDP_REDIRECT => "XDP_REDIRECT",
        _ => "unknown",
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}
