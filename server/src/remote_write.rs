//! [`RemoteWriteClient`]: a Prometheus remote write 1.0 sender (protobuf, snappy block
//! compression, HTTP POST), for `collabstream produce` and `collabstream bench`. It speaks to
//! any receiver: ours, Prometheus's, VictoriaMetrics'.

use std::time::Duration;

use bytes::Bytes;
use collabstream_proto::series::to_prompb;
use collabstream_proto::v1;
use prost::Message;

use crate::error::Error;

#[derive(Debug, Clone)]
pub struct RemoteWriteClient {
    http: reqwest::Client,
    url: String,
}

impl RemoteWriteClient {
    /// A sender to `url`, e.g. `http://127.0.0.1:9201/api/v1/write`.
    pub fn new(url: impl Into<String>) -> Result<Self, Error> {
        let url = url.into();
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .pool_max_idle_per_host(64)
            .build()
            .map_err(|e| Error::RemoteWrite { url: url.clone(), reason: e.to_string() })?;
        Ok(Self { http, url })
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// A request body: the series of `req` as a remote-write message, snappy-compressed.
    pub fn encode(req: &v1::WriteRequest) -> Bytes {
        let raw = to_prompb(req).encode_to_vec();
        let mut out =
            snap::raw::Encoder::new().compress_vec(&raw).expect("snappy accepts any input below 4 GiB");
        out.shrink_to_fit();
        Bytes::from(out)
    }

    /// Sends one encoded body. A 2xx answer is success; anything else is an error carrying the
    /// receiver's own message (a 4xx means the receiver refused part of the data for good).
    pub async fn send(&self, body: Bytes) -> Result<(), Error> {
        let resp = self
            .http
            .post(&self.url)
            .header("Content-Type", "application/x-protobuf")
            .header("Content-Encoding", "snappy")
            .header("X-Prometheus-Remote-Write-Version", "0.1.0")
            .body(body)
            .send()
            .await
            .map_err(|e| Error::RemoteWrite { url: self.url.clone(), reason: e.to_string() })?;
        let status = resp.status();
        if status.is_success() {
            return Ok(());
        }
        let text = resp.text().await.unwrap_or_default();
        Err(Error::RemoteWrite { url: self.url.clone(), reason: format!("{status}: {}", text.trim()) })
    }
}
