//! Generators of large, valid configurations, for tests and benchmarks.

use std::fmt::Write;

/// One LVS-DR `virtual_server` with `n` real servers, each with a TCP_CHECK.
/// Addresses run through 10.0.0.0/8, so `n` up to 16 million stays valid.
pub fn many_real_servers(n: usize) -> String {
    let mut s = String::with_capacity(160 * n + 256);
    s.push_str("virtual_server 192.0.2.100 80 {\n    delay_loop 6\n    lvs_sched wrr\n    lvs_method DR\n    protocol TCP\n");
    for i in 0..n {
        let (a, b, c) = ((i >> 16) & 0xff, (i >> 8) & 0xff, i & 0xff);
        let _ = write!(
            s,
            "    real_server 10.{a}.{b}.{c} 80 {{\n        weight 1\n        TCP_CHECK {{\n            connect_timeout 3\n            retry 3\n            delay_before_retry 3\n        }}\n    }}\n"
        );
    }
    s.push_str("}\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{LoadOptions, load_str};

    #[test]
    fn generated_config_is_clean() {
        let l = load_str(&many_real_servers(300), "gen.conf", &LoadOptions::default());
        assert!(l.diagnostics.is_empty(), "{:?}", l.diagnostics);
        assert_eq!(l.config.virtual_servers[0].real_servers.len(), 300);
    }
}
