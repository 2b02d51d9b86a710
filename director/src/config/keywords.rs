//! Known keywords per block, old spellings, and "did you mean".
//!
//! Each block kind (`Ctx`) lists:
//! - the keywords director understands (the builder handles each of them;
//!   a unit test in `build` keeps the two in sync);
//! - keepalived keywords director accepts but does not implement (a warning
//!   says so, instead of a confusing "unknown keyword");
//! - renamed spellings (CentOS 6-era names), read as the modern keyword
//!   with a warning.

/// The kind of block a statement appears in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ctx {
    Top,
    GlobalDefs,
    VrrpScript,
    TrackFile,
    SyncGroup,
    Instance,
    Authentication,
    VsGroup,
    VirtualServer,
    RealServer,
    Checker(CheckerKind),
    Url,
    /// A block of values, one per line (`virtual_ipaddress`, `group`, ...).
    List,
    /// The block of an unknown or unimplemented keyword; not checked.
    Opaque,
}

/// The health checker types.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
pub enum CheckerKind {
    Tcp,
    Http,
    Ssl,
    Misc,
    Smtp,
    Dns,
    Udp,
    Ping,
    File,
}

impl CheckerKind {
    pub const ALL: [CheckerKind; 9] = [
        CheckerKind::Tcp,
        CheckerKind::Http,
        CheckerKind::Ssl,
        CheckerKind::Misc,
        CheckerKind::Smtp,
        CheckerKind::Dns,
        CheckerKind::Udp,
        CheckerKind::Ping,
        CheckerKind::File,
    ];

    pub fn keyword(self) -> &'static str {
        match self {
            CheckerKind::Tcp => "TCP_CHECK",
            CheckerKind::Http => "HTTP_GET",
            CheckerKind::Ssl => "SSL_GET",
            CheckerKind::Misc => "MISC_CHECK",
            CheckerKind::Smtp => "SMTP_CHECK",
            CheckerKind::Dns => "DNS_CHECK",
            CheckerKind::Udp => "UDP_CHECK",
            CheckerKind::Ping => "PING_CHECK",
            CheckerKind::File => "FILE_CHECK",
        }
    }

    pub fn from_keyword(kw: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.keyword() == kw)
    }
}

/// An old spelling keepalived (or keepalived 1.x) accepted.
#[derive(Debug)]
pub struct Rename {
    pub old: &'static str,
    pub new: &'static str,
}

impl Ctx {
    /// The block's name as written in the config, for messages.
    pub fn name(self) -> &'static str {
        match self {
            Ctx::Top => "the top level",
            Ctx::GlobalDefs => "global_defs",
            Ctx::VrrpScript => "vrrp_script",
            Ctx::TrackFile => "track_file",
            Ctx::SyncGroup => "vrrp_sync_group",
            Ctx::Instance => "vrrp_instance",
            Ctx::Authentication => "authentication",
            Ctx::VsGroup => "virtual_server_group",
            Ctx::VirtualServer => "virtual_server",
            Ctx::RealServer => "real_server",
            Ctx::Checker(k) => k.keyword(),
            Ctx::Url => "url",
            Ctx::List => "list",
            Ctx::Opaque => "block",
        }
    }

    /// Keywords director understands in this block.
    pub fn keywords(self) -> &'static [&'static str] {
        match self {
            Ctx::Top => TOP,
            Ctx::GlobalDefs => GLOBAL_DEFS,
            Ctx::VrrpScript => VRRP_SCRIPT,
            Ctx::TrackFile => TRACK_FILE,
            Ctx::SyncGroup => SYNC_GROUP,
            Ctx::Instance => INSTANCE,
            Ctx::Authentication => AUTHENTICATION,
            Ctx::VirtualServer => VIRTUAL_SERVER,
            Ctx::RealServer => REAL_SERVER,
            Ctx::Checker(CheckerKind::Misc) => MISC_CHECK,
            Ctx::Checker(CheckerKind::File) => FILE_CHECK,
            Ctx::Checker(CheckerKind::Http) => HTTP_GET,
            Ctx::Checker(CheckerKind::Ssl) => SSL_GET,
            Ctx::Checker(CheckerKind::Smtp) => SMTP_CHECK,
            Ctx::Checker(CheckerKind::Dns) => DNS_CHECK,
            Ctx::Checker(CheckerKind::Udp) => UDP_CHECK,
            Ctx::Checker(CheckerKind::Tcp | CheckerKind::Ping) => CHECKER_COMMON,
            Ctx::Url => URL,
            Ctx::VsGroup | Ctx::List | Ctx::Opaque => &[],
        }
    }

    /// keepalived keywords that director accepts but does not implement.
    pub fn unsupported(self) -> &'static [&'static str] {
        match self {
            Ctx::Top => TOP_UNSUPPORTED,
            Ctx::GlobalDefs => GLOBAL_DEFS_UNSUPPORTED,
            Ctx::SyncGroup => SYNC_GROUP_UNSUPPORTED,
            Ctx::Instance => INSTANCE_UNSUPPORTED,
            Ctx::VirtualServer => VIRTUAL_SERVER_UNSUPPORTED,
            Ctx::RealServer => REAL_SERVER_UNSUPPORTED,
            Ctx::Url => URL_UNSUPPORTED,
            Ctx::Checker(CheckerKind::Smtp) => &["host"],
            _ => &[],
        }
    }

    /// Old spellings accepted in this block.
    pub fn renames(self) -> &'static [Rename] {
        match self {
            Ctx::Top => &[Rename {
                old: "vrrp_track_file",
                new: "track_file",
            }],
            Ctx::VirtualServer => &[
                Rename {
                    old: "lb_algo",
                    new: "lvs_sched",
                },
                Rename {
                    old: "lb_kind",
                    new: "lvs_method",
                },
            ],
            Ctx::Checker(_) => &[Rename {
                old: "nb_get_retry",
                new: "retry",
            }],
            _ => &[],
        }
    }

    /// The block kind a keyword opens inside this block, if it opens one.
    pub fn child(self, kw: &str) -> Option<Ctx> {
        let kw = self
            .renames()
            .iter()
            .find(|r| r.old == kw)
            .map_or(kw, |r| r.new);
        let list = Some(Ctx::List);
        match (self, kw) {
            (Ctx::Top, "global_defs") => Some(Ctx::GlobalDefs),
            (Ctx::Top, "vrrp_script") => Some(Ctx::VrrpScript),
            (Ctx::Top, "track_file") => Some(Ctx::TrackFile),
            (Ctx::Top, "vrrp_sync_group") => Some(Ctx::SyncGroup),
            (Ctx::Top, "vrrp_instance") => Some(Ctx::Instance),
            (Ctx::Top, "virtual_server_group") => Some(Ctx::VsGroup),
            (Ctx::Top, "virtual_server") => Some(Ctx::VirtualServer),
            (Ctx::GlobalDefs, "notification_email") => list,
            (Ctx::SyncGroup, "group" | "track_interface" | "track_script" | "track_file") => list,
            (
                Ctx::Instance,
                "virtual_ipaddress"
                | "virtual_ipaddress_excluded"
                | "unicast_peer"
                | "track_interface"
                | "track_script"
                | "track_file",
            ) => list,
            (Ctx::Instance, "authentication") => Some(Ctx::Authentication),
            (Ctx::VirtualServer, "real_server") => Some(Ctx::RealServer),
            (Ctx::RealServer, k) => CheckerKind::from_keyword(k).map(Ctx::Checker),
            (Ctx::Checker(CheckerKind::Http | CheckerKind::Ssl), "url") => Some(Ctx::Url),
            _ => None,
        }
    }

    /// Context of the block named by `path` (keywords from the top).
    pub fn of_path(path: &[String]) -> Ctx {
        path.iter().fold(Ctx::Top, |ctx, kw| match ctx {
            Ctx::List | Ctx::Opaque => Ctx::Opaque,
            _ => ctx.child(kw).unwrap_or(Ctx::Opaque),
        })
    }
}

/// Whether `kw` inside the blocks `path` must open a block (parser callback).
pub fn needs_block(path: &[String], kw: &str) -> bool {
    Ctx::of_path(path).child(kw).is_some()
}

/// The closest known keyword of `ctx` to `word`, if close enough to be a typo.
pub fn suggest(ctx: Ctx, word: &str) -> Option<&'static str> {
    closest(
        word,
        ctx.keywords().iter().chain(ctx.unsupported()).copied(),
    )
}

/// The closest of `candidates` to `word`, if close enough to be a typo.
pub fn closest<'a>(word: &str, candidates: impl Iterator<Item = &'a str>) -> Option<&'a str> {
    let w = word.to_ascii_lowercase();
    let limit = match w.chars().count() {
        0..=4 => 1,
        5..=8 => 2,
        _ => 4,
    };
    candidates
        .map(|c| (strsim::damerau_levenshtein(&w, &c.to_ascii_lowercase()), c))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// A block keyword of `ctx` that `word` starts with, when the name was glued
/// to it (`vrrp_instance_VI_1` → (`vrrp_instance`, `VI_1`)).
pub fn glued(ctx: Ctx, word: &str) -> Option<(&'static str, &str)> {
    ctx.keywords()
        .iter()
        .filter(|k| ctx.child(k).is_some())
        .find_map(|k| {
            let rest = word.strip_prefix(k)?;
            let name = rest.strip_prefix(['_', '-', '.', ':']).unwrap_or(rest);
            (!name.is_empty()).then_some((*k, name))
        })
}

/// Another block kind where `kw` is a known keyword (for "belongs in"
/// hints), preferring blocks that can sit inside `ctx`.
pub fn home_of(ctx: Ctx, kw: &str) -> Option<Ctx> {
    const HTTP: Ctx = Ctx::Checker(CheckerKind::Http);
    const TCP: Ctx = Ctx::Checker(CheckerKind::Tcp);
    const MISC: Ctx = Ctx::Checker(CheckerKind::Misc);
    let inner: &[Ctx] = match ctx {
        Ctx::VirtualServer => &[Ctx::RealServer, TCP, HTTP, MISC, Ctx::Url],
        Ctx::RealServer => &[TCP, HTTP, MISC, Ctx::Url],
        Ctx::Checker(_) => &[Ctx::Url, Ctx::RealServer, Ctx::VirtualServer],
        Ctx::Instance => &[Ctx::Authentication],
        _ => &[],
    };
    const ANYWHERE: [Ctx; 12] = [
        Ctx::Top,
        Ctx::GlobalDefs,
        Ctx::Instance,
        Ctx::VrrpScript,
        Ctx::SyncGroup,
        Ctx::Authentication,
        Ctx::VirtualServer,
        Ctx::RealServer,
        TCP,
        HTTP,
        MISC,
        Ctx::Url,
    ];
    inner
        .iter()
        .chain(ANYWHERE.iter())
        .copied()
        .find(|c| *c != ctx && c.keywords().contains(&kw))
}

/// Obsolete keywords that were removed from keepalived: ignored with a note.
pub fn obsolete(ctx: Ctx, kw: &str) -> Option<&'static str> {
    match (ctx, kw) {
        (Ctx::VirtualServer, "nat_mask") => Some(
            "`nat_mask` is obsolete (keepalived 2.x no longer uses it; the real servers' own netmask applies); ignored",
        ),
        (Ctx::SyncGroup, "global_tracking") => Some(
            "`global_tracking` is deprecated: put track_interface / track_script / track_file in the vrrp_sync_group itself; ignored",
        ),
        (Ctx::Instance, "native_ipv6") => Some(
            "`native_ipv6` is deprecated: the address family follows the virtual IP addresses; ignored",
        ),
        _ => None,
    }
}

/// Hints for misspellings that edit distance cannot find.
pub fn hint(ctx: Ctx, kw: &str) -> Option<&'static str> {
    match (ctx, kw) {
        (Ctx::Checker(_), "tcp_port" | "port") => Some("connect_port"),
        (Ctx::VirtualServer, "sched" | "scheduler") => Some("lvs_sched"),
        (Ctx::VirtualServer | Ctx::RealServer, "forwarding" | "lb_method") => Some("lvs_method"),
        _ => None,
    }
}

const TOP: &[&str] = &[
    "global_defs",
    "vrrp_script",
    "track_file",
    "vrrp_sync_group",
    "vrrp_instance",
    "virtual_server_group",
    "virtual_server",
];

const TOP_UNSUPPORTED: &[&str] = &[
    "bfd_instance",
    "vrrp_track_process",
    "garp_group",
    "linkbeat_interfaces",
    "track_group",
    "static_ipaddress",
    "static_routes",
    "static_rules",
    "interface_up_down_delays",
    "SSL",
    "net_namespace",
    "net_namespace_ipvs",
    "namespace_with_ipsets",
    "instance",
    "use_pid_dir",
    "linkbeat_use_polling",
    "child_wait_time",
];

const GLOBAL_DEFS: &[&str] = &[
    "router_id",
    "lvs_timeouts",
    "notification_email",
    "notification_email_from",
    "smtp_server",
    "smtp_helo_name",
    "smtp_connect_timeout",
    "smtp_alert",
    "smtp_alert_vrrp",
    "smtp_alert_checker",
    "no_email_faults",
    "enable_script_security",
    "script_user",
    "default_interface",
    "vrrp_version",
    "vrrp_mcast_group4",
    "vrrp_mcast_group6",
    "vrrp_garp_master_delay",
    "vrrp_garp_master_repeat",
    "vrrp_garp_master_refresh",
    "vrrp_garp_master_refresh_repeat",
    "vrrp_garp_interval",
    "vrrp_gna_interval",
    "vrrp_strict",
    "vrrp_skip_check_adv_addr",
    "vrrp_check_unicast_src",
    "vrrp_startup_delay",
    "lvs_flush",
    "checker_log_all_failures",
];

const GLOBAL_DEFS_UNSUPPORTED: &[&str] = &[
    "bfd_cpu_affinity",
    "bfd_no_swap",
    "bfd_priority",
    "bfd_process_name",
    "bfd_rlimit_rttime",
    "bfd_rt_priority",
    "checker_cpu_affinity",
    "checker_no_swap",
    "checker_priority",
    "checker_process_name",
    "checker_rlimit_rttime",
    "checker_rt_priority",
    "config_save_dir",
    "data_use_instance",
    "dbus_service_name",
    "disable_local_igmp",
    "dynamic_interfaces",
    "enable_dbus",
    "enable_snmp_checker",
    "enable_snmp_rfc",
    "enable_snmp_rfcv2",
    "enable_snmp_rfcv3",
    "enable_snmp_vrrp",
    "enable_traps",
    "fifo_write_vrrp_states_on_reload",
    "include_check",
    "log_unknown_vrids",
    "lvs_flush_on_stop",
    "lvs_netlink_cmd_rcv_bufs",
    "lvs_netlink_cmd_rcv_bufs_force",
    "lvs_netlink_monitor_rcv_bufs",
    "lvs_netlink_monitor_rcv_bufs_force",
    "lvs_notify_fifo",
    "lvs_notify_fifo_script",
    "lvs_sync_daemon",
    "max_auto_priority",
    "min_auto_priority_delay",
    "nftables",
    "nftables_counters",
    "nftables_ifindex",
    "nftables_ipvs",
    "nftables_ipvs_priority",
    "nftables_ipvs_start_fwmark",
    "nftables_priority",
    "no_checker_emails",
    "notify_fifo",
    "notify_fifo_script",
    "process_monitor_rcv_bufs",
    "process_monitor_rcv_bufs_force",
    "process_name",
    "process_names",
    "random_seed",
    "reload_check_config",
    "reload_file",
    "reload_repeat",
    "reload_time_file",
    "rs_init_notifies",
    "shutdown_script",
    "shutdown_script_timeout",
    "snmp_socket",
    "startup_script",
    "startup_script_timeout",
    "tmp_config_directory",
    "umask",
    "vmac_addr_prefix",
    "vmac_prefix",
    "vrrp_cpu_affinity",
    "vrrp_down_timer_adverts",
    "vrrp_garp_extra_if",
    "vrrp_garp_lower_prio_delay",
    "vrrp_garp_lower_prio_repeat",
    "vrrp_higher_prio_send_advert",
    "vrrp_ipsets",
    "vrrp_iptables",
    "vrrp_lower_prio_no_advert",
    "vrrp_min_garp",
    "vrrp_netlink_cmd_rcv_bufs",
    "vrrp_netlink_cmd_rcv_bufs_force",
    "vrrp_netlink_monitor_rcv_bufs",
    "vrrp_netlink_monitor_rcv_bufs_force",
    "vrrp_no_swap",
    "vrrp_notify_fifo",
    "vrrp_notify_fifo_script",
    "vrrp_notify_priority_changes",
    "vrrp_priority",
    "vrrp_process_name",
    "vrrp_rlimit_rttime",
    "vrrp_rt_priority",
    "vrrp_rx_bufs_multiplier",
    "vrrp_rx_bufs_policy",
    "net_namespace",
    "net_namespace_ipvs",
    "namespace_with_ipsets",
    "instance",
    "use_pid_dir",
    "linkbeat_use_polling",
    "child_wait_time",
];

const VRRP_SCRIPT: &[&str] = &[
    "script",
    "interval",
    "timeout",
    "weight",
    "rise",
    "fall",
    "user",
    "init_fail",
];

const TRACK_FILE: &[&str] = &["file", "weight", "init_file"];

const SYNC_GROUP: &[&str] = &[
    "group",
    "track_interface",
    "track_script",
    "track_file",
    "notify_master",
    "notify_backup",
    "notify_fault",
    "notify_stop",
    "notify",
    "smtp_alert",
    "global_tracking",
    "sync_group_tracking_weight",
];

const SYNC_GROUP_UNSUPPORTED: &[&str] = &[
    "track_process",
    "track_bfd",
    "notify_deleted",
    "notify_priority_changes",
];

const INSTANCE: &[&str] = &[
    "state",
    "interface",
    "virtual_router_id",
    "priority",
    "advert_int",
    "version",
    "nopreempt",
    "preempt",
    "preempt_delay",
    "authentication",
    "virtual_ipaddress",
    "virtual_ipaddress_excluded",
    "unicast_src_ip",
    "mcast_src_ip",
    "mcast_dst_ip",
    "unicast_peer",
    "unicast_ttl",
    "check_unicast_src",
    "track_interface",
    "track_script",
    "track_file",
    "dont_track_primary",
    "use_vmac",
    "vmac_xmit_base",
    "garp_master_delay",
    "garp_master_repeat",
    "garp_master_refresh",
    "garp_master_refresh_repeat",
    "notify_master",
    "notify_backup",
    "notify_fault",
    "notify_stop",
    "notify",
    "smtp_alert",
    "accept",
    "no_accept",
    "strict_mode",
    "skip_check_adv_addr",
    "native_ipv6",
];

const INSTANCE_UNSUPPORTED: &[&str] = &[
    "vrf",
    "use_vmac_addr",
    "use_ipvlan",
    "track_process",
    "track_bfd",
    "track_src_ip",
    "unicast_fault_no_peer",
    "old_unicast_checksum",
    "garp_lower_prio_delay",
    "garp_lower_prio_repeat",
    "garp_extra_if",
    "down_timer_adverts",
    "lower_prio_no_advert",
    "higher_prio_send_advert",
    "promote_secondaries",
    "virtual_routes",
    "virtual_rules",
    "notify_master_rx_lower_pri",
    "notify_priority_changes",
    "kernel_rx_buf_size",
    "linkbeat_use_polling",
    "debug",
];

const AUTHENTICATION: &[&str] = &["auth_type", "auth_pass"];

const VIRTUAL_SERVER: &[&str] = &[
    "director_dataplane",
    "lvs_sched",
    "lvs_method",
    "protocol",
    "persistence_timeout",
    "persistence_granularity",
    "persistence_engine",
    "ha_suspend",
    "ops",
    "smtp_alert",
    "virtualhost",
    "alpha",
    "omega",
    "quorum",
    "hysteresis",
    "quorum_up",
    "quorum_down",
    "ip_family",
    "sorry_server",
    "sorry_server_inhibit",
    "sorry_server_lvs_method",
    "connect_timeout",
    "retry",
    "delay_before_retry",
    "warmup",
    "delay_loop",
    "inhibit_on_failure",
    "real_server",
    "nat_mask",
];

const VIRTUAL_SERVER_UNSUPPORTED: &[&str] = &[
    "flag-1",
    "flag-2",
    "flag-3",
    "sh-port",
    "sh-fallback",
    "mh-port",
    "mh-fallback",
    "snmp_name",
];

const REAL_SERVER: &[&str] = &[
    "weight",
    "lvs_method",
    "notify_up",
    "notify_down",
    "uthreshold",
    "lthreshold",
    "smtp_alert",
    "virtualhost",
    "alpha",
    "connect_timeout",
    "retry",
    "delay_before_retry",
    "warmup",
    "delay_loop",
    "inhibit_on_failure",
    "TCP_CHECK",
    "HTTP_GET",
    "SSL_GET",
    "MISC_CHECK",
    "SMTP_CHECK",
    "DNS_CHECK",
    "UDP_CHECK",
    "PING_CHECK",
    "FILE_CHECK",
];

const REAL_SERVER_UNSUPPORTED: &[&str] = &["BFD_CHECK", "snmp_name"];

/// Options every checker but MISC_CHECK and FILE_CHECK takes.
const CHECKER_COMMON: &[&str] = &[
    "connect_ip",
    "connect_port",
    "bindto",
    "bind_if",
    "bind_port",
    "fwmark",
    "alpha",
    "connect_timeout",
    "retry",
    "delay_before_retry",
    "warmup",
    "delay_loop",
    "log_all_failures",
];

const HTTP_GET: &[&str] = &[
    "connect_ip",
    "connect_port",
    "bindto",
    "bind_if",
    "bind_port",
    "fwmark",
    "alpha",
    "connect_timeout",
    "retry",
    "delay_before_retry",
    "warmup",
    "delay_loop",
    "log_all_failures",
    "http_protocol",
    "fast_recovery",
    "virtualhost",
    "url",
];

const SSL_GET: &[&str] = &[
    "connect_ip",
    "connect_port",
    "bindto",
    "bind_if",
    "bind_port",
    "fwmark",
    "alpha",
    "connect_timeout",
    "retry",
    "delay_before_retry",
    "warmup",
    "delay_loop",
    "log_all_failures",
    "http_protocol",
    "fast_recovery",
    "virtualhost",
    "url",
    "enable_sni",
    "sni_name",
    "verify_cert",
];

const SMTP_CHECK: &[&str] = &[
    "connect_ip",
    "connect_port",
    "bindto",
    "bind_if",
    "bind_port",
    "fwmark",
    "alpha",
    "connect_timeout",
    "retry",
    "delay_before_retry",
    "warmup",
    "delay_loop",
    "log_all_failures",
    "helo_name",
];

const DNS_CHECK: &[&str] = &[
    "connect_ip",
    "connect_port",
    "bindto",
    "bind_if",
    "bind_port",
    "fwmark",
    "alpha",
    "connect_timeout",
    "retry",
    "delay_before_retry",
    "warmup",
    "delay_loop",
    "log_all_failures",
    "type",
    "name",
];

const UDP_CHECK: &[&str] = &[
    "connect_ip",
    "connect_port",
    "bindto",
    "bind_if",
    "bind_port",
    "fwmark",
    "alpha",
    "connect_timeout",
    "retry",
    "delay_before_retry",
    "warmup",
    "delay_loop",
    "log_all_failures",
    "payload",
    "require_reply",
    "min_reply_length",
    "max_reply_length",
];

const MISC_CHECK: &[&str] = &[
    "alpha",
    "connect_timeout",
    "retry",
    "delay_before_retry",
    "warmup",
    "delay_loop",
    "log_all_failures",
    "misc_path",
    "misc_timeout",
    "misc_dynamic",
    "user",
];

const FILE_CHECK: &[&str] = &["track_file", "dynamic", "weight"];

const URL: &[&str] = &[
    "path",
    "digest",
    "status_code",
    "virtualhost",
    "regex",
    "regex_no_match",
];

const URL_UNSUPPORTED: &[&str] = &[
    "regex_options",
    "regex_stack",
    "regex_min_offset",
    "regex_max_offset",
];

#[cfg(test)]
mod tests {
    use super::*;

    fn path(p: &[&str]) -> Vec<String> {
        p.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn seed_typos_get_suggestions() {
        assert_eq!(
            suggest(Ctx::Instance, "vitrual_ipaddress"),
            Some("virtual_ipaddress")
        );
        assert_eq!(suggest(Ctx::VrrpScript, "fise"), Some("rise"));
        assert_eq!(
            suggest(Ctx::VirtualServer, "server_server"),
            Some("sorry_server")
        );
        assert_eq!(
            glued(Ctx::Top, "vrrp_instance_VI_1"),
            Some(("vrrp_instance", "VI_1"))
        );
        assert_eq!(
            closest("MATSER", ["MASTER", "BACKUP"].into_iter()),
            Some("MASTER")
        );
        assert_eq!(suggest(Ctx::Instance, "completely_unrelated"), None);
    }

    #[test]
    fn blocks_are_known_in_context() {
        assert!(needs_block(&path(&[]), "virtual_server"));
        assert!(needs_block(&path(&[]), "vrrp_track_file"));
        assert!(needs_block(&path(&["virtual_server"]), "real_server"));
        assert!(!needs_block(&path(&["virtual_server"]), "sorry_server"));
        assert!(needs_block(
            &path(&["virtual_server", "real_server", "HTTP_GET"]),
            "url"
        ));
        assert!(!needs_block(
            &path(&["vrrp_instance", "virtual_ipaddress"]),
            "virtual_server"
        ));
        assert!(!needs_block(&path(&["static_routes"]), "virtual_server"));
        assert!(!needs_block(&path(&[]), "static_routes"));
    }

    #[test]
    fn tables_have_no_duplicates() {
        let all = [
            Ctx::Top,
            Ctx::GlobalDefs,
            Ctx::VrrpScript,
            Ctx::TrackFile,
            Ctx::SyncGroup,
            Ctx::Instance,
            Ctx::Authentication,
            Ctx::VirtualServer,
            Ctx::RealServer,
            Ctx::Url,
        ];
        for ctx in all.into_iter().chain(CheckerKind::ALL.map(Ctx::Checker)) {
            let mut seen = std::collections::HashSet::new();
            for k in ctx.keywords().iter().chain(ctx.unsupported()) {
                assert!(seen.insert(k), "{k} twice in {ctx:?}");
            }
        }
    }
}
