#!/usr/bin/env python3
"""Writes samples and meeting events to Collaborate-Stream over gRPC from Python.

The client code is generated from the repository's proto files at start-up (grpcio-tools), so
the example always matches the server:

    pip install grpcio grpcio-tools
    python3 sdk/examples/python/ingest_example.py --target 127.0.0.1:9202

A batch id makes a retried request apply once; the example sends its batch twice to show it.
"""
import argparse
import os
import sys
import tempfile
import time

import grpc
from grpc_tools import protoc

HERE = os.path.dirname(os.path.abspath(__file__))
PROTO_ROOT = os.path.normpath(os.path.join(HERE, "..", "..", "..", "proto", "proto"))


def generate(out_dir):
    """Compiles ingest.proto into Python modules in out_dir and makes them importable."""
    include = os.path.join(os.path.dirname(protoc.__file__), "_proto")
    args = [
        "protoc",
        f"-I{PROTO_ROOT}",
        f"-I{include}",
        f"--python_out={out_dir}",
        f"--grpc_python_out={out_dir}",
        os.path.join(PROTO_ROOT, "collabstream", "v1", "ingest.proto"),
    ]
    if protoc.main(args) != 0:
        sys.exit("could not generate the gRPC client from " + PROTO_ROOT)
    sys.path.insert(0, out_dir)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", default="127.0.0.1:9202", help="a node's gRPC address")
    parser.add_argument("--meeting", default="py-meeting-1")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as out:
        generate(out)
        from collabstream.v1 import ingest_pb2 as pb
        from collabstream.v1 import ingest_pb2_grpc as rpc

        now = int(time.time() * 1000)
        request = pb.WriteRequest(
            batch_id=f"python-example-{now}",
            series=[
                pb.TimeSeries(
                    labels=[
                        pb.Label(name="__name__", value="py_example_requests_total"),
                        pb.Label(name="service", value="checkout"),
                    ],
                    samples=[pb.Sample(timestamp_ms=now - 15000 * i, value=100.0 - i) for i in range(4)][::-1],
                )
            ],
            events=[
                pb.Event(user=pb.UserEvent(meeting_id=args.meeting, user_id="u1",
                                           action=pb.USER_ACTION_JOIN, timestamp_ms=now)),
                pb.Event(chat=pb.ChatEvent(meeting_id=args.meeting, user_id="u1", message_id="m1",
                                           length=12, timestamp_ms=now + 1000)),
                pb.Event(meeting=pb.MeetingEvent(meeting_id=args.meeting, kind=pb.MEETING_KIND_QUALITY,
                                                 latency_ms=120, jitter_ms=8, packet_loss_pct=0.2,
                                                 timestamp_ms=now + 2000)),
            ],
        )
        with grpc.insecure_channel(args.target) as channel:
            stub = rpc.IngestServiceStub(channel)
            first = stub.Write(request, timeout=30)
            again = stub.Write(request, timeout=30)
        print(f"samples_accepted={first.samples_accepted} events_accepted={first.events_accepted} "
              f"retry_duplicate_batches={again.duplicate_batches}")


if __name__ == "__main__":
    main()
