//! Data planes: where the desired services end up. `xdp` is the fast path.
pub mod xdp;
