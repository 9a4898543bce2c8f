//! `POST /api/v1/write`: Prometheus remote write 1.0 (snappy block format + protobuf).

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::error::Error;
use crate::http::{error_response, read_body};
use crate::ingest::{Ingest, summarize};
use crate::prepare::Prepared;

pub(crate) async fn handle(State(ingest): State<Ingest>, headers: HeaderMap, body: Body) -> Response {
    match decode(&ingest, &headers, body).await {
        Ok(None) => StatusCode::NO_CONTENT.into_response(),
        Ok(Some(p)) => match ingest.write(p).await {
            Ok(resp) if resp.rejected.is_empty() => StatusCode::NO_CONTENT.into_response(),
            // 4xx tells the sender not to retry: the good series are already stored.
            Ok(resp) => error_response(&Error::BadRequest(summarize(&resp.rejected, "timeseries"))),
            Err(e) => error_response(&e),
        },
        Err(e) => error_response(&e),
    }
}

/// The validated request, or `None` when it carries no series (metadata only).
async fn decode(ingest: &Ingest, headers: &HeaderMap, body: Body) -> Result<Option<Prepared>, Error> {
    let header = |name| headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or("");
    if header(header::CONTENT_TYPE).contains("io.prometheus.write.v2") {
        return Err(Error::Unsupported(
            "remote write 2.0 is not supported yet; set protobuf_message: prometheus.WriteRequest".into(),
        ));
    }
    let encoding = header(header::CONTENT_ENCODING);
    if !encoding.is_empty() && !encoding.eq_ignore_ascii_case("snappy") {
        return Err(Error::Unsupported(format!(
            "unsupported Content-Encoding {encoding:?}; remote write bodies are snappy-compressed"
        )));
    }
    let body = read_body(ingest.config().max_request_bytes, headers, body).await?;
    let limit = ingest.config().max_decoded_bytes;
    let len = snap::raw::decompress_len(&body)
        .map_err(|e| Error::BadRequest(format!("body is not snappy block-compressed: {e}")))?;
    if len > limit {
        return Err(Error::TooLarge { size: len as u64, limit: limit as u64 });
    }
    let p = DECOMPRESSED.with(|buf| {
        // One buffer per thread, kept between requests: a fresh one per request touched fresh
        // pages (zeroed by the kernel) for every body.
        let mut raw = buf.borrow_mut();
        raw.resize(len, 0);
        let n = snap::raw::Decoder::new()
            .decompress(&body, &mut raw)
            .map_err(|e| Error::BadRequest(format!("body is not snappy block-compressed: {e}")))?;
        let p = Prepared::from_remote_write(&raw[..n], ingest.store(), &ingest.config().label_limits())
            .map_err(|e| Error::BadRequest(format!("body is not a remote-write WriteRequest: {e}")));
        if raw.capacity() > KEEP_DECOMPRESSED {
            *raw = Vec::new();
        }
        p
    })?;
    Ok((!p.is_empty() || !p.rejected.is_empty()).then_some(p))
}

/// A thread keeps its decompression buffer up to this size (a rare huge body is not kept).
const KEEP_DECOMPRESSED: usize = 16 << 20;

thread_local! {
    static DECOMPRESSED: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}
