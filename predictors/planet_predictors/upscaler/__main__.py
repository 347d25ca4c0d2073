"""``python -m planet_predictors.upscaler``: load the chain's models, warm up, serve with KServe."""

import sys

from planet_predictors.upscaler.factory import main

if __name__ == "__main__":
    sys.exit(main())
