"""Alembic migrations of the index schema (shipped in the wheel; applied by ``ecr_oci.server.db.migrate``)."""
