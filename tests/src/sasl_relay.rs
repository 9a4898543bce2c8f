//! [`SaslRelay`]: a Kafka-protocol relay on loopback that demands SASL PLAIN before it passes a
//! connection on to the broker behind it, as a SASL-enabled broker would (our test broker,
//! tansu, authenticates with neither PLAIN nor, in the build we install, SCRAM). It answers
//! SaslHandshake (v0–v1) and SaslAuthenticate (v0–v2) itself, forwards ApiVersions, drops a
//! connection that asks for anything else first or brings the wrong credentials, and relays
//! the rest byte for byte once the client is in.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// Runs until dropped.
#[derive(Debug)]
pub struct SaslRelay {
    pub addr: SocketAddr,
    /// Connections that authenticated, and that were refused.
    pub accepted: Arc<AtomicU64>,
    pub refused: Arc<AtomicU64>,
    task: JoinHandle<()>,
}

impl SaslRelay {
    /// Relays to `target` for clients that authenticate as `user` with `password`.
    pub async fn start(target: SocketAddr, user: &str, password: &str) -> SaslRelay {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let token: Arc<[u8]> = format!("\0{user}\0{password}").into_bytes().into();
        let (accepted, refused) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
        let (a, r) = (accepted.clone(), refused.clone());
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let (token, a, r) = (token.clone(), a.clone(), r.clone());
                tokio::spawn(async move {
                    match serve(client, target, &token).await {
                        Some(true) => a.fetch_add(1, Ordering::Relaxed),
                        Some(false) => r.fetch_add(1, Ordering::Relaxed),
                        None => 0,
                    };
                });
            }
        });
        SaslRelay { addr, accepted, refused, task }
    }
}

impl Drop for SaslRelay {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn read_frame(s: &mut TcpStream) -> Option<Vec<u8>> {
    let len = s.read_i32().await.ok()?;
    let mut buf = vec![0; usize::try_from(len).ok()?.min(64 << 20)];
    s.read_exact(&mut buf).await.ok()?;
    Some(buf)
}

async fn write_frame(s: &mut TcpStream, body: &[u8]) -> Option<()> {
    s.write_all(&(body.len() as i32).to_be_bytes()).await.ok()?;
    s.write_all(body).await.ok()
}

fn uvarint(buf: &[u8], at: &mut usize) -> Option<u64> {
    let (mut v, mut shift) = (0u64, 0);
    loop {
        let b = *buf.get(*at)?;
        *at += 1;
        v |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Some(v);
        }
        shift += 7;
    }
}

/// Authenticates one connection, then relays it: `Some(true)` if it got in, `Some(false)` if
/// it was refused, `None` if it went away first.
async fn serve(mut client: TcpStream, target: SocketAddr, token: &[u8]) -> Option<bool> {
    let mut upstream = TcpStream::connect(target).await.ok()?;
    loop {
        let frame = read_frame(&mut client).await?;
        let (key, version) =
            (i16::from_be_bytes([frame[0], frame[1]]), i16::from_be_bytes([frame[2], frame[3]]));
        let correlation = &frame[4..8];
        let client_id_len = i16::from_be_bytes([frame[8], frame[9]]).max(0) as usize;
        let mut at = 10 + client_id_len;
        match (key, version) {
            (18, _) => {
                // ApiVersions: the broker's answer.
                write_frame(&mut upstream, &frame).await?;
                let answer = read_frame(&mut upstream).await?;
                write_frame(&mut client, &answer).await?;
            }
            (17, 0..=1) => {
                let mut answer = correlation.to_vec();
                answer.extend(0i16.to_be_bytes());
                answer.extend(1i32.to_be_bytes());
                answer.extend(5i16.to_be_bytes());
                answer.extend(b"PLAIN");
                write_frame(&mut client, &answer).await?;
            }
            (36, 0..=2) => {
                let flexible = version >= 2;
                let got = if flexible {
                    uvarint(&frame, &mut at)?; // the header's tagged fields
                    let len = uvarint(&frame, &mut at)?.checked_sub(1)? as usize;
                    frame.get(at..at + len)?
                } else {
                    let len = i32::from_be_bytes(frame.get(at..at + 4)?.try_into().ok()?) as usize;
                    frame.get(at + 4..at + 4 + len)?
                };
                let ok = got == token;
                let mut answer = correlation.to_vec();
                if flexible {
                    answer.push(0); // the header's tagged fields
                }
                answer.extend(if ok { 0i16 } else { 58 }.to_be_bytes()); // SASL_AUTHENTICATION_FAILED
                let message: &[u8] = if ok { b"" } else { b"wrong user or password" };
                if flexible {
                    answer.push(message.len() as u8 + 1);
                    answer.extend(message);
                    answer.push(1); // no auth bytes
                } else {
                    answer.extend((message.len() as i16).to_be_bytes());
                    answer.extend(message);
                    answer.extend(0i32.to_be_bytes());
                }
                if version >= 1 {
                    answer.extend(0i64.to_be_bytes()); // session lifetime: none
                }
                if flexible {
                    answer.push(0);
                }
                write_frame(&mut client, &answer).await?;
                if !ok {
                    return Some(false);
                }
                let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
                return Some(true);
            }
            // Anything else before authenticating: the connection is dropped.
            _ => return Some(false),
        }
    }
}
