"""``python -m planet_build``."""

from planet_build.cli import main

raise SystemExit(main())
