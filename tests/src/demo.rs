//! [`Demo`]: `collabstream demo` on loopback ports the kernel picks, with its banner.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context, bail};

use crate::node::{LOOPBACK, binary};

/// A running demo. Dropping it kills the process (SIGKILL) by pid.
#[derive(Debug)]
pub struct Demo {
    child: Child,
    /// The banner's lines, through the one about Ctrl-C.
    pub banner: Vec<String>,
    log_path: PathBuf,
}

impl Demo {
    /// Starts the demo with its data under `dir` and waits (bounded) for its banner.
    pub fn start(dir: &Path) -> anyhow::Result<Demo> {
        let log_path = dir.join("demo.log");
        let log = std::fs::File::create(&log_path)?;
        let mut child = Command::new(binary())
            .args(["demo", "--data-dir"])
            .arg(dir.join("data"))
            .args(LOOPBACK)
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log))
            .spawn()
            .context("the demo does not start")?;
        // The banner, read on a thread (it ends with the line about Ctrl-C). The thread then
        // keeps draining stdout until the demo exits: closing the pipe early would make any
        // later write of the demo's fail with EPIPE.
        let stdout = child.stdout.take().expect("piped");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines().map_while(Result::ok);
            let mut banner = Vec::new();
            for line in lines.by_ref() {
                let last = line.contains("Ctrl-C");
                banner.push(line);
                if last {
                    break;
                }
            }
            let _ = tx.send(banner);
            lines.for_each(drop);
        });
        let mut demo = Demo { child, banner: Vec::new(), log_path };
        match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(banner) if !banner.is_empty() => {
                demo.banner = banner;
                Ok(demo)
            }
            _ => bail!("no banner within 60 s; the demo's log:\n{}", demo.log()),
        }
    }

    /// What the demo logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }
}

impl Drop for Demo {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
