"""ecr-oci."""
