//! File contents the workloads write: deterministic, realistic in shape and size.
//!
//! Status files carry the wall-clock time, so their bytes are rendered when the step runs
//! ([`Content::render`]), not when the plan is built. Everything else is fixed by a seed.

/// A small deterministic generator (64-bit LCG, Knuth's MMIX constants). Not for secrets: it
/// only makes file contents that look like keys and differ from run to run of the plan builder
/// never.
#[derive(Debug, Clone)]
pub struct Lcg(u64);

impl Lcg {
    pub fn new(seed: u64) -> Lcg {
        Lcg(seed ^ 0x9e37_79b9_7f4a_7c15)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 ^ (self.0 >> 29)
    }

    /// `n` bytes of noise (incompressible, like `/dev/urandom`).
    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(n + 8);
        while out.len() < n {
            out.extend_from_slice(&self.next_u64().to_le_bytes());
        }
        out.truncate(n);
        out
    }

    /// `n` characters of base64 alphabet.
    pub fn base64(&mut self, n: usize) -> String {
        const ALPHA: &[u8; 64] =
            b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        (0..n)
            .map(|_| ALPHA[(self.next_u64() >> 58) as usize] as char)
            .collect()
    }

    /// Shuffles in place (Fisher-Yates).
    pub fn shuffle<T>(&mut self, v: &mut [T]) {
        for i in (1..v.len()).rev() {
            let j = (self.next_u64() % (i as u64 + 1)) as usize;
            v.swap(i, j);
        }
    }
}

/// A PEM-looking block of `body_chars` base64 characters in 64-column lines.
pub fn pem(label: &str, body_chars: usize, seed: u64) -> String {
    let body = Lcg::new(seed).base64(body_chars);
    let mut s = format!("-----BEGIN {label}-----\n");
    for chunk in body.as_bytes().chunks(64) {
        s.push_str(std::str::from_utf8(chunk).expect("ascii"));
        s.push('\n');
    }
    s.push_str(&format!("-----END {label}-----\n"));
    s
}

/// Content of a qemu-server guest config, about 500–700 bytes.
pub fn qemu_conf(vmid: u32, node: &str, revision: u32) -> String {
    let mut r = Lcg::new(u64::from(vmid) * 7919 + u64::from(revision));
    let mac: Vec<String> = (0..5)
        .map(|_| format!("{:02X}", r.next_u64() & 0xff))
        .collect();
    format!(
        "boot: order=scsi0;ide2;net0\ncores: {cores}\ncpu: x86-64-v2-AES\n\
         ide2: none,media=cdrom\nmemory: {mem}\nmeta: creation-qemu=9.2.0,ctime={ctime}\n\
         name: vm{vmid}-{node}\nnet0: virtio=BC:{mac},bridge=vmbr0,firewall=1\nnuma: 0\n\
         ostype: l26\nscsi0: local-lvm:vm-{vmid}-disk-0,iothread=1,size=32G\n\
         scsihw: virtio-scsi-single\nsmbios1: uuid={u1:08x}-{u2:04x}-4{u3:03x}-8{u4:03x}-{u5:012x}\n\
         sockets: 1\nvmgenid: {g1:08x}-{g2:04x}-4{g3:03x}-9{g4:03x}-{g5:012x}\n\
         description: bench guest {vmid} revision {revision}\n",
        cores = 1 + (vmid % 4),
        mem = 1024 * (1 + (vmid % 8)),
        ctime = 1_700_000_000 + vmid,
        mac = mac.join(":"),
        u1 = r.next_u64() as u32,
        u2 = r.next_u64() as u16,
        u3 = r.next_u64() & 0xfff,
        u4 = r.next_u64() & 0xfff,
        u5 = r.next_u64() & 0xffff_ffff_ffff,
        g1 = r.next_u64() as u32,
        g2 = r.next_u64() as u16,
        g3 = r.next_u64() & 0xfff,
        g4 = r.next_u64() & 0xfff,
        g5 = r.next_u64() & 0xffff_ffff_ffff,
    )
}

/// Content of an lxc guest config, about 350 bytes.
pub fn lxc_conf(vmid: u32, node: &str) -> String {
    let mut r = Lcg::new(u64::from(vmid) * 104729);
    let mac: Vec<String> = (0..5)
        .map(|_| format!("{:02X}", r.next_u64() & 0xff))
        .collect();
    format!(
        "arch: amd64\ncores: 2\nfeatures: nesting=1\nhostname: ct{vmid}-{node}\nmemory: 512\n\
         net0: name=eth0,bridge=vmbr0,firewall=1,hwaddr=BC:{mac},ip=dhcp,type=veth\n\
         ostype: debian\nrootfs: local-lvm:vm-{vmid}-disk-0,size=8G\nswap: 512\n\
         unprivileged: 1\n",
        mac = mac.join(":")
    )
}

/// What a status-file step writes; rendered at execution time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Content {
    /// Fixed bytes.
    Bytes(Vec<u8>),
    /// `nodes/<n>/lrm_status` as pve-ha-lrm writes it: `state`, `mode`, `results` (one entry per
    /// HA service on the node) and `timestamp` = now. `shuffle` picks the key order, which Perl
    /// does not keep stable between writes (workload.md §0.6).
    LrmStatus {
        state: &'static str,
        services: Vec<u32>,
        shuffle: u64,
    },
    /// `ha/manager_status` as the CRM master writes it every round.
    ManagerStatus {
        master: &'static str,
        nodes: Vec<&'static str>,
        services: Vec<(u32, &'static str)>,
        shuffle: u64,
    },
}

fn json_object(mut pairs: Vec<(String, String)>, shuffle: u64) -> String {
    Lcg::new(shuffle).shuffle(&mut pairs);
    let body: Vec<String> = pairs
        .into_iter()
        .map(|(k, v)| format!("\"{k}\":{v}"))
        .collect();
    format!("{{{}}}", body.join(","))
}

/// A 22-character base64 id, like the CRM's md5-based uids.
fn uid(seed: u64) -> String {
    Lcg::new(seed).base64(22).replace(['+', '/'], "x")
}

impl Content {
    /// The bytes to write, with `now` (Unix seconds) as the timestamp.
    pub fn render(&self, now: u64) -> Vec<u8> {
        match self {
            Content::Bytes(b) => b.clone(),
            Content::LrmStatus {
                state,
                services,
                shuffle,
            } => {
                let results: Vec<(String, String)> = services
                    .iter()
                    .map(|&vmid| {
                        let entry = json_object(
                            vec![
                                ("exit_code".into(), "0".into()),
                                ("sid".into(), format!("\"vm:{vmid}\"")),
                                ("state".into(), "\"started\"".into()),
                            ],
                            shuffle ^ u64::from(vmid),
                        );
                        (uid(u64::from(vmid)), entry)
                    })
                    .collect();
                json_object(
                    vec![
                        ("mode".into(), "\"active\"".into()),
                        ("results".into(), json_object(results, *shuffle)),
                        ("state".into(), format!("\"{state}\"")),
                        ("timestamp".into(), now.to_string()),
                    ],
                    *shuffle,
                )
                .into_bytes()
            }
            Content::ManagerStatus {
                master,
                nodes,
                services,
                shuffle,
            } => {
                let node_status: Vec<(String, String)> = nodes
                    .iter()
                    .map(|n| (n.to_string(), "\"online\"".to_string()))
                    .collect();
                let service_status: Vec<(String, String)> = services
                    .iter()
                    .map(|&(vmid, node)| {
                        let entry = json_object(
                            vec![
                                ("node".into(), format!("\"{node}\"")),
                                ("running".into(), "1".into()),
                                ("state".into(), "\"started\"".into()),
                                ("uid".into(), format!("\"{}\"", uid(u64::from(vmid)))),
                            ],
                            shuffle ^ u64::from(vmid),
                        );
                        (format!("vm:{vmid}"), entry)
                    })
                    .collect();
                json_object(
                    vec![
                        ("master_node".into(), format!("\"{master}\"")),
                        ("node_status".into(), json_object(node_status, *shuffle)),
                        (
                            "service_status".into(),
                            json_object(service_status, *shuffle),
                        ),
                        ("timestamp".into(), now.to_string()),
                    ],
                    *shuffle,
                )
                .into_bytes()
            }
        }
    }

    /// The length `render` produces (timestamps are 10 digits until 2286).
    pub fn len_hint(&self) -> usize {
        self.render(1_800_000_000).len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lcg_is_deterministic() {
        assert_eq!(Lcg::new(1).bytes(33), Lcg::new(1).bytes(33));
        assert_ne!(Lcg::new(1).bytes(33), Lcg::new(2).bytes(33));
        assert_eq!(Lcg::new(5).base64(10).len(), 10);
    }

    #[test]
    fn idle_lrm_status_is_about_83_bytes_and_valid_json() {
        let c = Content::LrmStatus {
            state: "wait_for_agent_lock",
            services: vec![],
            shuffle: 3,
        };
        let bytes = c.render(1_764_160_000);
        let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(v["timestamp"], 1_764_160_000u64);
        assert_eq!(v["state"], "wait_for_agent_lock");
        assert!((75..=90).contains(&bytes.len()), "{}", bytes.len());
    }

    #[test]
    fn armed_status_sizes_match_the_model() {
        let lrm = Content::LrmStatus {
            state: "active",
            services: vec![100],
            shuffle: 1,
        };
        let n = lrm.len_hint();
        assert!(
            (125..=160).contains(&n),
            "lrm_status with one result: {n} bytes"
        );
        let ms = Content::ManagerStatus {
            master: "pve1",
            nodes: vec!["pve1", "pve2", "pve3"],
            services: vec![(100, "pve1"), (110, "pve2"), (120, "pve3")],
            shuffle: 1,
        };
        let bytes = ms.render(1_764_160_000);
        let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(v["service_status"]["vm:110"]["node"], "pve2");
        assert!(
            (330..=450).contains(&bytes.len()),
            "manager_status: {} bytes",
            bytes.len()
        );
    }

    #[test]
    fn key_order_varies_with_the_shuffle_seed_but_content_does_not() {
        let render = |s| {
            Content::LrmStatus {
                state: "active",
                services: vec![100],
                shuffle: s,
            }
            .render(5)
        };
        let orders: std::collections::HashSet<Vec<u8>> = (0..20).map(render).collect();
        assert!(orders.len() > 1);
        let values: std::collections::HashSet<String> = (0..20)
            .map(|s| {
                serde_json::from_slice::<serde_json::Value>(&render(s))
                    .unwrap()
                    .to_string()
            })
            .collect();
        assert_eq!(values.len(), 1);
    }

    #[test]
    fn guest_configs_have_realistic_sizes() {
        let q = qemu_conf(100, "pve1", 0);
        assert!((450..=800).contains(&q.len()), "{}", q.len());
        assert_ne!(q, qemu_conf(100, "pve1", 1));
        let l = lxc_conf(200, "pve1");
        assert!((200..=450).contains(&l.len()), "{}", l.len());
        assert!(pem("CERTIFICATE", 1000, 1).starts_with("-----BEGIN CERTIFICATE-----\n"));
    }
}
