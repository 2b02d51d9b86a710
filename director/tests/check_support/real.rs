//! Real servers for the checker tests: nginx (HTTP and HTTPS, certificate
//! generated here) and dnsmasq, on 127.0.0.1, in a temporary prefix. Each
//! is one process, killed and reaped on drop, even when the test fails.

use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A child process killed (SIGKILL) and reaped on drop.
pub struct Proc {
    child: Child,
    what: &'static str,
    log: PathBuf,
}

impl Proc {
    fn spawn(what: &'static str, cmd: &mut Command, log: PathBuf) -> Proc {
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {what}: {e} (run `cargo xtask setup`)"));
        Proc { child, what, log }
    }

    /// Panics with the log when the process has exited.
    fn assert_running(&mut self) {
        if let Ok(Some(st)) = self.child.try_wait() {
            let log = std::fs::read_to_string(&self.log).unwrap_or_default();
            panic!("{} exited ({st}):\n{log}", self.what);
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A free TCP port on 127.0.0.1 (bound then released).
pub fn free_tcp_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A free UDP port on 127.0.0.1 (bound then released).
pub fn free_udp_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Waits until `addr` accepts TCP connections; panics after 10 s.
fn wait_listening(p: &mut Proc, addr: SocketAddr) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        p.assert_running();
        if std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return;
        }
        assert!(Instant::now() < deadline, "{} never listened on {addr}", p.what);
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// nginx with one HTTP and one HTTPS server on 127.0.0.1, serving `files`
/// from its root and answering 500 on `/fail`.
pub struct Nginx {
    pub http: SocketAddr,
    pub https: SocketAddr,
    pub dir: tempfile::TempDir,
    _proc: Proc,
}

impl Nginx {
    pub fn start(files: &[(&str, &[u8])]) -> Nginx {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path();
        std::fs::create_dir(p.join("www")).unwrap();
        for (name, body) in files {
            std::fs::write(p.join("www").join(name), body).unwrap();
        }
        let ck = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
        std::fs::write(p.join("cert.pem"), ck.cert.pem()).unwrap();
        std::fs::write(p.join("key.pem"), ck.signing_key.serialize_pem()).unwrap();
        let http: SocketAddr = SocketAddr::from(([127, 0, 0, 1], free_tcp_port()));
        let https: SocketAddr = SocketAddr::from(([127, 0, 0, 1], free_tcp_port()));
        let d = p.display();
        let conf = format!(
            "daemon off;\nmaster_process off;\npid {d}/nginx.pid;\nerror_log {d}/error.log;\n\
             events {{ worker_connections 64; }}\n\
             http {{\n access_log off;\n client_body_temp_path {d}/body;\n proxy_temp_path {d}/proxy;\n\
             fastcgi_temp_path {d}/fastcgi;\n uwsgi_temp_path {d}/uwsgi;\n scgi_temp_path {d}/scgi;\n\
             default_type text/plain;\n root {d}/www;\n\
             server {{ listen {http}; location = /fail {{ return 500; }} }}\n\
             server {{ listen {https} ssl; ssl_certificate {d}/cert.pem; ssl_certificate_key {d}/key.pem;\n\
             location = /fail {{ return 500; }} }}\n}}\n"
        );
        std::fs::write(p.join("nginx.conf"), conf).unwrap();
        let mut proc = Proc::spawn(
            "nginx",
            Command::new("nginx")
                .arg("-p")
                .arg(p)
                .arg("-e")
                .arg(p.join("error.log"))
                .arg("-c")
                .arg(p.join("nginx.conf")),
            p.join("error.log"),
        );
        wait_listening(&mut proc, http);
        wait_listening(&mut proc, https);
        Nginx { http, https, dir, _proc: proc }
    }

    pub fn root(&self) -> PathBuf {
        self.dir.path().join("www")
    }
}

/// dnsmasq answering on 127.0.0.1:port, authoritative (`--local`) for
/// `zone`, with the `--address` / `--txt-record` lines given.
pub struct Dnsmasq {
    pub addr: SocketAddr,
    _dir: tempfile::TempDir,
    _proc: Proc,
}

impl Dnsmasq {
    pub fn start(zone: &str, records: &[&str]) -> Dnsmasq {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("dnsmasq.log");
        let port = free_udp_port();
        let mut cmd = Command::new("dnsmasq");
        cmd.args([
            "--no-daemon",
            "--conf-file=/dev/null",
            "--no-resolv",
            "--no-hosts",
            "--bind-interfaces",
            "--listen-address=127.0.0.1",
            "--pid-file",
            "--user=root",
        ])
        .arg(format!("--port={port}"))
        .arg(format!("--local=/{zone}/"))
        .arg(format!("--log-facility={}", log.display()))
        .args(records);
        let proc = Proc::spawn("dnsmasq", &mut cmd, log);
        Dnsmasq {
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            _dir: dir,
            _proc: proc,
        }
    }

    /// Panics (with dnsmasq's log) if it exited.
    pub fn assert_running(&mut self) {
        self._proc.assert_running();
    }
}
