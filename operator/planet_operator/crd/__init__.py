"""CRD generation from the API models."""
