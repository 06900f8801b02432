"""The `goq` console script: the fast path for a plain `goq sub`, else the click CLI.

Kept apart from goq_cli.main so that importing it costs nothing but this file.
"""

from __future__ import annotations

import sys


def main() -> None:
    from goq_cli.fastsub import try_fast_sub

    if try_fast_sub(sys.argv[1:]):
        return
    from goq_cli.main import main as click_main

    click_main()
