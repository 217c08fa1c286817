"""A runnable Django project that uses django-connhealth the way its users will.

``python -m testproject.demo`` runs it under gunicorn against a throwaway
redis-server; the test suite (tests/test_testproject.py) drives it the same way.
"""
