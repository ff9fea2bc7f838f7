//! The seed tree every workload starts from: a 3-node PVE cluster's /etc/pve.
//!
//! `nodes/pve{1,2,3}/{qemu-server,lxc}` with 30 guests (7 VMs and 3 containers per node), the
//! cluster-wide configuration files, certificates and keys at their real sizes, `priv/` and
//! `priv/lock/`: about 80 entries and 37 KB, so that the database has a realistic page count.

use crate::content::{lxc_conf, pem, qemu_conf, Content, Lcg};
use crate::plan::Step;

/// Which tree the database holds before the workload runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Seed {
    /// The 3-node tree of this module.
    Pve3,
    /// Nothing: the bare tree a freshly created database holds.
    Empty,
}

impl std::str::FromStr for Seed {
    type Err = String;
    fn from_str(s: &str) -> Result<Seed, String> {
        match s {
            "pve3" | "default" => Ok(Seed::Pve3),
            "empty" => Ok(Seed::Empty),
            other => Err(format!("unknown seed {other:?} (pve3 or empty)")),
        }
    }
}

impl std::fmt::Display for Seed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Seed::Pve3 => "pve3",
            Seed::Empty => "empty",
        })
    }
}

/// The cluster's node names; the sandbox's hostname is the first.
pub const NODES: [&str; 3] = ["pve1", "pve2", "pve3"];

fn file(path: &str, text: String) -> Step {
    Step::Overwrite {
        path: path.to_string(),
        content: Content::Bytes(text.into_bytes()),
    }
}

/// VMIDs of the seed's guests on node `k` (0-based): qemu then lxc.
pub fn guest_ids(k: usize) -> (Vec<u32>, Vec<u32>) {
    let base = 100 + 10 * k as u32;
    (
        (base..base + 7).collect(),
        (base + 100..base + 103).collect(),
    )
}

/// The steps that create the seed tree (directories before their files).
pub fn steps(seed: Seed) -> Vec<Step> {
    if seed == Seed::Empty {
        return Vec::new();
    }
    let mut s = Vec::new();
    for dir in [
        "nodes",
        "priv",
        "priv/lock",
        "ha",
        "firewall",
        "sdn",
        "virtual-guest",
        "mapping",
    ] {
        s.push(Step::MkdirAll(dir.into()));
    }
    let ring: Vec<String> = NODES
        .iter()
        .enumerate()
        .map(|(i, n)| {
            format!(
                "  node {{\n    name: {n}\n    nodeid: {id}\n    quorum_votes: 1\n    \
                 ring0_addr: 192.0.2.{id}\n  }}\n",
                id = i + 1
            )
        })
        .collect();
    s.push(file(
        "corosync.conf",
        format!(
            "logging {{\n  debug: off\n  to_syslog: yes\n}}\n\nnodelist {{\n{}}}\n\n\
             quorum {{\n  provider: corosync_votequorum\n}}\n\ntotem {{\n  cluster_name: bench\n  \
             config_version: 3\n  interface {{\n    linknumber: 0\n  }}\n  ip_version: ipv4-6\n  \
             link_mode: passive\n  secauth: on\n  version: 2\n}}\n",
            ring.concat()
        ),
    ));
    s.push(file(
        "datacenter.cfg",
        "keyboard: en-us\nemail_from: root@bench.invalid\nha: shutdown_policy=conditional\n".into(),
    ));
    s.push(file(
        "storage.cfg",
        "dir: local\n\tpath /var/lib/vz\n\tcontent iso,vztmpl,backup\n\n\
         lvmthin: local-lvm\n\tthinpool data\n\tvgname pve\n\tcontent rootdir,images\n\n\
         nfs: backup\n\texport /srv/backup\n\tpath /mnt/pve/backup\n\tserver 192.0.2.50\n\t\
         content backup\n\tprune-backups keep-daily=7,keep-weekly=4\n"
            .into(),
    ));
    s.push(file(
        "user.cfg",
        "user:root@pam:1:0:::root@bench.invalid:::\nuser:ops@pve:1:0:Ops:Team:ops@bench.invalid:::\n\
         group:admins:root@pam,ops@pve::\n\nacl:1:/:@admins:Administrator:\n\
         acl:1:/vms:ops@pve:PVEVMUser:\n"
            .into(),
    ));
    s.push(file("replication.cfg", String::new()));
    s.push(file("jobs.cfg", "vzdump: backup-nightly\n\tschedule 02:00\n\tall 1\n\tstorage backup\n\tmode snapshot\n\tenabled 1\n".into()));
    s.push(file("vzdump.cron", "# cluster wide vzdump cron schedule\n# Automatically generated file - do not edit\n\nPATH=\"/usr/sbin:/usr/bin:/sbin:/bin\"\n\n".into()));
    s.push(file(
        "firewall/cluster.fw",
        "[OPTIONS]\n\nenable: 0\n\n[RULES]\n\nIN SSH(ACCEPT) -log nolog\n".into(),
    ));
    s.push(file("ha/resources.cfg", String::new()));
    s.push(file("ha/crm_commands", String::new()));
    s.push(file("authkey.pub", pem("PUBLIC KEY", 392, 11)));
    s.push(file("authkey.pub.old", pem("PUBLIC KEY", 392, 12)));
    s.push(file("pve-root-ca.pem", pem("CERTIFICATE", 1900, 13)));
    s.push(file("pve-www.key", pem("PRIVATE KEY", 1624, 14)));
    s.push(file("priv/authkey.key", pem("RSA PRIVATE KEY", 1592, 15)));
    s.push(file(
        "priv/pve-root-ca.key",
        pem("RSA PRIVATE KEY", 3160, 16),
    ));
    s.push(file("priv/pve-root-ca.srl", "27A1C0FFEE0042\n".into()));
    let mut lcg = Lcg::new(17);
    let keys: String = NODES
        .iter()
        .map(|n| format!("ssh-rsa {} root@{n}\n", lcg.base64(544)))
        .collect();
    s.push(file("priv/authorized_keys", keys.clone()));
    s.push(file(
        "priv/known_hosts",
        keys.replace("ssh-rsa", "pve ssh-rsa"),
    ));
    s.push(file("priv/token.cfg", String::new()));
    for (k, node) in NODES.iter().enumerate() {
        let d = format!("nodes/{node}");
        s.push(Step::MkdirAll(format!("{d}/qemu-server")));
        s.push(Step::MkdirAll(format!("{d}/lxc")));
        s.push(Step::MkdirAll(format!("{d}/priv")));
        s.push(file(
            &format!("{d}/pve-ssl.pem"),
            pem("CERTIFICATE", 1760, 20 + k as u64),
        ));
        s.push(file(
            &format!("{d}/pve-ssl.key"),
            pem("PRIVATE KEY", 1624, 30 + k as u64),
        ));
        s.push(file(&format!("{d}/config"), "#description\n".into()));
        s.push(Step::Overwrite {
            path: format!("{d}/lrm_status"),
            content: Content::Bytes(
                Content::LrmStatus {
                    state: "wait_for_agent_lock",
                    services: vec![],
                    shuffle: k as u64,
                }
                .render(1_764_000_000),
            ),
        });
        let (qemu, lxc) = guest_ids(k);
        for vmid in qemu {
            s.push(file(
                &format!("{d}/qemu-server/{vmid}.conf"),
                qemu_conf(vmid, node, 0),
            ));
        }
        for vmid in lxc {
            s.push(file(&format!("{d}/lxc/{vmid}.conf"), lxc_conf(vmid, node)));
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seed_has_thirty_guests_on_three_nodes() {
        let steps = steps(Seed::Pve3);
        let guests = steps
            .iter()
            .filter(|s| matches!(s, Step::Overwrite { path, .. } if path.ends_with(".conf") && path.starts_with("nodes/")))
            .count();
        assert_eq!(guests, 30);
        let bytes: u64 = steps.iter().map(Step::logical_bytes).sum();
        assert!((30_000..=120_000).contains(&bytes), "seed is {bytes} bytes");
        for must in [
            "storage.cfg",
            "datacenter.cfg",
            "user.cfg",
            "priv/authkey.key",
        ] {
            assert!(
                steps
                    .iter()
                    .any(|s| matches!(s, Step::Overwrite { path, .. } if path == must)),
                "{must}"
            );
        }
        assert!(steps.contains(&Step::MkdirAll("priv/lock".into())));
    }

    #[test]
    fn guest_ids_are_unique_cluster_wide() {
        let mut all: Vec<u32> = (0..3)
            .flat_map(|k| {
                let (q, l) = guest_ids(k);
                q.into_iter().chain(l)
            })
            .collect();
        let n = all.len();
        all.sort_unstable();
        all.dedup();
        assert_eq!(all.len(), n);
    }

    #[test]
    fn every_file_has_its_directory_made_first() {
        let steps = steps(Seed::Pve3);
        let mut dirs: Vec<String> = vec![String::new()];
        for s in &steps {
            match s {
                Step::MkdirAll(d) => {
                    let mut acc = String::new();
                    for c in d.split('/') {
                        if !acc.is_empty() {
                            acc.push('/');
                        }
                        acc.push_str(c);
                        dirs.push(acc.clone());
                    }
                }
                Step::Overwrite { path, .. } => {
                    let parent = path.rsplit_once('/').map(|(p, _)| p).unwrap_or("");
                    assert!(
                        dirs.iter().any(|d| d == parent),
                        "{path} before its directory"
                    );
                }
                other => panic!("unexpected seed step {other:?}"),
            }
        }
    }

    #[test]
    fn empty_seed_is_empty_and_names_parse() {
        assert!(steps(Seed::Empty).is_empty());
        assert_eq!("empty".parse::<Seed>(), Ok(Seed::Empty));
        assert_eq!("pve3".parse::<Seed>(), Ok(Seed::Pve3));
        assert!("x".parse::<Seed>().is_err());
    }
}
