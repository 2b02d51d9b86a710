//! Shared test support: network namespaces that clean up after themselves,
//! packet fixtures run through BPF_PROG_TEST_RUN, and building blocks for
//! end-to-end topologies (bridges, interface facts, HTTP name servers).
pub mod files;
pub mod fixture;
pub mod frames;
pub mod map_batch;
pub mod netns;
pub mod stall;
pub mod topo;
pub mod vm;
pub mod vrrp_lab;
