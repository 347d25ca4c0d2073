"""Output verification: each image is measured against what its prompt asked for and scored in [0, 1]."""
