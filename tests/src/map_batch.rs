//! Whole-map writes and counts in a few syscalls: `BPF_MAP_UPDATE_BATCH`
//! and `BPF_MAP_LOOKUP_BATCH` (kernel 5.6), which aya 0.14 does not wrap.
//! A million connection-table entries go in in well under a second, where
//! one `bpf_map_update_elem` each would take several.

use std::{
    mem::size_of,
    os::fd::{AsFd, AsRawFd},
};

use anyhow::{Result, bail, ensure};
use aya::{Pod, maps::MapData};

/// `enum bpf_cmd` (linux/bpf.h).
const BPF_MAP_LOOKUP_BATCH: libc::c_long = 24;
const BPF_MAP_UPDATE_BATCH: libc::c_long = 26;

/// Entries per syscall.
const CHUNK: usize = 1 << 16;

/// The `batch` member of `union bpf_attr`; the kernel zero-fills the rest.
#[repr(C)]
#[derive(Default)]
struct BatchAttr {
    in_batch: u64,
    out_batch: u64,
    keys: u64,
    values: u64,
    count: u32,
    map_fd: u32,
    elem_flags: u64,
    flags: u64,
}

fn bpf(cmd: libc::c_long, attr: &mut BatchAttr) -> std::io::Result<()> {
    // SAFETY: `attr` is a valid, initialised prefix of `union bpf_attr`
    // whose pointers name live buffers of `count` elements (see callers).
    let rc = unsafe { libc::syscall(libc::SYS_bpf, cmd, std::ptr::from_mut(attr), size_of::<BatchAttr>()) };
    if rc < 0 { Err(std::io::Error::last_os_error()) } else { Ok(()) }
}

/// Writes every `(key, value)` into `map` (BPF_ANY), `CHUNK` per syscall.
/// Returns how many were written.
pub fn update<K: Pod, V: Pod>(map: &MapData, entries: impl IntoIterator<Item = (K, V)>) -> Result<u64> {
    check_sizes::<K, V>(map)?;
    let fd = map.fd().as_fd().as_raw_fd() as u32;
    let (mut keys, mut values) = (Vec::with_capacity(CHUNK), Vec::with_capacity(CHUNK));
    let mut written = 0u64;
    let mut flush = |keys: &mut Vec<K>, values: &mut Vec<V>| -> Result<()> {
        if keys.is_empty() {
            return Ok(());
        }
        let mut attr = BatchAttr {
            keys: keys.as_ptr() as u64,
            values: values.as_ptr() as u64,
            count: keys.len() as u32,
            map_fd: fd,
            ..Default::default()
        };
        let r = bpf(BPF_MAP_UPDATE_BATCH, &mut attr);
        // On an error the kernel reports how many it wrote.
        written += u64::from(attr.count);
        if let Err(e) = r {
            bail!("BPF_MAP_UPDATE_BATCH after {written} entries: {e}");
        }
        keys.clear();
        values.clear();
        Ok(())
    };
    for (k, v) in entries {
        keys.push(k);
        values.push(v);
        if keys.len() == CHUNK {
            flush(&mut keys, &mut values)?;
        }
    }
    flush(&mut keys, &mut values)?;
    Ok(written)
}

/// How many entries a hash map holds, read `CHUNK` at a time.
pub fn count<K: Pod, V: Pod>(map: &MapData) -> Result<u64> {
    check_sizes::<K, V>(map)?;
    let fd = map.fd().as_fd().as_raw_fd() as u32;
    let mut keys: Vec<K> = Vec::with_capacity(CHUNK);
    let mut values: Vec<V> = Vec::with_capacity(CHUNK);
    // The hash map's batch token is a bucket index (u32); room to spare.
    let (mut token_in, mut token_out) = ([0u64; 2], [0u64; 2]);
    let (mut total, mut first) = (0u64, true);
    loop {
        let mut attr = BatchAttr {
            in_batch: if first { 0 } else { token_in.as_ptr() as u64 },
            out_batch: token_out.as_mut_ptr() as u64,
            keys: keys.as_mut_ptr() as u64,
            values: values.as_mut_ptr() as u64,
            count: CHUNK as u32,
            map_fd: fd,
            ..Default::default()
        };
        let r = bpf(BPF_MAP_LOOKUP_BATCH, &mut attr);
        total += u64::from(attr.count);
        match r {
            Ok(()) => (token_in, first) = (token_out, false),
            // The last batch: the map has no more.
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => break,
            Err(e) => bail!("BPF_MAP_LOOKUP_BATCH after {total} entries: {e}"),
        }
    }
    Ok(total)
}

fn check_sizes<K, V>(map: &MapData) -> Result<()> {
    let info = map.info()?;
    ensure!(
        (info.key_size() as usize, info.value_size() as usize) == (size_of::<K>(), size_of::<V>()),
        "the map's key and value are {} and {} bytes, not {} and {}",
        info.key_size(),
        info.value_size(),
        size_of::<K>(),
        size_of::<V>()
    );
    Ok(())
}
