//! Prometheus-side helpers: remote-write bodies and bounded polling.

use std::time::{Duration, Instant};

use collabstream_proto::prompb;
use prost::Message;

/// A snappy-compressed remote-write body.
pub fn remote_write_body(req: &prompb::WriteRequest) -> Vec<u8> {
    snap::raw::Encoder::new().compress_vec(&req.encode_to_vec()).expect("snappy encodes any input")
}

/// Polls `check` until it returns `Some` or `timeout` passes.
pub async fn wait_until<T, F, Fut>(timeout: Duration, mut check: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check().await {
            return Some(v);
        }
        if Instant::now() > deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
