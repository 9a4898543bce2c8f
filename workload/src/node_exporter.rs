//! [`NodeExporter`]: node-exporter-like series for many hosts.

use collabstream_proto::v1;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

/// How a series moves between scrapes.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Shape {
    /// Never changes (sizes, `*_info`, MTUs, most error counters).
    Constant,
    /// Integer counter growing by a few per scrape (netstat, vmstat, context switches).
    SlowCounter { max_step: u32 },
    /// Integer counter growing by thousands to a million per scrape (network and disk bytes).
    ByteCounter,
    /// Seconds counter with two decimals (node_cpu_seconds_total).
    CpuSeconds { rate: f64 },
    /// Page-aligned byte gauge taking small steps (memory).
    PageGauge,
    /// Two-decimal gauge moving a little (load averages).
    LoadGauge,
    /// Small integer gauge (procs, file descriptors, goroutines).
    IntGauge,
}

#[derive(Debug, Clone)]
struct Series {
    labels: Vec<v1::Label>,
    shape: Shape,
    value: f64,
}

/// Every host exposes this many series.
pub const SERIES_PER_HOST: usize = 500;

/// Hosts × series; call [`NodeExporter::scrape`] once per interval.
#[derive(Debug)]
pub struct NodeExporter {
    series: Vec<Series>,
    rng: SmallRng,
}

fn labels(name: &str, host: usize, extra: &[(&str, String)]) -> Vec<v1::Label> {
    let mut l = vec![
        v1::Label { name: "__name__".into(), value: name.into() },
        v1::Label { name: "instance".into(), value: format!("host-{host:04}:9100") },
        v1::Label { name: "job".into(), value: "node".into() },
    ];
    l.extend(extra.iter().map(|(n, v)| v1::Label { name: (*n).into(), value: v.clone() }));
    l.sort_by(|a, b| a.name.cmp(&b.name));
    l
}

impl NodeExporter {
    /// At least `total_series` series (whole hosts of 500 series each), deterministic per seed.
    pub fn new(total_series: usize, seed: u64) -> Self {
        Self::hosts(0..total_series.div_ceil(SERIES_PER_HOST), seed)
    }

    /// The hosts numbered `hosts` (`host-0003:9100`, …), so that several generators (one per
    /// sender) produce disjoint series.
    pub fn hosts(hosts: std::ops::Range<usize>, seed: u64) -> Self {
        let mut rng =
            SmallRng::seed_from_u64(seed ^ (hosts.start as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15));
        let mut series = Vec::with_capacity(hosts.len() * SERIES_PER_HOST);
        for host in hosts {
            Self::host(host, &mut series, &mut rng);
        }
        Self { series, rng }
    }

    fn host(h: usize, out: &mut Vec<Series>, rng: &mut SmallRng) {
        let start = out.len();
        let mut push = |name: &str, extra: &[(&str, String)], shape: Shape, value: f64| {
            out.push(Series { labels: labels(name, h, extra), shape, value });
        };
        let modes = [
            ("idle", 0.8),
            ("user", 0.1),
            ("system", 0.05),
            ("iowait", 0.01),
            ("irq", 0.001),
            ("softirq", 0.005),
            ("steal", 0.0),
            ("nice", 0.0),
        ];
        for cpu in 0..4 {
            for (mode, share) in modes {
                let shape = if share == 0.0 { Shape::Constant } else { Shape::CpuSeconds { rate: share } };
                push(
                    "node_cpu_seconds_total",
                    &[("cpu", cpu.to_string()), ("mode", mode.into())],
                    shape,
                    (rng.random_range(1_000_000..9_000_000) as f64) / 100.0 * share.max(0.01),
                );
            }
        }
        for i in 0..40 {
            let shape = if i % 3 == 0 { Shape::Constant } else { Shape::PageGauge };
            push(
                &format!("node_memory_field{i}_bytes"),
                &[],
                shape,
                (rng.random_range(1_000i64..4_000_000) * 4096) as f64,
            );
        }
        for dev in ["sda1", "sda2", "sdb1", "nvme0n1p1", "tmpfs", "overlay"] {
            for (metric, shape) in [
                ("size_bytes", Shape::Constant),
                ("avail_bytes", Shape::PageGauge),
                ("free_bytes", Shape::PageGauge),
                ("files", Shape::Constant),
                ("files_free", Shape::IntGauge),
            ] {
                push(
                    &format!("node_filesystem_{metric}"),
                    &[
                        ("device", dev.into()),
                        ("fstype", "ext4".into()),
                        ("mountpoint", format!("/mnt/{dev}")),
                    ],
                    shape,
                    (rng.random_range(1_000_000i64..100_000_000) * 4096) as f64,
                );
            }
        }
        for dev in ["eth0", "eth1", "lo", "docker0"] {
            for dir in ["receive", "transmit"] {
                push(
                    &format!("node_network_{dir}_bytes_total"),
                    &[("device", dev.into())],
                    Shape::ByteCounter,
                    rng.random_range(1e9..1e12f64).round(),
                );
                push(
                    &format!("node_network_{dir}_packets_total"),
                    &[("device", dev.into())],
                    Shape::SlowCounter { max_step: 400 },
                    rng.random_range(1e6..1e9f64).round(),
                );
                push(
                    &format!("node_network_{dir}_errs_total"),
                    &[("device", dev.into())],
                    Shape::Constant,
                    0.0,
                );
                push(
                    &format!("node_network_{dir}_drop_total"),
                    &[("device", dev.into())],
                    Shape::Constant,
                    rng.random_range(0..5) as f64,
                );
            }
            push("node_network_mtu_bytes", &[("device", dev.into())], Shape::Constant, 1500.0);
            push("node_network_up", &[("device", dev.into())], Shape::Constant, 1.0);
        }
        for dev in ["sda", "sdb", "nvme0n1", "dm-0"] {
            push(
                "node_disk_read_bytes_total",
                &[("device", dev.into())],
                Shape::ByteCounter,
                rng.random_range(1e9..1e12f64).round(),
            );
            push(
                "node_disk_written_bytes_total",
                &[("device", dev.into())],
                Shape::ByteCounter,
                rng.random_range(1e9..1e12f64).round(),
            );
            push(
                "node_disk_reads_completed_total",
                &[("device", dev.into())],
                Shape::SlowCounter { max_step: 50 },
                rng.random_range(1e5..1e8f64).round(),
            );
            push(
                "node_disk_writes_completed_total",
                &[("device", dev.into())],
                Shape::SlowCounter { max_step: 80 },
                rng.random_range(1e5..1e8f64).round(),
            );
            push(
                "node_disk_io_time_seconds_total",
                &[("device", dev.into())],
                Shape::CpuSeconds { rate: 0.02 },
                rng.random_range(1e3..1e6f64).round() / 100.0,
            );
        }
        for (i, name) in ["node_load1", "node_load5", "node_load15"].iter().enumerate() {
            push(name, &[], Shape::LoadGauge, 0.5 + i as f64 * 0.1);
        }
        for i in 0..120 {
            push(
                &format!("node_netstat_field{i}_total"),
                &[],
                if i % 4 == 0 { Shape::Constant } else { Shape::SlowCounter { max_step: 10 } },
                rng.random_range(0..1_000_000) as f64,
            );
        }
        for i in 0..120 {
            push(
                &format!("node_vmstat_field{i}"),
                &[],
                if i % 3 == 0 { Shape::Constant } else { Shape::SlowCounter { max_step: 30 } },
                rng.random_range(0..10_000_000) as f64,
            );
        }
        for i in 0..40 {
            push(
                &format!("go_metric{i}"),
                &[],
                if i % 2 == 0 { Shape::IntGauge } else { Shape::Constant },
                rng.random_range(10..5000) as f64,
            );
        }
        push(
            "node_uname_info",
            &[("nodename", format!("host-{h:04}")), ("release", "6.1.0-18-amd64".into())],
            Shape::Constant,
            1.0,
        );
        // Pad each host to 500 series with textfile-collector constants.
        for i in 0..SERIES_PER_HOST.saturating_sub(out.len() - start) {
            out.push(Series {
                labels: labels(&format!("node_textfile_metric{i}"), h, &[]),
                shape: Shape::Constant,
                value: (i % 7) as f64,
            });
        }
    }

    pub fn len(&self) -> usize {
        self.series.len()
    }

    pub fn is_empty(&self) -> bool {
        self.series.is_empty()
    }

    /// Advances every series by one scrape interval and returns one sample per series at
    /// `timestamp_ms`, in batches of at most `batch` series (as a remote-write sender does).
    pub fn scrape(&mut self, timestamp_ms: i64, interval_s: f64, batch: usize) -> Vec<v1::WriteRequest> {
        let rng = &mut self.rng;
        for s in &mut self.series {
            s.value = next_value(s.shape, s.value, interval_s, rng);
        }
        self.series
            .chunks(batch.max(1))
            .map(|chunk| v1::WriteRequest {
                batch_id: String::new(),
                series: chunk
                    .iter()
                    .map(|s| v1::TimeSeries {
                        labels: s.labels.clone(),
                        samples: vec![v1::Sample { timestamp_ms, value: s.value }],
                    })
                    .collect(),
                events: vec![],
            })
            .collect()
    }
}

fn next_value(shape: Shape, v: f64, interval_s: f64, rng: &mut SmallRng) -> f64 {
    match shape {
        Shape::Constant => v,
        Shape::SlowCounter { max_step } => v + rng.random_range(0..=max_step) as f64,
        Shape::ByteCounter => v + rng.random_range(1_000..1_000_000) as f64,
        Shape::CpuSeconds { rate } => {
            let used = interval_s * rate * rng.random_range(0.5..1.5);
            ((v + used) * 100.0).round() / 100.0
        }
        Shape::PageGauge => (v + (rng.random_range(-64i64..=64) * 4096) as f64).max(0.0),
        Shape::LoadGauge => ((v + rng.random_range(-0.05..0.05)).max(0.0) * 100.0).round() / 100.0,
        Shape::IntGauge => (v + rng.random_range(-3i64..=3) as f64).max(0.0),
    }
}

#[cfg(test)]
mod tests {
    use collabstream_proto::known_series::{KnownFormat, KnownWriter};

    use super::*;

    #[test]
    fn deterministic_hosts_of_500_series() {
        let mut a = NodeExporter::new(1_000, 7);
        let mut b = NodeExporter::new(1_000, 7);
        assert_eq!(a.len(), 1_000);
        let (ba, bb) = (a.scrape(15_000, 15.0, 300), b.scrape(15_000, 15.0, 300));
        assert_eq!(ba, bb);
        assert_eq!(ba.len(), 4);
        // Generators over disjoint hosts give disjoint series.
        let split = NodeExporter::hosts(2..3, 7).scrape(15_000, 15.0, 1_000);
        assert!(split[0].series.iter().all(|s| s.labels.iter().any(|l| l.value == "host-0002:9100")));
        // Label sets are unique and sorted.
        let mut seen = std::collections::HashSet::new();
        for s in ba.iter().flat_map(|r| &r.series) {
            assert!(s.labels.windows(2).all(|w| w[0].name < w[1].name));
            assert!(seen.insert(format!("{:?}", s.labels)), "duplicate series {:?}", s.labels);
        }
    }

    /// What a steady scrape of these hosts costs in the replicated log once every series is
    /// known by id (`LogWrite.known` and `known_compact`), bytes a sample.
    fn log_bytes_a_sample(format: KnownFormat) -> f64 {
        let mut hosts = NodeExporter::new(2_000, 7);
        let (mut bytes, mut samples) = (0, 0);
        for scrape in 1..=20 {
            for (b, req) in hosts.scrape(scrape * 15_000, 15.0, 500).into_iter().enumerate() {
                let mut known = KnownWriter::of(format);
                for (i, s) in req.series.iter().enumerate() {
                    let pairs: Vec<(i64, u64)> =
                        s.samples.iter().map(|x| (x.timestamp_ms, x.value.to_bits())).collect();
                    known.push((b * 500 + i) as u64, &pairs);
                    samples += pairs.len();
                }
                let mut write = Vec::new();
                known.finish_into(&mut write);
                bytes += write.len();
            }
        }
        bytes as f64 / samples as f64
    }

    #[test]
    fn a_steady_scrape_takes_four_tenths_fewer_log_bytes_with_compact_values() {
        let (raw, compact) = (log_bytes_a_sample(KnownFormat::Raw), log_bytes_a_sample(KnownFormat::Compact));
        // 11.01 and 6.61 when written.
        assert!((11.0..11.1).contains(&raw), "{raw}");
        assert!(compact < 0.62 * raw, "{compact} bytes a sample against {raw}");
    }
}
