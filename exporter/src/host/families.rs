//! Turns a [`HostSnapshot`] into Prometheus metric families (pure, no I/O).

use std::collections::HashMap;

use prometheus::core::Desc;
use prometheus::proto::{Counter, Gauge, LabelPair, Metric, MetricFamily, MetricType};

use super::HostSnapshot;

struct Spec {
    name: &'static str,
    help: &'static str,
    kind: MetricType,
    labels: &'static [&'static str],
}

const fn spec(
    name: &'static str,
    help: &'static str,
    kind: MetricType,
    labels: &'static [&'static str],
) -> Spec {
    Spec {
        name,
        help,
        kind,
        labels,
    }
}

use MetricType::{COUNTER, GAUGE};

const FS: &[&str] = &["mountpoint", "device", "fstype"];
#[rustfmt::skip]
const SPECS: &[Spec] = &[
    spec("host_cpu_usage_ratio", "CPU busy ratio (0-1) over all cores since the previous sample.", GAUGE, &[]),
    spec("host_cpu_core_usage_ratio", "CPU busy ratio (0-1) per logical core since the previous sample.", GAUGE, &["core"]),
    spec("host_cpu_cores", "Logical CPU cores.", GAUGE, &[]),
    spec("host_memory_total_bytes", "Physical memory.", GAUGE, &[]),
    spec("host_memory_available_bytes", "Memory available for new work without swapping.", GAUGE, &[]),
    spec("host_memory_used_bytes", "Memory in use.", GAUGE, &[]),
    spec("host_swap_total_bytes", "Swap space.", GAUGE, &[]),
    spec("host_swap_used_bytes", "Swap space in use.", GAUGE, &[]),
    spec("host_filesystem_size_bytes", "Filesystem size.", GAUGE, FS),
    spec("host_filesystem_avail_bytes", "Filesystem space available to unprivileged users.", GAUGE, FS),
    spec("host_disk_read_bytes_total", "Bytes read from the block device.", COUNTER, &["device"]),
    spec("host_disk_written_bytes_total", "Bytes written to the block device.", COUNTER, &["device"]),
    spec("host_network_receive_bytes_total", "Bytes received on the interface.", COUNTER, &["interface"]),
    spec("host_network_transmit_bytes_total", "Bytes sent on the interface.", COUNTER, &["interface"]),
    spec("host_network_receive_errors_total", "Receive errors on the interface.", COUNTER, &["interface"]),
    spec("host_network_transmit_errors_total", "Transmit errors on the interface.", COUNTER, &["interface"]),
    spec("host_load1", "Load average over 1 minute.", GAUGE, &[]),
    spec("host_load5", "Load average over 5 minutes.", GAUGE, &[]),
    spec("host_load15", "Load average over 15 minutes.", GAUGE, &[]),
    spec("host_uptime_seconds", "Seconds since the host booted.", GAUGE, &[]),
    spec("host_boot_time_seconds", "Unix time at which the host booted.", GAUGE, &[]),
];

/// Descriptors of every host family, for registry consistency checks.
pub(super) fn descs() -> Vec<Desc> {
    SPECS
        .iter()
        .filter_map(|s| {
            let labels = s.labels.iter().map(|l| (*l).to_owned()).collect();
            Desc::new(s.name.into(), s.help.into(), labels, HashMap::new()).ok()
        })
        .collect()
}

/// The families for one snapshot, in a stable order. Families without samples (no CPU
/// ratio before the second sample, say) are left out rather than reported as zero.
pub fn families(snapshot: &HostSnapshot) -> Vec<MetricFamily> {
    let mut out = Families::default();
    if let Some(usage) = snapshot.cpu_usage {
        out.add("host_cpu_usage_ratio", &[], usage);
        for (core, usage) in snapshot.core_usage.iter().enumerate() {
            out.add("host_cpu_core_usage_ratio", &[&core.to_string()], *usage);
        }
    }
    out.add("host_cpu_cores", &[], snapshot.core_usage.len() as f64);
    out.add("host_memory_total_bytes", &[], snapshot.memory_total as f64);
    out.add(
        "host_memory_available_bytes",
        &[],
        snapshot.memory_available as f64,
    );
    out.add("host_memory_used_bytes", &[], snapshot.memory_used as f64);
    out.add("host_swap_total_bytes", &[], snapshot.swap_total as f64);
    out.add("host_swap_used_bytes", &[], snapshot.swap_used as f64);
    for fs in &snapshot.filesystems {
        let labels = [fs.mountpoint.as_str(), &fs.device, &fs.fstype];
        out.add("host_filesystem_size_bytes", &labels, fs.size_bytes as f64);
        out.add(
            "host_filesystem_avail_bytes",
            &labels,
            fs.avail_bytes as f64,
        );
    }
    for (device, io) in &snapshot.disks {
        out.add(
            "host_disk_read_bytes_total",
            &[device],
            io.read_bytes as f64,
        );
        out.add(
            "host_disk_written_bytes_total",
            &[device],
            io.written_bytes as f64,
        );
    }
    for (interface, io) in &snapshot.interfaces {
        let labels = [interface.as_str()];
        out.add(
            "host_network_receive_bytes_total",
            &labels,
            io.receive_bytes as f64,
        );
        out.add(
            "host_network_transmit_bytes_total",
            &labels,
            io.transmit_bytes as f64,
        );
        out.add(
            "host_network_receive_errors_total",
            &labels,
            io.receive_errors as f64,
        );
        out.add(
            "host_network_transmit_errors_total",
            &labels,
            io.transmit_errors as f64,
        );
    }
    out.add("host_load1", &[], snapshot.load[0]);
    out.add("host_load5", &[], snapshot.load[1]);
    out.add("host_load15", &[], snapshot.load[2]);
    out.add("host_uptime_seconds", &[], snapshot.uptime_seconds as f64);
    out.add(
        "host_boot_time_seconds",
        &[],
        snapshot.boot_time_seconds as f64,
    );
    out.finish()
}

#[derive(Default)]
struct Families {
    metrics: HashMap<&'static str, Vec<Metric>>,
}

impl Families {
    fn add(&mut self, name: &'static str, values: &[&str], value: f64) {
        let Some(spec) = SPECS.iter().find(|s| s.name == name) else {
            debug_assert!(false, "no spec for {name}");
            return;
        };
        let labels = spec
            .labels
            .iter()
            .zip(values)
            .map(|(name, value)| {
                let mut pair = LabelPair::default();
                pair.set_name((*name).to_owned());
                pair.set_value((*value).to_owned());
                pair
            })
            .collect();
        let mut metric = Metric::from_label(labels);
        match spec.kind {
            MetricType::COUNTER => {
                let mut counter = Counter::default();
                counter.set_value(value);
                metric.set_counter(counter);
            }
            _ => {
                let mut gauge = Gauge::default();
                gauge.set_value(value);
                metric.set_gauge(gauge);
            }
        }
        self.metrics.entry(name).or_default().push(metric);
    }

    fn finish(mut self) -> Vec<MetricFamily> {
        SPECS
            .iter()
            .filter_map(|spec| {
                let metrics = self.metrics.remove(spec.name)?;
                let mut family = MetricFamily::default();
                family.set_name(spec.name.to_owned());
                family.set_help(spec.help.to_owned());
                family.set_field_type(spec.kind);
                family.set_metric(metrics);
                Some(family)
            })
            .collect()
    }
}
