import sys

from starlock.joinservice.cli import main

sys.exit(main())
