"""`python -m connector.sandbox`: serve the sandbox until SIGINT/SIGTERM."""

from __future__ import annotations

import argparse
import sys

from .cli import configure_parser, run


def main(argv: list[str] | None = None) -> int:
    """Parse the sandbox options and serve."""
    parser = argparse.ArgumentParser(
        prog="python -m connector.sandbox",
        description="Serve a faithful local Finetuning.ai (and TemPolor) API until stopped.",
    )
    configure_parser(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
