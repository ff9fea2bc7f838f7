//! The one place that talks to Corosync: CPG, the quorum service and cmap, through the official
//! `rust-corosync` bindings.
//!
//! Everything here is thin. [`CpgConn`] is a [`Transport`] over one CPG handle; its
//! [`CpgConn::dispatch`] turns corosync's deliver and confchg callbacks into [`CpgEvent`]s in
//! delivery order, for [`crate::Driver::dispatch`]. [`QuorumConn`] reports the quorate flag
//! (C `quorum.c`), [`read_cluster`] the cluster name, config version and node list (C
//! `confdb.c`).
//!
//! The bindings call our callbacks from inside `*_dispatch` on the calling thread, with their
//! own handle table locked: the callbacks only copy what they get into a thread-local buffer,
//! which `dispatch` drains after the call returns. They never call back into corosync.

use std::cell::{Cell, RefCell};
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread::sleep;
use std::time::Duration;

use rust_corosync::{cmap, cpg, quorum, CsError, DispatchFlags, TrackFlags};

use crate::member::MemberId;
use crate::transport::{CpgEvent, Transport};
use crate::Group;

pub use rust_corosync::CsError as Error;

/// How long C waits between retries of a call that says TRY_AGAIN.
const RETRY: Duration = Duration::from_millis(100);
/// C gives up a multicast after 100 retries (≈10 s) (`dfsm.c:185-201`).
const MCAST_TRIES: u32 = 100;
/// C retries a join forever; we give up after a minute and let the service loop start over.
const JOIN_TRIES: u32 = 600;

thread_local! {
    /// Events the CPG callbacks produced during the current dispatch, with their handle's
    /// context.
    static EVENTS: RefCell<Vec<(u64, CpgEvent)>> = const { RefCell::new(Vec::new()) };
    /// The quorate flag a quorum notification carried during the current dispatch.
    static QUORATE: Cell<Option<bool>> = const { Cell::new(None) };
}

/// Contexts that tell our CPG handles apart inside the callbacks.
static NEXT_CONTEXT: AtomicU64 = AtomicU64::new(1);

fn member(a: &cpg::Address) -> MemberId {
    MemberId::new(u32::from(a.nodeid), a.pid)
}

fn on_deliver(
    h: &cpg::Handle,
    _group: String,
    nodeid: rust_corosync::NodeId,
    pid: u32,
    msg: &[u8],
    _len: usize,
) {
    let ctx = cpg::context_get(h).unwrap_or(0);
    let ev = CpgEvent::Deliver {
        from: MemberId::new(u32::from(nodeid), pid),
        msg: msg.to_vec(),
    };
    EVENTS.with(|e| e.borrow_mut().push((ctx, ev)));
}

fn on_confchg(
    h: &cpg::Handle,
    _group: &str,
    members: Vec<cpg::Address>,
    left: Vec<cpg::Address>,
    joined: Vec<cpg::Address>,
) {
    let ctx = cpg::context_get(h).unwrap_or(0);
    let ev = CpgEvent::Confchg {
        members: members.iter().map(member).collect(),
        left: left.iter().map(member).collect(),
        joined: joined.iter().map(member).collect(),
    };
    EVENTS.with(|e| e.borrow_mut().push((ctx, ev)));
}

/// Call `f` until it stops saying TRY_AGAIN, at most `tries` times, 100 ms apart.
fn retry<T>(tries: u32, mut f: impl FnMut() -> Result<T, CsError>) -> Result<T, CsError> {
    let mut n = 0;
    loop {
        match f() {
            Err(CsError::CsErrTryAgain) if n + 1 < tries => {
                n += 1;
                if n % 10 == 0 {
                    tracing::debug!("corosync says try again ({n} retries)");
                }
                sleep(RETRY);
            }
            r => return r,
        }
    }
}

/// Wait up to `timeout_ms` for any of `fds` to become readable (or hung up); which are.
/// Interrupted or failed waits report nothing ready.
pub fn wait_readable(fds: &[RawFd], timeout_ms: i32) -> Vec<bool> {
    let mut pfds: Vec<libc::pollfd> = fds
        .iter()
        .map(|&fd| libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        })
        .collect();
    // SAFETY: `pfds` is an initialized array of `pfds.len()` pollfd structs that outlives the
    // call; poll only writes their `revents`.
    let n = unsafe { libc::poll(pfds.as_mut_ptr(), pfds.len() as libc::nfds_t, timeout_ms) };
    pfds.iter().map(|p| n > 0 && p.revents != 0).collect()
}

/// One CPG handle for one group (C keeps it across leave and re-join).
pub struct CpgConn {
    handle: cpg::Handle,
    /// The group name as C sends it: with the trailing NUL.
    name: String,
    ctx: u64,
}

impl CpgConn {
    /// `cpg_initialize` with our callbacks.
    pub fn connect(group: &Group) -> Result<CpgConn, CsError> {
        let model = cpg::ModelData::ModelV1(cpg::Model1Data {
            flags: cpg::Model1Flags::None,
            deliver_fn: Some(on_deliver),
            confchg_fn: Some(on_confchg),
            totem_confchg_fn: None,
        });
        let handle = cpg::initialize(&model, 0)?;
        let ctx = NEXT_CONTEXT.fetch_add(1, Ordering::Relaxed);
        // The bindings do not keep the context given to initialize.
        cpg::context_set(&handle, ctx)?;
        let mut name = group.name.to_owned();
        name.push('\0');
        Ok(CpgConn { handle, name, ctx })
    }

    /// This process as the group's members see it: `cpg_local_get` and the process id.
    pub fn local(&self) -> Result<MemberId, CsError> {
        let nodeid = cpg::local_get(&self.handle)?;
        Ok(MemberId::new(u32::from(nodeid), std::process::id()))
    }

    /// The descriptor to poll for readiness.
    pub fn fd(&self) -> Result<RawFd, CsError> {
        cpg::fd_get(&self.handle)
    }

    /// `cpg_dispatch(CS_DISPATCH_ALL)`: the callbacks that were ready, in delivery order.
    pub fn dispatch(&mut self) -> Result<Vec<CpgEvent>, CsError> {
        let r = retry(u32::MAX, || cpg::dispatch(&self.handle, DispatchFlags::All));
        let mine = EVENTS.with(|e| {
            let mut all = e.borrow_mut();
            let (mine, others): (Vec<_>, Vec<_>) = all.drain(..).partition(|(c, _)| *c == self.ctx);
            *all = others;
            mine
        });
        r?;
        Ok(mine.into_iter().map(|(_, ev)| ev).collect())
    }
}

impl Transport for CpgConn {
    type Error = CsError;

    fn join(&mut self) -> Result<(), CsError> {
        retry(JOIN_TRIES, || cpg::join(&self.handle, &self.name))
    }

    fn leave(&mut self) -> Result<(), CsError> {
        retry(JOIN_TRIES, || cpg::leave(&self.handle, &self.name))
    }

    fn mcast(&mut self, msg: &[u8]) -> Result<(), CsError> {
        retry(MCAST_TRIES, || {
            cpg::mcast_joined(&self.handle, cpg::Guarantee::TypeAgreed, msg)
        })
    }
}

fn on_quorum(
    _h: &quorum::Handle,
    quorate: bool,
    _ring: quorum::RingId,
    _members: Vec<rust_corosync::NodeId>,
) {
    QUORATE.with(|q| q.set(Some(quorate)));
}

/// The quorum service (C `quorum.c`): only the quorate flag is used.
pub struct QuorumConn {
    handle: quorum::Handle,
}

/// Why the quorum service could not start.
#[derive(Debug, thiserror::Error)]
pub enum QuorumError {
    #[error("corosync: {0}")]
    Corosync(CsError),
    #[error("quorum service has no quorum provider configured")]
    NoProvider,
}

impl From<CsError> for QuorumError {
    fn from(e: CsError) -> QuorumError {
        QuorumError::Corosync(e)
    }
}

impl QuorumConn {
    /// `quorum_initialize` (refusing a cluster without a quorum provider, as C does),
    /// `quorum_trackstart(CS_TRACK_CHANGES)`; returns the current quorate flag too.
    pub fn connect() -> Result<(QuorumConn, bool), QuorumError> {
        let model = quorum::ModelData::ModelV1(quorum::Model1Data {
            flags: quorum::Model1Flags::None,
            quorum_notification_fn: Some(on_quorum),
            nodelist_notification_fn: None,
        });
        let (handle, kind) = quorum::initialize(&model, 0)?;
        if !matches!(kind, quorum::QuorumType::Set) {
            return Err(QuorumError::NoProvider);
        }
        quorum::trackstart(&handle, TrackFlags::Changes)?;
        let quorate = quorum::getquorate(&handle)?;
        Ok((QuorumConn { handle }, quorate))
    }

    pub fn fd(&self) -> Result<RawFd, CsError> {
        quorum::fd_get(&self.handle)
    }

    /// `quorum_dispatch(CS_DISPATCH_ALL)`: the last quorate flag notified, if any.
    pub fn dispatch(&mut self) -> Result<Option<bool>, CsError> {
        QUORATE.with(|q| q.set(None));
        retry(u32::MAX, || {
            quorum::dispatch(&self.handle, DispatchFlags::All)
        })?;
        Ok(QUORATE.with(|q| q.take()))
    }
}

/// One node of the cmap node list.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClusterNode {
    pub nodeid: u32,
    pub name: String,
    pub votes: u32,
}

/// What C reads from cmap (`confdb.c`).
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct ClusterConfig {
    pub name: String,
    /// `totem.config_version` (0 when absent, as C shows it).
    pub config_version: u64,
    /// In cmap's key order (by index).
    pub nodes: Vec<ClusterNode>,
}

fn as_u32(d: &cmap::Data) -> Option<u32> {
    match *d {
        cmap::Data::UInt32(v) => Some(v),
        cmap::Data::Int32(v) => u32::try_from(v).ok(),
        cmap::Data::UInt16(v) => Some(u32::from(v)),
        cmap::Data::UInt8(v) => Some(u32::from(v)),
        cmap::Data::UInt64(v) => u32::try_from(v).ok(),
        _ => None,
    }
}

/// Read the cluster name, config version and node list from cmap, as C does on every change.
pub fn read_cluster() -> Result<ClusterConfig, CsError> {
    let h = cmap::initialize(cmap::Map::Icmap)?;
    let name = match cmap::get(&h, "totem.cluster_name")? {
        cmap::Data::String(s) => s,
        _ => return Err(CsError::CsErrInvalidParam),
    };
    let config_version = match cmap::get(&h, "totem.config_version") {
        Ok(cmap::Data::UInt64(v)) => v,
        Ok(d) => as_u32(&d).map_or(0, u64::from),
        Err(_) => 0,
    };
    let mut keys: Vec<(String, cmap::Data)> = Vec::new();
    for item in cmap::CmapIterStart::new(&h, "nodelist.node.")? {
        let data = match item.data() {
            cmap::Data::String(s) => cmap::Data::String(s.clone()),
            d => as_u32(d).map_or(cmap::Data::Unknown, cmap::Data::UInt32),
        };
        keys.push((item.key_name().to_owned(), data));
    }
    Ok(ClusterConfig {
        name,
        config_version,
        nodes: nodes_of(&keys),
    })
}

/// C's node list parse: keys `nodelist.node.<i>.<field>`; `name` wins over `ring0_addr`; a
/// node counts only with a name and a non-zero nodeid.
fn nodes_of(keys: &[(String, cmap::Data)]) -> Vec<ClusterNode> {
    let mut by_index: std::collections::BTreeMap<u32, (u32, Option<String>, Option<String>, u32)> =
        Default::default();
    for (k, d) in keys {
        let Some(rest) = k.strip_prefix("nodelist.node.") else {
            continue;
        };
        let Some((idx, field)) = rest.split_once('.') else {
            continue;
        };
        let Ok(idx) = idx.parse::<u32>() else {
            continue;
        };
        let e = by_index.entry(idx).or_insert((0, None, None, 1));
        match (field, d) {
            ("nodeid", d) => e.0 = as_u32(d).unwrap_or(0),
            ("name", cmap::Data::String(s)) => e.1 = Some(s.clone()),
            ("ring0_addr", cmap::Data::String(s)) => e.2 = Some(s.clone()),
            ("quorum_votes", d) => e.3 = as_u32(d).unwrap_or(1),
            _ => {}
        }
    }
    by_index
        .into_values()
        .filter_map(|(nodeid, name, ring0, votes)| {
            let name = name.or(ring0)?;
            (nodeid != 0).then_some(ClusterNode {
                nodeid,
                name,
                votes,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &str) -> cmap::Data {
        cmap::Data::String(v.to_owned())
    }

    #[test]
    fn node_list_as_c_parses_it() {
        let keys = vec![
            ("nodelist.node.0.name".to_owned(), s("node1")),
            ("nodelist.node.0.nodeid".to_owned(), cmap::Data::UInt32(1)),
            ("nodelist.node.0.ring0_addr".to_owned(), s("10.99.0.1")),
            ("nodelist.node.1.nodeid".to_owned(), cmap::Data::UInt32(2)),
            ("nodelist.node.1.ring0_addr".to_owned(), s("10.99.0.2")),
            (
                "nodelist.node.1.quorum_votes".to_owned(),
                cmap::Data::UInt32(2),
            ),
            // No nodeid: not a node.
            ("nodelist.node.2.name".to_owned(), s("ghost")),
        ];
        assert_eq!(
            nodes_of(&keys),
            vec![
                ClusterNode {
                    nodeid: 1,
                    name: "node1".into(),
                    votes: 1
                },
                ClusterNode {
                    nodeid: 2,
                    name: "10.99.0.2".into(),
                    votes: 2
                },
            ]
        );
    }
}
