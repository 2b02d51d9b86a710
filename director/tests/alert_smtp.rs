//! smtp_alert mail reaches an SMTP server with keepalived's subject line.
//! The server is a faithful sink on loopback speaking the SMTP dialogue.

use std::{
    io::{BufRead, BufReader, Write},
    net::TcpListener,
    time::Duration,
};

use director::{
    alert::Mailer,
    config::{LoadOptions, load_str},
};

/// Accepts one session, answers like a mail server, returns the transcript.
fn sink(listener: TcpListener) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let (c, _) = listener.accept().unwrap();
        c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut w = c.try_clone().unwrap();
        let mut r = BufReader::new(c);
        let mut log = String::new();
        writeln!(w, "220 sink ESMTP\r").unwrap();
        let mut data = false;
        loop {
            let mut line = String::new();
            if r.read_line(&mut line).unwrap() == 0 {
                break;
            }
            log.push_str(&line);
            if data {
                if line == ".\r\n" {
                    data = false;
                    writeln!(w, "250 queued\r").unwrap();
                }
                continue;
            }
            let verb = line.get(..4).unwrap_or("").to_ascii_uppercase();
            match verb.as_str() {
                "EHLO" | "HELO" => writeln!(w, "250 sink\r").unwrap(),
                "DATA" => {
                    data = true;
                    writeln!(w, "354 go ahead\r").unwrap();
                }
                "QUIT" => {
                    writeln!(w, "221 bye\r").unwrap();
                    break;
                }
                _ => writeln!(w, "250 ok\r").unwrap(),
            }
        }
        log
    })
}

#[tokio::test]
async fn a_real_server_going_down_is_mailed_with_keepalived_s_subject() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = sink(listener);
    let conf = format!(
        "global_defs {{\n notification_email {{\n  ops@example.com\n }}\n notification_email_from director@example.com\n smtp_server 127.0.0.1 {port}\n smtp_connect_timeout 5\n router_id director1\n}}\n"
    );
    let loaded = load_str(&conf, "t.conf", &LoadOptions::default());
    assert!(!loaded.has_errors(), "{:?}", loaded.diagnostics);
    let mailer = Mailer::from_config(&loaded.config).expect("smtp_server and a recipient are configured");
    let subject = mailer.realserver_subject("192.168.122.10:80", "192.168.122.100:80", false);
    mailer.send(&subject, "=> TCP_CHECK 192.168.122.10:80 connect failed: connection refused <=\n").await.unwrap();

    // Long headers are folded (RFC 5322); unfold before matching.
    let transcript = server.join().unwrap().replace("\r\n ", " ");
    assert!(transcript.contains("RCPT TO:<ops@example.com>"), "{transcript}");
    assert!(transcript.contains("MAIL FROM:<director@example.com>"), "{transcript}");
    assert!(
        transcript.contains("Subject: [director1] Realserver 192.168.122.10:80 of virtual server 192.168.122.100:80 - DOWN"),
        "{transcript}"
    );
    assert!(transcript.contains("connection refused"), "{transcript}");
}

#[test]
fn no_smtp_server_means_no_mailer() {
    let loaded = load_str("global_defs {\n notification_email {\n  ops@example.com\n }\n}\n", "t.conf", &LoadOptions::default());
    assert!(Mailer::from_config(&loaded.config).is_none());
}

#[tokio::test]
async fn a_vrrp_transition_is_mailed_with_keepalived_s_subject() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = sink(listener);
    let conf = format!(
        "global_defs {{\n notification_email {{\n  ops@example.com\n }}\n smtp_server 127.0.0.1 {port}\n router_id lb1\n smtp_alert_vrrp\n}}\n"
    );
    let loaded = load_str(&conf, "t.conf", &LoadOptions::default());
    assert!(!loaded.has_errors(), "{:?}", loaded.diagnostics);
    assert!(director::alert::vrrp_wanted(&loaded.config, None), "smtp_alert_vrrp turns VRRP mail on");
    assert!(!director::alert::vrrp_wanted(&loaded.config, Some(false)), "an instance's own smtp_alert wins");
    let mailer = Mailer::from_config(&loaded.config).unwrap();
    let (subject, body) = mailer.vrrp_alert(false, "VI_1", "MASTER");
    mailer.send(&subject, &body).await.unwrap();
    let transcript = server.join().unwrap().replace("\r\n ", " ");
    assert!(transcript.contains("Subject: [lb1] VRRP Instance VI_1 - Entering MASTER state"), "{transcript}");
    assert!(transcript.contains("=> VRRP Instance is now owning VRRP VIPs <="), "{transcript}");
    let (subject, body) = mailer.vrrp_alert(true, "VG_1", "FAULT");
    assert_eq!(subject, "[lb1] VRRP Group VG_1 - Entering FAULT state");
    assert_eq!(body, "=> All VRRP group instances are now in FAULT state <=\n");
}
