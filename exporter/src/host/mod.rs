//! Host metrics read with `sysinfo` on a background timer; scrapes only read the last snapshot.
//!
//! [`HostSampler`] does the (blocking) reads, [`families`] turns a [`HostSnapshot`] into metric
//! families (pure), and [`HostCollector`] serves the latest families to a registry.

mod families;

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use prometheus::core::{Collector, Desc};
use prometheus::proto::MetricFamily;
use sysinfo::{CpuRefreshKind, Disks, MemoryRefreshKind, Networks, RefreshKind, System};

use crate::schedule::Every;

pub use families::families;

/// Filesystem types that hold no user data (the list node_exporter excludes by default).
const PSEUDO_FILESYSTEMS: &[&str] = &[
    "autofs",
    "binfmt_misc",
    "bpf",
    "cgroup",
    "cgroup2",
    "configfs",
    "debugfs",
    "devpts",
    "devtmpfs",
    "fusectl",
    "hugetlbfs",
    "iso9660",
    "mqueue",
    "nsfs",
    "overlay",
    "proc",
    "procfs",
    "pstore",
    "rpc_pipefs",
    "securityfs",
    "selinuxfs",
    "squashfs",
    "sysfs",
    "tracefs",
];

/// Mount points under which nothing is a real filesystem of the host.
const PSEUDO_MOUNT_PREFIXES: &[&str] = &["/dev", "/proc", "/sys", "/run/credentials"];

/// Whether a mount is worth a `host_filesystem_*` series.
pub fn is_real_filesystem(fstype: &str, mountpoint: &str) -> bool {
    let under = |prefix: &str| {
        mountpoint == prefix
            || mountpoint
                .strip_prefix(prefix)
                .is_some_and(|rest| rest.starts_with('/'))
    };
    !PSEUDO_FILESYSTEMS.contains(&fstype) && !PSEUDO_MOUNT_PREFIXES.iter().any(|p| under(p))
}

/// One reading of the host.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HostSnapshot {
    /// Busy ratio (0–1) over all cores; `None` until two samples exist.
    pub cpu_usage: Option<f64>,
    pub core_usage: Vec<f64>,
    pub memory_total: u64,
    pub memory_available: u64,
    pub memory_used: u64,
    pub swap_total: u64,
    pub swap_used: u64,
    pub filesystems: Vec<Filesystem>,
    /// Cumulative bytes read and written, per block device.
    pub disks: BTreeMap<String, DiskIo>,
    pub interfaces: BTreeMap<String, InterfaceIo>,
    pub load: [f64; 3],
    pub uptime_seconds: u64,
    pub boot_time_seconds: u64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Filesystem {
    pub mountpoint: String,
    pub device: String,
    pub fstype: String,
    pub size_bytes: u64,
    pub avail_bytes: u64,
}

#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct DiskIo {
    pub read_bytes: u64,
    pub written_bytes: u64,
}

#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct InterfaceIo {
    pub receive_bytes: u64,
    pub transmit_bytes: u64,
    pub receive_errors: u64,
    pub transmit_errors: u64,
}

/// Owns the `sysinfo` handles; each [`HostSampler::sample`] refreshes only what is exported.
pub struct HostSampler {
    system: System,
    disks: Disks,
    networks: Networks,
    samples: u64,
}

impl HostSampler {
    pub fn new() -> Result<Self, sysinfo::Error> {
        let kind = RefreshKind::nothing()
            .with_cpu(CpuRefreshKind::nothing().with_usage())
            .with_memory(MemoryRefreshKind::everything());
        Ok(Self {
            system: System::new_with_specifics(kind)?,
            disks: Disks::new_with_refreshed_list()?,
            networks: Networks::new_with_refreshed_list()?,
            samples: 0,
        })
    }

    /// Reads the host. Blocking (syscalls and /proc reads): call it off the async runtime.
    pub fn sample(&mut self) -> HostSnapshot {
        self.system.refresh_cpu_usage();
        self.system.refresh_memory();
        // `true`: forget disks and interfaces that went away, so their series disappear.
        self.disks.refresh(true);
        self.networks.refresh(true);
        self.samples += 1;

        let mut snapshot = HostSnapshot {
            memory_total: self.system.total_memory(),
            memory_available: self.system.available_memory(),
            memory_used: self.system.used_memory(),
            swap_total: self.system.total_swap(),
            swap_used: self.system.used_swap(),
            uptime_seconds: System::uptime().unwrap_or(0),
            boot_time_seconds: System::boot_time().unwrap_or(0),
            ..HostSnapshot::default()
        };
        // The first sample has no previous one to compare with: usage would read 0.
        if self.samples > 1 {
            snapshot.cpu_usage = Some(ratio(self.system.global_cpu_usage()));
            snapshot.core_usage = self
                .system
                .cpus()
                .iter()
                .map(|c| ratio(c.usage()))
                .collect();
        } else {
            snapshot.core_usage = vec![0.0; self.system.cpus().len()];
        }
        if let Ok(load) = System::load_average() {
            snapshot.load = [load.one, load.five, load.fifteen];
        }
        for disk in self.disks.iter() {
            let fstype = disk.file_system().to_string_lossy().into_owned();
            let mountpoint = disk.mount_point().to_string_lossy().into_owned();
            let device = disk.name().to_string_lossy().into_owned();
            let usage = disk.usage();
            // Several mounts of one device (bind mounts) share its I/O counters.
            snapshot.disks.entry(device.clone()).or_insert(DiskIo {
                read_bytes: usage.total_read_bytes,
                written_bytes: usage.total_written_bytes,
            });
            if is_real_filesystem(&fstype, &mountpoint) {
                snapshot.filesystems.push(Filesystem {
                    mountpoint,
                    device,
                    fstype,
                    size_bytes: disk.total_space(),
                    avail_bytes: disk.available_space(),
                });
            }
        }
        for (name, data) in self.networks.iter() {
            snapshot.interfaces.insert(
                name.to_string_lossy().into_owned(),
                InterfaceIo {
                    receive_bytes: data.total_received(),
                    transmit_bytes: data.total_transmitted(),
                    receive_errors: data.total_errors_on_received(),
                    transmit_errors: data.total_errors_on_transmitted(),
                },
            );
        }
        snapshot
    }
}

fn ratio(percent: f32) -> f64 {
    (f64::from(percent) / 100.0).clamp(0.0, 1.0)
}

/// Serves the families of the latest snapshot; empty until the first refresh.
#[derive(Clone)]
pub struct HostCollector {
    latest: Arc<RwLock<Vec<MetricFamily>>>,
    descs: Arc<Vec<Desc>>,
}

impl HostCollector {
    pub fn new() -> Self {
        let descs = families::descs();
        Self {
            latest: Arc::default(),
            descs: Arc::new(descs),
        }
    }

    /// Replaces what scrapes see.
    pub fn publish(&self, snapshot: &HostSnapshot) {
        let families = families(snapshot);
        *self.latest.write().unwrap_or_else(|e| e.into_inner()) = families;
    }

    /// Samples now and then every `interval` on a blocking thread, publishing each snapshot,
    /// until `stop` changes; signals `first` once the first snapshot is published.
    pub async fn run(
        self,
        mut sampler: HostSampler,
        interval: Duration,
        stop: tokio::sync::watch::Receiver<bool>,
        first: tokio::sync::oneshot::Sender<()>,
    ) {
        let mut every = Every::new(interval, stop, first);
        while every.tick().await {
            let (back, snapshot) = match tokio::task::spawn_blocking(move || {
                let snapshot = sampler.sample();
                (sampler, snapshot)
            })
            .await
            {
                Ok(done) => done,
                Err(error) => {
                    tracing::error!(%error, "host sampling failed; host metrics stop updating");
                    return;
                }
            };
            sampler = back;
            self.publish(&snapshot);
        }
    }
}

impl Default for HostCollector {
    fn default() -> Self {
        Self::new()
    }
}

impl Collector for HostCollector {
    fn desc(&self) -> Vec<&Desc> {
        self.descs.iter().collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        self.latest
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

#[cfg(test)]
mod tests;
