"""Speed and memory of ISNet against the published implementation, side by side.

The same as ``isnet bench`` (see :mod:`isnet.bench.suite` for the cases and the method):

    python benchmarks/bench_speed.py --quick --threads 1 --markdown speed.md
"""

from __future__ import annotations

import sys

from isnet.bench.suite import main

if __name__ == "__main__":
    sys.exit(main())
