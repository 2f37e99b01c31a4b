//! Host sampling on this machine and the families a snapshot becomes.

use prometheus::proto::MetricType;

use super::*;

fn snapshot() -> HostSnapshot {
    HostSnapshot {
        cpu_usage: Some(0.25),
        core_usage: vec![0.5, 0.0],
        memory_total: 8 << 30,
        memory_available: 6 << 30,
        memory_used: 2 << 30,
        swap_total: 0,
        swap_used: 0,
        filesystems: vec![Filesystem {
            mountpoint: "/".into(),
            device: "/dev/vda".into(),
            fstype: "ext4".into(),
            size_bytes: 100,
            avail_bytes: 40,
        }],
        disks: [(
            "/dev/vda".to_owned(),
            DiskIo {
                read_bytes: 7,
                written_bytes: 9,
            },
        )]
        .into(),
        interfaces: [(
            "eth0".to_owned(),
            InterfaceIo {
                receive_bytes: 1,
                transmit_bytes: 2,
                receive_errors: 0,
                transmit_errors: 3,
            },
        )]
        .into(),
        load: [0.5, 0.25, 0.125],
        uptime_seconds: 60,
        boot_time_seconds: 1_700_000_000,
    }
}

fn find<'a>(families: &'a [MetricFamily], name: &str) -> &'a MetricFamily {
    families
        .iter()
        .find(|f| f.name() == name)
        .unwrap_or_else(|| panic!("no family {name}"))
}

#[test]
fn pseudo_filesystems_are_excluded() {
    assert!(is_real_filesystem("ext4", "/"));
    assert!(is_real_filesystem("xfs", "/data"));
    assert!(is_real_filesystem("tmpfs", "/run"));
    assert!(!is_real_filesystem("proc", "/proc"));
    assert!(!is_real_filesystem("overlay", "/"));
    assert!(!is_real_filesystem("tmpfs", "/dev/shm"));
    assert!(!is_real_filesystem("tmpfs", "/sys/fs/cgroup"));
    assert!(
        is_real_filesystem("ext4", "/devices"),
        "a prefix match must end at a slash"
    );
}

#[test]
fn a_snapshot_becomes_typed_families_with_labels() {
    let families = families(&snapshot());
    let fs = find(&families, "host_filesystem_avail_bytes");
    assert_eq!(fs.get_field_type(), MetricType::GAUGE);
    let labels: Vec<(&str, &str)> = fs.get_metric()[0]
        .get_label()
        .iter()
        .map(|l| (l.name(), l.value()))
        .collect();
    assert_eq!(
        labels,
        vec![
            ("mountpoint", "/"),
            ("device", "/dev/vda"),
            ("fstype", "ext4")
        ]
    );
    assert_eq!(fs.get_metric()[0].get_gauge().get_value(), 40.0);

    let tx_errors = find(&families, "host_network_transmit_errors_total");
    assert_eq!(tx_errors.get_field_type(), MetricType::COUNTER);
    assert_eq!(tx_errors.get_metric()[0].get_counter().get_value(), 3.0);

    let cores = find(&families, "host_cpu_core_usage_ratio");
    assert_eq!(cores.get_metric().len(), 2);
    assert_eq!(cores.get_metric()[0].get_label()[0].value(), "0");
    assert_eq!(
        find(&families, "host_cpu_cores").get_metric()[0]
            .get_gauge()
            .get_value(),
        2.0
    );
    assert_eq!(
        find(&families, "host_load15").get_metric()[0]
            .get_gauge()
            .get_value(),
        0.125
    );
}

#[test]
fn no_cpu_ratio_before_two_samples() {
    let mut first = snapshot();
    first.cpu_usage = None;
    let families = families(&first);
    assert!(families.iter().all(|f| f.name() != "host_cpu_usage_ratio"));
    assert!(families
        .iter()
        .all(|f| f.name() != "host_cpu_core_usage_ratio"));
}

#[test]
fn every_family_has_a_descriptor() {
    let descs = families::descs();
    for family in families(&snapshot()) {
        assert!(
            descs.iter().any(|d| d.fq_name == family.name()),
            "{} lacks a Desc",
            family.name()
        );
    }
}

#[test]
fn sampling_this_machine_reads_plausible_values() {
    let mut sampler = HostSampler::new().expect("sysinfo");
    let first = sampler.sample();
    assert_eq!(first.cpu_usage, None);
    std::thread::sleep(sysinfo::MINIMUM_CPU_UPDATE_INTERVAL);
    let second = sampler.sample();
    let usage = second.cpu_usage.expect("second sample has a ratio");
    assert!((0.0..=1.0).contains(&usage));
    assert!(!second.core_usage.is_empty());
    assert!(second.memory_total > 0 && second.memory_available <= second.memory_total);
    assert!(second.uptime_seconds > 0 && second.boot_time_seconds > 1_000_000_000);
    assert!(
        second.interfaces.contains_key("lo"),
        "{:?}",
        second.interfaces.keys()
    );
}

#[test]
fn the_collector_serves_the_last_published_snapshot() {
    let collector = HostCollector::new();
    assert!(
        collector.collect().is_empty(),
        "nothing before the first sample"
    );
    collector.publish(&snapshot());
    let registry = prometheus::Registry::new();
    registry
        .register(Box::new(collector.clone()))
        .expect("register");
    let names: Vec<String> = registry
        .gather()
        .iter()
        .map(|f| f.name().to_owned())
        .collect();
    assert!(names.contains(&"host_memory_used_bytes".to_owned()));
}
