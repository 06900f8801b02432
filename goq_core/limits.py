"""The bounds that keep one request from holding the server: sizes, counts and ranges that the
server enforces at its front door and that clients respect by splitting their work.

Every figure here is documented in docs/security.md; change both together.
"""

from __future__ import annotations

MAX_FRAME = 4 * 1024 * 1024  # bytes: the largest frame a server takes (output comes in 1 MiB,
# and a job's argv and environment fit: Linux caps them at 2 MiB by default)
MAX_ARRAY = 1_000_000  # jobs one array submission makes (the server expands it)
MAX_DEPENDENCIES = 100_000  # job ids one job may depend on (after and after-any together)
MAX_NAME = 1024  # characters in a job name
MAX_RETRIES = 10_000  # retries one job may ask for
MAX_DURATION_MS = 366 * 24 * 3600 * 1000  # the longest time limit or retry delay: a year
MAX_JOBS_PER_SUBMIT = 10_000  # jobs in one SUBMIT request (the CLI splits larger batches)
SUBMIT_CHUNK_BYTES = 2 * 1024 * 1024  # clients start a new SUBMIT request past this much
MAX_STAT_LIST = 1000  # running and waiting jobs listed in one STAT reply, each
MAX_TEXT = 1 << 20  # characters in one string field (cmd, an arg, an env entry, a dir)
MAX_INT = (1 << 63) - 1  # the largest job id, count or offset a request may carry
MAX_AMOUNT = (
    1 << 31
) - 1  # the most cpus, GPUs or of a named counter a job asks or a worker offers
MAX_RUNS_PER_RESULT = 256  # runs one RESULT reports at most (a worker with slots batches them)
MAX_HOLD_MS = 3_600_000  # the longest hold a request may ask for (it is capped lower anyway)
