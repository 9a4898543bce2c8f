//! [`Proxy`]: a TCP relay on loopback that a test can cut (refusing and dropping every
//! connection) and heal, to partition nodes from each other.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// Relays `listen → target` until dropped. The target may be set after the listener is bound
/// (a node started on port 0 is known only once it runs); until then connections are refused.
#[derive(Debug)]
pub struct Proxy {
    pub addr: SocketAddr,
    target: Arc<Mutex<Option<SocketAddr>>>,
    cut: Arc<AtomicBool>,
    /// Bumped on every cut, so open relays end.
    generation: watch::Sender<u64>,
    task: JoinHandle<()>,
}

impl Proxy {
    /// A relay to `target` on a fresh loopback port.
    pub async fn start(target: SocketAddr) -> std::io::Result<Proxy> {
        let p = Self::bind().await?;
        p.set_target(target);
        Ok(p)
    }

    /// A relay on a fresh loopback port with no target yet.
    pub async fn bind() -> std::io::Result<Proxy> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let cut = Arc::new(AtomicBool::new(false));
        let target: Arc<Mutex<Option<SocketAddr>>> = Arc::default();
        let (generation, _) = watch::channel(0u64);
        let task = {
            let (cut, target) = (cut.clone(), target.clone());
            let generation = generation.clone();
            tokio::spawn(async move {
                while let Ok((inbound, _)) = listener.accept().await {
                    let to = *target.lock().expect("target lock");
                    let Some(to) = to.filter(|_| !cut.load(Ordering::SeqCst)) else {
                        drop(inbound);
                        continue;
                    };
                    let mut ended = generation.subscribe();
                    tokio::spawn(async move {
                        let Ok(outbound) = TcpStream::connect(to).await else { return };
                        let _ = inbound.set_nodelay(true);
                        let _ = outbound.set_nodelay(true);
                        let (mut a, mut b) = (inbound, outbound);
                        tokio::select! {
                            _ = tokio::io::copy_bidirectional(&mut a, &mut b) => {}
                            _ = ended.changed() => {}
                        }
                    });
                }
            })
        };
        Ok(Proxy { addr, target, cut, generation, task })
    }

    /// Relays new connections to `to` (a restarted node's new address); open relays end.
    pub fn set_target(&self, to: SocketAddr) {
        let old = self.target.lock().expect("target lock").replace(to);
        if old.is_some_and(|o| o != to) {
            self.generation.send_modify(|g| *g += 1);
        }
    }

    /// Drops open connections and refuses new ones.
    pub fn cut(&self) {
        self.cut.store(true, Ordering::SeqCst);
        self.generation.send_modify(|g| *g += 1);
    }

    pub fn heal(&self) {
        self.cut.store(false, Ordering::SeqCst);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.cut();
        self.task.abort();
    }
}
