//! FILE_CHECK: the integer in a `track_file`'s file decides, as keepalived
//! 2.2.7 (track_file.c, check_file.c):
//! - the file is read as C `strtol(buf, NULL, 0)`: leading blanks, a sign,
//!   `0x` hex or `0` octal; no digits, an empty or a missing file read 0;
//! - weight 0: a non-zero value is down, 0 is up (`reverse` swaps them);
//! - weight W: the result is `value * W` (negated with `reverse`); at or
//!   below -2147483648 the checker is down, else up, and with `dynamic`
//!   the result is added to the real server's configured weight.
//!
//! keepalived ignores a number out of the 32-bit range (keeps the previous
//! state); a check run has no memory, so here it is a failure that names it.

use super::state::CheckResult;
use crate::config::FileCheck;

/// The value of a track file's content, as C `strtol(s, NULL, 0)` reads it.
/// None when the number does not fit in an i64 (strtol's ERANGE).
pub fn parse_value(s: &str) -> Option<i64> {
    let s = s.trim_start_matches([' ', '\t', '\n', '\r', '\x0b', '\x0c']);
    let (neg, s) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    let hex = s
        .strip_prefix("0x")
        .or_else(|| s.strip_prefix("0X"))
        .filter(|r| r.starts_with(|c: char| c.is_ascii_hexdigit()));
    let (radix, digits) = match hex {
        Some(r) => (16, r),
        None if s.starts_with('0') => (8, s),
        None => (10, s),
    };
    let end = digits
        .find(|c: char| !c.is_digit(radix))
        .unwrap_or(digits.len());
    if end == 0 {
        return Some(0);
    }
    let v = i128::from_str_radix(&digits[..end], radix).ok()?;
    i64::try_from(if neg { -v } else { v }).ok()
}

/// The result of a FILE_CHECK that read `value`.
pub fn judge(f: &FileCheck, value: i64) -> CheckResult {
    if value < i64::from(i32::MIN) || value > i64::from(i32::MAX) + 1 {
        return CheckResult::fail(format!("value {value} is out of range"));
    }
    let weight = f.weight.unwrap_or(1);
    if weight == 0 {
        return if (value != 0) != f.reverse {
            let want = if f.reverse { "non-zero" } else { "0" };
            CheckResult::fail(format!("value {value}, expected {want}"))
        } else {
            CheckResult::ok()
        };
    }
    let sign = if f.reverse { -1 } else { 1 };
    let result = value * i64::from(weight) * sign;
    if result <= i64::from(i32::MIN) {
        return CheckResult::fail(format!(
            "value {value} × weight {}{weight} = {result}, at or below -2147483648",
            if f.reverse { "-" } else { "" }
        ));
    }
    if !f.dynamic {
        return CheckResult::ok();
    }
    let w = (i64::from(f.base_weight) + result).clamp(0, i64::from(u32::MAX));
    CheckResult::Ok {
        weight: Some(w as u32),
    }
}

/// Runs one FILE_CHECK.
pub async fn check(f: &FileCheck) -> CheckResult {
    let Some(path) = &f.file else {
        return CheckResult::fail(format!("track_file {} is not defined", f.track_file));
    };
    let value = match tokio::fs::read(path).await {
        // keepalived reads at most 127 bytes.
        Ok(b) => parse_value(&String::from_utf8_lossy(&b[..b.len().min(127)])),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Some(0),
        Err(e) => return CheckResult::fail(format!("{path}: {e}")),
    };
    match value {
        Some(v) => judge(f, v),
        None => CheckResult::fail(format!("{path}: the number does not fit in 64 bits")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fc(weight: i32, reverse: bool, dynamic: bool) -> FileCheck {
        FileCheck {
            track_file: "t".into(),
            dynamic,
            weight: Some(weight),
            reverse,
            file: Some("/nonexistent".into()),
            base_weight: 10,
        }
    }

    #[test]
    fn parses_like_strtol_base_0() {
        for (s, v) in [
            ("0", 0),
            ("  42\n", 42),
            ("-7", -7),
            ("+3", 3),
            ("0x1f", 31),
            ("010", 8),
            ("09", 0),
            ("12abc", 12),
            ("", 0),
            ("abc", 0),
            ("0x", 0),
        ] {
            assert_eq!(parse_value(s), Some(v), "{s:?}");
        }
        assert_eq!(parse_value("99999999999999999999"), None);
    }

    #[test]
    fn weight_zero_is_a_boolean_and_reverse_swaps_it() {
        assert!(judge(&fc(0, false, false), 0).is_ok());
        assert_eq!(
            judge(&fc(0, false, false), 3),
            CheckResult::fail("value 3, expected 0")
        );
        assert!(judge(&fc(0, true, false), 1).is_ok());
        assert_eq!(
            judge(&fc(0, true, false), 0),
            CheckResult::fail("value 0, expected non-zero")
        );
    }

    #[test]
    fn weighted_values_fault_only_at_the_bottom_of_the_range() {
        assert!(judge(&fc(1, false, false), -5).is_ok());
        assert!(!judge(&fc(1, false, false), i64::from(i32::MIN)).is_ok());
        assert!(!judge(&fc(2, true, false), 1 << 30).is_ok());
        assert!(!judge(&fc(1, false, false), i64::from(i32::MAX) + 2).is_ok());
    }

    #[test]
    fn dynamic_adds_the_result_to_the_configured_weight() {
        assert_eq!(
            judge(&fc(2, false, true), 3),
            CheckResult::Ok { weight: Some(16) }
        );
        assert_eq!(
            judge(&fc(1, true, true), 4),
            CheckResult::Ok { weight: Some(6) }
        );
        assert_eq!(
            judge(&fc(1, false, true), -50),
            CheckResult::Ok { weight: Some(0) }
        );
        assert_eq!(judge(&fc(1, false, false), 3), CheckResult::ok());
    }
}
