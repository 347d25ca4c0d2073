"""``python -m planet_predictors.sdxl``: load, warm up, then serve with ``kserve.ModelServer``."""

import sys

from planet_predictors.sdxl.factory import main

if __name__ == "__main__":
    sys.exit(main())
