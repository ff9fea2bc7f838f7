//! Many DFSM nodes on the simulated CPG bus, running the dcdb-shaped toy application.
//! Every scenario runs under many seeds (interleavings); at the end the replicas must agree.

use lwcfs_cpg::dfsm::{Cause, Effect, SendKind, VerifyOutcome};
use lwcfs_cpg::sim::toy::{del, put, KvApp, DEL, PUT};
use lwcfs_cpg::sim::Sim;
use lwcfs_cpg::{Config, MemberId, Mode, Outcome};

const CFG: Config = Config {
    protocol_version: 1,
    verify_interval: Some(3600),
    c_reorder_window: false,
};

/// `n` nodes with node ids 1..=n (pid 100 + id), not started.
fn nodes(n: u32, seed: u64) -> Sim<KvApp> {
    let mut sim = Sim::new(CFG, seed);
    for id in 1..=n {
        sim.add(MemberId::new(id, 100 + id), KvApp::new());
    }
    sim
}

/// Start every node, one after the other, letting each sync round finish.
fn joined(n: u32, seed: u64) -> Sim<KvApp> {
    let mut sim = nodes(n, seed);
    for i in 0..sim.len() {
        sim.start(i);
        sim.run();
    }
    sim
}

/// Every listed node is SYNCED with the same data, and no local sender is left waiting.
fn assert_converged(sim: &Sim<KvApp>, slots: &[usize]) {
    let want = sim.app(slots[0]).data();
    for &i in slots {
        assert_eq!(sim.mode(i), Mode::Synced, "node {i}\n{sim:?}");
        assert_eq!(sim.app(i).data(), want, "node {i} diverged\n{sim:?}");
        assert_eq!(
            sim.node(i).dfsm.queued(),
            (0, 0),
            "node {i} has queued messages"
        );
    }
}

/// Every message a node sent got an outcome.
fn assert_no_lost_waiter(sim: &Sim<KvApp>, i: usize, sent: &[u64]) {
    for c in sent {
        assert!(
            sim.node(i).outcomes.contains_key(c),
            "node {i}: no outcome for count {c}\n{sim:?}"
        );
    }
}

/// A random write from a random member: PUT on one of 8 keys, sometimes DEL.
fn random_write(sim: &mut Sim<KvApp>, senders: &[usize], sent: &mut [Vec<u64>]) {
    let i = senders[sim.rng.below(senders.len())];
    let key = 1 + sim.rng.below(8) as u64;
    let count = if sim.rng.below(4) == 0 {
        sim.send(i, DEL, &del(key))
    } else {
        let v = sim.rng.next_u64().to_le_bytes();
        sim.send(i, PUT, &put(key, &v))
    };
    sent[i].push(count);
}

#[test]
fn three_nodes_join_sync_and_agree_on_one_order() {
    for seed in 0..30 {
        let mut sim = joined(3, seed);
        assert_converged(&sim, &[0, 1, 2]);
        let mut sent = vec![Vec::new(); 3];
        for _ in 0..40 {
            random_write(&mut sim, &[0, 1, 2], &mut sent);
            for _ in 0..sim.rng.below(4) {
                sim.step();
            }
        }
        sim.run();
        assert_converged(&sim, &[0, 1, 2]);
        // The same messages in the same order on every node.
        let log = &sim.app(0).applied;
        assert_eq!(log.len(), 40);
        assert_eq!(&sim.app(1).applied, log, "seed {seed}");
        assert_eq!(&sim.app(2).applied, log, "seed {seed}");
        // Each sender's result is the version its PUT got in that order.
        for (i, counts) in sent.iter().enumerate() {
            assert_no_lost_waiter(&sim, i, counts);
            for c in counts {
                let pos = log
                    .iter()
                    .position(|(f, n, _)| f.nodeid.0 == i as u32 + 1 && n == c);
                assert!(
                    pos.is_some(),
                    "seed {seed}: node {i} count {c} never applied"
                );
                match sim.node(i).outcomes[c] {
                    Outcome::Applied(r) => assert!(r == 0 || r == -2 || r > 0),
                    Outcome::NotProcessed => {
                        panic!("seed {seed}: node {i} count {c} not processed")
                    }
                }
            }
        }
    }
}

/// Observed in the captured C cluster: the SYNC_START sender is the lowest node id, and a
/// member that already has the leader's data goes straight to SYNCED.
#[test]
fn a_joiner_gets_the_leaders_data_through_updates() {
    for seed in 0..10 {
        let mut sim = nodes(2, seed);
        sim.start(0);
        sim.run();
        assert_eq!(sim.mode(0), Mode::Synced, "alone: synced at once");
        let mut sent = vec![Vec::new(); 2];
        for _ in 0..5 {
            random_write(&mut sim, &[0], &mut sent);
        }
        sim.run();
        sim.start(1);
        sim.run();
        assert_converged(&sim, &[0, 1]);
        assert_eq!(
            sim.node(1).modes(),
            vec![Mode::StartSync, Mode::Update, Mode::Synced],
            "the empty joiner waits for updates"
        );
        assert!(sim
            .node(0)
            .modes()
            .ends_with(&[Mode::StartSync, Mode::Synced]));
        assert!(sim.app(1).updates_received > 0);
        assert_eq!(sim.app(1).commits, 1);
        assert_eq!(sim.app(0).commits, 0, "the leader commits nothing");
    }
}

/// Two synced nodes write; a third joins while all three keep writing.
fn writes_during_join(cfg: Config, seed: u64) -> (Sim<KvApp>, Vec<Vec<u64>>) {
    let mut sim = Sim::new(cfg, seed);
    for id in 1..=3 {
        sim.add(MemberId::new(id, 100 + id), KvApp::new());
    }
    for i in 0..2 {
        sim.start(i);
        sim.run();
    }
    let mut sent = vec![Vec::new(); 3];
    for _ in 0..6 {
        random_write(&mut sim, &[0, 1], &mut sent);
    }
    sim.run();
    sim.start(2);
    for _ in 0..30 {
        random_write(&mut sim, &[0, 1, 2], &mut sent);
        for _ in 0..sim.rng.below(5) {
            sim.step();
        }
    }
    sim.run();
    (sim, sent)
}

#[test]
fn writes_during_a_sync_round_are_applied_once_everywhere() {
    for seed in 0..40 {
        let (sim, sent) = writes_during_join(CFG, seed);
        assert_converged(&sim, &[0, 1, 2]);
        let log = &sim.app(0).applied;
        assert_eq!(&sim.app(1).applied, log, "seed {seed}");
        // The joiner applied a suffix of the same order (the rest came in the leader's data).
        let late = &sim.app(2).applied;
        assert!(log.ends_with(late), "seed {seed}: joiner order differs");
        for (i, counts) in sent.iter().enumerate() {
            assert_no_lost_waiter(&sim, i, counts);
            for c in counts {
                let n = log
                    .iter()
                    .filter(|(f, k, _)| f.nodeid.0 == i as u32 + 1 && k == c)
                    .count();
                assert_eq!(n, 1, "seed {seed}: node {i} count {c} applied {n} times");
            }
        }
    }
}

/// C's reordering window (cluster.md §8.2 #15), reproduced on purpose: members already synced
/// apply a joiner's newer message at once, its older ones only at UPDATE_COMPLETE, so the
/// replicas diverge. The hourly verify finds the members that differ from the requester, and
/// they leave and resync.
#[test]
fn c_reorder_window_diverges_and_verify_repairs_it() {
    let quirk = Config {
        c_reorder_window: true,
        ..CFG
    };
    let mut diverged = 0;
    for seed in 0..40 {
        let (mut sim, _) = writes_during_join(quirk, seed);
        let same = (1..3).all(|i| sim.app(i).data() == sim.app(0).data());
        if same {
            continue;
        }
        diverged += 1;
        sim.request_verify(0);
        sim.run();
        assert_converged(&sim, &[0, 1, 2]);
    }
    assert!(diverged > 0, "the C race did not show in 40 seeds");
}

/// A member that was away comes back as a new process with its old data and is brought up
/// to date; an entry only it has is deleted (cluster.md §4.7).
#[test]
fn a_restarted_node_resyncs() {
    for seed in 0..20 {
        let mut sim = joined(3, seed);
        let mut sent = vec![Vec::new(); 3];
        for _ in 0..5 {
            random_write(&mut sim, &[0, 1, 2], &mut sent);
        }
        sim.run();
        let mut old = sim.app(2).clone();
        sim.crash(2);
        sim.run();
        assert_converged(&sim, &[0, 1]);
        // The survivors were identical: UPDATE_COMPLETE came without updates.
        assert_eq!(sim.app(0).updates_received + sim.app(1).updates_received, 0);
        for _ in 0..5 {
            random_write(&mut sim, &[0, 1], &mut sent);
        }
        sim.run();
        old.items.insert(
            99,
            lwcfs_cpg::sim::toy::Item {
                version: 1,
                writer: 3,
                mtime: 0,
                value: b"stale".to_vec(),
            },
        );
        sim.restart(2, 555, old);
        sim.run();
        assert_converged(&sim, &[0, 1, 2]);
        assert!(!sim.app(2).items.contains_key(&99), "stale entry survived");
        for (i, counts) in sent.iter().enumerate().take(2) {
            assert_no_lost_waiter(&sim, i, counts);
        }
    }
}

#[test]
fn a_node_that_shut_down_rejoins_later() {
    for seed in 0..20 {
        let mut sim = joined(3, seed);
        sim.shutdown(1);
        sim.run();
        assert!(!sim.in_group(1));
        let mut sent = vec![Vec::new(); 3];
        for _ in 0..8 {
            random_write(&mut sim, &[0, 2], &mut sent);
        }
        sim.run();
        assert_converged(&sim, &[0, 2]);
        sim.start(1);
        for _ in 0..8 {
            random_write(&mut sim, &[0, 1, 2], &mut sent);
            sim.step();
        }
        sim.run();
        assert_converged(&sim, &[0, 1, 2]);
        for (i, counts) in sent.iter().enumerate() {
            assert_no_lost_waiter(&sim, i, counts);
        }
    }
}

/// Newest version wins after a partition heals (cluster.md §4.8): the side with more changes
/// provides the tree, the other side's changes are discarded.
#[test]
fn a_partition_heals_to_the_newest_data() {
    for seed in 0..20 {
        let mut sim = joined(3, seed);
        sim.partition(&[&[0, 1], &[2]]);
        sim.run();
        assert_converged(&sim, &[0, 1]);
        assert_eq!(sim.mode(2), Mode::Synced, "alone in its component");
        let mut sent = vec![Vec::new(); 3];
        for _ in 0..6 {
            random_write(&mut sim, &[0, 1], &mut sent);
        }
        for _ in 0..2 {
            random_write(&mut sim, &[2], &mut sent);
        }
        sim.run();
        let majority = sim.app(0).data();
        assert_ne!(sim.app(2).data(), majority);
        sim.heal();
        sim.run();
        assert_converged(&sim, &[0, 1, 2]);
        assert_eq!(
            sim.app(2).data(),
            majority,
            "seed {seed}: minority data won"
        );
        for (i, counts) in sent.iter().enumerate() {
            assert_no_lost_waiter(&sim, i, counts);
        }
    }
}

fn verified(sim: &Sim<KvApp>, i: usize) -> Vec<VerifyOutcome> {
    sim.node(i)
        .effects
        .iter()
        .filter_map(|e| match e {
            Effect::Verified { outcome, .. } => Some(*outcome),
            _ => None,
        })
        .collect()
}

#[test]
fn verify_finds_the_diverged_node_which_resyncs() {
    for seed in 0..10 {
        let mut sim = joined(3, seed);
        let mut sent = vec![Vec::new(); 3];
        for _ in 0..5 {
            random_write(&mut sim, &[0, 1, 2], &mut sent);
        }
        sim.run();
        sim.request_verify(1);
        sim.run();
        assert!(
            (0..3).all(|i| verified(&sim, i).is_empty()),
            "only the lowest node id asks"
        );
        sim.request_verify(0);
        sim.run();
        for i in 0..3 {
            assert_eq!(
                verified(&sim, i),
                vec![VerifyOutcome::Ok],
                "seed {seed} node {i}"
            );
        }
        sim.node_mut(2).dfsm.app_mut().corrupt(1);
        sim.request_verify(0);
        sim.run();
        assert_eq!(verified(&sim, 0), vec![VerifyOutcome::Ok; 2]);
        assert_eq!(verified(&sim, 2).last(), Some(&VerifyOutcome::Mismatch));
        let left = sim.node(2).effects.iter().any(|e| {
            matches!(
                e,
                Effect::ModeChanged {
                    to: Mode::Leave,
                    cause: Cause::ChecksumMismatch { .. },
                    ..
                }
            )
        });
        assert!(left, "the diverged node leaves");
        assert_converged(&sim, &[0, 1, 2]);
        sim.request_verify(0);
        sim.run();
        for i in 0..3 {
            assert_eq!(
                verified(&sim, i).last(),
                Some(&VerifyOutcome::Ok),
                "seed {seed} node {i}"
            );
        }
    }
}

#[test]
fn the_verify_timer_fires_hourly_on_the_lowest_node_only() {
    let mut sim = joined(3, 7);
    sim.advance(3599);
    sim.run();
    assert!(verified(&sim, 0).is_empty());
    sim.advance(1);
    sim.run();
    for i in 0..3 {
        assert_eq!(verified(&sim, i), vec![VerifyOutcome::Ok]);
    }
    let requests = |i: usize| {
        sim.node(i)
            .effects
            .iter()
            .filter(|e| matches!(e, Effect::Send(o) if o.kind == SendKind::VerifyRequest))
            .count()
    };
    assert_eq!((requests(0), requests(1), requests(2)), (1, 0, 0));
}

/// A member with a newer protocol version stops the older ones for good; it ignores their
/// messages (cluster.md §2.4 step 4). As the lowest node id it sends SYNC_START at once.
#[test]
fn a_newer_protocol_stops_older_nodes() {
    let mut sim = Sim::new(CFG, 3);
    let newer = Config {
        protocol_version: 2,
        ..CFG
    };
    let n = sim.add_with(MemberId::new(1, 101), KvApp::new(), newer);
    for id in [2, 3] {
        sim.add(MemberId::new(id, 100 + id), KvApp::new());
    }
    for i in [1, 2, n] {
        sim.start(i);
        sim.run();
    }
    for i in [1, 2] {
        assert_eq!(sim.mode(i), Mode::VersionError, "node {i}\n{sim:?}");
        assert!(sim.node(i).stopped);
        assert!(!sim.in_group(i));
    }
    assert_eq!(
        sim.mode(n),
        Mode::Synced,
        "alone once the others left\n{sim:?}"
    );
}

/// Not the lowest node id, the newer member waits in a round nobody can finish (as a C node
/// would) until it sends anything: its first message stops the older members, and once alone
/// it applies its own queued message.
#[test]
fn a_newer_member_stalls_the_round_until_it_speaks() {
    let mut sim = joined(2, 5);
    let newer = Config {
        protocol_version: 2,
        ..CFG
    };
    let n = sim.add_with(MemberId::new(3, 103), KvApp::new(), newer);
    sim.start(n);
    sim.run();
    assert_eq!(
        [sim.mode(0), sim.mode(1), sim.mode(n)],
        [Mode::StartSync; 3]
    );
    let count = sim.send(n, PUT, &put(1, b"v2"));
    sim.run();
    assert_eq!([sim.mode(0), sim.mode(1)], [Mode::VersionError; 2]);
    assert_eq!(sim.mode(n), Mode::Synced);
    assert_eq!(sim.node(n).outcomes.get(&count), Some(&Outcome::Applied(1)));
    assert_eq!(sim.app(n).items[&1].value, b"v2");
}

/// Random membership changes and writes; after healing and restarting everything, all
/// replicas agree and every local sender got an answer.
#[test]
fn random_scenarios_converge() {
    for seed in 0..60 {
        let mut sim = nodes(4, seed);
        let mut sent = vec![Vec::new(); 4];
        let mut pid = 1000;
        for i in 0..4 {
            sim.start(i);
        }
        for _ in 0..60 {
            match sim.rng.below(20) {
                0 => {
                    let i = sim.rng.below(4);
                    if sim.in_group(i) {
                        sim.crash(i);
                        sent[i].clear(); // its waiters died with it
                    }
                }
                1 => {
                    let a = sim.rng.below(4);
                    let rest: Vec<usize> = (0..4).filter(|&x| x != a).collect();
                    sim.partition(&[&[a], &rest]);
                }
                2 => sim.heal(),
                _ => {
                    let up: Vec<usize> = (0..4).filter(|&i| sim.in_group(i)).collect();
                    if !up.is_empty() {
                        random_write(&mut sim, &up, &mut sent);
                    }
                }
            }
            for _ in 0..sim.rng.below(6) {
                sim.step();
            }
        }
        sim.heal();
        sim.run();
        for i in 0..4 {
            if !sim.is_up(i) {
                // A crashed node comes back as a new process with the data it had.
                pid += 1;
                let app = sim.app(i).clone();
                sim.restart(i, pid, app);
            }
        }
        sim.run();
        assert_converged(&sim, &[0, 1, 2, 3]);
        for (i, counts) in sent.iter().enumerate() {
            assert_no_lost_waiter(&sim, i, counts);
        }
    }
}
