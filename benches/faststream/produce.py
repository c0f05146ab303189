"""Fills a new topic with N JSON order events for the end-to-end benchmark.

    produce.py --bootstrap HOST:PORT --topic T --messages N [--partitions 8] [--size 1024]

Creates the topic (it must not exist yet) with the aiokafka admin client, then produces N
messages with acks=all (idempotent producer), keyed by order id (so spread over the partitions by Kafka's default
partitioner). Message i is

    {"id":"o<i>","item":<ITEMS[i % 5]>,"quantity":<1 + i % 5>,"warehouse":<WAREHOUSES[i % 3]>,
     "note":"xxx..."}

with "note" padded so that the payload is --size bytes (at least the bare order). Every order is
valid: no poison, no zero quantity, no offline warehouse. Prints one JSON line on stdout:
{"topic":...,"partitions":...,"messages":N,"bytes":...,"seconds":...}.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time

from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

ITEMS = ("book", "pen", "lamp", "mug", "desk")
WAREHOUSES = ("north", "south", "east")


def order(i: int, size: int) -> bytes:
    base = {
        "id": f"o{i}",
        "item": ITEMS[i % len(ITEMS)],
        "quantity": 1 + i % 5,
        "warehouse": WAREHOUSES[i % len(WAREHOUSES)],
        "note": "",
    }
    bare = len(json.dumps(base, separators=(",", ":")).encode())
    base["note"] = "x" * max(0, size - bare)
    return json.dumps(base, separators=(",", ":")).encode()


async def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bootstrap", required=True, help="HOST:PORT")
    ap.add_argument("--topic", required=True)
    ap.add_argument("--messages", type=int, required=True)
    ap.add_argument("--partitions", type=int, default=8)
    ap.add_argument("--size", type=int, default=1024, help="payload bytes (default 1024)")
    args = ap.parse_args()

    admin = AIOKafkaAdminClient(bootstrap_servers=args.bootstrap)
    await admin.start()
    try:
        await admin.create_topics(
            [NewTopic(args.topic, num_partitions=args.partitions, replication_factor=1)]
        )
    except TopicAlreadyExistsError:
        print(f"produce.py: topic {args.topic!r} already exists", file=sys.stderr)
        return 1
    finally:
        await admin.close()

    producer = AIOKafkaProducer(
        bootstrap_servers=args.bootstrap,
        acks="all",
        enable_idempotence=True,  # retries (e.g. NotLeaderForPartition) write no duplicates
        linger_ms=5,
        max_batch_size=256 * 1024,
    )
    await producer.start()
    # A new topic's partitions get their leaders a moment after create_topics returns.
    for _ in range(150):
        await producer.client.force_metadata_update()
        leaders = [
            producer.client.cluster.leader_for_partition(TopicPartition(args.topic, p))
            for p in range(args.partitions)
        ]
        if all(leader is not None and leader >= 0 for leader in leaders):
            break
        await asyncio.sleep(0.2)
    total = 0
    start = time.perf_counter()
    try:
        pending = []
        for i in range(args.messages):
            value = order(i, args.size)
            total += len(value)
            pending.append(await producer.send(args.topic, value, key=f"o{i}".encode()))
            if len(pending) >= 5000:
                await asyncio.gather(*pending)
                pending.clear()
        await asyncio.gather(*pending)
    finally:
        await producer.stop()
    seconds = time.perf_counter() - start
    print(
        json.dumps(
            {
                "topic": args.topic,
                "partitions": args.partitions,
                "messages": args.messages,
                "bytes": total,
                "seconds": round(seconds, 3),
            }
        ),
        flush=True,
    )
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
