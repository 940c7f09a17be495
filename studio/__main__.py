"""`python -m studio`: the same command line as `studio`."""
import sys

from studio.cli import main

sys.exit(main())
