"""Plumbing every layer shares: input checks, atomic writes and checksums, the Gaussian kernel,
the shared-data variable. No module here imports anything above :mod:`kcross_metric.errors`."""
