"""Names of the counters of dropped frames, shared by the wire (which detects most drops) and the
kernel (which detects replays and keeps every count for `goq stat`).
"""

TOO_BIG = "droppedTooBigCount"  # frame over the size limit
GARBAGE = "droppedGarbageCount"  # not a goq frame at all
MISMATCH = "droppedMismatchCount"  # a goq frame of another codec/cipher
BAD_SIG = "droppedBadSigCount"  # failed authentication: wrong key or tampered
BAD_CODEC = "droppedBadCodecCount"  # authentic but undecodable
REPLAY = "droppedReplayCount"  # seen before, or sent outside the clock-skew window
DROP_COUNTERS = (TOO_BIG, GARBAGE, MISMATCH, BAD_SIG, BAD_CODEC, REPLAY)
