"""``python -m starlock.kms.keyservice`` = ``starlock-keyservice``."""

from __future__ import annotations

import sys

from starlock.kms.keyservice.cli import main

sys.exit(main())
