"""goq-codec-json: a goq plugin offering the `json` codec (`goq --codec json`, GOQ_CODEC=json).

The worked example of docs/plugins.md: one hook, and the codec built only when it is used.
"""

from __future__ import annotations

from goq_core.hookspecs import Register, hookimpl
from goq_core.interfaces import Codec


def make_codec() -> Codec:
    from goq_codec_json.codec import JsonCodec

    return JsonCodec()


@hookimpl
def goq_register_codecs(register: Register) -> None:
    register("json", make_codec)
