"""The web chat's entry point: `python app.py [flags]` is `qa serve [flags]`.

    python app.py [--index DIR] [--host 127.0.0.1] [--port 7860] [--token T] [--max-upload-mb N ...]

The page itself (its layout, events and server) is `qa/web/app.py`; this file only hands the command line to
`qa serve`, so the README's first command and `qa serve` start the same chat. Nothing imports this file.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> None:
    """`python app.py [flags]` is `qa serve [flags]`."""
    from qa.cli import main as cli

    raise SystemExit(cli(["serve", *(sys.argv[1:] if argv is None else argv)]))


if __name__ == "__main__":
    main()
