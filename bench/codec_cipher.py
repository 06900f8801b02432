"""Benchmark: encode/decode µs per codec and seal/open µs per cipher backend, on a typical JOB
message (a job with 40 environment entries) and a RESULT message (a job's outcome plus 4 KiB of
its output). Prints one JSON object; each figure is the best of --repeat runs of --n calls.
Usage: python bench/codec_cipher.py [--n 5000] [--repeat 5]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import timeit
from collections.abc import Callable

from goq_codecs.aesgcm import CryptographyAesGcm, PycryptodomeAesGcm
from goq_codecs.capnp_codec import CapnpCodec
from goq_codecs.none_cipher import NoneCipher
from goq_codecs.raw import RawCodec
from goq_core.messages import Job, JobState, Kind, Message

NOW = 1_700_000_000_000_000_000


def job_message() -> Message:
    env = [f"VAR{i}=/usr/local/share/some/value-{i}" for i in range(40)]
    job = Job(jobid=123456, cmd="python3", args=["train.py", "--epochs", "10"],
              dir="/home/alice/project", env=env, host="login1", user="alice",
              state=JobState.RUNNING, attempt=1, workerid="w-node7-1234", workerhost="node7",
              submit_ns=NOW)  # fmt: skip
    return Message(Kind.JOB, nonce=os.urandom(16), sendtime_ns=NOW, reply_to=os.urandom(16),
                   jobs=[job], attempt=1)  # fmt: skip


def result_message() -> Message:
    job = Job(jobid=123456, state=JobState.FINISHED, attempt=1, workerid="w-node7-1234",
              workerhost="node7", pid=4242, exit_status=0, start_ns=NOW, end_ns=NOW + 10**9,
              out_bytes=4096)  # fmt: skip
    return Message(Kind.RESULT, nonce=os.urandom(16), sendtime_ns=NOW, workerid="w-node7-1234",
                   host="node7", jobs=[job], data=os.urandom(4096))  # fmt: skip


def best_us(fn: Callable[[], object], n: int, repeat: int) -> float:
    return round(min(timeit.repeat(fn, number=n, repeat=repeat)) / n * 1e6, 2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=5000, help="calls per timing run")
    parser.add_argument("--repeat", type=int, default=5, help="timing runs (best one counts)")
    opts = parser.parse_args()
    n, repeat = opts.n, opts.repeat
    messages = {"job": job_message(), "result": result_message()}
    codecs = {"raw": RawCodec(), "capnp": CapnpCodec()}
    key = os.urandom(32)
    ciphers = {
        "aes-gcm/cryptography": CryptographyAesGcm(key),
        "aes-gcm/pycryptodome": PycryptodomeAesGcm(key),
        "aes-gcm/pycryptodome-per-message": PycryptodomeAesGcm(key, reuse=False),
        "none": NoneCipher(key),
    }
    aad = b"GQ\x01M\x0draw/aes-gcm"
    out: dict[str, object] = {"python": platform.python_version(), "n": n, "repeat": repeat}

    codec_rows = {}
    for cname, codec in codecs.items():
        for mname, msg in messages.items():
            data = codec.encode(msg)
            assert codec.decode(data) == msg
            enc = best_us(lambda c=codec, m=msg: c.encode(m), n, repeat)
            dec = best_us(lambda c=codec, d=data: c.decode(d), n, repeat)
            codec_rows[f"{cname}/{mname}"] = {
                "bytes": len(data),
                "encode_us": enc,
                "decode_us": dec,
                "total_us": round(enc + dec, 2),
            }
    out["codecs"] = codec_rows

    cipher_rows = {}
    for kname, cipher in ciphers.items():
        slow = "pycryptodome" in kname
        calls = max(n // 10, 100) if slow else n
        for mname, msg in messages.items():
            plain = RawCodec().encode(msg)
            sealed = cipher.seal(plain, aad)
            assert cipher.open(sealed, aad) == plain
            seal = best_us(lambda c=cipher, p=plain: c.seal(p, aad), calls, repeat)
            open_ = best_us(lambda c=cipher, s=sealed: c.open(s, aad), calls, repeat)
            cipher_rows[f"{kname}/{mname}"] = {
                "bytes": len(plain),
                "seal_us": seal,
                "open_us": open_,
                "total_us": round(seal + open_, 2),
            }
    out["ciphers"] = cipher_rows
    json.dump(out, sys.stdout, indent=1)
    print()


if __name__ == "__main__":
    main()
