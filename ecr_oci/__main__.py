"""``python -m ecr_oci`` runs the ``ecr-oci`` command."""

from ecr_oci.cli.main import main

main()
