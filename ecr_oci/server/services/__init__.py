"""The service's logic (no HTTP): indexing, reconcile, activity, search, visibility."""
