//! Shared test support: network namespaces that clean up after themselves,
//! and packet fixtures run through BPF_PROG_TEST_RUN.
pub mod fixture;
pub mod frames;
pub mod netns;
