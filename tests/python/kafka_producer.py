#!/usr/bin/env python3
"""Another producer than ours: confluent-kafka (librdkafka) writes meeting events to the event
topics, a quarter of them with each of gzip, snappy, lz4 and zstd, as JSON or as Avro in the
Confluent wire format (a zero byte, the schema id, the datum; fastavro and deploy/avro's
schemas). Prints each event it produced, as the JSON of POST /api/v1/events, one a line.

  kafka_producer.py --brokers 127.0.0.1:9092 --count 400 [--format avro --schema-dir deploy/avro
                    --schema-ids 1,2,3] [--create-topics 3] [--option security.protocol=SSL ...]
"""
import argparse
import io
import json
import os
import struct
import sys

from confluent_kafka import Producer

TOPICS = {"user": "user_events", "chat": "chat_events", "meeting": "meeting_events"}
ACTIONS = ["join", "leave", "mute", "unmute", "camera_on", "camera_off"]


def event(i):
    kind = ["user", "chat", "meeting"][i % 3]
    e = {"type": kind, "tenant": "", "meeting_id": f"m{i % 5}", "user_id": f"u{i % 7}",
         "timestamp": 1732780800000 + 10 * i}
    if kind == "user":
        e["action"] = ACTIONS[i % len(ACTIONS)]
    elif kind == "chat":
        e.update(message_id=f"x{i}", length=i % 200, kind="message")
    else:
        e.update(kind="quality", latency_ms=float(i % 300), jitter_ms=1.5, packet_loss_pct=0.25)
    return e


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--brokers", required=True)
    p.add_argument("--count", type=int, default=400)
    p.add_argument("--format", choices=["json", "avro"], default="json")
    p.add_argument("--schema-dir")
    p.add_argument("--schema-ids", default="1,2,3", help="the registry ids of user, chat, meeting")
    p.add_argument("--create-topics", type=int, metavar="PARTITIONS", help="create the topics first")
    p.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                   help="a librdkafka setting, e.g. security.protocol=SSL")
    a = p.parse_args()
    common = dict(o.split("=", 1) for o in a.option)
    common["bootstrap.servers"] = a.brokers

    if a.create_topics:
        from confluent_kafka.admin import AdminClient, NewTopic

        admin = AdminClient(common)
        made = admin.create_topics([NewTopic(t, a.create_topics, 1) for t in TOPICS.values()])
        for topic, future in made.items():
            future.result(30)

    encode = lambda kind, e: json.dumps({k: v for k, v in e.items() if k != "type" or kind == "user"}).encode()
    if a.format == "avro":
        import fastavro

        ids = dict(zip(["user", "chat", "meeting"], map(int, a.schema_ids.split(","))))
        schemas = {
            k: fastavro.parse_schema(json.load(open(os.path.join(a.schema_dir, f"{k}_event.avsc"))))
            for k in ids
        }

        def encode(kind, e):
            out = io.BytesIO()
            out.write(b"\x00" + struct.pack(">I", ids[kind]))
            fastavro.schemaless_writer(out, schemas[kind], {k: v for k, v in e.items() if k != "type"})
            return out.getvalue()

    failures = []

    def delivered(err, _msg):
        if err is not None:
            failures.append(str(err))

    codecs = ["gzip", "snappy", "lz4", "zstd"]
    per = (a.count + len(codecs) - 1) // len(codecs)
    for n, codec in enumerate(codecs):
        producer = Producer({**common, "compression.type": codec, "linger.ms": 20,
                             "enable.idempotence": False, "message.timeout.ms": 30000})
        for i in range(n * per, min(a.count, (n + 1) * per)):
            e = event(i)
            producer.produce(TOPICS[e["type"]], key=e["meeting_id"].encode(), value=encode(e["type"], e),
                             on_delivery=delivered)
            producer.poll(0)
            print(json.dumps(e))
        left = producer.flush(30)
        if left:
            failures.append(f"{left} messages not delivered with {codec}")
    if failures:
        print("\n".join(failures), file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
