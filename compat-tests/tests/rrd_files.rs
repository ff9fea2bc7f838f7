//! RRD files as C pmxcfs writes them (status.md §3.4): updates for a node, a guest and a
//! storage, in the pve2 formats (padded with `U`) and the 9.0 formats, reach
//! `pve-{node,vm,storage}-9.0/…` under the base directory, through Debian's rrdcached when it
//! runs (each test starts its own on its own socket and base directory) and with librrd
//! directly when it does not. Each file is checked field by field against the spec with
//! `rrdtool info`, and compared whole with a reference file that `rrdtool` itself creates and
//! updates from the spec's create arguments and the update strings the spec derives.
//!
//! Needs `rrdcached` and `rrdtool` (Debian packages of the same names): feature `rrd`, run by
//! `compat-tests/run-all.sh`.
#![cfg(feature = "rrd")]

use std::path::Path;
use std::process::Command;
use std::time::{SystemTime, UNIX_EPOCH};

use lwcfs::rrd::{Outcome, Rrd, RrdConfig};
use lwcfs_compat_tests::rrdcached::{field, info, rrdtool, Rrdcached};

/// status.md §3.4, written out here rather than taken from lwcfs: name and type of each data
/// source, in file order.
const NODE_DS: [(&str, &str); 19] = [
    ("loadavg", "GAUGE"),
    ("maxcpu", "GAUGE"),
    ("cpu", "GAUGE"),
    ("iowait", "GAUGE"),
    ("memtotal", "GAUGE"),
    ("memused", "GAUGE"),
    ("swaptotal", "GAUGE"),
    ("swapused", "GAUGE"),
    ("roottotal", "GAUGE"),
    ("rootused", "GAUGE"),
    ("netin", "DERIVE"),
    ("netout", "DERIVE"),
    ("memavailable", "GAUGE"),
    ("arcsize", "GAUGE"),
    ("pressurecpusome", "GAUGE"),
    ("pressureiosome", "GAUGE"),
    ("pressureiofull", "GAUGE"),
    ("pressurememorysome", "GAUGE"),
    ("pressurememoryfull", "GAUGE"),
];
const VM_DS: [(&str, &str); 17] = [
    ("maxcpu", "GAUGE"),
    ("cpu", "GAUGE"),
    ("maxmem", "GAUGE"),
    ("mem", "GAUGE"),
    ("maxdisk", "GAUGE"),
    ("disk", "GAUGE"),
    ("netin", "DERIVE"),
    ("netout", "DERIVE"),
    ("diskread", "DERIVE"),
    ("diskwrite", "DERIVE"),
    ("memhost", "GAUGE"),
    ("pressurecpusome", "GAUGE"),
    ("pressurecpufull", "GAUGE"),
    ("pressureiosome", "GAUGE"),
    ("pressureiofull", "GAUGE"),
    ("pressurememorysome", "GAUGE"),
    ("pressurememoryfull", "GAUGE"),
];
const STORAGE_DS: [(&str, &str); 2] = [("total", "GAUGE"), ("used", "GAUGE")];
/// (consolidation, steps per row, rows); xff 0.5 for all.
const RRAS: [(&str, u32, u32); 8] = [
    ("AVERAGE", 1, 1440),
    ("AVERAGE", 30, 1440),
    ("AVERAGE", 360, 1440),
    ("AVERAGE", 10080, 570),
    ("MAX", 1, 1440),
    ("MAX", 30, 1440),
    ("MAX", 360, 1440),
    ("MAX", 10080, 570),
];

/// One object of the test: the key and value pvestatd sends at time `t`, the file, the data
/// sources, and the update string the spec says C writes.
struct Case {
    key: &'static str,
    file: &'static str,
    ds: &'static [(&'static str, &'static str)],
    value: fn(u64) -> String,
    expect: fn(u64) -> String,
}

const U7: &str = ":U:U:U:U:U:U:U";

fn cases() -> Vec<Case> {
    vec![
        // pve2-node: uptime and subscription level skipped, 12 columns + 7 `U`.
        Case {
            key: "pve2-node/node1",
            file: "pve-node-9.0/node1",
            ds: &NODE_DS,
            value: |t| {
                format!(
                    "86400::{t}:0.25:8:0.031:0.0012:16663535616:2146304000:0:0:100861726720:\
                     3013935104:{}:{}",
                    123456 + t % 1000,
                    654321 + t % 1000
                )
            },
            expect: |t| {
                format!(
                    "{t}:0.25:8:0.031:0.0012:16663535616:2146304000:0:0:100861726720:\
                     3013935104:{}:{}{U7}",
                    123456 + t % 1000,
                    654321 + t % 1000
                )
            },
        },
        // pve2.3-vm: uptime, name, status, template skipped, 10 columns + 7 `U`.
        Case {
            key: "pve2.3-vm/100",
            file: "pve-vm-9.0/100",
            ds: &VM_DS,
            value: |t| {
                format!(
                    "3600:vm100:running:0:{t}:2:0.5:1073741824:536870912:34359738368:0:{}:2000:\
                     3000:4000",
                    1000 + t % 1000
                )
            },
            expect: |t| {
                format!(
                    "{t}:2:0.5:1073741824:536870912:34359738368:0:{}:2000:3000:4000{U7}",
                    1000 + t % 1000
                )
            },
        },
        // pve2-storage: nothing skipped, nothing added.
        Case {
            key: "pve2-storage/node1/local",
            file: "pve-storage-9.0/node1/local",
            ds: &STORAGE_DS,
            value: |t| format!("{t}:100000000000:25000000000"),
            expect: |t| format!("{t}:100000000000:25000000000"),
        },
        // The 9.0 formats go in as they are.
        Case {
            key: "pve-node-9.0/node2",
            file: "pve-node-9.0/node2",
            ds: &NODE_DS,
            value: |t| {
                format!(
                    "86400:1:{t}:0.5:16:0.1:0.01:67108864:33554432:0:0:1000000:500000:{}:{}:\
                     30000000:0:0.1:0.2:0.3:0.4:0.5",
                    t % 5000,
                    t % 7000
                )
            },
            expect: |t| {
                format!(
                    "{t}:0.5:16:0.1:0.01:67108864:33554432:0:0:1000000:500000:{}:{}:30000000:0:\
                     0.1:0.2:0.3:0.4:0.5",
                    t % 5000,
                    t % 7000
                )
            },
        },
        Case {
            key: "pve-vm-9.0/101",
            file: "pve-vm-9.0/101",
            ds: &VM_DS,
            value: |t| {
                format!(
                    "60:ct101:running:0:{t}:1:0.25:536870912:1000000:8589934592:100:10:20:30:40:\
                     2000000:1:2:3:4:5:6"
                )
            },
            expect: |t| {
                format!(
                    "{t}:1:0.25:536870912:1000000:8589934592:100:10:20:30:40:2000000:1:2:3:4:5:6"
                )
            },
        },
        Case {
            key: "pve-storage-9.0/node2/local-lvm",
            file: "pve-storage-9.0/node2/local-lvm",
            ds: &STORAGE_DS,
            value: |t| format!("{t}:200:100"),
            expect: |t| format!("{t}:200:100"),
        },
    ]
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// Local midnight of the day of `t`, by `date(1)`: the start C gives every file.
fn midnight(t: u64) -> u64 {
    let day = Command::new("date")
        .args(["-d", &format!("@{t}"), "+%F"])
        .output()
        .unwrap();
    let day = String::from_utf8(day.stdout).unwrap();
    let out = Command::new("date")
        .args(["+%s", "-d", &format!("{} 00:00", day.trim())])
        .output()
        .unwrap();
    String::from_utf8(out.stdout)
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Every field the spec fixes, read from `rrdtool info`.
#[track_caller]
fn assert_layout(file: &Path, ds: &[(&str, &str)]) {
    let i = info(file);
    let what = file.display();
    assert_eq!(field(&i, "step"), Some("60"), "{what}");
    let ds_count = i
        .iter()
        .filter(|(k, _)| k.starts_with("ds[") && k.ends_with("].index"))
        .count();
    assert_eq!(ds_count, ds.len(), "{what}: number of data sources");
    for (n, (name, kind)) in ds.iter().enumerate() {
        let f = |suffix: &str| field(&i, &format!("ds[{name}].{suffix}")).map(str::to_owned);
        assert_eq!(f("index"), Some(n.to_string()), "{what} ds {name}");
        assert_eq!(f("type"), Some(format!("\"{kind}\"")), "{what} ds {name}");
        assert_eq!(
            f("minimal_heartbeat").as_deref(),
            Some("120"),
            "{what} {name}"
        );
        assert_eq!(
            f("min").as_deref(),
            Some("0.0000000000e+00"),
            "{what} {name}"
        );
        assert_eq!(f("max").as_deref(), Some("NaN"), "{what} {name}");
    }
    let rra_count = i
        .iter()
        .filter(|(k, _)| k.starts_with("rra[") && k.ends_with("].cf"))
        .count();
    assert_eq!(rra_count, RRAS.len(), "{what}: number of archives");
    for (n, (cf, steps, rows)) in RRAS.iter().enumerate() {
        let f = |suffix: &str| field(&i, &format!("rra[{n}].{suffix}")).map(str::to_owned);
        assert_eq!(f("cf"), Some(format!("\"{cf}\"")), "{what} rra {n}");
        assert_eq!(f("pdp_per_row"), Some(steps.to_string()), "{what} rra {n}");
        assert_eq!(f("rows"), Some(rows.to_string()), "{what} rra {n}");
        assert_eq!(
            f("xff").as_deref(),
            Some("5.0000000000e-01"),
            "{what} rra {n}"
        );
    }
}

/// A reference file made by `rrdtool` from the spec's arguments, updated with the spec's
/// update strings.
fn reference(path: &Path, ds: &[(&str, &str)], start: u64, updates: &[String]) {
    let mut args = vec![
        "create".to_owned(),
        s(path).to_owned(),
        "--step".into(),
        "60".into(),
        "--start".into(),
        start.to_string(),
    ];
    args.extend(ds.iter().map(|(n, t)| format!("DS:{n}:{t}:120:0:U")));
    args.extend(
        RRAS.iter()
            .map(|(cf, steps, rows)| format!("RRA:{cf}:0.5:{steps}:{rows}")),
    );
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    rrdtool(&args);
    for u in updates {
        rrdtool(&["update", s(path), u]);
    }
}

/// `rrdtool info` of both files, equal except the file name and each archive's randomly
/// chosen current row.
#[track_caller]
fn assert_same_as_reference(ours: &Path, reference: &Path) {
    let keep = |i: Vec<(String, String)>| -> Vec<(String, String)> {
        i.into_iter()
            .filter(|(k, _)| k != "filename" && !k.ends_with(".cur_row"))
            .collect()
    };
    let (a, b) = (keep(info(ours)), keep(info(reference)));
    assert_eq!(
        a.len(),
        b.len(),
        "{}: number of info fields",
        ours.display()
    );
    for (x, y) in a.iter().zip(&b) {
        assert_eq!(x, y, "{}: differs from the reference", ours.display());
    }
}

/// Two rounds of updates for every case, then the checks. `via` is the outcome expected of
/// every update; `flush` makes the data that rrdcached holds reach the files.
fn run(base: &Path, rrd: &Rrd, via: Outcome, flush: &dyn Fn(&Path)) {
    let t0 = now();
    let start = midnight(t0);
    let times = [t0, t0 + 60];
    for (round, t) in times.iter().enumerate() {
        for c in cases() {
            let mut value = (c.value)(*t).into_bytes();
            value.push(0);
            assert_eq!(
                rrd.update(c.key, &value, t0 + round as u64),
                Ok(via.clone()),
                "{} at {t}",
                c.key
            );
        }
    }
    // Every value is in the dump, under its key, the last one sent.
    let dump = rrd.dump(t0 + 1);
    for c in cases() {
        assert!(
            dump.contains(&format!("{}:{}\n", c.key, (c.value)(times[1]))),
            "{} missing from the dump:\n{dump}",
            c.key
        );
    }
    let refdir = tempfile::tempdir().unwrap();
    for c in cases() {
        let file = base.join(c.file);
        assert!(file.is_file(), "{} not created", file.display());
        if via == Outcome::Daemon {
            // Still in rrdcached: the file has only what librrd wrote when creating it.
            assert_eq!(
                field(&info(&file), "last_update"),
                Some(start.to_string().as_str()),
                "{}: created at local midnight, updates held by rrdcached",
                file.display()
            );
        }
        flush(&file);
        assert_layout(&file, c.ds);
        assert_eq!(
            field(&info(&file), "last_update"),
            Some(times[1].to_string().as_str())
        );
        let r = refdir.path().join(c.key.replace('/', "_"));
        let updates: Vec<String> = times.iter().map(|t| (c.expect)(*t)).collect();
        reference(&r, c.ds, start, &updates);
        assert_same_as_reference(&file, &r);
    }
    // The old formats' padding: the 7 data sources pve2 lacks were written as unknown.
    let last = rrdtool(&["lastupdate", s(&base.join("pve-node-9.0/node1"))]);
    let values = last.lines().last().unwrap();
    assert!(values.ends_with(" U U U U U U U"), "{last}");
    assert!(!values.ends_with(" U U U U U U U U"), "{last}");
}

#[test]
fn with_rrdcached_updates_go_through_the_daemon() {
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().join("db");
    let daemon = Rrdcached::start(dir.path(), &base);
    let rrd = Rrd::new(RrdConfig {
        base_dir: base.clone(),
        rrdcached: Some(daemon.socket().to_owned()),
    });
    run(&base, &rrd, Outcome::Daemon, &|f| daemon.flush(f));
}

#[test]
fn without_rrdcached_updates_go_straight_into_the_files() {
    let dir = tempfile::tempdir().unwrap();
    // Nothing exists yet, not even the base directory: all of it is created.
    let base = dir.path().join("var/lib/rrdcached/db");
    let rrd = Rrd::new(RrdConfig {
        base_dir: base.clone(),
        rrdcached: Some(dir.path().join("rrdcached.sock")),
    });
    run(&base, &rrd, Outcome::Direct, &|_| {});
}

/// rrdcached runs but refuses the files (they are outside the directory it may write, `-B`):
/// every update is written with librrd instead, as C does after "RRDC update error".
#[test]
fn when_rrdcached_refuses_librrd_writes() {
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().join("db");
    let daemon = Rrdcached::start(dir.path(), &dir.path().join("elsewhere"));
    let rrd = Rrd::new(RrdConfig {
        base_dir: base.clone(),
        rrdcached: Some(daemon.socket().to_owned()),
    });
    run(&base, &rrd, Outcome::Direct, &|_| {});
}

/// A key C refuses changes no file; a value C refuses is not stored at all.
#[test]
fn refused_keys_and_values_write_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().join("db");
    let rrd = Rrd::new(RrdConfig {
        base_dir: base.clone(),
        rrdcached: None,
    });
    let t = now();
    let v = format!("{t}:1:2\0");
    assert_eq!(
        rrd.update("pve2-vm/100", v.as_bytes(), t),
        Ok(Outcome::BadKey)
    );
    assert!(rrd.update("pve2-storage/n/s", b"1:2:3", t).is_err());
    assert!(!base.exists(), "nothing may be created for refused input");
    assert_eq!(rrd.dump(t), format!("pve2-vm/100:{t}:1:2\n"));
}
