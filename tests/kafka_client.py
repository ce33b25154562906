"""An independent Kafka client for isobar's end-to-end tests: kafka-python (PyPI), which
shares no code with librdkafka or isobar.

    produce --brokers B --topic T [--rate N]   messages from stdin, one JSON object per
        line: {"key": "...", "value": "..."} (the value is sent as its UTF-8 bytes, so a
        test can send anything, JSON or not). Every message is re-sent until the broker
        acknowledges it (acks=all), also across a broker restart. Prints
        {"produced": n, "resent": k}.
    consume --brokers B --topic T --group G --count N [--timeout S]   prints up to N
        records, one JSON object per line: key, value, headers, partition, offset.
    committed --brokers B --topic T --group G   prints {"committed": n}: the offsets group
        G has committed on topic T, summed over its partitions.
"""

import argparse
import json
import sys
import time

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer
from kafka.errors import KafkaError

DEADLINE_SECS = 180


def produce(args):
    messages = [json.loads(line) for line in sys.stdin if line.strip()]
    producer = KafkaProducer(
        bootstrap_servers=args.brokers,
        acks="all",
        retries=5,
        request_timeout_ms=5000,
        reconnect_backoff_ms=100,
        reconnect_backoff_max_ms=1000,
    )
    started = time.monotonic()
    resent = 0
    pending = list(range(len(messages)))
    chunk = 100
    sent = 0
    while pending:
        if time.monotonic() - started > DEADLINE_SECS:
            sys.exit(f"{len(pending)} messages not acknowledged within {DEADLINE_SECS} s")
        failed = []
        for start in range(0, len(pending), chunk):
            batch = pending[start : start + chunk]
            futures = []
            for index in batch:
                message = messages[index]
                try:
                    futures.append(
                        (
                            index,
                            producer.send(
                                args.topic,
                                key=message["key"].encode(),
                                value=message["value"].encode(),
                            ),
                        )
                    )
                except KafkaError:
                    failed.append(index)
            for index, future in futures:
                try:
                    future.get(timeout=30)
                except KafkaError:
                    failed.append(index)
            sent += len(batch)
            ahead = sent / args.rate - (time.monotonic() - started) if args.rate else 0
            if ahead > 0:
                time.sleep(ahead)
        if failed:
            resent += len(failed)
            time.sleep(0.5)
        pending = sorted(failed)
    producer.flush()
    producer.close()
    print(json.dumps({"produced": len(messages), "resent": resent}))


def consume(args):
    consumer = KafkaConsumer(
        args.topic,
        bootstrap_servers=args.brokers,
        group_id=args.group,
        auto_offset_reset="earliest",
        consumer_timeout_ms=int(args.timeout * 1000),
    )
    seen = 0
    for record in consumer:
        print(
            json.dumps(
                {
                    "key": record.key.decode() if record.key is not None else None,
                    "value": record.value.decode(errors="replace"),
                    "headers": {k: v.decode(errors="replace") for k, v in record.headers or []},
                    "partition": record.partition,
                    "offset": record.offset,
                }
            ),
            flush=True,
        )
        seen += 1
        if seen >= args.count:
            break
    consumer.close()


def committed(args):
    admin = KafkaAdminClient(bootstrap_servers=args.brokers)
    offsets = admin.list_group_offsets({args.group: None}).get(args.group, {})
    total = sum(o.offset for tp, o in offsets.items() if tp.topic == args.topic and o.offset > 0)
    admin.close()
    print(json.dumps({"committed": total}))


def main():
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("produce")
    p.add_argument("--brokers", required=True)
    p.add_argument("--topic", required=True)
    p.add_argument("--rate", type=float, default=0)
    c = sub.add_parser("consume")
    c.add_argument("--brokers", required=True)
    c.add_argument("--topic", required=True)
    c.add_argument("--group", required=True)
    c.add_argument("--count", type=int, required=True)
    c.add_argument("--timeout", type=float, default=20)
    k = sub.add_parser("committed")
    k.add_argument("--brokers", required=True)
    k.add_argument("--topic", required=True)
    k.add_argument("--group", required=True)
    args = parser.parse_args()
    {"produce": produce, "consume": consume, "committed": committed}[args.command](args)


if __name__ == "__main__":
    main()
