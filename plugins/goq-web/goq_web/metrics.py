"""`/metrics`: the server's counters and its workers' capacity in the Prometheus text format,
through prometheus_client, read from the same shared Source as the pages (no extra polling).
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from goq_core import drops
from goq_web.source import Source

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
JOB_GAUGES = (("waiting", "waitingJobs"), ("running", "runQlen"), ("blocked", "blockedJobs"),
              ("held", "heldJobs"))  # fmt: skip
ENDED = (("finished", "finishedJobsCount"), ("cancelled", "cancelledJobsCount"),
         ("timeout", "timedOutJobsCount"))  # fmt: skip
COUNTERS = (
    (
        "goq_jobs_requeued",
        "Runs requeued because their worker died or vanished",
        "requeuedJobsCount",
    ),
    ("goq_jobs_retried", "Failed runs retried (--retries)", "retriedCount"),
    ("goq_stale_results", "Results that named an attempt no longer current", "staleResultCount"),
    (
        "goq_batched_result_runs",
        "Runs reported in one result with others (workers with several cpus)",
        "batchedResultRunCount",
    ),
    ("goq_refused_requests", "Requests refused by the server's front door", "refusedCount"),
    ("goq_server_errors", "Requests whose handling failed unexpectedly", "errorCount"),
)
DROP_REASONS = {
    drops.TOO_BIG: "too_big",
    drops.GARBAGE: "garbage",
    drops.MISMATCH: "mismatch",
    drops.BAD_SIG: "bad_signature",
    drops.BAD_CODEC: "bad_codec",
    drops.REPLAY: "replay",
}
WORKER_STATES = ("idle", "busy", "draining", "drained")


class GoqCollector:
    """A prometheus_client collector over a Source: every scrape reads its cached answers."""

    def __init__(self, source: Source) -> None:
        self._source = source

    def collect(self) -> Iterator[Metric]:
        status, workers = self._source.status(), self._source.workers()
        yield GaugeMetricFamily(
            "goq_up", "1 if the goq server answered the last poll, else 0", value=int(status.ok)
        )
        if status.ok:
            yield from _from_counters(status.doc["counters"])
        if workers.ok:
            yield from _from_workers(workers.doc["workers"])


def _from_counters(c: dict[str, int]) -> Iterator[Metric]:
    jobs = GaugeMetricFamily("goq_jobs", "Jobs not ended, by state", labels=["state"])
    for state, key in JOB_GAUGES:
        jobs.add_metric([state], c.get(key, 0))
    yield jobs
    yield CounterMetricFamily(
        "goq_jobs_submitted", "Jobs submitted (ids given)", value=max(0, c.get("nextJobId", 1) - 1)
    )
    ended = CounterMetricFamily(
        "goq_jobs_ended",
        "Jobs ended, by outcome: finished (exited, whatever its status), cancelled, timeout",
        labels=["outcome"],
    )
    for outcome, key in ENDED:
        ended.add_metric([outcome], c.get(key, 0))
    yield ended
    for name, text, key in COUNTERS:
        yield CounterMetricFamily(name, text, value=c.get(key, 0))
    dropped = CounterMetricFamily(
        "goq_dropped_frames", "Frames dropped before decoding, by reason", labels=["reason"]
    )
    for key, reason in DROP_REASONS.items():
        dropped.add_metric([reason], c.get(key, 0))
    yield dropped


def _from_workers(found: list[dict]) -> Iterator[Metric]:
    states = dict.fromkeys(WORKER_STATES, 0)
    for w in found:
        states[w["state"]] = states.get(w["state"], 0) + 1
    by_state = GaugeMetricFamily("goq_workers", "Workers, by state", labels=["state"])
    for state, n in states.items():
        by_state.add_metric([state], n)
    yield by_state
    for what, text in (("cpus", "cpus"), ("gpus", "GPUs")):
        gauge = GaugeMetricFamily(
            f"goq_worker_{what}", f"The workers' {text}: offered in all, and free", labels=["kind"]
        )
        for kind, part in (("total", "offer"), ("free", "free")):
            values = [w[part][what] for w in found]
            gauge.add_metric([kind], sum(v if isinstance(v, int) else len(v) for v in values))
        yield gauge


def exposition(source: Source) -> bytes:
    """The whole /metrics text for one scrape."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(GoqCollector(source))
    return generate_latest(registry)
