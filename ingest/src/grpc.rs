//! The gRPC `IngestService`.

use collabstream_proto::v1::ingest_service_server::{IngestService, IngestServiceServer};
use collabstream_proto::v1::{WriteRequest, WriteResponse};
use prost::Message;
use tonic::{Code, Request, Response, Status, Streaming};

use crate::error::grpc_status;
use crate::ingest::{Ingest, summarize};
use crate::prepare::Prepared;

/// Serves `IngestService` over an [`Ingest`].
#[derive(Debug, Clone)]
pub struct IngestGrpc {
    ingest: Ingest,
}

impl IngestGrpc {
    pub fn new(ingest: Ingest) -> Self {
        Self { ingest }
    }

    /// The tonic service, accepting messages up to the configured request size.
    pub fn into_service(self) -> IngestServiceServer<Self> {
        let limit = self.ingest.config().max_request_bytes;
        IngestServiceServer::new(self).max_decoding_message_size(limit)
    }

    async fn write_one(&self, req: WriteRequest) -> Result<WriteResponse, Status> {
        let limits = self.ingest.config().label_limits();
        self.ingest
            .write(Prepared::from_v1(req, &limits))
            .await
            .map_err(|e| grpc_status(e.code(), e.message()))
    }
}

/// OK when everything was accepted; otherwise INVALID_ARGUMENT whose details carry the encoded
/// `WriteResponse` (counts and every rejection), so that clients see what was kept.
fn finish(resp: WriteResponse) -> Result<Response<WriteResponse>, Status> {
    if resp.rejected.is_empty() {
        return Ok(Response::new(resp));
    }
    let message = summarize(&resp.rejected, "series");
    Err(Status::with_details(Code::InvalidArgument, message, resp.encode_to_vec().into()))
}

#[tonic::async_trait]
impl IngestService for IngestGrpc {
    async fn write(&self, request: Request<WriteRequest>) -> Result<Response<WriteResponse>, Status> {
        finish(self.write_one(request.into_inner()).await?)
    }

    async fn write_stream(
        &self,
        request: Request<Streaming<WriteRequest>>,
    ) -> Result<Response<WriteResponse>, Status> {
        let mut stream = request.into_inner();
        let mut total = WriteResponse::default();
        let mut message_index = 0u32;
        while let Some(msg) = stream.message().await? {
            let resp = self.write_one(msg).await?;
            total.samples_accepted += resp.samples_accepted;
            total.events_accepted += resp.events_accepted;
            total.duplicate_batches += resp.duplicate_batches;
            total.rejected.extend(resp.rejected.into_iter().map(|mut r| {
                r.message_index = message_index;
                r
            }));
            message_index += 1;
        }
        finish(total)
    }
}
