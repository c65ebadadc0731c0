import sys

from starlock.verificationservice.cli import main

sys.exit(main())
