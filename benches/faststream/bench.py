"""FastStream side of the Ackbar end-to-end benchmark.

    bench.py --bootstrap HOST:PORT --topic T --group G --messages N --policy ACK|ACK_FIRST
             [--fail-rate 0.05] [--publish OUT] [--timeout 600] [--log-level WARNING]

Consumes N already produced order events (see produce.py) from topic T with one FastStream
KafkaBroker subscriber (aiokafka), group G, auto_offset_reset="earliest" and
ack_policy=AckPolicy.<policy>, running the same logic as Ackbar's `orders` example handler.
With --publish OUT it runs the `enrich` example instead: each valid order, with an added
`"size"` field, is returned to a FastStream publisher on topic OUT.

The clock starts when the handler gets the first message and stops when N messages have been
handled and, under ACK, when the group's committed offsets cover all N (polled with the admin
client; under ACK_FIRST commits are aiokafka's periodic auto-commit, so the clock stops at the
N-th handled message). Prints one JSON line on stdout; FastStream's own logs go to stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import resource
import sys
import time
import zlib
from dataclasses import dataclass, field
from importlib.metadata import version
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import (
    CoordinatorLoadInProgressError,
    CoordinatorNotAvailableError,
    NotCoordinatorError,
)
from faststream import AckPolicy
from faststream.exceptions import RejectMessage
from faststream.kafka import KafkaBroker
from faststream.kafka.annotations import KafkaMessage

U32_MAX = 2**32 - 1


class HandlerBug(Exception):
    """The `poison` trap of the orders example: an uncaught exception in the handler."""


class Retry(Exception):
    """The orders example's `err(retry(...))`; FastStream has no retry error, so: an exception."""


class InjectedFailure(Exception):
    """--fail-rate: a handler error picked deterministically from the order id."""


def fails(order_id: str, rate: float) -> bool:
    """Same rule for every framework: CRC-32 (IEEE) of the UTF-8 id, mod 1e6, below rate*1e6."""
    return rate > 0 and zlib.crc32(order_id.encode()) % 1_000_000 < rate * 1_000_000


def malformed(why: str) -> RejectMessage:
    # The orders example logs a warning and returns `reject`: FastStream's RejectMessage.
    _warning = f"rejecting malformed order: {why}"  # built, not printed, like the summary
    return RejectMessage()


def enrich(body: dict) -> dict:
    """The enrich example's output: the order with `"size"` added."""
    enriched = dict(body)
    enriched["size"] = "bulk" if body["quantity"] >= 10 else "standard"
    return enriched


def process(body: Any, fail_rate: float) -> str:
    """The orders example's logic (guest-examples/README.md); returns the summary line.

    FastStream's default decoder has already turned the bytes into JSON (it json-loads any
    body without a content type, and leaves it as bytes when that fails), so parsing is the
    framework's work here, as it is the handler's in Ackbar.
    """
    if not isinstance(body, dict):
        raise malformed("not a JSON object")
    oid, item, qty = body.get("id"), body.get("item"), body.get("quantity")
    warehouse = body.get("warehouse")
    if (
        not isinstance(oid, str)
        or not isinstance(item, str)
        or type(qty) is not int
        or not 0 <= qty <= U32_MAX
        or not (warehouse is None or isinstance(warehouse, str))
    ):
        raise malformed("missing field or wrong type")
    if item == "poison":
        raise HandlerBug(f"order {oid}: cannot price item 'poison'")
    if qty == 0:
        raise malformed(f"order {oid}: quantity must be positive")
    if warehouse == "offline":  # Kafka in FastStream has no delivery attempt: always "attempt 1"
        raise Retry("warehouse offline (attempt 1)")
    if fails(oid, fail_rate):
        raise InjectedFailure(f"order {oid}: injected failure")
    # The example logs this at info; here it is only built (no per-message output).
    return f"order {oid}: {qty} x {item}"


@dataclass
class State:
    n: int
    fail_rate: float
    first: float | None = None
    cpu_first: float = 0.0
    handled: int = 0
    accepted: int = 0
    rejected: int = 0
    errors: int = 0
    payload_bytes: int = 0
    last_handled: float = 0.0
    latencies_ms: list[float] = field(default_factory=list)
    all_handled: asyncio.Event = field(default_factory=asyncio.Event)


def cpu_now() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def percentile(sorted_values: list[float], p: float) -> float | None:
    if not sorted_values:
        return None
    k = max(0, min(len(sorted_values) - 1, round(p / 100 * len(sorted_values) + 0.5) - 1))
    return sorted_values[k]


async def topic_offsets(bootstrap: str, topic: str) -> tuple[dict, dict]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        parts = (await consumer._client.fetch_all_metadata()).partitions_for_topic(topic)
        if not parts:
            raise SystemExit(f"bench.py: topic {topic!r} does not exist")
        tps = [TopicPartition(topic, p) for p in sorted(parts)]
        return await consumer.beginning_offsets(tps), await consumer.end_offsets(tps)
    finally:
        await consumer.stop()


async def committed_progress(admin: AIOKafkaAdminClient, group: str, begin: dict) -> int:
    """How many of the topic's messages the group's committed offsets cover."""
    for attempt in range(100):
        try:
            offsets = await admin.list_consumer_group_offsets(group)
            break
        except (CoordinatorNotAvailableError, NotCoordinatorError,
                CoordinatorLoadInProgressError):
            # e.g. a fresh broker still creating __consumer_offsets
            if attempt == 99:
                raise
            await asyncio.sleep(0.2)
    total = 0
    for tp, start in begin.items():
        meta = offsets.get(tp)
        if meta is not None and meta.offset >= 0:
            total += meta.offset - start
    return total


async def run(args: argparse.Namespace) -> int:
    policy = AckPolicy[args.policy]
    begin, end = await topic_offsets(args.bootstrap, args.topic)
    available = sum(end[tp] - begin[tp] for tp in begin)
    if available < args.messages:
        print(f"bench.py: topic {args.topic!r} holds {available} messages, fewer than "
              f"--messages {args.messages}", file=sys.stderr)
        return 2
    if available > args.messages:
        print(f"bench.py: warning: topic {args.topic!r} holds {available} messages, more than "
              f"--messages {args.messages}; the clock stops after the first N", file=sys.stderr)

    admin = AIOKafkaAdminClient(bootstrap_servers=args.bootstrap)
    await admin.start()
    try:
        if await committed_progress(admin, args.group, begin) > 0:
            print(f"bench.py: group {args.group!r} already has committed offsets on "
                  f"{args.topic!r}; use a fresh group", file=sys.stderr)
            return 2

        logger = logging.getLogger("faststream.bench")
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
        logger.addHandler(handler)
        logger.setLevel(args.log_level)
        logger.propagate = False

        broker = KafkaBroker(args.bootstrap, logger=logger)
        st = State(n=args.messages, fail_rate=args.fail_rate)

        subscriber = broker.subscriber(
            args.topic,
            group_id=args.group,
            auto_offset_reset="earliest",
            ack_policy=policy,
        )
        publisher = broker.publisher(args.publish) if args.publish else (lambda f: f)

        @subscriber
        @publisher
        async def handle(body: Any, msg: KafkaMessage) -> Any:
            if st.first is None:
                st.first = time.perf_counter()
                st.cpu_first = cpu_now()
            try:
                process(body, st.fail_rate)
                st.accepted += 1
                if args.publish:
                    return enrich(body)
                return None
            except RejectMessage:
                st.rejected += 1
                raise
            except Exception:
                st.errors += 1
                raise
            finally:
                st.latencies_ms.append(time.time() * 1000 - msg.raw_message.timestamp)
                st.payload_bytes += len(msg.body)
                st.handled += 1
                if st.handled == st.n:
                    st.last_handled = time.perf_counter()
                    st.all_handled.set()

        started = time.perf_counter()
        committed = 0

        async def measured() -> float:
            nonlocal committed
            await st.all_handled.wait()
            if policy is AckPolicy.ACK:
                # FastStream commits after the handler returns (also when it raised): wait
                # until the group's committed offsets cover all N.
                while (committed := await committed_progress(admin, args.group, begin)) < st.n:
                    await asyncio.sleep(0.002)
            return time.perf_counter()

        await broker.start()
        try:
            remaining = args.timeout - (time.perf_counter() - started)
            done = await asyncio.wait_for(measured(), timeout=max(remaining, 0.001))
        except asyncio.TimeoutError:
            with contextlib.suppress(Exception):
                committed = await asyncio.wait_for(
                    committed_progress(admin, args.group, begin), timeout=5)
            print(f"bench.py: timed out after {args.timeout:g} s: handled {st.handled}/{st.n}"
                  f", committed {committed}/{st.n} (policy {args.policy})", file=sys.stderr)
            return 1
        finally:
            cpu_done = cpu_now()
            stop_start = time.perf_counter()
            await asyncio.wait_for(broker.stop(), timeout=60)
            stop_seconds = time.perf_counter() - stop_start

        committed_after_stop = await committed_progress(admin, args.group, begin)
    finally:
        await admin.close()

    usage = resource.getrusage(resource.RUSAGE_SELF)
    seconds = done - st.first
    lat = sorted(st.latencies_ms)
    p50, p99 = percentile(lat, 50), percentile(lat, 99)
    result = {
        "framework": "faststream",
        "faststream_version": version("faststream"),
        "aiokafka_version": version("aiokafka"),
        "policy": args.policy,
        "messages": st.n,
        "seconds": round(seconds, 4),
        "msgs_per_s": round(st.n / seconds, 1),
        "mb_per_s": round(st.payload_bytes / 1e6 / seconds, 3),
        "cpu_seconds": round(cpu_done - st.cpu_first, 3),
        "peak_rss_mb": round(usage.ru_maxrss / 1024, 1),
        "p50_latency_ms": round(p50, 2) if p50 is not None else None,
        "p99_latency_ms": round(p99, 2) if p99 is not None else None,
        # Extras, to check the run and put the numbers in context.
        "fail_rate": args.fail_rate,
        "published_to": args.publish,
        "accepted": st.accepted,
        "rejected": st.rejected,
        "errors": st.errors,
        "commit_wait_seconds": round(done - st.last_handled, 4),
        "committed_after_stop": committed_after_stop,
        "stop_seconds": round(stop_seconds, 3),
        "process_cpu_seconds": round(usage.ru_utime + usage.ru_stime, 3),
    }
    print(json.dumps(result), flush=True)
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bootstrap", required=True, help="HOST:PORT")
    ap.add_argument("--topic", required=True)
    ap.add_argument("--group", required=True)
    ap.add_argument("--messages", type=int, required=True)
    ap.add_argument("--policy", required=True, choices=["ACK", "ACK_FIRST"])
    ap.add_argument("--fail-rate", type=float, default=0.0,
                    help="fraction of orders whose handling raises (by CRC-32 of the id)")
    ap.add_argument("--publish", metavar="OUT",
                    help="run the enrich example: publish each enriched order to topic OUT")
    ap.add_argument("--timeout", type=float, default=600.0, help="seconds (default 600)")
    ap.add_argument("--log-level", default="WARNING",
                    help="FastStream's logger level, output on stderr (default WARNING: no "
                         "per-message access logs, but a traceback per handler error)")
    args = ap.parse_args()
    if args.messages <= 0 or not 0 <= args.fail_rate <= 1:
        ap.error("--messages must be positive and --fail-rate within [0, 1]")
    return asyncio.run(run(args))


if __name__ == "__main__":
    sys.exit(main())
