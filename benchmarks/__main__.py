"""``python -m benchmarks``: the speed and memory suite (:mod:`benchmarks.suite`), run from a checkout."""

import sys

from benchmarks.suite import main

sys.exit(main())
