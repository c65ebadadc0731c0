import sys

from starlock.cli.main import main

sys.exit(main())
