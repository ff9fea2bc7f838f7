//! The RRD files C pmxcfs 9.x creates: one layout per kind of object, step 60 s, the same
//! eight archives for all (status.md §3.4, `status.c` `rrd_def_*_pve9_0`).

/// Seconds per primary data point.
pub const STEP: u64 = 60;

/// Every data source: heartbeat 120 s, minimum 0, no maximum.
pub const HEARTBEAT: u32 = 120;

/// The archives, identical for all three kinds: AVERAGE and MAX, xff 0.5, 1 day at 1 min,
/// 30 days at 30 min, ~1 year at 6 h, ~10 years at 1 week.
pub const RRAS: [&str; 8] = [
    "RRA:AVERAGE:0.5:1:1440",
    "RRA:AVERAGE:0.5:30:1440",
    "RRA:AVERAGE:0.5:360:1440",
    "RRA:AVERAGE:0.5:10080:570",
    "RRA:MAX:0.5:1:1440",
    "RRA:MAX:0.5:30:1440",
    "RRA:MAX:0.5:360:1440",
    "RRA:MAX:0.5:10080:570",
];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DsType {
    Gauge,
    Derive,
}

impl DsType {
    pub fn as_str(self) -> &'static str {
        match self {
            DsType::Gauge => "GAUGE",
            DsType::Derive => "DERIVE",
        }
    }
}

use DsType::{Derive, Gauge};

/// A node: 19 data sources.
pub const NODE_DS: [(&str, DsType); 19] = [
    ("loadavg", Gauge),
    ("maxcpu", Gauge),
    ("cpu", Gauge),
    ("iowait", Gauge),
    ("memtotal", Gauge),
    ("memused", Gauge),
    ("swaptotal", Gauge),
    ("swapused", Gauge),
    ("roottotal", Gauge),
    ("rootused", Gauge),
    ("netin", Derive),
    ("netout", Derive),
    ("memavailable", Gauge),
    ("arcsize", Gauge),
    ("pressurecpusome", Gauge),
    ("pressureiosome", Gauge),
    ("pressureiofull", Gauge),
    ("pressurememorysome", Gauge),
    ("pressurememoryfull", Gauge),
];

/// A guest: 17 data sources.
pub const VM_DS: [(&str, DsType); 17] = [
    ("maxcpu", Gauge),
    ("cpu", Gauge),
    ("maxmem", Gauge),
    ("mem", Gauge),
    ("maxdisk", Gauge),
    ("disk", Gauge),
    ("netin", Derive),
    ("netout", Derive),
    ("diskread", Derive),
    ("diskwrite", Derive),
    ("memhost", Gauge),
    ("pressurecpusome", Gauge),
    ("pressurecpufull", Gauge),
    ("pressureiosome", Gauge),
    ("pressureiofull", Gauge),
    ("pressurememorysome", Gauge),
    ("pressurememoryfull", Gauge),
];

/// A storage: 2 data sources.
pub const STORAGE_DS: [(&str, DsType); 2] = [("total", Gauge), ("used", Gauge)];

/// The kind of object an RRD file is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    Node,
    Vm,
    Storage,
}

impl Kind {
    /// The directory under the RRD base directory: `pve-node-9.0`, `pve-vm-9.0`,
    /// `pve-storage-9.0`.
    pub fn dir(self) -> &'static str {
        match self {
            Kind::Node => "pve-node-9.0",
            Kind::Vm => "pve-vm-9.0",
            Kind::Storage => "pve-storage-9.0",
        }
    }

    pub fn data_sources(self) -> &'static [(&'static str, DsType)] {
        match self {
            Kind::Node => &NODE_DS,
            Kind::Vm => &VM_DS,
            Kind::Storage => &STORAGE_DS,
        }
    }

    /// The columns a current-format update carries after its timestamp.
    pub fn columns(self) -> usize {
        self.data_sources().len()
    }

    /// The arguments of `rrd_create_r` after step and start, in C's order: the data sources,
    /// then the archives.
    pub fn create_args(self) -> Vec<String> {
        self.data_sources()
            .iter()
            .map(|(name, t)| format!("DS:{name}:{}:{HEARTBEAT}:0:U", t.as_str()))
            .chain(RRAS.iter().map(|r| (*r).to_owned()))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_args_are_cs_strings() {
        let node = Kind::Node.create_args();
        assert_eq!(node.len(), 19 + 8);
        assert_eq!(node[0], "DS:loadavg:GAUGE:120:0:U");
        assert_eq!(node[10], "DS:netin:DERIVE:120:0:U");
        assert_eq!(node[18], "DS:pressurememoryfull:GAUGE:120:0:U");
        assert_eq!(node[19], "RRA:AVERAGE:0.5:1:1440");
        assert_eq!(node[26], "RRA:MAX:0.5:10080:570");
        let vm = Kind::Vm.create_args();
        assert_eq!(vm.len(), 17 + 8);
        assert_eq!(vm[9], "DS:diskwrite:DERIVE:120:0:U");
        assert_eq!(vm[10], "DS:memhost:GAUGE:120:0:U");
        assert_eq!(
            Kind::Storage.create_args()[..2],
            ["DS:total:GAUGE:120:0:U", "DS:used:GAUGE:120:0:U"]
        );
        assert_eq!(
            (
                Kind::Node.columns(),
                Kind::Vm.columns(),
                Kind::Storage.columns()
            ),
            (19, 17, 2)
        );
    }
}
