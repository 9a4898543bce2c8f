//! [`SaslRelay`]: a Kafka-protocol relay on loopback that demands SASL before it passes a
//! connection on to the broker behind it, as a SASL-enabled broker would (our test broker,
//! tansu, authenticates with neither PLAIN nor, in the build we install, SCRAM). It offers
//! PLAIN, SCRAM-SHA-256 and SCRAM-SHA-512, answers SaslHandshake (v0–v1) and SaslAuthenticate
//! (v0–v2) itself, forwards ApiVersions, drops a connection that asks for anything else first
//! or brings the wrong credentials, and relays the rest byte for byte once the client is in.
//!
//! The SCRAM side is the server's half of RFC 5802 written here from the RFC, so that the
//! clients' implementations (rsasl in rskafka and in our group committer, librdkafka's) are
//! checked against one that shares no code with them.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use hmac::{Mac, SimpleHmac};
use sha2::{Digest, Sha256, Sha512};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

const MECHANISMS: [&str; 3] = ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"];
/// Kafka's minimum for SCRAM credentials.
const ITERATIONS: u32 = 4096;
/// SASL_AUTHENTICATION_FAILED
const FAILED: i16 = 58;

/// Runs until dropped.
#[derive(Debug)]
pub struct SaslRelay {
    pub addr: SocketAddr,
    /// Connections that authenticated, and that were refused.
    pub accepted: Arc<AtomicU64>,
    pub refused: Arc<AtomicU64>,
    /// Connections that authenticated, by mechanism.
    accepted_by: Arc<Mutex<BTreeMap<String, u64>>>,
    task: JoinHandle<()>,
}

#[derive(Debug)]
struct Credentials {
    user: String,
    password: String,
}

impl SaslRelay {
    /// Relays to `target` for clients that authenticate as `user` with `password`.
    pub async fn start(target: SocketAddr, user: &str, password: &str) -> SaslRelay {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let credentials = Arc::new(Credentials { user: user.into(), password: password.into() });
        let (accepted, refused) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
        let accepted_by = Arc::new(Mutex::new(BTreeMap::new()));
        let (a, r, by) = (accepted.clone(), refused.clone(), accepted_by.clone());
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let (credentials, a, r, by) = (credentials.clone(), a.clone(), r.clone(), by.clone());
                tokio::spawn(async move {
                    match serve(client, target, &credentials).await {
                        Some(Ok(mechanism)) => {
                            a.fetch_add(1, Ordering::Relaxed);
                            *by.lock().expect("lock").entry(mechanism).or_default() += 1;
                        }
                        Some(Err(())) => {
                            r.fetch_add(1, Ordering::Relaxed);
                        }
                        None => {}
                    }
                });
            }
        });
        SaslRelay { addr, accepted, refused, accepted_by, task }
    }

    /// Connections that authenticated with `mechanism`.
    pub fn accepted_with(&self, mechanism: &str) -> u64 {
        self.accepted_by.lock().expect("lock").get(mechanism).copied().unwrap_or(0)
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

fn put_str(out: &mut Vec<u8>, s: &str) {
    out.extend((s.len() as i16).to_be_bytes());
    out.extend(s.as_bytes());
}

/// Where a connection is in its authentication.
enum Stage {
    /// Before (or right after) the handshake, which names the mechanism.
    Start(Option<String>),
    /// SCRAM: the server-first message was sent.
    ScramSent { sha512: bool, client_first_bare: String, server_first: String, nonce: String },
}

/// Authenticates one connection, then relays it: `Some(Ok(mechanism))` if it got in,
/// `Some(Err(()))` if it was refused, `None` if it went away first.
async fn serve(
    mut client: TcpStream,
    target: SocketAddr,
    credentials: &Credentials,
) -> Option<Result<String, ()>> {
    let mut upstream = TcpStream::connect(target).await.ok()?;
    let mut stage = Stage::Start(None);
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
                let len = i16::from_be_bytes(frame.get(at..at + 2)?.try_into().ok()?).max(0) as usize;
                let asked = String::from_utf8_lossy(frame.get(at + 2..at + 2 + len)?).into_owned();
                let known = MECHANISMS.contains(&asked.as_str());
                let mut answer = correlation.to_vec();
                answer.extend(if known { 0i16 } else { 33 }.to_be_bytes()); // UNSUPPORTED_SASL_MECHANISM
                answer.extend((MECHANISMS.len() as i32).to_be_bytes());
                for m in MECHANISMS {
                    put_str(&mut answer, m);
                }
                write_frame(&mut client, &answer).await?;
                if !known {
                    return Some(Err(()));
                }
                stage = Stage::Start(Some(asked));
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
                let (next, reply, done) = step(stage, got, credentials);
                let ok = reply.is_ok();
                let answer = authenticate_answer(correlation, version, reply);
                write_frame(&mut client, &answer).await?;
                if !ok {
                    return Some(Err(()));
                }
                if let Some(mechanism) = done {
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
                    return Some(Ok(mechanism));
                }
                stage = next;
            }
            // Anything else before authenticating: the connection is dropped.
            _ => return Some(Err(())),
        }
    }
}

/// One SaslAuthenticate message: the next stage, the bytes to answer (or the error message),
/// and the mechanism once the client is in.
fn step(
    stage: Stage,
    got: &[u8],
    credentials: &Credentials,
) -> (Stage, Result<Vec<u8>, String>, Option<String>) {
    let refused = |why: &str| (Stage::Start(None), Err(why.to_string()), None);
    let text = String::from_utf8_lossy(got).into_owned();
    match stage {
        // SaslAuthenticate before a handshake named the mechanism.
        Stage::Start(None) => refused("no SaslHandshake before SaslAuthenticate"),
        Stage::Start(Some(m)) if m == "PLAIN" => {
            if got == format!("\0{}\0{}", credentials.user, credentials.password).as_bytes() {
                (Stage::Start(None), Ok(Vec::new()), Some(m))
            } else {
                refused("wrong user or password")
            }
        }
        Stage::Start(Some(m)) => {
            // client-first: gs2 header ("n,," without channel binding), then the bare part.
            let Some(bare) = text.strip_prefix("n,,").or_else(|| text.strip_prefix("y,,")) else {
                return refused("unexpected SCRAM gs2 header");
            };
            let attrs = attributes(bare);
            if attrs.get("n").map(String::as_str) != Some(credentials.user.as_str()) {
                return refused("unknown user");
            }
            let Some(client_nonce) = attrs.get("r") else { return refused("no client nonce") };
            let nonce = format!("{client_nonce}{:016x}", rand_u64());
            let server_first = format!("r={nonce},s={},i={ITERATIONS}", BASE64.encode(salt()));
            let reply = server_first.clone().into_bytes();
            let stage = Stage::ScramSent {
                sha512: m == "SCRAM-SHA-512",
                client_first_bare: bare.to_string(),
                server_first,
                nonce,
            };
            (stage, Ok(reply), None)
        }
        Stage::ScramSent { sha512, client_first_bare, server_first, nonce } => {
            let Some((without_proof, proof)) = text.rsplit_once(",p=") else { return refused("no proof") };
            if attributes(without_proof).get("r") != Some(&nonce) {
                return refused("the nonce changed");
            }
            let Ok(proof) = BASE64.decode(proof) else { return refused("proof not base64") };
            let auth_message = format!("{client_first_bare},{server_first},{without_proof}");
            let check = if sha512 {
                scram_check::<Sha512>(&credentials.password, &salt(), ITERATIONS, &proof, &auth_message)
            } else {
                scram_check::<Sha256>(&credentials.password, &salt(), ITERATIONS, &proof, &auth_message)
            };
            match check {
                Some(server_signature) => {
                    let mechanism = if sha512 { "SCRAM-SHA-512" } else { "SCRAM-SHA-256" };
                    let reply = format!("v={}", BASE64.encode(server_signature)).into_bytes();
                    (Stage::Start(None), Ok(reply), Some(mechanism.into()))
                }
                None => refused("Authentication failed due to invalid credentials with SASL mechanism SCRAM"),
            }
        }
    }
}

/// SaslAuthenticate's answer in `version`'s layout.
fn authenticate_answer(correlation: &[u8], version: i16, reply: Result<Vec<u8>, String>) -> Vec<u8> {
    let flexible = version >= 2;
    let (error, message, bytes) = match reply {
        Ok(bytes) => (0, String::new(), bytes),
        Err(message) => (FAILED, message, Vec::new()),
    };
    let mut answer = correlation.to_vec();
    if flexible {
        answer.push(0); // the header's tagged fields
    }
    answer.extend(error.to_be_bytes());
    if flexible {
        answer.push(message.len() as u8 + 1);
        answer.extend(message.as_bytes());
        answer.push(bytes.len() as u8 + 1);
        answer.extend(&bytes);
    } else {
        answer.extend((message.len() as i16).to_be_bytes());
        answer.extend(message.as_bytes());
        answer.extend((bytes.len() as i32).to_be_bytes());
        answer.extend(&bytes);
    }
    if version >= 1 {
        answer.extend(0i64.to_be_bytes()); // session lifetime: none
    }
    if flexible {
        answer.push(0);
    }
    answer
}

/// `a=…,b=…` into a map (values keep any `=` after the first).
fn attributes(s: &str) -> BTreeMap<String, String> {
    s.split(',').filter_map(|kv| kv.split_once('=')).map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

fn salt() -> [u8; 16] {
    *b"collabstream-slt"
}

fn rand_u64() -> u64 {
    use std::hash::{BuildHasher, RandomState};
    RandomState::new().hash_one(std::time::SystemTime::now())
}

fn hmac<D: Digest + hmac::digest::core_api::BlockSizeUser>(key: &[u8], data: &[u8]) -> Vec<u8> {
    let mut mac = <SimpleHmac<D> as Mac>::new_from_slice(key).expect("any key length");
    mac.update(data);
    mac.finalize().into_bytes().to_vec()
}

/// RFC 5802 §3: checks the client's proof; `Some(server signature)` when it holds.
fn scram_check<D: Digest + hmac::digest::core_api::BlockSizeUser>(
    password: &str,
    salt: &[u8],
    iterations: u32,
    proof: &[u8],
    auth_message: &str,
) -> Option<Vec<u8>> {
    // SaltedPassword = PBKDF2 with HMAC, one block (the output is the hash's length).
    let mut block = salt.to_vec();
    block.extend(1u32.to_be_bytes());
    let mut u = hmac::<D>(password.as_bytes(), &block);
    let mut salted = u.clone();
    for _ in 1..iterations {
        u = hmac::<D>(password.as_bytes(), &u);
        salted.iter_mut().zip(&u).for_each(|(s, x)| *s ^= x);
    }
    let client_key = hmac::<D>(&salted, b"Client Key");
    let stored_key = D::digest(&client_key).to_vec();
    let signature = hmac::<D>(&stored_key, auth_message.as_bytes());
    if proof.len() != signature.len() {
        return None;
    }
    let recovered: Vec<u8> = proof.iter().zip(&signature).map(|(p, s)| p ^ s).collect();
    if D::digest(&recovered).to_vec() != stored_key {
        return None;
    }
    Some(hmac::<D>(&hmac::<D>(&salted, b"Server Key"), auth_message.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 7677 §3's example exchange (SCRAM-SHA-256, user "user", password "pencil"), with
    /// its salt and iterations: our check accepts its proof and returns its server signature.
    #[test]
    fn the_rfc_7677_example_checks_out() {
        let salt = BASE64.decode("W22ZaJ0SNY7soEsUEjb6gQ==").unwrap();
        let client_first_bare = "n=user,r=rOprNGfwEbeRWgbNEkqO";
        let server_first =
            "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096";
        let without_proof = "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0";
        let proof = BASE64.decode("dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=").unwrap();
        let auth = format!("{client_first_bare},{server_first},{without_proof}");
        let signature = scram_check::<Sha256>("pencil", &salt, 4096, &proof, &auth);
        assert_eq!(
            signature.map(|s| BASE64.encode(s)).as_deref(),
            Some("6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=")
        );
        assert!(scram_check::<Sha256>("pencils", &salt, 4096, &proof, &auth).is_none());
    }
}
