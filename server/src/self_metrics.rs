//! `/metrics` families about the process and its Raft node, with the names and conventions of
//! Prometheus's own client libraries (`process_*`) and of the Raft state `collabstream cluster
//! status` shows (`collabstream_raft_*`).

use std::fmt::Write;

use collabstream_raft::Writer;

use crate::ops::family;

/// `process_cpu_seconds_total`, `process_resident_memory_bytes`, `process_virtual_memory_bytes`,
/// `process_open_fds`, `process_max_fds`, `process_start_time_seconds`, read from `/proc/self`
/// (Linux; nothing elsewhere).
pub(crate) fn render_process(out: &mut String) {
    let Some(p) = Process::read() else { return };
    family(
        out,
        "counter",
        "process_cpu_seconds_total",
        "Total user and system CPU time spent in seconds.",
        p.cpu_seconds,
    );
    family(out, "gauge", "process_resident_memory_bytes", "Resident memory size in bytes.", p.resident_bytes);
    family(out, "gauge", "process_virtual_memory_bytes", "Virtual memory size in bytes.", p.virtual_bytes);
    family(out, "gauge", "process_open_fds", "Number of open file descriptors.", p.open_fds);
    family(out, "gauge", "process_max_fds", "Maximum number of open file descriptors.", p.max_fds);
    family(
        out,
        "gauge",
        "process_start_time_seconds",
        "Start time of the process since unix epoch in seconds.",
        p.start_time_seconds,
    );
}

/// The node's Raft state: term, whether it leads and whom it follows, its log's last, applied,
/// snapshot and purged indexes, and on the leader each member's matched index.
pub(crate) fn render_raft(out: &mut String, writer: &Writer) {
    let m = writer.raft().metrics().borrow().clone();
    let index = |l: Option<u64>| l.unwrap_or(0);
    family(out, "gauge", "collabstream_raft_term", "The node's current Raft term.", m.current_term);
    family(
        out,
        "gauge",
        "collabstream_raft_is_leader",
        "1 while this node leads.",
        u64::from(m.state.is_leader()),
    );
    family(
        out,
        "gauge",
        "collabstream_raft_leader_id",
        "The node this node knows as leader (0: none known).",
        index(m.current_leader),
    );
    family(
        out,
        "gauge",
        "collabstream_raft_last_log_index",
        "Last index in the node's log.",
        index(m.last_log_index),
    );
    family(
        out,
        "gauge",
        "collabstream_raft_snapshot_index",
        "Last log index the node's current snapshot covers.",
        index(m.snapshot.map(|l| l.index)),
    );
    family(
        out,
        "gauge",
        "collabstream_raft_purged_index",
        "Last log index dropped from the node's log.",
        index(m.purged.map(|l| l.index)),
    );
    let name = "collabstream_raft_member_matched_index";
    let _ = writeln!(
        out,
        "# HELP {name} On the leader: the last log index each member is known to hold.\n# TYPE {name} gauge"
    );
    if let Some(replication) = m.replication.as_ref().filter(|_| m.state.is_leader()) {
        for (id, matched) in replication {
            let _ = writeln!(out, "{name}{{member=\"{id}\"}} {}", index(matched.map(|l| l.index)));
        }
    }
}

/// What `/proc/self` says of this process.
#[derive(Debug, PartialEq)]
struct Process {
    cpu_seconds: f64,
    resident_bytes: u64,
    virtual_bytes: u64,
    open_fds: u64,
    max_fds: u64,
    start_time_seconds: f64,
}

impl Process {
    fn read() -> Option<Self> {
        let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
        let status = std::fs::read_to_string("/proc/self/status").ok()?;
        let boot = std::fs::read_to_string("/proc/stat").ok()?;
        let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
        let open_fds = std::fs::read_dir("/proc/self/fd").ok()?.count() as u64;
        // Clock ticks: the kernel reports times to userspace in USER_HZ, 100 on Linux.
        Self::parse(&stat, &status, &boot, &limits, open_fds, 100.0)
    }

    fn parse(stat: &str, status: &str, boot: &str, limits: &str, open_fds: u64, ticks: f64) -> Option<Self> {
        // The command name may hold spaces: the fields are counted after its closing paren.
        let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
        let num = |i: usize| fields.get(i)?.parse::<u64>().ok();
        // After the name: state is field 3 of proc(5), so field n is at n - 3.
        let (utime, stime, start, vsize) = (num(11)?, num(12)?, num(19)?, num(20)?);
        // In kB, whatever the page size (stat's rss counts pages).
        let rss_kb: u64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())?;
        let btime: u64 =
            boot.lines().find_map(|l| l.strip_prefix("btime ")).and_then(|v| v.trim().parse().ok())?;
        let max_fds = limits
            .lines()
            .find(|l| l.starts_with("Max open files"))
            .and_then(|l| l.split_whitespace().nth(3))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        Some(Self {
            cpu_seconds: (utime + stime) as f64 / ticks,
            resident_bytes: rss_kb * 1024,
            virtual_bytes: vsize,
            open_fds,
            max_fds,
            start_time_seconds: btime as f64 + start as f64 / ticks,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_files_are_read_as_prometheus_clients_read_them() {
        let stat = "4242 (collab stream) S 1 4242 4242 0 -1 4194560 500 0 0 0 250 50 0 0 20 0 9 0 \
                    12000 1073741824 2560 18446744073709551615 1 1 0 0 0 0 0 4096 0 0 0 0 17 1 0 0 0 0 0";
        let boot = "cpu  1 2 3\nbtime 1700000000\nprocesses 9\n";
        let limits = "Limit                     Soft Limit           Hard Limit           Units     \n\
                      Max open files            1048576              1048576              files     \n";
        let status = "Name:\tcollabstream\nVmRSS:\t   10240 kB\nThreads:\t9\n";
        let p = Process::parse(stat, status, boot, limits, 17, 100.0).expect("parsed");
        assert_eq!(
            p,
            Process {
                cpu_seconds: 3.0,
                resident_bytes: 10240 * 1024,
                virtual_bytes: 1_073_741_824,
                open_fds: 17,
                max_fds: 1_048_576,
                start_time_seconds: 1_700_000_120.0,
            }
        );
        assert!(Process::parse("garbage", status, boot, limits, 0, 100.0).is_none());
        // This process, for real.
        let me = Process::read().expect("/proc/self");
        assert!(me.resident_bytes > 0 && me.open_fds > 0 && me.max_fds >= me.open_fds);
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs_f64();
        assert!(me.start_time_seconds <= now + 1.0 && me.start_time_seconds > now - 3600.0, "{me:?}");
    }
}
