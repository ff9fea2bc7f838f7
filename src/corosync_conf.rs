//! `corosync.conf` in the tree and on the host (C `dcdb_sync_corosync_conf`, cluster.md §4.9).
//!
//! The tree's copy is the cluster's configuration: whenever it changes (or a sync brings it),
//! the host file `/etc/corosync/corosync.conf` is replaced by it, unless the host file has a
//! higher `config_version`. On the node that made the change, corosync is then told to reload
//! (`corosync-cfgtool -R`), as C does when the old host file had a version.

use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

/// The file's path in the tree.
pub const NAME: &str = "corosync.conf";
/// The host's file.
pub const HOST: &str = "/etc/corosync/corosync.conf";

/// C's `config_version\s*:\s*(\d+)` (first match).
pub fn config_version(text: &[u8]) -> Option<u64> {
    let text = String::from_utf8_lossy(text);
    let mut rest = &text[..];
    while let Some(at) = rest.find("config_version") {
        let after = rest[at + "config_version".len()..].trim_start();
        if let Some(v) = after.strip_prefix(':') {
            let v = v.trim_start();
            let digits: String = v.chars().take_while(|c| c.is_ascii_digit()).collect();
            if let Ok(n) = digits.parse() {
                return Some(n);
            }
        }
        rest = &rest[at + 1..];
    }
    None
}

/// Replace the host file with `data` if it differs and is not older. `reload`: this node made
/// the change, so ask corosync to reload (in the background: C blocks its loop for it).
pub fn refresh_host(data: &[u8], reload: bool) {
    refresh(Path::new(HOST), data, reload);
}

fn refresh(host: &Path, data: &[u8], reload: bool) -> bool {
    // C: an empty file, or one without a version (a truncate on its way to a rewrite), is
    // never installed.
    if data.is_empty() {
        return false;
    }
    let Some(new_version) = config_version(data) else {
        tracing::error!("unable to parse cluster config_version");
        return false;
    };
    let old = fs::read(host).ok();
    if old.as_deref() == Some(data) {
        return false;
    }
    let old_version = old.as_deref().and_then(config_version);
    if old_version.is_some_and(|o| new_version < o) {
        tracing::error!("local corosync.conf is newer");
        return false;
    }
    let tmp = host.with_extension("conf.new.tmp");
    let written = fs::File::create(&tmp)
        .and_then(|mut f| f.write_all(data).and_then(|()| f.sync_all()))
        .and_then(|()| fs::set_permissions(&tmp, fs::Permissions::from_mode(0o644)))
        .and_then(|()| fs::rename(&tmp, host));
    if let Err(e) = written {
        tracing::error!("unable to write {}: {e}", host.display());
        let _ = fs::remove_file(&tmp);
        return false;
    }
    tracing::info!(
        "wrote new corosync config '{}' (version = {new_version})",
        host.display()
    );
    if reload && old_version.is_some() {
        std::thread::spawn(|| {
            std::thread::sleep(std::time::Duration::from_secs(1));
            match std::process::Command::new("corosync-cfgtool")
                .arg("-R")
                .status()
            {
                Ok(s) if s.success() => {}
                Ok(s) => tracing::error!("corosync-cfgtool -R failed: {s}"),
                Err(e) => tracing::error!("corosync-cfgtool -R: {e}"),
            }
        });
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_as_c_reads_it() {
        assert_eq!(
            config_version(b"totem {\n  config_version: 12\n}"),
            Some(12)
        );
        assert_eq!(config_version(b"config_version:3"), Some(3));
        assert_eq!(
            config_version(b"config_version: x\nconfig_version: 4"),
            Some(4)
        );
        assert_eq!(config_version(b"version: 2"), None);
    }

    #[test]
    fn newer_or_equal_replaces_older_does_not() {
        let dir = tempfile::tempdir().unwrap();
        let host = dir.path().join("corosync.conf");
        fs::write(&host, "config_version: 5\n").unwrap();
        assert!(!refresh(&host, b"config_version: 4\n", false));
        assert!(refresh(&host, b"config_version: 5\nx\n", false));
        assert_eq!(fs::read(&host).unwrap(), b"config_version: 5\nx\n");
        assert!(!refresh(&host, b"config_version: 5\nx\n", false));
        // A truncated or unversioned file never replaces the host's.
        assert!(!refresh(&host, b"", false));
        assert!(!refresh(&host, b"totem {}\n", false));
        fs::remove_file(&host).unwrap();
        assert!(refresh(&host, b"config_version: 1\n", false));
    }
}
