"""Benchmarks of django-connhealth against its peers and its limits (``make bench``)."""
