"""The ECR service (issue 4): index of the registry's content, reconcile, search API.

    >>> from ecr_oci.server.settings import Settings          # doctest: +SKIP
    >>> from ecr_oci.server.app import create_app             # doctest: +SKIP
    >>> app = create_app(Settings.load(None))                 # doctest: +SKIP

Layers (STYLE.md §9): ``routes`` (HTTP in/out) → ``services`` (logic, no HTTP) → ``db`` (SQLAlchemy
models). The registry is the source of truth; everything in the index can be rebuilt from it
(``services.reconcile``). Only :mod:`ecr_oci.server.settings` reads the environment. docs/service.md
describes the design and the schema.
"""
