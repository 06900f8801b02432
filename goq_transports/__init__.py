"""goq's built-in transports: request/reply over one listening server, with held replies.

`memory` (in-process, for tests), `nng` (pynng Pair1) and `zmq` (pyzmq ROUTER/DEALER); see
`goq_transports.plugin` for how they register and `goq_core.interfaces` for the contract.
"""
