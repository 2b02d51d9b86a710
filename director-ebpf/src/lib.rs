// This crate is an XDP program (src/main.rs). The empty library target lets
// director's build.rs depend on it, so cargo rebuilds the program when its
// dependencies change.
#![no_std]
