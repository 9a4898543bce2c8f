//! [`ClusterSecret`]: the shared secret that every Raft and Admin call carries when the
//! cluster has one.
//!
//! The Raft and Admin services share the gRPC port with ingest, so without a check any client
//! that can write could also send AppendEntries or remove a member. With a secret configured,
//! a node's own clients send it in the `x-collabstream-cluster-secret` header and its servers
//! refuse calls without it (`PermissionDenied`). Without one the cluster still forms on the
//! documented flags alone, and the node warns at start. This is not authentication of users
//! nor encryption: TLS comes with the security work.

use std::sync::Arc;

use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;
use tonic::{Request, Status};

/// The header the secret travels in.
pub const SECRET_HEADER: &str = "x-collabstream-cluster-secret";

/// The cluster secret, or none. Cheap to clone; its `Debug` never shows the secret.
#[derive(Clone, Default)]
pub struct ClusterSecret(Option<Arc<MetadataValue<Ascii>>>);

impl std::fmt::Debug for ClusterSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() { "ClusterSecret(set)" } else { "ClusterSecret(none)" })
    }
}

impl ClusterSecret {
    /// No secret: calls carry none and none is asked for.
    pub fn none() -> Self {
        Self(None)
    }

    /// The secret `text` (surrounding white space is ignored, as a file's final newline).
    pub fn new(text: &str) -> Result<Self, String> {
        let text = text.trim();
        if text.len() < 16 {
            return Err("the cluster secret must be at least 16 characters".into());
        }
        if !text.bytes().all(|b| b.is_ascii_graphic()) {
            return Err("the cluster secret must be printable ASCII without spaces".into());
        }
        let value = MetadataValue::try_from(text).map_err(|e| format!("the cluster secret: {e}"))?;
        Ok(Self(Some(Arc::new(value))))
    }

    pub fn is_set(&self) -> bool {
        self.0.is_some()
    }

    /// Refuses a call that does not carry this secret (any call, when there is none).
    pub fn check<T>(&self, request: &Request<T>) -> Result<(), Status> {
        let Some(want) = &self.0 else { return Ok(()) };
        let ok = request
            .metadata()
            .get(SECRET_HEADER)
            .is_some_and(|got| constant_time_eq(got.as_bytes(), want.as_bytes()));
        if ok {
            Ok(())
        } else {
            Err(Status::permission_denied(
                "this call needs the cluster secret: give every node and `collabstream cluster` the same \
                 [cluster] secret_file or COLLABSTREAM_CLUSTER_SECRET",
            ))
        }
    }
}

/// Client side: adds the secret to every call.
impl Interceptor for ClusterSecret {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        if let Some(value) = &self.0 {
            request.metadata_mut().insert(SECRET_HEADER, (**value).clone());
        }
        Ok(request)
    }
}

/// Server side: the check as an interceptor.
#[derive(Clone, Debug)]
pub struct RequireSecret(pub(crate) ClusterSecret);

impl Interceptor for RequireSecret {
    fn call(&mut self, request: Request<()>) -> Result<Request<()>, Status> {
        self.0.check(&request)?;
        Ok(request)
    }
}

/// A channel to another node whose calls carry the secret.
pub type PeerChannel = InterceptedService<Channel, ClusterSecret>;

/// Compares without stopping at the first difference, so the time taken says nothing of how
/// much of a guess was right.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calls_without_the_secret_are_refused() {
        let secret = ClusterSecret::new("0123456789abcdef\n").unwrap();
        let mut client = secret.clone();
        let carried = client.call(Request::new(())).unwrap();
        assert!(secret.check(&carried).is_ok());
        let bare = Request::new(());
        assert_eq!(secret.check(&bare).unwrap_err().code(), tonic::Code::PermissionDenied);
        let mut wrong = ClusterSecret::new("0123456789abcdeX").unwrap();
        assert!(secret.check(&wrong.call(Request::new(())).unwrap()).is_err());
        assert!(ClusterSecret::none().check(&bare).is_ok());
        assert!(ClusterSecret::new("short").is_err());
        assert!(!format!("{secret:?}").contains("0123"));
    }
}
