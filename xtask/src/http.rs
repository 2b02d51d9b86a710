//! A tiny HTTP/1.0 server and client for the lab, so real servers and the
//! client need nothing installed. The server answers every request with its
//! name, which shows which real server a request reached.

use std::{
    io::{Read, Write},
    net::{TcpListener, TcpStream, ToSocketAddrs},
    time::Duration,
};

use anyhow::{Context, Result};

pub fn serve(bind: &str, name: &str) -> Result<()> {
    let listener = TcpListener::bind(bind).with_context(|| format!("binding {bind}"))?;
    eprintln!("http-serve {name} on {bind}");
    for conn in listener.incoming() {
        let Ok(mut conn) = conn else { continue };
        let body = format!("{name}\n");
        std::thread::spawn(move || {
            let _ = conn.set_read_timeout(Some(Duration::from_secs(5)));
            let mut req = Vec::new();
            let mut buf = [0u8; 1024];
            // Read the request head (bounded), then answer.
            while !req.windows(4).any(|w| w == b"\r\n\r\n") && req.len() < 16 * 1024 {
                match conn.read(&mut buf) {
                    Ok(0) | Err(_) => return,
                    Ok(n) => req.extend_from_slice(&buf[..n]),
                }
            }
            let _ = write!(
                conn,
                "HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        });
    }
    Ok(())
}

/// GET / from `addr` (host:port); returns the body.
pub fn get(addr: &str) -> Result<String> {
    let sock = addr.to_socket_addrs()?.next().with_context(|| format!("resolving {addr}"))?;
    let mut conn = TcpStream::connect_timeout(&sock, Duration::from_secs(3))
        .with_context(|| format!("connecting to {addr}"))?;
    conn.set_read_timeout(Some(Duration::from_secs(3)))?;
    write!(conn, "GET / HTTP/1.0\r\nHost: {addr}\r\n\r\n")?;
    let mut resp = String::new();
    conn.read_to_string(&mut resp).with_context(|| format!("reading from {addr}"))?;
    Ok(resp.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or(resp))
}
