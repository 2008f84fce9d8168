"""`python -m edge_caption.cli ...`: the same as `edge-caption ...`."""
import sys

from . import main

sys.exit(main())
