"""``python -m bridge ...``: the same as ``iotflink bridge ...`` (:mod:`bridge.cli`)."""

import sys

from iotflink import cli

if __name__ == "__main__":
    sys.exit(cli.main(["bridge", *sys.argv[1:]]))
