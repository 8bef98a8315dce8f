"""HTTP in/out only: each module holds one ``router`` that ``create_app`` mounts."""
