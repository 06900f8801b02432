"""The example codec plugin (plugins/goq-codec-json), installed as a third party's would be:
goq's own codec contract suite run against it, then a real session (server, worker, sub, wait)
over it. Also the recipe docs/plugins.md gives for testing a plugin with goq's suites.

Skips when goq-codec-json is not installed (.ci/run installs it).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

if importlib.util.find_spec("goq_codec_json") is None:
    pytest.skip(
        "goq-codec-json is not installed (pip install ./plugins/goq-codec-json)",
        allow_module_level=True,
    )

from goq_core.plugins import Plugins  # noqa: E402
from tests.cluster import initialised  # noqa: E402

# goq's codec contract: each of these tests takes the `codec` fixture, redefined below, so
# importing them here runs them against the plugin's codec (collected in this module).
from tests.test_codecs import (  # noqa: E402, F401
    FAST,
    decodes_or_codec_error,
    messages,
    test_bytearray_and_memoryview_input_decode,
    test_decoded_jobs_do_not_share_their_id_lists,
    test_default_message_survives,
    test_each_job_state_survives,
    test_each_kind_survives,
    test_each_workflow_kind_survives,
    test_every_field_of_message_and_job_survives,
    test_every_truncation_of_a_typical_message_is_a_codec_error,
    test_every_workflow_field_survives,
    test_int_beyond_int64_is_a_codec_error_on_encode,
    test_large_data_survives,
    test_lone_surrogates_from_undecodable_bytes_survive_in_every_string_field,
    test_many_jobs_survive,
    test_non_bytes_input_is_a_codec_error,
    test_out_of_range_workflow_value_is_a_codec_error_on_encode,
    test_unicode_and_nul_in_strings_survive,
    test_wrong_field_type_is_a_codec_error_on_encode,
)


@pytest.fixture
def codec():
    """The codec under test: found by name through goq's plugin manager, as goq finds it."""
    return Plugins().codec("json")


@FAST
@given(msg=messages)
def test_any_message_survives_a_json_round_trip(msg) -> None:
    codec = Plugins().codec("json")
    assert codec.decode(codec.encode(msg)) == msg


@FAST
@given(data=st.binary(max_size=400), msg=messages, cut=st.floats(0, 1, exclude_max=True))
def test_garbage_and_truncations_decode_or_raise_codec_error(data, msg, cut) -> None:
    codec = Plugins().codec("json")
    decodes_or_codec_error(codec, data)
    encoded = codec.encode(msg)
    decodes_or_codec_error(codec, encoded[: int(len(encoded) * cut)])


@pytest.mark.slow
def test_a_whole_session_runs_over_the_json_codec(tmp_path: Path) -> None:
    with initialised(tmp_path, extra_env={"GOQ_CODEC": "json"}) as c:
        server = c.start_server()
        c.start_worker()
        jobid = c.sub("sh", "-c", "echo over json")
        assert c.goq("wait", str(jobid), timeout=30).returncode == 0
        assert c.output(jobid) == "over json\n"
        assert "[zmq/json/aes-gcm]" in c.log("server.log")
        raw = c.goq("--codec", "raw", "stat", "0")  # a peer speaking raw gets a clear error
        assert raw.returncode == 1 and "json" in raw.stderr, raw.stderr
        assert server.poll() is None
