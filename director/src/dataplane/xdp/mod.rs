//! The XDP data plane: loading the embedded program, attaching it to
//! interfaces, and reading its maps.

use std::fmt;

use aya::{
    Ebpf,
    maps::PerCpuArray,
    programs::{ProgramError, Xdp, XdpMode},
};
use director_common::stats::{Counter, Reason};

/// The XDP object built by director's build.rs from `director-ebpf`.
pub static PROGRAM_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/director"));

const PROGRAM_NAME: &str = "director_xdp";

#[derive(Debug, thiserror::Error)]
pub enum XdpError {
    #[error("loading the XDP program: {0}")]
    Load(#[from] aya::EbpfError),
    #[error("the XDP program: {0}")]
    Program(#[from] ProgramError),
    #[error("map {name}: {source}")]
    Map { name: &'static str, source: aya::maps::MapError },
    #[error("{0} is missing from the XDP object")]
    Missing(&'static str),
    #[error(
        "cannot attach XDP to {iface}: native mode failed ({native}), SKB mode failed ({skb})"
    )]
    Attach { iface: String, native: ProgramError, skb: ProgramError },
}

/// How the program ended up attached to an interface.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AttachMode {
    /// In the driver: the fast path.
    Native,
    /// Generic XDP in the stack: works everywhere, slower.
    Skb,
}

impl fmt::Display for AttachMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AttachMode::Native => "native",
            AttachMode::Skb => "skb",
        })
    }
}

/// The loaded program and its maps. Dropping it detaches every link.
pub struct XdpProgram {
    ebpf: Ebpf,
}

impl XdpProgram {
    /// Loads the embedded program into the kernel (verifier included).
    pub fn load() -> Result<Self, XdpError> {
        let mut ebpf = Ebpf::load(PROGRAM_OBJECT)?;
        xdp_mut(&mut ebpf)?.load()?;
        Ok(XdpProgram { ebpf })
    }

    /// Attaches in native (driver) mode, falling back to SKB mode when the
    /// driver refuses.
    pub fn attach(&mut self, iface: &str) -> Result<AttachMode, XdpError> {
        let prog = xdp_mut(&mut self.ebpf)?;
        let native = match prog.attach(iface, XdpMode::Driver) {
            Ok(_) => return Ok(AttachMode::Native),
            Err(e) => e,
        };
        match prog.attach(iface, XdpMode::Skb) {
            Ok(_) => Ok(AttachMode::Skb),
            Err(skb) => Err(XdpError::Attach { iface: iface.to_string(), native, skb }),
        }
    }

    /// The program itself, for BPF_PROG_TEST_RUN.
    pub fn program(&mut self) -> Result<&mut Xdp, XdpError> {
        xdp_mut(&mut self.ebpf)
    }

    /// Every verdict counter, summed over CPUs.
    pub fn stats(&self) -> Result<Vec<(Reason, Counter)>, XdpError> {
        const NAME: &str = "STATS";
        let map = self.ebpf.map(NAME).ok_or(XdpError::Missing(NAME))?;
        let array: PerCpuArray<_, Counter> =
            PerCpuArray::try_from(map).map_err(|source| XdpError::Map { name: NAME, source })?;
        Reason::ALL
            .iter()
            .map(|&reason| {
                let per_cpu = array
                    .get(&(reason as u32), 0)
                    .map_err(|source| XdpError::Map { name: NAME, source })?;
                let sum = per_cpu.iter().fold(Counter::default(), |acc, c| Counter {
                    packets: acc.packets + c.packets,
                    bytes: acc.bytes + c.bytes,
                });
                Ok((reason, sum))
            })
            .collect()
    }
}

fn xdp_mut(ebpf: &mut Ebpf) -> Result<&mut Xdp, XdpError> {
    let prog = ebpf.program_mut(PROGRAM_NAME).ok_or(XdpError::Missing(PROGRAM_NAME))?;
    Ok(prog.try_into()?)
}
