//! The operator's decisions (`directorctl rs disable/enable/weight`) in a
//! small JSON file beside the control socket (`--state-file`), so they
//! survive a daemon restart. Entries whose real server left the
//! configuration are pruned on every load and reload.

use std::{
    io::Write,
    net::IpAddr,
    os::unix::fs::OpenOptionsExt,
    path::{Path, PathBuf},
};

use serde::{Deserialize, Serialize};

use super::desired::{self, AdminOverrides};
use crate::{config::Config, state::ServiceAddr, status::AdminState};

#[derive(Debug, thiserror::Error)]
pub enum StateFileError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path}: not a director state file ({source})")]
    Format { path: PathBuf, source: serde_json::Error },
}

#[derive(Serialize, Deserialize)]
struct File {
    version: u32,
    admin: Vec<Entry>,
}

#[derive(Serialize, Deserialize)]
struct Entry {
    service: ServiceAddr,
    real: IpAddr,
    port: u16,
    #[serde(flatten)]
    admin: AdminState,
}

/// The default: beside the control socket.
pub fn default_path(socket: &Path) -> PathBuf {
    socket.with_file_name("admin-state.json")
}

/// The saved decisions; none when there is no file yet.
pub fn load(path: &Path) -> Result<AdminOverrides, StateFileError> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(AdminOverrides::new()),
        Err(source) => return Err(StateFileError::Io { path: path.into(), source }),
    };
    let file: File = serde_json::from_str(&text).map_err(|source| StateFileError::Format { path: path.into(), source })?;
    Ok(file.admin.into_iter().map(|e| ((e.service, (e.real, e.port)), e.admin)).collect())
}

/// Written whole to a temporary file, then renamed over the old one: a
/// crash never leaves half a file.
pub fn save(path: &Path, admin: &AdminOverrides) -> Result<(), StateFileError> {
    let io = |source| StateFileError::Io { path: path.into(), source };
    let file = File {
        version: 1,
        admin: admin.iter().map(|(&(service, (real, port)), &admin)| Entry { service, real, port, admin }).collect(),
    };
    let text = serde_json::to_vec_pretty(&file).map_err(|source| StateFileError::Format { path: path.into(), source })?;
    let tmp = path.with_extension("json.tmp");
    let mut f = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&tmp).map_err(io)?;
    f.write_all(&text).and_then(|()| f.sync_all()).map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)
}

/// Renames a file that would not load to `<name>.bad`, so that saving
/// does not destroy what it held; where it went, if it could be moved.
pub fn set_aside(path: &Path) -> Option<PathBuf> {
    let to = path.with_extension("json.bad");
    std::fs::rename(path, &to).ok().map(|()| to)
}

/// Drops the decisions about real servers the configuration no longer
/// has; returns how many went.
pub fn prune(admin: &mut AdminOverrides, config: &Config) -> usize {
    let before = admin.len();
    admin.retain(|(service, (ip, port)), _| {
        config.virtual_servers.iter().any(|vs| {
            desired::service_addr(vs).as_ref() == Some(service) && vs.real_servers.iter().any(|rs| rs.ip == *ip && rs.port == *port)
        })
    });
    before - admin.len()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{LoadOptions, load_str};

    #[test]
    fn decisions_round_trip_and_leave_with_their_server() {
        let dir = std::env::temp_dir().join(format!("director-state-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("admin-state.json");
        assert!(load(&path).unwrap().is_empty(), "no file yet");
        let conf = "virtual_server 10.0.0.1 80 {\n protocol TCP\n real_server 10.0.1.1 80 { }\n real_server 10.0.1.2 80 { }\n}\n";
        let config = load_str(conf, "t.conf", &LoadOptions::default()).config;
        let svc = desired::service_addr(&config.virtual_servers[0]).unwrap();
        let mut admin = AdminOverrides::new();
        admin.insert((svc, ("10.0.1.1".parse().unwrap(), 80)), AdminState::Disabled);
        admin.insert((svc, ("10.0.1.2".parse().unwrap(), 80)), AdminState::Weight(7));
        admin.insert((svc, ("10.0.1.3".parse().unwrap(), 80)), AdminState::Disabled);
        save(&path, &admin).unwrap();
        let mut back = load(&path).unwrap();
        assert_eq!(back, admin);
        assert_eq!(prune(&mut back, &config), 1, "10.0.1.3 is not configured");
        assert_eq!(back.len(), 2);
        std::fs::write(&path, "{ not json").unwrap();
        let e = load(&path).unwrap_err().to_string();
        assert!(e.starts_with(&format!("{}: not a director state file", path.display())), "{e}");
        let kept = set_aside(&path).unwrap();
        assert_eq!(std::fs::read_to_string(&kept).unwrap(), "{ not json", "what it held is kept");
        assert!(load(&path).unwrap().is_empty(), "and a fresh start follows");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
