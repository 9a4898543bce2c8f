//! Generates prost messages and tonic services from `proto/`.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = [
        "proto/collabstream/v1/aggregation.proto",
        "proto/collabstream/v1/ingest.proto",
        "proto/collabstream/v1/log.proto",
        "proto/collabstream/v1/raft.proto",
        "proto/prometheus/remote.proto",
    ];
    for f in files {
        println!("cargo:rerun-if-changed={f}");
    }
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        // Zero-copy: a received entry's command is a slice of the request buffer.
        .bytes(".collabstream.v1.RaftPayload")
        .bytes(".collabstream.v1.ForwardRequest")
        .compile_protos(&files, &["proto"])?;
    Ok(())
}
