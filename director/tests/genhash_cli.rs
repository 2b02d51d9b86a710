//! `director genhash` prints what keepalived's genhash prints: the MD5 of
//! the page body, which must equal `md5sum` of the same bytes.

use std::{
    io::{Read, Write},
    net::TcpListener,
    process::{Command, Stdio},
    time::Duration,
};

const BODY: &[u8] = b"<html><body>real server 1</body></html>\n";

#[test]
fn genhash_equals_md5sum_of_the_served_body() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = std::thread::spawn(move || {
        let (mut c, _) = listener.accept().unwrap();
        c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut req = Vec::new();
        let mut buf = [0u8; 1024];
        while !req.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = c.read(&mut buf).unwrap();
            assert!(n > 0, "client closed early");
            req.extend_from_slice(&buf[..n]);
        }
        write!(c, "HTTP/1.0 200 OK\r\nContent-Length: {}\r\n\r\n", BODY.len()).unwrap();
        c.write_all(BODY).unwrap();
        String::from_utf8_lossy(&req).into_owned()
    });
    let out = Command::new(env!("CARGO_BIN_EXE_director"))
        .args(["genhash", "-s", "127.0.0.1", "-p", &port.to_string(), "-u", "/test.html", "-V", "www.example.com"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let request = server.join().unwrap();
    assert!(request.starts_with("GET /test.html HTTP/1."), "{request}");
    assert!(request.contains("Host: www.example.com"), "{request}");

    let mut md5sum = Command::new("md5sum").stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().unwrap();
    md5sum.stdin.take().unwrap().write_all(BODY).unwrap();
    let expected = String::from_utf8(md5sum.wait_with_output().unwrap().stdout).unwrap();
    let expected = expected.split_whitespace().next().unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), format!("MD5SUM = {expected}"));
}
