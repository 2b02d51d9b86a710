//! The control socket end to end without a daemon: `daemon::control::serve` on a
//! temporary socket, a fake handler task answering canned responses, and
//! both `client::request` and the real `directorctl` binary against it.

use std::{
    fs,
    io::{BufRead, BufReader, ErrorKind, Read, Write},
    os::unix::{fs::PermissionsExt, net::UnixStream},
    path::{Path, PathBuf},
    process::{Command as Process, Output},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use director::{
    ctl::{
        client::{self, Client, CtlError},
        ipvsadm::{self, Layout, ListOptions},
        protocol::{AdminAction, Command, ConnView, RealTarget, Response},
        summary,
    },
    daemon::control as server,
    status::{AdminState, DaemonView, InterfaceView, RealView, ReasonView, ServiceView, Snapshot, TrafficView},
};
use tempfile::TempDir;
use tokio::{runtime::Runtime, sync::mpsc};

const DIRECTORCTL: &str = env!("CARGO_BIN_EXE_directorctl");

/// What the fake daemon answers; `None` never answers (a hung daemon).
type Handler = Box<dyn Fn(&Command) -> Option<Response> + Send + Sync>;

struct Fake {
    path: PathBuf,
    seen: Arc<Mutex<Vec<Command>>>,
    // Dropped last: the runtime's tasks hold the socket open until then.
    _rt: Runtime,
    _dir: TempDir,
}

impl Fake {
    fn start(handler: Handler) -> Self {
        let dir = socket_dir();
        // A directory bind must create, as /run/director is on first start.
        let path = dir.path().join("run").join("director.sock");
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        let listener = {
            let _guard = rt.enter();
            server::bind(&path, server::DEFAULT_MODE).unwrap()
        };
        let (tx, mut rx) = mpsc::channel(16);
        rt.spawn(server::serve(listener, tx));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = Arc::clone(&seen);
        rt.spawn(async move {
            let mut parked = Vec::new();
            while let Some((command, reply)) = rx.recv().await {
                log.lock().unwrap().push(command.clone());
                match handler(&command) {
                    Some(response) => {
                        let _ = reply.send(response);
                    }
                    None => parked.push(reply),
                }
            }
        });
        Self { path, seen, _rt: rt, _dir: dir }
    }

    /// The canned daemon most tests talk to.
    fn canned() -> Self {
        Self::start(Box::new(canned))
    }

    fn ctl(&self, args: &[&str]) -> Output {
        run(Process::new(DIRECTORCTL).arg("--socket").arg(&self.path).args(args))
    }

    fn seen(&self) -> Vec<Command> {
        self.seen.lock().unwrap().clone()
    }
}

fn socket_dir() -> TempDir {
    let dir = tempfile::tempdir().unwrap();
    // Traversable by anyone, so only the socket's own mode can say no.
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
    dir
}

fn run(cmd: &mut Process) -> Output {
    cmd.env_remove("DIRECTOR_SOCKET").output().expect("run directorctl")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn real(addr: &str, port: u16, weight: u32) -> RealView {
    RealView {
        addr: addr.parse().unwrap(),
        port,
        forward: "Route".into(),
        configured_weight: weight,
        effective_weight: weight,
        admin: AdminState::Enabled,
        health: "up".into(),
        active_conns: 4,
        inactive_conns: 1,
        traffic: TrafficView { conns: 10, in_packets: 200, in_bytes: 30_000, out_packets: 0, out_bytes: 0 },
    }
}

fn snapshot() -> Snapshot {
    let mut disabled = real("192.168.122.12", 80, 1);
    disabled.admin = AdminState::Disabled;
    disabled.effective_weight = 0;
    Snapshot {
        daemon: DaemonView {
            version: "0.1.0".into(),
            pid: 4242,
            config_file: "/etc/keepalived/keepalived.conf".into(),
            config_generation: 3,
            reloads_ok: 2,
            reloads_failed: 0,
            last_reload_error: None,
            dataplane: "xdp".into(),
            interfaces: vec![InterfaceView { name: "eth0".into(), attach_mode: "native".into() }],
            uptime_secs: 3_725,
            limits: Vec::new(),
        },
        services: vec![ServiceView {
            proto: "TCP".into(),
            vip: "192.168.122.100".parse().unwrap(),
            port: 80,
            sched: "wrr".into(),
            persistence_secs: Some(360),
            persistence_mask: None,
            fwmark: None,
            reals: vec![real("192.168.122.11", 80, 1), disabled],
            sorry: None,
            traffic: TrafficView { conns: 20, in_packets: 400, in_bytes: 60_000, out_packets: 0, out_bytes: 0 },
        }],
        reasons: vec![
            ReasonView { reason: "fwd_dr".into(), action: "fwd".into(), packets: 400, bytes: 60_000 },
            ReasonView { reason: "drop_no_real".into(), action: "drop".into(), packets: 7, bytes: 420 },
        ],
        vrrp: Vec::new(),
    }
}

fn conns() -> Vec<ConnView> {
    vec![ConnView {
        proto: "TCP".into(),
        source: "192.168.122.1:40000".parse().unwrap(),
        virtual_addr: "192.168.122.100:80".parse().unwrap(),
        destination: "192.168.122.11:80".parse().unwrap(),
    }]
}

fn canned(command: &Command) -> Option<Response> {
    Some(match command {
        Command::Status => Response::Status { snapshot: Box::new(snapshot()) },
        Command::Connections => Response::Connections { entries: conns() },
        Command::RealServer { target, action } if target.addr.to_string() == "192.168.122.11" => {
            let to = match action {
                AdminAction::Disable => "0 (disabled)".to_owned(),
                AdminAction::Enable => "1 (enabled)".to_owned(),
                AdminAction::Weight(w) => w.to_string(),
            };
            Response::Changed {
                changes: vec![
                    format!("192.168.122.11:80 in TCP 192.168.122.100:80: weight 1 -> {to}"),
                    format!("192.168.122.11:80 in TCP 192.168.122.101:80: weight 1 -> {to}"),
                ],
            }
        }
        Command::RealServer { target, .. } => {
            Response::Error { message: format!("no real server {} in any virtual server", target.addr) }
        }
        Command::Reload { .. } => Response::Reloaded {
            generation: 4,
            warnings: vec![
                "keepalived.conf:9:5: warning: lvs_sched wlc: weighted consistent hashing is used instead".into(),
            ],
        },
    })
}

/// One raw request line, one raw reply line.
fn exchange(stream: &mut BufReader<UnixStream>, line: &[u8]) -> String {
    stream.get_mut().write_all(line).unwrap();
    let mut reply = String::new();
    stream.read_line(&mut reply).unwrap();
    reply
}

fn raw(path: &Path) -> BufReader<UnixStream> {
    let stream = UnixStream::connect(path).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    BufReader::new(stream)
}

fn error_message(reply: &str) -> String {
    match serde_json::from_str::<Response>(reply) {
        Ok(Response::Error { message }) => message,
        other => panic!("expected an error reply, got {other:?} from {reply:?}"),
    }
}

#[test]
fn client_round_trip_and_several_requests_per_connection() {
    let fake = Fake::canned();
    let reply = client::request(&fake.path, Command::Status).unwrap();
    assert_eq!(reply, Response::Status { snapshot: Box::new(snapshot()) });

    let mut client = Client::connect(&fake.path).unwrap();
    assert_eq!(client.call(Command::Connections).unwrap(), Response::Connections { entries: conns() });
    assert!(matches!(client.call(Command::Reload { dry_run: false }).unwrap(), Response::Reloaded { generation: 4, .. }));
    assert_eq!(fake.seen(), [Command::Status, Command::Connections, Command::Reload { dry_run: false }]);
}

#[test]
fn bind_sets_the_mode_and_refuses_a_live_socket() {
    let fake = Fake::canned();
    let mode = fs::metadata(&fake.path).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    let parent = fs::metadata(fake.path.parent().unwrap()).unwrap().permissions().mode();
    assert_eq!(parent & 0o777, 0o755);

    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let _guard = rt.enter();
    let err = server::bind(&fake.path, server::DEFAULT_MODE).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::AddrInUse);
    assert_eq!(err.to_string(), format!("another director is running: it answers on {}", fake.path.display()));
    // And the live daemon still answers.
    assert!(client::request(&fake.path, Command::Status).is_ok());

    let dir = socket_dir();
    let file = dir.path().join("not-a-socket");
    fs::write(&file, "keep me").unwrap();
    let err = server::bind(&file, server::DEFAULT_MODE).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::AlreadyExists);
    assert_eq!(fs::read_to_string(&file).unwrap(), "keep me");
}

#[test]
fn status_renders_the_snapshot() {
    let fake = Fake::canned();
    let out = fake.ctl(&["status"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(stdout(&out), summary::status(&snapshot()));
    assert!(stdout(&out).contains("real servers  2: 1 up, 1 disabled\n"), "{}", stdout(&out));

    let out = fake.ctl(&["status", "--json"]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(serde_json::from_slice::<Snapshot>(&out.stdout).unwrap(), snapshot());

    // The socket from the environment, as documented.
    let out = Process::new(DIRECTORCTL).arg("status").env("DIRECTOR_SOCKET", &fake.path).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
}

#[test]
fn list_in_ipvsadm_layouts() {
    let fake = Fake::canned();
    let out = fake.ctl(&["list"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    // ipvsadm -Ln, plus the trailing note for the disabled server.
    let expected = "\
IP Virtual Server version 1.2.1 (size=4096)
Prot LocalAddress:Port Scheduler Flags
  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn
TCP  192.168.122.100:80 wrr persistent 360
  -> 192.168.122.11:80            Route   1      4          1         
  -> 192.168.122.12:80            Route   0      4          1          (disabled)
";
    assert_eq!(stdout(&out), expected);

    let out = fake.ctl(&["list", "--ipvsadm"]);
    assert!(stdout(&out).ends_with("  -> 192.168.122.12:80            Route   0      4          1         \n"));

    let out = fake.ctl(&["list", "--stats", "--ipvsadm"]);
    let stats = ListOptions { layout: Layout::Stats, exact: false, annotate: false };
    assert_eq!(stdout(&out), ipvsadm::list(&snapshot(), &stats));

    // Two snapshots a second apart; the canned counters do not move.
    let started = Instant::now();
    let out = fake.ctl(&["list", "--rate"]);
    assert!(started.elapsed() >= Duration::from_secs(1));
    // "%-33s" then five "%9llu".
    let zeros = format!("{:<33}{}\n", "TCP  192.168.122.100:80", "        0".repeat(5));
    assert!(stdout(&out).contains(&zeros), "{}", stdout(&out));
    let zeros = format!("  -> {:<28}{} (disabled)\n", "192.168.122.12:80", "        0".repeat(5));
    assert!(stdout(&out).contains(&zeros), "{}", stdout(&out));

    let out = fake.ctl(&["list", "-c"]);
    assert_eq!(stdout(&out), ipvsadm::connections(&conns()));
    let out = fake.ctl(&["list", "-c", "--json"]);
    assert_eq!(serde_json::from_slice::<Vec<ConnView>>(&out.stdout).unwrap(), conns());

    let out = fake.ctl(&["list", "--stats", "--rate"]);
    assert_eq!(out.status.code(), Some(2), "clap rejects conflicting layouts");
}

#[test]
fn rs_commands() {
    let fake = Fake::canned();
    let out = fake.ctl(&["rs", "disable", "192.168.122.11:80", "--vs", "192.168.122.100:80"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(
        stdout(&out),
        "192.168.122.11:80 in TCP 192.168.122.100:80: weight 1 -> 0 (disabled)\n\
         192.168.122.11:80 in TCP 192.168.122.101:80: weight 1 -> 0 (disabled)\n"
    );
    let out = fake.ctl(&["rs", "weight", "192.168.122.11", "5"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let out = fake.ctl(&["rs", "enable", "[2001:db8::11]:443"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        fake.seen(),
        [
            Command::RealServer {
                target: RealTarget {
                    addr: "192.168.122.11".parse().unwrap(),
                    port: Some(80),
                    virtual_server: Some("192.168.122.100:80".parse().unwrap()),
                },
                action: AdminAction::Disable,
            },
            Command::RealServer {
                target: RealTarget { addr: "192.168.122.11".parse().unwrap(), port: None, virtual_server: None },
                action: AdminAction::Weight(5),
            },
            Command::RealServer {
                target: RealTarget { addr: "2001:db8::11".parse().unwrap(), port: Some(443), virtual_server: None },
                action: AdminAction::Enable,
            },
        ]
    );

    let out = fake.ctl(&["rs", "disable", "10.0.0.9"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(stdout(&out), "");
    assert_eq!(stderr(&out), "directorctl: no real server 10.0.0.9 in any virtual server\n");

    // Bad arguments never reach the daemon.
    let before = fake.seen().len();
    for (args, needle) in [
        (&["rs", "disable", "10.0.0.300"][..], "bad IP address `10.0.0.300`"),
        (&["rs", "disable", "10.0.0.1:65536"][..], "bad port `65536` in `10.0.0.1:65536`"),
        (&["rs", "disable", "10.0.0.1", "--vs", "10.0.0.100"][..], "expected VIP:PORT"),
        (&["rs", "weight", "10.0.0.1", "70000"][..], "70000 is not in 0..=65535"),
    ] {
        let out = fake.ctl(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(stderr(&out).contains(needle), "{args:?}: {}", stderr(&out));
    }
    assert_eq!(fake.seen().len(), before);
}

#[test]
fn reload_success_and_failure() {
    let fake = Fake::canned();
    let out = fake.ctl(&["reload"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(
        stdout(&out),
        "reloaded: configuration generation 4\n\
         keepalived.conf:9:5: warning: lvs_sched wlc: weighted consistent hashing is used instead\n"
    );

    let failing = Fake::start(Box::new(|_| {
        Some(Response::Error { message: "keepalived.conf:3:1: error: unknown keyword `virtual_sever`".into() })
    }));
    let out = failing.ctl(&["reload"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        stderr(&out),
        "directorctl: reload failed; the running configuration is kept:\n\
         keepalived.conf:3:1: error: unknown keyword `virtual_sever`\n"
    );
    // The same refusal for a status request is exit 1 too.
    assert_eq!(failing.ctl(&["status"]).status.code(), Some(1));
}

#[test]
fn malformed_requests_get_errors_and_the_server_keeps_serving() {
    let fake = Fake::canned();
    let mut conn = raw(&fake.path);

    let reply = exchange(&mut conn, b"garbage\n");
    assert_eq!(error_message(&reply), "bad request at line 1 column 1: expected value");
    let reply = exchange(&mut conn, b"{\"versi\n");
    assert_eq!(error_message(&reply), "bad request at line 1 column 7: EOF while parsing a string");
    let reply = exchange(&mut conn, b"{\"version\":1,\"command\":\"explode\"}\n");
    assert!(error_message(&reply).starts_with("bad request at line 1 column 33: unknown variant `explode`"));
    let reply = exchange(&mut conn, b"{\"version\":7,\"command\":\"status\"}\n");
    assert_eq!(
        error_message(&reply),
        "protocol version mismatch: the client speaks version 7, this director speaks version 1 \
         (use the directorctl that came with this director)"
    );
    // Still the same connection, still served.
    let reply = exchange(&mut conn, b"{\"version\":1,\"command\":\"status\"}\n");
    assert!(matches!(serde_json::from_str(&reply).unwrap(), Response::Status { .. }));

    // An oversized line: an error, then the server closes that connection.
    let mut big = raw(&fake.path);
    let line = [vec![b'x'; server::MAX_LINE + 10], b"\n".to_vec()].concat();
    // The server may stop reading before all of it is written.
    let _ = big.get_mut().write_all(&line);
    let mut reply = String::new();
    big.read_line(&mut reply).unwrap();
    assert_eq!(error_message(&reply), "request line longer than 65536 bytes");
    let mut rest = Vec::new();
    assert_eq!(big.read_to_end(&mut rest).unwrap(), 0, "closed after the error");

    // None of that stopped anyone else, and nothing reached the daemon.
    assert!(client::request(&fake.path, Command::Status).is_ok());
    assert_eq!(fake.seen(), [Command::Status, Command::Status]);
}

#[test]
fn a_stuck_client_does_not_block_others() {
    let fake = Fake::canned();
    // Half a request, never finished; and one that connects and says nothing.
    let mut stuck = UnixStream::connect(&fake.path).unwrap();
    stuck.write_all(b"{\"version\":1,").unwrap();
    let _silent = UnixStream::connect(&fake.path).unwrap();

    let started = Instant::now();
    for _ in 0..5 {
        assert!(client::request(&fake.path, Command::Status).is_ok());
    }
    assert!(started.elapsed() < Duration::from_secs(2), "{:?}", started.elapsed());
    // A client that disconnects mid-request changes nothing either.
    drop(stuck);
    assert!(client::request(&fake.path, Command::Status).is_ok());
}

#[test]
fn a_daemon_that_never_answers_times_out() {
    let fake = Fake::start(Box::new(|_| None));
    let mut client = Client::connect_timeout(&fake.path, Duration::from_secs(1)).unwrap();
    let err = client.call(Command::Status).unwrap_err();
    assert!(matches!(err, CtlError::Timeout(_)), "{err:?}");
    assert_eq!(err.to_string(), "director did not answer within 1 s");
}

#[test]
fn no_daemon_means_exit_2() {
    let dir = socket_dir();
    let path = dir.path().join("director.sock");
    let out = run(Process::new(DIRECTORCTL).arg("--socket").arg(&path).arg("status"));
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        stderr(&out),
        format!(
            "directorctl: director is not running: no control socket at {} (start it, or pass --socket)\n",
            path.display()
        )
    );
}

#[test]
fn stale_socket_is_named_and_replaced_by_bind() {
    let dir = socket_dir();
    let path = dir.path().join("director.sock");
    // A daemon that died without removing its socket.
    drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
    let out = run(Process::new(DIRECTORCTL).arg("--socket").arg(&path).args(["list"]));
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        stderr(&out),
        format!("directorctl: director is not running: nothing listens on {} (stale socket?)\n", path.display())
    );

    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let _guard = rt.enter();
    let listener = server::bind(&path, 0o660).unwrap();
    assert_eq!(fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o660);
    assert!(UnixStream::connect(&path).is_ok());
    drop(listener);
}

#[test]
fn a_socket_the_caller_may_not_open() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped: needs root to create a socket another user cannot open");
        return;
    }
    let fake = Fake::canned();
    // setpriv (util-linux, on Debian bookworm) drops to nobody without a login shell.
    let out = run(Process::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", DIRECTORCTL, "--socket"])
        .arg(&fake.path)
        .arg("status"));
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert_eq!(
        stderr(&out),
        format!(
            "directorctl: permission denied opening {}: directorctl must run as root (or as the socket's owner)\n",
            fake.path.display()
        )
    );
}
