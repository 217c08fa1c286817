"""One adapter per kind of cache backend.

``base`` says what an adapter answers, ``django_redis`` is the first one, and
``registry`` lists them and finds the one for a CACHES entry. Add a backend by
adding a module here and its adapter to ``registry.ADAPTERS``.
"""
