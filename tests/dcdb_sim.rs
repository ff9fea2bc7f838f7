//! The real database application (`lwcfs::dcdb::Dcdb`, with its tree, coalescing writer and
//! SQLite files) on the simulated CPG bus: 3–5 nodes, random interleavings of writes, joins,
//! leaves, crashes, partitions and heals. Hermetic: no corosync, no FUSE, no root.
//!
//! At the end every node is synced with the same index and checksum, every local sender got its
//! answer, no write was applied twice, and every database holds the tree its node holds in RAM.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use lwcfs::dcdb::Dcdb;
use lwcfs::kcache::KernelCache;
use lwcfs::service::{Shared, Tree};
use lwcfs::status::Status;
use lwcfs_backend::WriterConfig;
use lwcfs_cpg::dfsm::{Effect, VerifyOutcome};
use lwcfs_cpg::sim::{Rng, Sim};
use lwcfs_cpg::{Mode, DCDB};
use lwcfs_memdb::{DcdbMsg, Mtime, Op, TreePath};

struct NodeState {
    db: PathBuf,
    shared: Arc<Shared>,
    quorate: Arc<AtomicBool>,
}

/// A Dcdb application over the database at `path` (created if missing), as the daemon makes it.
fn app(path: &Path, name: &str) -> (Dcdb, NodeState) {
    let opened = lwcfs_backend::open(path, Mtime(1_000_000)).expect("open db");
    let tree = Tree::new(opened.memdb);
    let writer = lwcfs_backend::spawn(
        path,
        tree.clone(),
        WriterConfig {
            commit_delay: Duration::from_millis(5),
            hold_bound: Duration::from_secs(1),
        },
    )
    .expect("writer");
    let status = Arc::new(Status::new(name.into(), 1_000_000, 1, false));
    let shared = Shared::new(
        tree,
        Arc::new(writer),
        status,
        Arc::new(KernelCache::new()),
        Duration::from_secs(300),
    );
    let quorate = Arc::new(AtomicBool::new(true));
    let dcdb = Dcdb::new(
        shared.clone(),
        quorate.clone(),
        120,
        Arc::new(Mutex::new(Vec::new())),
    );
    (
        dcdb,
        NodeState {
            db: path.to_owned(),
            shared,
            quorate,
        },
    )
}

const NAMES: [&str; 6] = ["a", "b", "c", "d/x", "d/y", "d"];

fn random_op(rng: &mut Rng, token: u64) -> Op {
    let p = |rng: &mut Rng| TreePath::parse(NAMES[rng.below(NAMES.len())]);
    match rng.below(8) {
        0 => Op::Create { path: p(rng) },
        1..=4 => {
            let path = p(rng);
            Op::Write {
                path,
                // Appends at a random small offset: a token lands at most once per apply.
                offset: rng.below(3) as u64 * 4,
                data: format!("t{token};").into_bytes(),
                truncate: false,
            }
        }
        5 => Op::Mkdir { path: p(rng) },
        6 => Op::Delete { path: p(rng) },
        _ => Op::Rename {
            from: p(rng),
            to: p(rng),
        },
    }
}

fn run_seed(seed: u64, n: usize) {
    let dir = tempfile::tempdir().unwrap();
    let mut sim: Sim<Dcdb> = Sim::new(DCDB.config(), seed);
    let mut nodes = Vec::new();
    for i in 0..n {
        let (a, st) = app(&dir.path().join(format!("n{i}.db")), &format!("node{i}"));
        sim.add(lwcfs_cpg::MemberId::new(i as u32 + 1, 100), a);
        nodes.push(st);
    }
    for i in 0..n {
        sim.start(i);
    }
    sim.run();
    let mut rng = Rng::new(seed ^ 0x5eed);
    let mut sent: BTreeMap<usize, Vec<u64>> = BTreeMap::new();
    let mut crashed = vec![false; n];
    let mut pid = 200;
    let majority = n / 2 + 1;
    for token in 0..400u64 {
        match rng.below(40) {
            0 => {
                // A partition: a random minority loses quorum at once (as corosync tells it).
                let k = 1 + rng.below(n - majority + 1).min(n - majority);
                let minority: Vec<usize> = (0..k).map(|_| rng.below(n)).collect();
                let rest: Vec<usize> = (0..n).filter(|i| !minority.contains(i)).collect();
                for (i, st) in nodes.iter().enumerate() {
                    let q = !minority.contains(&i) && rest.len() >= majority;
                    st.quorate.store(q, Ordering::SeqCst);
                }
                sim.partition(&[&minority, &rest]);
            }
            1 => {
                for st in &nodes {
                    st.quorate.store(true, Ordering::SeqCst);
                }
                sim.heal();
            }
            2 => {
                let i = rng.below(n);
                if !crashed[i] {
                    sim.crash(i);
                    crashed[i] = true;
                    sent.remove(&i);
                    // The process is gone: its writer stops (what it had committed stays).
                    nodes[i].shared.writer.shutdown().ok();
                }
            }
            3 => {
                let i = rng.below(n);
                if crashed[i] {
                    let (a, st) = app(&nodes[i].db, &format!("node{i}"));
                    st.quorate
                        .store(nodes[i].quorate.load(Ordering::SeqCst), Ordering::SeqCst);
                    nodes[i] = st;
                    pid += 1;
                    sim.restart(i, pid, a);
                    crashed[i] = false;
                }
            }
            _ => {
                let i = rng.below(n);
                if !crashed[i] && sim.in_group(i) && nodes[i].quorate.load(Ordering::SeqCst) {
                    let op = random_op(&mut rng, token);
                    let msg = DcdbMsg::from_op(&op).unwrap();
                    let count = sim.send(i, msg.subtype(), &msg.encode());
                    sent.entry(i).or_default().push(count);
                }
            }
        }
        for _ in 0..rng.below(8) {
            sim.step();
        }
    }
    // Everyone back, one network.
    for st in &nodes {
        st.quorate.store(true, Ordering::SeqCst);
    }
    sim.heal();
    for i in 0..n {
        if crashed[i] {
            let (a, st) = app(&nodes[i].db, &format!("node{i}"));
            nodes[i] = st;
            pid += 1;
            sim.restart(i, pid, a);
        }
    }
    sim.run();
    sim.advance(10);
    sim.run();

    let index = nodes[0].shared.tree.lock().encode_index();
    let sum = nodes[0].shared.tree.lock().compute_checksum();
    for (i, st) in nodes.iter().enumerate() {
        assert_eq!(sim.mode(i), Mode::Synced, "seed {seed}: node {i}\n{sim:?}");
        let db = st.shared.tree.lock();
        assert_eq!(db.encode_index(), index, "seed {seed}: index of node {i}");
        assert_eq!(
            db.compute_checksum(),
            sum,
            "seed {seed}: checksum of node {i}"
        );
        // Every local sender got an answer.
        for c in sent.get(&i).into_iter().flatten() {
            assert!(
                sim.node(i).outcomes.contains_key(c),
                "seed {seed}: node {i} sender {c} still waits"
            );
        }
        // No write applied twice: each token at most once in any file.
        for r in db.records() {
            let text = String::from_utf8_lossy(&r.data);
            let mut seen = std::collections::HashSet::new();
            for t in text.split(';').filter(|t| !t.is_empty()) {
                let t = t.trim_start_matches('\0');
                assert!(
                    !t.starts_with('t') || seen.insert(t.to_owned()),
                    "seed {seed}: {t} twice in {}",
                    r.name
                );
            }
        }
    }
    // The verify round agrees.
    sim.request_verify(0);
    sim.run();
    for i in 0..n {
        let bad = sim.node(i).effects.iter().any(|e| {
            matches!(
                e,
                Effect::Verified {
                    outcome: VerifyOutcome::Mismatch,
                    ..
                }
            )
        });
        assert!(!bad, "seed {seed}: node {i} failed a verify");
    }
    // Each database holds what its node holds in RAM.
    for (i, st) in nodes.iter().enumerate() {
        st.shared.writer.flush().unwrap();
        let reloaded = lwcfs_backend::open(&st.db, Mtime(1_000_000)).unwrap().memdb;
        assert_eq!(
            reloaded.encode_index(),
            index,
            "seed {seed}: database of node {i}"
        );
    }
    for st in &nodes {
        st.shared.writer.shutdown().ok();
    }
}

#[test]
fn dcdb_on_the_simulated_bus_converges_3_nodes() {
    for seed in 0..12 {
        run_seed(seed, 3);
    }
}

#[test]
fn dcdb_on_the_simulated_bus_converges_5_nodes() {
    for seed in 100..106 {
        run_seed(seed, 5);
    }
}
