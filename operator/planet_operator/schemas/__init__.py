"""Validation of objects against CRD OpenAPI schemas."""
