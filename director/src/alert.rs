//! `smtp_alert`: mail to `notification_email` when a real server goes up or
//! down, through `global_defs`' `smtp_server`, as keepalived sends it (plain
//! SMTP, subject naming the router id, server and state).

use std::time::Duration;

use lettre::{
    AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor,
    message::{Mailbox, header::ContentType},
};

use crate::config::{Config, RealServer, VirtualServer};

#[derive(Debug, thiserror::Error)]
pub enum AlertError {
    #[error("bad address {0:?}: {1}")]
    Address(String, String),
    #[error("building the message: {0}")]
    Message(String),
    #[error("SMTP to {server}: {err}")]
    Smtp { server: String, err: String },
}

/// Where alerts go; None when `global_defs` names no smtp_server or no
/// recipients.
#[derive(Clone, Debug)]
pub struct Mailer {
    host: String,
    port: u16,
    helo: Option<String>,
    timeout: Duration,
    from: String,
    to: Vec<String>,
    router_id: String,
}

impl Mailer {
    pub fn from_config(config: &Config) -> Option<Mailer> {
        let g = &config.global;
        let server = g.smtp_server.as_ref()?;
        if g.notification_email.is_empty() {
            return None;
        }
        Some(Mailer {
            host: server.host.clone(),
            port: server.port,
            helo: g.smtp_helo_name.clone(),
            timeout: g.smtp_connect_timeout,
            from: g.notification_email_from.clone().unwrap_or_else(|| "keepalived@localhost".into()),
            to: g.notification_email.clone(),
            router_id: g.router_id.clone().unwrap_or_else(|| "director".into()),
        })
    }

    /// keepalived's checker alert: "[router] Realserver [ip]:port of virtual
    /// server [vip]:port - UP|DOWN", the reason in the body.
    pub fn realserver_subject(&self, rs: &str, vs: &str, up: bool) -> String {
        format!("[{}] Realserver {rs} of virtual server {vs} - {}", self.router_id, if up { "UP" } else { "DOWN" })
    }

    /// keepalived's VRRP alerts: "[router] VRRP Instance VI_1 - Entering
    /// MASTER state" (or "VRRP Group G"), with its one-line body.
    pub fn vrrp_alert(&self, group: bool, name: &str, state: &str) -> (String, String) {
        let kind = if group { "Group" } else { "Instance" };
        let subject = format!("[{}] VRRP {kind} {name} - Entering {state} state", self.router_id);
        let body = match (group, state) {
            (true, _) => format!("=> All VRRP group instances are now in {state} state <=\n"),
            (false, "MASTER") => "=> VRRP Instance is now owning VRRP VIPs <=\n".into(),
            (false, "BACKUP") => "=> VRRP Instance is no longer owning VRRP VIPs <=\n".into(),
            (false, _) => format!("=> VRRP Instance is in {state} state <=\n"),
        };
        (subject, body)
    }

    /// Sends in the background; a failure is logged, never waited for.
    pub fn post(self, subject: String, body: String) {
        tokio::spawn(async move {
            if let Err(e) = self.send(&subject, &body).await {
                tracing::warn!("smtp_alert: {e}");
            }
        });
    }

    pub async fn send(&self, subject: &str, body: &str) -> Result<(), AlertError> {
        let mailbox = |a: &str| a.parse::<Mailbox>().map_err(|e| AlertError::Address(a.to_string(), e.to_string()));
        let mut msg = Message::builder().from(mailbox(&self.from)?).subject(subject).header(ContentType::TEXT_PLAIN);
        for to in &self.to {
            msg = msg.to(mailbox(to)?);
        }
        let msg = msg.body(body.to_string()).map_err(|e| AlertError::Message(e.to_string()))?;
        let mut transport =
            AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&self.host).port(self.port).timeout(Some(self.timeout));
        if let Some(helo) = &self.helo {
            transport = transport.hello_name(lettre::transport::smtp::extension::ClientId::Domain(helo.clone()));
        }
        transport
            .build()
            .send(msg)
            .await
            .map(drop)
            .map_err(|e| AlertError::Smtp { server: format!("{}:{}", self.host, self.port), err: e.to_string() })
    }
}

/// Whether a real server's changes are mailed: its own `smtp_alert`, else
/// its virtual server's, else `global_defs` (`smtp_alert_checker`, then
/// `smtp_alert`).
pub fn wanted(config: &Config, vs: &VirtualServer, rs: &RealServer) -> bool {
    let g = &config.global;
    rs.smtp_alert.or(vs.smtp_alert).or(g.smtp_alert_checker).or(g.smtp_alert).unwrap_or(false)
}

/// Whether a VRRP instance's or sync group's changes are mailed: its own
/// `smtp_alert`, else `global_defs` (`smtp_alert_vrrp`, then `smtp_alert`).
pub fn vrrp_wanted(config: &Config, own: Option<bool>) -> bool {
    let g = &config.global;
    own.or(g.smtp_alert_vrrp).or(g.smtp_alert).unwrap_or(false)
}
