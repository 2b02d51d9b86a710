//! Parsing of single argument values (numbers, times, addresses, booleans).
//! Each error reads as the end of a sentence that starts with the keyword:
//! "`priority` must be a whole number from 1 to 255, not '0'".

use std::net::IpAddr;
use std::time::Duration;

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ValueError {
    #[error("must be a whole number from {min} to {max}, not '{got}'")]
    Integer { got: String, min: i64, max: i64 },
    #[error("must be a time in seconds from {min} to {max}, not '{got}'")]
    Timer { got: String, min: f64, max: f64 },
    #[error("must be an IP address, not '{got}'")]
    Ip { got: String },
    #[error(
        "must be an IPv4 or IPv6 address with an optional /PREFIX (0-32 or 0-128), not '{got}'"
    )]
    Prefix { got: String },
    #[error("must be one of on, off, true, false, yes, no; not '{got}'")]
    Bool { got: String },
    #[error("must be one of {choices}; not '{got}'")]
    Choice { got: String, choices: String },
}

/// A decimal integer within `[min, max]`.
pub fn int<T: TryFrom<i64>>(s: &str, min: i64, max: i64) -> Result<T, ValueError> {
    let err = || ValueError::Integer {
        got: s.to_string(),
        min,
        max,
    };
    let v: i64 = s.parse().map_err(|_| err())?;
    if v < min || v > max {
        return Err(err());
    }
    T::try_from(v).map_err(|_| err())
}

/// A time in (possibly fractional) seconds within `[min, max]`, with
/// microsecond resolution like keepalived's TIMER.
pub fn timer(s: &str, min: f64, max: f64) -> Result<Duration, ValueError> {
    let err = || ValueError::Timer {
        got: s.to_string(),
        min,
        max,
    };
    let v: f64 = s.parse().map_err(|_| err())?;
    if !v.is_finite() || v < min || v > max {
        return Err(err());
    }
    let micros = (v * 1_000_000.0).round();
    Ok(Duration::from_micros(micros as u64))
}

pub fn ip(s: &str) -> Result<IpAddr, ValueError> {
    s.parse().map_err(|_| ValueError::Ip { got: s.to_string() })
}

/// `ADDR[/PREFIX]`; the prefix defaults to the full length of the family.
pub fn ip_prefix(s: &str) -> Result<(IpAddr, u8), ValueError> {
    let err = || ValueError::Prefix { got: s.to_string() };
    let (addr, prefix) = match s.split_once('/') {
        Some((a, p)) => (a, Some(p)),
        None => (s, None),
    };
    let addr: IpAddr = addr.parse().map_err(|_| err())?;
    let max = if addr.is_ipv4() { 32 } else { 128 };
    let prefix = match prefix {
        Some(p) => p.parse::<u8>().ok().filter(|p| *p <= max).ok_or_else(err)?,
        None => max,
    };
    Ok((addr, prefix))
}

/// keepalived's `<BOOL>`.
pub fn boolean(s: &str) -> Result<bool, ValueError> {
    match s.to_ascii_lowercase().as_str() {
        "on" | "true" | "yes" => Ok(true),
        "off" | "false" | "no" => Ok(false),
        _ => Err(ValueError::Bool { got: s.to_string() }),
    }
}

/// One of a fixed set of words, case-insensitively; returns the canonical one.
pub fn choice<'a>(s: &str, choices: &[&'a str]) -> Result<&'a str, ValueError> {
    choices
        .iter()
        .find(|c| c.eq_ignore_ascii_case(s))
        .copied()
        .ok_or_else(|| ValueError::Choice {
            got: s.to_string(),
            choices: choices.join(", "),
        })
}

/// A host name (RFC 1123 labels) or an IP address.
pub fn is_host(s: &str) -> bool {
    s.parse::<IpAddr>().is_ok()
        || (!s.is_empty()
            && s.len() <= 253
            && s.split('.').all(|l| {
                !l.is_empty()
                    && l.len() <= 63
                    && !l.starts_with('-')
                    && !l.ends_with('-')
                    && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
            }))
}

/// Split a script command line into words like keepalived: whitespace
/// separates words, single quotes keep spaces inside one word.
pub fn split_command(cmd: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut quoted = false;
    for c in cmd.chars() {
        match c {
            '\'' => {
                quoted = !quoted;
                in_word = true;
            }
            c if c.is_whitespace() && !quoted => {
                if in_word {
                    words.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            c => {
                cur.push(c);
                in_word = true;
            }
        }
    }
    if in_word {
        words.push(cur);
    }
    words
}

/// A user or group name as `useradd` accepts it.
pub fn is_user_name(s: &str) -> bool {
    !s.is_empty()
        && !s.starts_with('-')
        && s.len() <= 32
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '$'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integers() {
        assert_eq!(int::<u8>("255", 1, 255), Ok(255));
        assert_eq!(
            int::<u8>("256", 1, 255).unwrap_err().to_string(),
            "must be a whole number from 1 to 255, not '256'"
        );
        assert!(int::<u8>("abc", 1, 255).is_err());
        assert!(int::<u8>("", 1, 255).is_err());
    }

    #[test]
    fn timers() {
        assert_eq!(timer("1", 0.0, 10.0), Ok(Duration::from_secs(1)));
        assert_eq!(timer("0.25", 0.0, 10.0), Ok(Duration::from_millis(250)));
        assert!(timer("-1", 0.0, 10.0).is_err());
        assert!(timer("nan", 0.0, 10.0).is_err());
        assert!(timer("inf", 0.0, 10.0).is_err());
        assert!(timer("1e400", 0.0, 10.0).is_err());
    }

    #[test]
    fn addresses() {
        assert_eq!(ip_prefix("10.0.0.1/24").map(|p| p.1), Ok(24));
        assert_eq!(ip_prefix("10.0.0.1").map(|p| p.1), Ok(32));
        assert_eq!(ip_prefix("fe80::1").map(|p| p.1), Ok(128));
        assert!(ip_prefix("10.0.0.1/33").is_err());
        assert!(ip_prefix("300.1.1.1").is_err());
        assert!(is_host("mail.example.com"));
        assert!(is_host("192.168.1.1"));
        assert!(!is_host("192.168.1.*"));
    }

    #[test]
    fn commands() {
        assert_eq!(
            split_command("killall -0 nginx"),
            ["killall", "-0", "nginx"]
        );
        assert_eq!(
            split_command("bash -c '</dev/tcp/0.0.0.0/8889'"),
            ["bash", "-c", "</dev/tcp/0.0.0.0/8889"]
        );
        assert_eq!(split_command("a '' b"), ["a", "", "b"]);
    }

    #[test]
    fn users() {
        assert!(is_user_name("keepalived_script"));
        assert!(!is_user_name("这里可以用脚本代替"));
    }
}
