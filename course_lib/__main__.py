"""Command line: `python -m course_lib fetch-weights` and `... standin-weights`.

``fetch-weights`` fills the torch hub cache on a machine with network, so that its
``checkpoints`` folder can be copied to an offline grading machine. ``standin-weights`` writes
seeded random weights under the real checkpoint names into a private TORCH_HOME, for tests and
demos that must run without network.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from course_lib.models import (
    DEFAULT_MODEL,
    MODEL_SPECS,
    WeightsUnavailableError,
    fetch_weights,
    write_standin_weights,
)

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    """The ``python -m course_lib`` argument parser with its two sub-commands."""
    known = ", ".join(sorted(MODEL_SPECS))
    parser = argparse.ArgumentParser(
        prog="python -m course_lib",
        description="Manage the pretrained weights the labs use.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    fetch = commands.add_parser(
        "fetch-weights",
        help="download ImageNet weights into the torch hub cache",
        description="Download ImageNet weights into the torch hub cache (torch.hub.get_dir()/"
        "checkpoints, i.e. $TORCH_HOME/hub/checkpoints) with a hash check. Run it on a machine "
        "with network and copy that folder to an offline machine.",
    )
    fetch.add_argument(
        "names",
        nargs="*",
        default=[DEFAULT_MODEL],
        metavar="NAME",
        help=f"architectures to fetch (default: {DEFAULT_MODEL}; known: {known})",
    )
    fetch.add_argument("--quiet", action="store_true", help="no download progress bar")

    standin = commands.add_parser(
        "standin-weights",
        help="write seeded random stand-in weights into a private TORCH_HOME (offline tests)",
        description="Write seeded random weights under the real checkpoint file names into "
        "DIR/hub/checkpoints and mark DIR with STANDIN_WEIGHTS.txt. With TORCH_HOME=DIR, "
        "torchvision loads them without network; predictions made with them are meaningless. "
        "Refuses the default torch cache and folders holding real checkpoints.",
    )
    standin.add_argument(
        "--torch-home", required=True, metavar="DIR", help="folder to use as TORCH_HOME"
    )
    standin.add_argument(
        "names",
        nargs="*",
        default=[DEFAULT_MODEL],
        metavar="NAME",
        help=f"architectures (default: {DEFAULT_MODEL}; known: {known})",
    )
    standin.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit status (0 on success, 1 on a reported error).

    Args:
        argv: Arguments without the program name; None means ``sys.argv[1:]``.

    Returns:
        0 on success, 1 when weights are unavailable or an argument is refused (a one-line
        message goes to stderr). argparse itself exits with 2 on a usage error.
    """
    args = build_parser().parse_args(argv)
    try:
        if args.command == "fetch-weights":
            paths = fetch_weights(args.names, progress=not args.quiet)
        else:
            paths = write_standin_weights(args.torch_home, args.names, seed=args.seed)
    except (WeightsUnavailableError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    for path in paths:
        print(path)
    if args.command == "standin-weights":
        print(f"stand-in weights ready: set TORCH_HOME={args.torch_home} to use them")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
