"""`python -m lucid` and the `lucid` console script: see lucid.cli."""
import sys


def main(argv=None):
    """Entry point of the `lucid` command; returns the exit status."""
    from .cli import main as cli_main

    return cli_main(argv)


if __name__ == "__main__":
    sys.exit(main())
