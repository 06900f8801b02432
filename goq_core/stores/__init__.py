"""goq's built-in stores: the durable record of jobs and counters (see interfaces.Store).

`sqlite` (goq_core.stores.sqlite) is the default on disk; `memory` is for tests.
"""
