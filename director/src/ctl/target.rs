//! Parsing of the real-server arguments `directorctl rs` takes, checked
//! locally so a typo is reported before anything reaches the daemon.
//!
//! - `IP` or `IP:PORT` for IPv4; `IPv6`, `[IPv6]` or `[IPv6]:PORT` for IPv6.
//!   A bare IPv6 address never carries a port (`fe80::1:80` is an address),
//!   as in ipvsadm.
//! - `--vs VIP:PORT`: the port is required (`0` for an all-ports service).

use std::net::{IpAddr, Ipv6Addr, SocketAddr};

use thiserror::Error;

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum TargetError {
    #[error("bad IP address `{0}` (IPv6 with a port is written [addr]:port)")]
    BadAddress(String),
    #[error("bad port `{port}` in `{arg}`: expected a number from 0 to 65535")]
    BadPort { arg: String, port: String },
    #[error("bad virtual server `{0}`: expected VIP:PORT, IPv6 as [addr]:port")]
    BadVirtualServer(String),
}

/// `IP[:PORT]` → (address, port if given).
pub fn parse_real(arg: &str) -> Result<(IpAddr, Option<u16>), TargetError> {
    let bad_addr = || TargetError::BadAddress(arg.to_owned());
    if let Some(rest) = arg.strip_prefix('[') {
        let (addr, after) = rest.split_once(']').ok_or_else(bad_addr)?;
        let addr: Ipv6Addr = addr.parse().map_err(|_| bad_addr())?;
        let port = match after {
            "" => None,
            _ => Some(parse_port(arg, after.strip_prefix(':').ok_or_else(bad_addr)?)?),
        };
        return Ok((IpAddr::V6(addr), port));
    }
    // A bare address first: this is how IPv6 without brackets is read.
    if let Ok(addr) = arg.parse::<IpAddr>() {
        return Ok((addr, None));
    }
    match arg.split_once(':') {
        Some((addr, port)) if !port.contains(':') => {
            let addr: IpAddr = addr.parse().map_err(|_| bad_addr())?;
            Ok((addr, Some(parse_port(arg, port)?)))
        }
        _ => Err(bad_addr()),
    }
}

/// `VIP:PORT` (IPv6 `[addr]:port`).
pub fn parse_virtual(arg: &str) -> Result<SocketAddr, TargetError> {
    match parse_real(arg) {
        Ok((addr, Some(port))) => Ok(SocketAddr::new(addr, port)),
        // Name the port problem rather than a generic one.
        Err(e @ TargetError::BadPort { .. }) => Err(e),
        _ => Err(TargetError::BadVirtualServer(arg.to_owned())),
    }
}

fn parse_port(arg: &str, port: &str) -> Result<u16, TargetError> {
    // `u16::from_str` accepts a leading `+`; a port is digits only.
    if port.is_empty() || !port.bytes().all(|b| b.is_ascii_digit()) {
        return Err(TargetError::BadPort { arg: arg.to_owned(), port: port.to_owned() });
    }
    port.parse().map_err(|_| TargetError::BadPort { arg: arg.to_owned(), port: port.to_owned() })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v4(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn real_forms() {
        assert_eq!(parse_real("10.0.0.1"), Ok((v4("10.0.0.1"), None)));
        assert_eq!(parse_real("10.0.0.1:80"), Ok((v4("10.0.0.1"), Some(80))));
        assert_eq!(parse_real("10.0.0.1:0"), Ok((v4("10.0.0.1"), Some(0))));
        assert_eq!(parse_real("2001:db8::1"), Ok((v4("2001:db8::1"), None)));
        assert_eq!(parse_real("[2001:db8::1]"), Ok((v4("2001:db8::1"), None)));
        assert_eq!(parse_real("[2001:db8::1]:443"), Ok((v4("2001:db8::1"), Some(443))));
        // ipvsadm's rule: without brackets the last group is part of the address.
        assert_eq!(parse_real("fe80::1:80"), Ok((v4("fe80::1:80"), None)));
    }

    #[test]
    fn real_errors_are_specific() {
        assert_eq!(
            parse_real("10.0.0.300").unwrap_err().to_string(),
            "bad IP address `10.0.0.300` (IPv6 with a port is written [addr]:port)"
        );
        assert_eq!(
            parse_real("10.0.0.1:99999").unwrap_err().to_string(),
            "bad port `99999` in `10.0.0.1:99999`: expected a number from 0 to 65535"
        );
        assert!(matches!(parse_real("10.0.0.1:+80"), Err(TargetError::BadPort { .. })));
        assert!(matches!(parse_real("10.0.0.1:"), Err(TargetError::BadPort { .. })));
        assert!(matches!(parse_real("[::1]80"), Err(TargetError::BadAddress(_))));
        assert!(matches!(parse_real("[10.0.0.1]:80"), Err(TargetError::BadAddress(_))));
        assert!(matches!(parse_real("host:80"), Err(TargetError::BadAddress(_))));
        assert!(matches!(parse_real(""), Err(TargetError::BadAddress(_))));
    }

    #[test]
    fn virtual_needs_a_port() {
        assert_eq!(parse_virtual("192.168.122.100:80"), Ok("192.168.122.100:80".parse().unwrap()));
        assert_eq!(parse_virtual("[2001:db8::100]:80"), Ok("[2001:db8::100]:80".parse().unwrap()));
        assert_eq!(
            parse_virtual("192.168.122.100").unwrap_err().to_string(),
            "bad virtual server `192.168.122.100`: expected VIP:PORT, IPv6 as [addr]:port"
        );
        assert!(matches!(parse_virtual("1.2.3.4:70000"), Err(TargetError::BadPort { .. })));
    }
}
