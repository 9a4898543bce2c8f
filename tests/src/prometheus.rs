//! [`Prometheus`]: a real Prometheus (Debian's package) on loopback, started by a test.

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};

use anyhow::{Context, bail};

/// A running Prometheus. Dropping it kills the process by pid.
#[derive(Debug)]
pub struct Prometheus {
    child: Child,
    pub port: u16,
}

impl Prometheus {
    /// Starts `prometheus` with `config_yaml` (where `{PORT}` is replaced by its own port) and
    /// any extra flags.
    pub fn start(dir: &Path, config_yaml: &str, extra: &[&str]) -> anyhow::Result<Self> {
        let bin = which("prometheus")
            .context("the prometheus binary is not installed: run scripts/install-deps.sh")?;
        let port = free_port()?;
        let config = dir.join("prometheus.yml");
        std::fs::write(&config, config_yaml.replace("{PORT}", &port.to_string()))?;
        let log = std::fs::File::create(dir.join("prometheus.log"))?;
        let child = Command::new(bin)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--storage.tsdb.path={}", dir.join("tsdb").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .context("cannot start prometheus")?;
        Ok(Self { child, port })
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A port the kernel just handed out on loopback (for programs that cannot take port 0).
pub fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// `n` distinct free ports on loopback. Each is held until all are chosen: taken one after
/// another with [`free_port`], the kernel may hand one out twice (it did in CI: one node's HTTP
/// port was another's gRPC port, and that node could not start).
pub fn free_ports(n: usize) -> anyhow::Result<Vec<u16>> {
    let held = (0..n).map(|_| TcpListener::bind("127.0.0.1:0")).collect::<std::io::Result<Vec<_>>>()?;
    Ok(held.iter().map(|l| l.local_addr().map(|a| a.port())).collect::<std::io::Result<_>>()?)
}

fn which(name: &str) -> anyhow::Result<std::path::PathBuf> {
    for dir in std::env::var("PATH").unwrap_or_default().split(':').chain(["/usr/bin", "/usr/local/bin"]) {
        let p = Path::new(dir).join(name);
        if p.is_file() {
            return Ok(p);
        }
    }
    bail!("{name} not found on PATH")
}
