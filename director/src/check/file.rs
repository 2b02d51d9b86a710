//! FILE_CHECK: the integer in a `track_file`'s file decides, as keepalived
//! 2.2.7 (track_file.c, check_file.c):
//! - the file is read as C `strtol(buf, NULL, 0)`: leading blanks, a sign,
//!   `0x` hex or `0` octal; no digits, an empty or a missing file read 0;
//! - only a regular file is read, never through a symbolic link, and only
//!   its first 127 bytes ([`read_head`], off the daemon's thread): a link,
//!   a FIFO, a device or a directory fails the check and says which;
//! - weight 0: a non-zero value is down, 0 is up (`reverse` swaps them);
//! - weight W: the result is `value * W` (negated with `reverse`); at or
//!   below -2147483648 the checker is down, else up, and with `dynamic`
//!   the result is added to the real server's configured weight.
//!
//! keepalived ignores a number out of the 32-bit range (keeps the previous
//! state); a check run has no memory, so here it is a failure that names it.

use std::io::Read;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};

use super::state::CheckResult;
use crate::config::FileCheck;

/// The most of a track file that is read: keepalived reads one integer
/// into a 128-byte buffer.
pub const MAX_READ: u64 = 127;

/// The value of a track file's content, as C `strtol(s, NULL, 0)` reads it
/// (leading C blanks, a sign, `0x` hex or `0` octal, digits up to the first
/// non-digit; no digits is 0). `None` for a value outside keepalived's range
/// -2147483648..=2147483648 (strtol's ERANGE included). Shared by FILE_CHECK
/// and VRRP's `track_file`.
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
    let v = if neg { -v } else { v };
    (i128::from(i32::MIN)..=i128::from(i32::MAX) + 1)
        .contains(&v)
        .then_some(v as i64)
}

/// The first [`MAX_READ`] bytes of a regular file, for FILE_CHECK and
/// VRRP's `track_file` alike. A symbolic link is not followed and anything
/// but a regular file is refused: whoever can swap the file for a link, a
/// FIFO or a device must not choose what is read, nor make the read hang
/// (`/dev/zero` never ends, a FIFO without a writer blocks). Blocking: call
/// it off any thread that keeps timers.
pub fn read_head(path: &str) -> std::io::Result<String> {
    // O_NONBLOCK: opening a FIFO does not wait for a writer; O_NOCTTY: a
    // terminal opened by mistake does not become ours.
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOFOLLOW | libc::O_NOCTTY)
        .open(path)
        .map_err(|e| match e.raw_os_error() {
            Some(libc::ELOOP) => std::io::Error::other("a symbolic link, not followed"),
            _ => e,
        })?;
    let kind = f.metadata()?.file_type();
    if !kind.is_file() {
        let what = if kind.is_dir() {
            "a directory"
        } else if kind.is_fifo() {
            "a FIFO"
        } else if kind.is_socket() {
            "a socket"
        } else {
            "a device"
        };
        return Err(std::io::Error::other(format!("not a regular file ({what})")));
    }
    let mut buf = Vec::with_capacity(MAX_READ as usize + 1);
    f.take(MAX_READ).read_to_end(&mut buf)?;
    Ok(String::from_utf8_lossy(&buf).into_owned())
}

/// The result of a FILE_CHECK that read `value`.
pub fn judge(f: &FileCheck, value: i64) -> CheckResult {
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

/// Runs one FILE_CHECK; the file is read on tokio's blocking pool, never on
/// the daemon's thread.
pub async fn check(f: &FileCheck) -> CheckResult {
    let Some(path) = &f.file else {
        return CheckResult::fail(format!("track_file {} is not defined", f.track_file));
    };
    let p = path.clone();
    let read = match tokio::task::spawn_blocking(move || read_head(&p)).await {
        Ok(r) => r,
        Err(e) => return CheckResult::fail(format!("the read failed: {e}")),
    };
    let value = match read {
        Ok(text) => parse_value(&text),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Some(0),
        // The checker's name in the log already says which file.
        Err(e) => return CheckResult::fail(e.to_string()),
    };
    match value {
        Some(v) => judge(f, v),
        None => CheckResult::fail("the number is out of range -2147483648..=2147483648"),
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
        // keepalived's range, both ends included.
        assert_eq!(parse_value("2147483648"), Some(2147483648));
        assert_eq!(parse_value("-2147483648"), Some(-2147483648));
        assert_eq!(parse_value("2147483649"), None);
        assert_eq!(parse_value("-2147483649"), None);
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

    fn at(path: &std::path::Path) -> FileCheck {
        FileCheck {
            file: Some(path.to_str().unwrap().into()),
            ..fc(0, false, false)
        }
    }

    /// What a FILE_CHECK says: its failure reason, "up", or "still running"
    /// when it did not finish within 2 s (then the test fails instead of
    /// hanging: a reader stuck on a FIFO is let go by opening the FIFO for
    /// writing, so the runtime can shut down).
    async fn outcome(f: &FileCheck) -> String {
        let path = f.file.clone().unwrap();
        match tokio::time::timeout(std::time::Duration::from_secs(2), check(f)).await {
            Ok(CheckResult::Fail { reason }) => reason,
            Ok(CheckResult::Ok { .. }) => "up".into(),
            Err(_) => {
                let _ = std::fs::OpenOptions::new()
                    .write(true)
                    .custom_flags(libc::O_NONBLOCK)
                    .open(&path);
                "still running after 2 s".into()
            }
        }
    }

    #[tokio::test]
    async fn hostile_track_files_fail_at_once_and_say_why() {
        let dir = tempfile::tempdir().unwrap();
        let p = |n: &str| dir.path().join(n);
        std::fs::write(p("value"), "0\n").unwrap();
        assert_eq!(outcome(&at(&p("value"))).await, "up");
        // A link to a file that reads up: not followed.
        std::os::unix::fs::symlink(p("value"), p("link")).unwrap();
        let fifo = std::ffi::CString::new(p("fifo").to_str().unwrap()).unwrap();
        // SAFETY: a valid C string; mkfifo(3) only creates the node.
        assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o600) }, 0);
        std::fs::create_dir(p("dir")).unwrap();
        let (mut got, mut want) = (vec![], vec![]);
        for (path, says) in [
            (p("link"), "a symbolic link, not followed"),
            (p("fifo"), "not a regular file (a FIFO)"),
            (p("dir"), "not a regular file (a directory)"),
            ("/dev/zero".into(), "not a regular file (a device)"),
        ] {
            got.push(outcome(&at(&path)).await);
            want.push(says.to_string());
        }
        assert_eq!(got, want);
    }

    #[tokio::test]
    async fn a_huge_track_file_is_read_only_at_its_head() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("huge");
        let f = std::fs::File::create(&path).unwrap();
        std::io::Write::write_all(&mut &f, b"1\n").unwrap();
        // 64 GiB, sparse: reading it whole would exhaust memory.
        f.set_len(64 << 30).unwrap();
        assert_eq!(outcome(&at(&path)).await, "value 1, expected 0");
    }
}
