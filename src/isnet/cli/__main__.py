"""``python -m isnet.cli`` (and ``torchrun -m isnet.cli``)."""

import sys

from isnet.cli.commands import main

sys.exit(main())
