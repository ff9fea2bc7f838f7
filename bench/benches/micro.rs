//! Micro-benchmarks of lwcfs's hot paths, with criterion: `cargo bench -p lwcfs-bench`.
//! Figures and the exact command are in `bench/RESULTS.md`. Nothing here touches the disk but
//! the service group's temporary database, which is opened and never written.
//!
//! - `memdb/*`: applying a small write and a `file_set_contents` (create, write, rename) to the
//!   seed tree; lookup, getattr, read and path_of of a guest config.
//! - `service/*`: the daemon's answer to the kernel for a cached read (open + release) and for
//!   an uncached one (lookup + getattr + open + read + release), tree lock included.
//! - `coalesce/*`: the writer's pure planning for one batch of 20 PVE updates and of 1000 new
//!   VM configs.
//! - `index/*`: the DFSM index (`encode_index`) and the VERIFY checksum (`compute_checksum`) of
//!   the seed tree, and of the seed tree with 1000 more VM configs.

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use lwcfs::kcache::KernelCache;
use lwcfs::service::{Service, ServiceConfig, Shared, Tree};
use lwcfs::status::Status;
use lwcfs_backend::coalesce::{OnDisk, Pending, Policy};
use lwcfs_backend::{root_record, WriterConfig};
use lwcfs_bench::content::qemu_conf;
use lwcfs_bench::plan::Step;
use lwcfs_bench::seed::{steps, Seed};
use lwcfs_fuse::{FsService, KIno, NodeRef};
use lwcfs_memdb::{Change, Ctx, Inode, Memdb, Mtime, NodeId, Op, TreePath};

const NOW: u32 = 1_800_000_000;

fn ctx() -> Ctx {
    Ctx {
        writer: NodeId(0),
        mtime: Mtime(NOW),
        now: Mtime(NOW),
    }
}

fn p(s: &str) -> TreePath {
    TreePath::parse(s)
}

fn mkdir_all(db: &mut Memdb, path: &str) {
    let mut at = TreePath::root();
    for c in path.split('/') {
        at = at.join(c);
        if db.resolve(&at).is_none() {
            db.apply(&Op::Mkdir { path: at.clone() }, ctx()).unwrap();
        }
    }
}

fn put(db: &mut Memdb, path: &str, data: Vec<u8>) {
    let path = p(path);
    if db.resolve(&path).is_none() {
        db.apply(&Op::Create { path: path.clone() }, ctx()).unwrap();
    }
    let op = Op::Write {
        path,
        offset: 0,
        data,
        truncate: true,
    };
    db.apply(&op, ctx()).unwrap();
}

/// The bench's seed tree (a 3-node cluster's /etc/pve, about 80 entries, 37 KB), plus `vms`
/// more VM configs of about 650 bytes under `nodes/pve1/qemu-server`.
fn tree(vms: u32) -> Memdb {
    let mut db = Memdb::new();
    for s in steps(Seed::Pve3) {
        match s {
            Step::MkdirAll(d) => mkdir_all(&mut db, &d),
            Step::Overwrite { path, content } => put(&mut db, &path, content.render(NOW.into())),
            other => panic!("seed step {other:?}"),
        }
    }
    for i in 0..vms {
        let vmid = 1000 + i;
        let path = format!("nodes/pve1/qemu-server/{vmid}.conf");
        put(&mut db, &path, qemu_conf(vmid, "pve1", 0).into_bytes());
    }
    db
}

const CONF: &str = "nodes/pve2/qemu-server/110.conf";

fn memdb(c: &mut Criterion) {
    let mut g = c.benchmark_group("memdb");
    let mut db = tree(0);
    let write = Op::Write {
        path: p("nodes/pve1/lrm_status"),
        offset: 0,
        data: vec![b'x'; 83],
        truncate: true,
    };
    g.bench_function("apply_write_83B", |b| {
        b.iter(|| db.apply(black_box(&write), ctx()).unwrap())
    });
    let mut n = 0u64;
    g.bench_function("apply_set_contents_1KiB", |b| {
        b.iter(|| {
            n += 1;
            let tmp = p(&format!("nodes/pve1/qemu-server/110.conf.tmp.{n}"));
            db.apply(&Op::Create { path: tmp.clone() }, ctx()).unwrap();
            let w = Op::Write {
                path: tmp.clone(),
                offset: 0,
                data: vec![b'y'; 1024],
                truncate: false,
            };
            db.apply(&w, ctx()).unwrap();
            let r = Op::Rename {
                from: tmp,
                to: p(CONF),
            };
            db.apply(&r, ctx()).unwrap()
        })
    });
    let dir = db.resolve(&p("nodes/pve2/qemu-server")).unwrap();
    let conf = db.resolve(&p(CONF)).unwrap();
    g.bench_function("lookup", |b| {
        b.iter(|| db.lookup(black_box(dir), black_box("110.conf")).unwrap())
    });
    g.bench_function("getattr", |b| {
        b.iter(|| db.getattr(black_box(conf)).unwrap())
    });
    g.bench_function("read", |b| b.iter(|| db.read(black_box(conf)).unwrap()));
    g.bench_function("path_of", |b| {
        b.iter(|| db.path_of(black_box(conf)).unwrap())
    });
    g.bench_function("resolve", |b| {
        let path = p(CONF);
        b.iter(|| db.resolve(black_box(&path)).unwrap())
    });
    g.finish();
}

fn service(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.db");
    let mut db = lwcfs_backend::open(&path, Mtime(NOW)).unwrap().memdb;
    for s in steps(Seed::Pve3) {
        match s {
            Step::MkdirAll(d) => mkdir_all(&mut db, &d),
            Step::Overwrite { path, content } => put(&mut db, &path, content.render(NOW.into())),
            _ => {}
        }
    }
    let tree = Tree::new(db);
    let wcfg = WriterConfig::default();
    let writer = Arc::new(lwcfs_backend::spawn(&path, tree.clone(), wcfg).unwrap());
    let shared = Shared::new(
        tree.clone(),
        writer,
        Arc::new(Status::new("pve1".into(), NOW, 1, false)),
        Arc::new(KernelCache::new()),
        Duration::from_secs(300),
    );
    let svc = Service::new(
        shared,
        None,
        ServiceConfig {
            nodename: "pve1".into(),
            lock_timeout: 120,
            gid: 33,
        },
    );
    let (dir_ino, conf_ino) = {
        let db = tree.lock();
        let d = db.resolve(&p("nodes/pve2/qemu-server")).unwrap();
        let f = db.resolve(&p(CONF)).unwrap();
        (KIno::from(NodeRef::Mem(d)), KIno::from(NodeRef::Mem(f)))
    };
    let mut g = c.benchmark_group("service");
    g.bench_function("cached_read_open_release", |b| {
        b.iter(|| {
            let fh = svc.open(black_box(conf_ino), libc::O_RDONLY).unwrap();
            svc.release(conf_ino, fh);
        })
    });
    g.bench_function("uncached_read_cycle", |b| {
        b.iter(|| {
            let a = svc.lookup(black_box(dir_ino), "110.conf").unwrap();
            svc.getattr(a.ino).unwrap();
            let fh = svc.open(a.ino, libc::O_RDONLY).unwrap();
            let d = svc.read(a.ino, fh, 0, 4096).unwrap();
            svc.release(a.ino, fh);
            d
        })
    });
    g.finish();
}

/// A pending set of `n` changed files in one directory, their snapshot and what the disk holds
/// (the `n` files are new, or all stored with other content).
fn coalesce_case(
    n: u64,
    stored: bool,
) -> (
    Pending,
    Vec<(Inode, Option<lwcfs_memdb::NodeRecord>)>,
    OnDisk,
) {
    let mut db = tree(0);
    mkdir_all(&mut db, "bench");
    let mut inodes = Vec::new();
    for i in 0..n {
        let f = format!("bench/f{i}.conf");
        put(
            &mut db,
            &f,
            qemu_conf(100 + i as u32, "pve1", 0).into_bytes(),
        );
        inodes.push(db.resolve(&p(&f)).unwrap());
    }
    let places = db
        .records()
        .into_iter()
        .filter(|r| stored || !inodes.contains(&r.inode))
        .map(|r| (r.inode, r.parent, r.name));
    let disk = OnDisk::new(places, root_record(&db));
    let policy = Policy {
        commit_delay: Duration::from_millis(250),
        hold_bound: Duration::from_secs(5),
    };
    let mut pending = Pending::new(policy);
    let t0 = Instant::now();
    for &i in &inodes {
        pending.changed(&[Change::Upsert(i)], true, None, t0);
    }
    let snapshot = inodes.iter().map(|&i| (i, db.record(i))).collect();
    (pending, snapshot, disk)
}

fn coalesce(c: &mut Criterion) {
    let mut g = c.benchmark_group("coalesce");
    for (name, n, stored) in [
        ("plan_20_updates", 20, true),
        ("plan_1000_new_configs", 1000, false),
    ] {
        let (pending, snapshot, disk) = coalesce_case(n, stored);
        let root = disk.root;
        let at = Instant::now() + Duration::from_secs(1);
        g.bench_function(name, |b| {
            b.iter_batched(
                || snapshot.clone(),
                |s| pending.plan(s, root, &disk, at, false),
                BatchSize::SmallInput,
            )
        });
    }
    g.finish();
}

fn index(c: &mut Criterion) {
    let mut g = c.benchmark_group("index");
    for (name, vms) in [("seed", 0), ("seed_plus_1000_vms", 1000)] {
        let db = tree(vms);
        g.bench_function(format!("encode_index/{name}"), |b| {
            b.iter(|| black_box(&db).encode_index())
        });
        g.bench_function(format!("compute_checksum/{name}"), |b| {
            b.iter(|| black_box(&db).compute_checksum())
        });
    }
    g.finish();
}

criterion_group!(benches, memdb, service, coalesce, index);
criterion_main!(benches);
