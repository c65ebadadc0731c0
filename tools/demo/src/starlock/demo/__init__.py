"""The local confidential cluster demo: ``python -m starlock.demo`` (``bash scripts/demo.sh``)."""
