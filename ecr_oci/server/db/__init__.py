"""Storage: the SQLAlchemy engine, the typed models of the index, and the Alembic migrations."""
