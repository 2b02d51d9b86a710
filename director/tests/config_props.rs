//! Property tests: the loader never panics, whatever it is given.

use director::config::{LoadOptions, load_str};
use proptest::prelude::*;

fn opts() -> LoadOptions {
    LoadOptions {
        config_id: Some("node1".to_string()),
    }
}

/// Pieces of real configs: keywords of every block, braces, quotes,
/// comments, parameters, conditionals, values good and bad.
const PIECES: &[&str] = &[
    "global_defs",
    "vrrp_script",
    "track_file",
    "vrrp_track_file",
    "vrrp_sync_group",
    "group",
    "vrrp_instance",
    "virtual_server_group",
    "virtual_server",
    "real_server",
    "sorry_server",
    "TCP_CHECK",
    "HTTP_GET",
    "SSL_GET",
    "MISC_CHECK",
    "SMTP_CHECK",
    "DNS_CHECK",
    "UDP_CHECK",
    "PING_CHECK",
    "FILE_CHECK",
    "url",
    "path",
    "digest",
    "status_code",
    "state",
    "MASTER",
    "BACKUP",
    "interface",
    "virtual_router_id",
    "priority",
    "advert_int",
    "version",
    "authentication",
    "auth_type",
    "auth_pass",
    "virtual_ipaddress",
    "virtual_ipaddress_excluded",
    "track_script",
    "track_interface",
    "unicast_peer",
    "weight",
    "reverse",
    "nopreempt",
    "notify_master",
    "lb_algo",
    "lb_kind",
    "lvs_sched",
    "lvs_method",
    "nb_get_retry",
    "retry",
    "protocol",
    "TCP",
    "persistence_timeout",
    "fwmark",
    "delay_loop",
    "connect_timeout",
    "connect_port",
    "misc_path",
    "dev",
    "label",
    "brd",
    "scope",
    "include",
    "includea",
    "nat_mask",
    "static_routes",
    "{",
    "}",
    "{",
    "}",
    "\"",
    "'",
    "\"quoted string\"",
    "!",
    "#",
    "//",
    "$X=",
    "$X",
    "${X}",
    "${_HASH}",
    "@node1",
    "@^node1",
    "@",
    "\\",
    "~SEQ(",
    "0",
    "1",
    "255",
    "256",
    "-1",
    "0.5",
    "1.5",
    "10.0.0.1",
    "10.0.0.1/24",
    "10.0.0.1-20",
    "fe80::1",
    "300.1.1.1",
    "80",
    "65536",
    "x",
    "vitrual_ipaddress",
    "MATSER",
    "\n",
    "\n",
    "\n",
    "\n",
    " ",
];

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        let text = String::from_utf8_lossy(&bytes);
        let loaded = load_str(&text, "fuzz.conf", &opts());
        let _ = loaded.exit_code();
    }

    #[test]
    fn token_soups_never_panic(picks in proptest::collection::vec(0..PIECES.len(), 0..400)) {
        let text: String = picks.iter().map(|&i| PIECES[i]).collect::<Vec<_>>().join(" ");
        let loaded = load_str(&text, "soup.conf", &opts());
        // Every diagnostic points at a real place.
        for d in &loaded.diagnostics {
            prop_assert!(d.line >= 1 && d.col >= 1, "{}", d);
        }
    }

    #[test]
    fn glued_soups_never_panic(picks in proptest::collection::vec(0..PIECES.len(), 0..400)) {
        let text: String = picks.iter().map(|&i| PIECES[i]).collect();
        let _ = load_str(&text, "glued.conf", &opts());
    }
}

#[test]
fn deeply_nested_and_long_inputs_do_not_overflow() {
    for text in [
        "a {".repeat(200_000),
        "}".repeat(100_000),
        "$A=$B\n$B=$A\n$A\n".to_string(),
        "\"".repeat(50_000),
    ] {
        let _ = load_str(&text, "deep.conf", &opts());
    }
}
