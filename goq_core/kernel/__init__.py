"""The pure scheduling kernel: job lifecycle, queues, heartbeats, requeue and replay guard.

Inputs are messages and times; outputs are actions. See kernel.py for the rules.
"""

from goq_core.kernel.actions import (
    Action,
    Forget,
    Notify,
    QueryJobs,
    Remember,
    Reply,
    ReplyStoredJob,
    Save,
    SaveAttempt,
    ShowJob,
    Stop,
    WriteOutput,
)
from goq_core.kernel.kernel import HandlerFailed, Kernel, KernelConfig
from goq_core.kernel.lifecycle import IllegalTransition
from goq_core.kernel.replay import ReplayGuard

__all__ = [
    "Action",
    "Forget",
    "HandlerFailed",
    "QueryJobs",
    "SaveAttempt",
    "ShowJob",
    "IllegalTransition",
    "Kernel",
    "KernelConfig",
    "Notify",
    "ReplayGuard",
    "Remember",
    "Reply",
    "ReplyStoredJob",
    "Save",
    "Stop",
    "WriteOutput",
]
