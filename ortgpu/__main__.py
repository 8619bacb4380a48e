"""``python -m ortgpu``: the ortgpu command line."""
import sys

from ortgpu.cli import main

sys.exit(main())
