"""``ecr-oci dev``: a local registry, a base image and a podman "node" for demos (``make run``).

    $ ecr-oci dev service start --registry 127.0.0.1:5000   # the ECR service = token server
    $ ecr-oci dev registry start --port 5000 --notify-service --token-auth
    $ ecr-oci dev access --registry 127.0.0.1:5000     # first admin, demo namespaces, CI robot
    $ REGISTRY_AUTH_FILE=.run/demo-auth.json ecr-oci dev base-image --registry 127.0.0.1:5000
    $ ecr-oci dev podman -- run --rm 127.0.0.1:5000/base/busybox:1.36 -c 'echo hello'
    $ ecr-oci dev registry stop

A thin layer over :mod:`ecr_oci.devenv`, the same code the test fixtures use. Everything these
commands start or store lives under ``--state-dir`` (default ``.run``, git-ignored), so
``make stop`` and ``make clean`` find it again; a registry is stopped only by the PID it
recorded, and only while that PID is still the ``docker-registry`` serving that state
directory's config.
"""

from __future__ import annotations

import secrets
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from ecr_oci.cli.login import store_credentials
from ecr_oci.cli.main import cli
from ecr_oci.cli.options import write_private_file
from ecr_oci.cli.service import migrated_engine
from ecr_oci.devenv import (
    DevEnvError,
    LocalRegistry,
    PodmanEnv,
    build_busybox_base,
    build_multiplatform_base,
    require_program,
)
from ecr_oci.devenv.service import LocalService
from ecr_oci.oci.auth import Credentials, load_docker_config

__all__ = ["dev"]

_F = TypeVar("_F", bound=Callable[..., Any])

_STATE_DIR_HELP = "Folder for the dev environment's config, logs, storage and PIDs."


def _state_dir_option(extra_help: str = "") -> Callable[[_F], _F]:
    """The ``--state-dir`` option every dev command shares (default ``.run``)."""
    return click.option(
        "--state-dir",
        type=click.Path(file_okay=False, path_type=Path),
        default=Path(".run"),
        show_default=True,
        help=_STATE_DIR_HELP + extra_help,
    )


def _registry_root(state_dir: Path) -> Path:
    return state_dir / "registry"


def _service_root(state_dir: Path) -> Path:
    return state_dir / "service"


def _recorded_registry(state_dir: Path) -> LocalRegistry | None:
    """The registry an earlier ``dev registry start`` recorded under ``state_dir``, if any."""
    root = _registry_root(state_dir)
    if not (root / LocalRegistry.STATE_NAME).exists():
        return None
    return LocalRegistry.attach(root)


@cli.group()
def dev() -> None:
    """Local dev environment: a registry, a busybox base image, a podman node.

    \b
    Not for production: the registry listens on 127.0.0.1 over plain HTTP (with --token-auth the
    ECR service is its token server; without it anyone may push).
    `make run` uses these commands; `make stop` stops what they started.
    """


@dev.group()
def registry() -> None:
    """Run a CNCF distribution registry (docker-registry) on 127.0.0.1 in the background."""


@registry.command("start")
@click.option("--port", type=click.IntRange(1, 65535), default=5000, show_default=True, help="TCP port.")
@click.option(
    "--notify-service",
    is_flag=True,
    help="Send notifications to the ECR service of STATE_DIR/service (start it first).",
)
@click.option(
    "--token-auth",
    is_flag=True,
    help="Token authentication with the ECR service of STATE_DIR/service as the token server.",
)
@_state_dir_option()
def registry_start(port: int, notify_service: bool, token_auth: bool, state_dir: Path) -> None:
    """Start a registry on 127.0.0.1:PORT that keeps running after this command.

    Its config, log, storage and PID go under STATE_DIR/registry. Running it again while that
    registry is up only prints where it is. Stop it with `ecr-oci dev registry stop`.
    With --notify-service its notifications go to `dev service start`'s service, with that
    service's shared secret; with --token-auth that service is its token server (realm
    SERVICE/token; the service's certificate verifies the tokens).
    """
    recorded = _recorded_registry(state_dir)
    if recorded is not None and recorded.is_running():
        if recorded.port != port:
            raise DevEnvError(
                f"a registry from {state_dir} already runs on {recorded.host} (pid "
                f"{recorded.pid}); stop it first: ecr-oci dev registry stop --state-dir {state_dir}"
            )
        click.echo(f"registry already running on {recorded.host} (pid {recorded.pid})")
        return
    notifications = []
    auth_token = None
    if notify_service or token_auth:
        recorded_service = LocalService.attach(_service_root(state_dir))
        if notify_service:
            notifications.append(recorded_service.notification_endpoint())
        if token_auth:
            auth_token = recorded_service.token_auth()
    reg = LocalRegistry(
        _registry_root(state_dir), port=port, notifications=notifications, auth_token=auth_token
    )
    reg.start(detach=True)
    click.echo(f"registry running on {reg.host} (pid {reg.pid})")
    if auth_token is not None:
        click.echo(f"  tokens:  {auth_token['realm']}")
    click.echo(f"  storage: {reg.storage_dir}")
    click.echo(f"  log:     {reg.log_path}")
    click.echo(f"  stop:    ecr-oci dev registry stop --state-dir {state_dir}   (or: make stop)")


@registry.command("stop")
@_state_dir_option()
def registry_stop(state_dir: Path) -> None:
    """Stop the registry that `dev registry start` recorded under STATE_DIR.

    Only the recorded PID is signalled (SIGTERM, then SIGKILL), and only while it is still a
    docker-registry serving that config; stale state is removed. Stopping nothing is not an error.
    """
    recorded = _recorded_registry(state_dir)
    if recorded is None:
        click.echo(f"no registry recorded in {state_dir}")
        return
    if not recorded.is_running():
        recorded.stop()  # forgets the stale state file
        click.echo(f"registry from {state_dir} was not running (stale state removed)")
        return
    pid = recorded.pid
    recorded.stop()
    click.echo(f"registry on {recorded.host} (pid {pid}) stopped")


@registry.command("status")
@_state_dir_option()
def registry_status(state_dir: Path) -> None:
    """Say whether the recorded registry runs; exit status 1 when it does not."""
    recorded = _recorded_registry(state_dir)
    if recorded is None or not recorded.is_running():
        click.echo(f"no registry running from {state_dir}")
        sys.exit(1)
    click.echo(f"registry running on {recorded.host} (pid {recorded.pid}), log {recorded.log_path}")


@dev.group()
def service() -> None:
    """Run the ECR service (`ecr-oci serve`) on 127.0.0.1 in the background."""


@service.command("start")
@click.option("--port", type=click.IntRange(1, 65535), default=8000, show_default=True, help="TCP port.")
@click.option(
    "--registry",
    "registry_host",
    default="127.0.0.1:5000",
    show_default=True,
    metavar="HOST:PORT",
    help="The registry it indexes (plain HTTP).",
)
@_state_dir_option()
def service_start(port: int, registry_host: str, state_dir: Path) -> None:
    """Start the ECR service on 127.0.0.1:PORT; it keeps running after this command.

    Its settings (ecr.toml), SQLite database, notification secret, log and PID go under
    STATE_DIR/service. Point a registry at it with `dev registry start --notify-service`.
    """
    root = _service_root(state_dir)
    if (root / LocalService.STATE_NAME).exists():
        recorded = LocalService.attach(root)
        if recorded.is_running():
            click.echo(f"service already running on {recorded.url} (pid {recorded.pid})")
            return
        recorded.stop()
    svc = LocalService(root, registry=registry_host, port=port).start(detach=True)
    click.echo(f"ECR service running on {svc.url} (pid {svc.pid})")
    click.echo(f"  API docs: {svc.url}/docs")
    click.echo(f"  log:      {svc.log_path}")
    click.echo(f"  stop:     ecr-oci dev service stop --state-dir {state_dir}   (or: make stop)")


@service.command("stop")
@_state_dir_option()
def service_stop(state_dir: Path) -> None:
    """Stop the service `dev service start` recorded under STATE_DIR (by its PID only)."""
    root = _service_root(state_dir)
    if not (root / LocalService.STATE_NAME).exists():
        click.echo(f"no service recorded in {state_dir}")
        return
    recorded = LocalService.attach(root)
    pid, running = recorded.pid, recorded.is_running()
    recorded.stop()
    click.echo(
        f"service on {recorded.url} (pid {pid}) stopped"
        if running
        else f"service from {state_dir} was not running (stale state removed)"
    )


#: Files ``dev access`` writes under the state dir (mode 0600; never printed).
ADMIN_PASSWORD_NAME = "admin.password"  # noqa: S105 - a file name, not a secret
DEMO_AUTH_NAME = "demo-auth.json"


@dev.command("access")
@click.option(
    "--registry",
    "registry_host",
    default="127.0.0.1:5000",
    show_default=True,
    metavar="HOST:PORT",
    help="The registry the demo robot's credentials are for.",
)
@click.option("--admin", "admin_name", default="admin", show_default=True, help="The first admin's name.")
@click.option(
    "--public",
    "public_namespaces",
    multiple=True,
    default=("base", "waggle"),
    show_default=True,
    help="Public namespaces to create (owned by the admin).",
)
@click.option("--robot", "robot_name", default="demo-ci", show_default=True, help="The demo CI robot.")
@_state_dir_option()
def access(
    registry_host: str,
    admin_name: str,
    public_namespaces: tuple[str, ...],
    robot_name: str,
    state_dir: Path,
) -> None:
    """Seed the dev service's access rules for the demo (idempotent).

    \b
    - the first admin, when there is none (what `ecr-oci admin bootstrap` does), with a generated
      password stored in STATE_DIR/admin.password (mode 0600; never printed);
    - public namespaces (default base and waggle) owned by the admin;
    - a CI robot scoped to them with push, and an API token of it stored as docker credentials
      for REGISTRY in STATE_DIR/demo-auth.json (0600): `ecr-oci push --authfile` and skopeo
      (REGISTRY_AUTH_FILE) use it. A stored token that still works is kept.

    Works on the database of STATE_DIR/service's settings, like `ecr-oci admin bootstrap`.
    """
    from sqlalchemy import select

    from ecr_oci.server.db.accounts import NamespaceRow, Principal
    from ecr_oci.server.db.engine import session_factory
    from ecr_oci.server.services import accounts
    from ecr_oci.server.services.credentials import Authenticator
    from ecr_oci.server.settings import Settings

    config = _service_root(state_dir) / LocalService.CONFIG_NAME
    if not config.exists():
        raise DevEnvError(f"no service settings at {config}: run `ecr-oci dev service start` first")
    password_file = (state_dir / ADMIN_PASSWORD_NAME).absolute()
    auth_file = (state_dir / DEMO_AUTH_NAME).absolute()
    with migrated_engine(Settings.load(config)) as engine:
        with session_factory(engine, write=True).begin() as session:
            admins = list(session.scalars(select(Principal.name).where(Principal.is_admin)))
            if not admins:
                password = secrets.token_urlsafe(18)
                accounts.bootstrap_admin(session, admin_name, password)
                password_file.parent.mkdir(parents=True, exist_ok=True)
                password_file.unlink(missing_ok=True)  # left from an earlier database
                write_private_file(password_file, f"{password}\n".encode())
                click.echo(f"admin {admin_name!r} created; password in {password_file} (mode 0600)")
            else:
                where = f"; password in {password_file}" if password_file.exists() else ""
                click.echo(f"admin {admins[0]!r} unchanged{where}")
            owner = admins[0] if admins else admin_name
            existing = set(session.scalars(select(NamespaceRow.name)))
            for namespace in public_namespaces:
                if namespace not in existing:
                    accounts.create_namespace(
                        session, namespace, owner=owner, visibility="public", actor=owner
                    )
            robot = session.scalar(select(Principal).where(Principal.name == robot_name))
            if robot is None:
                accounts.create_robot(session, robot_name, namespaces=public_namespaces, actor=owner)
                for namespace in public_namespaces:
                    accounts.grant(session, namespace, "push", principal=robot_name, actor=owner)
            stored = load_docker_config(auth_file).get(registry_host)
            working = (
                stored is not None
                and stored.username == robot_name
                and Authenticator().authenticate(session, stored.username, stored.password) is not None
            )
            if not working:
                _, token = accounts.create_token(session, robot_name, name="make run", actor=owner)
                store_credentials(auth_file, registry_host, Credentials(robot_name, token))
        click.echo(f"namespaces {', '.join(public_namespaces)}: public")
        state = "unchanged" if working else "new token"
        click.echo(f"robot {robot_name!r} (push to {', '.join(public_namespaces)}): {state}, in {auth_file}")


@dev.command("base-image")
@click.option(
    "--registry",
    "registry_host",
    required=True,
    metavar="HOST:PORT",
    help="Registry to push to over plain HTTP, e.g. 127.0.0.1:5000.",
)
@click.option(
    "--multiplatform",
    is_flag=True,
    help="Push an image index (linux/amd64 runnable + linux/arm64 marked twin) as base/multi.",
)
@click.option("--repository", default=None, help="Repository [base/busybox, or base/multi].")
@click.option("--tag", default="1.36", show_default=True, help="Tag to push.")
@click.option("--force", is_flag=True, help="Rebuild and push even if the tag exists.")
@_state_dir_option(" The OCI layout is built in STATE_DIR/base-image.")
def base_image(
    registry_host: str,
    multiplatform: bool,
    repository: str | None,
    tag: str,
    force: bool,
    state_dir: Path,
) -> None:
    """Build a busybox base image offline (busybox-static + umoci) and push it with skopeo.

    Prints the pushed reference with its digest. Does nothing if the tag already exists (--force
    rebuilds); the build is reproducible, so a rebuild gives the same digest.
    """
    build = build_multiplatform_base if multiplatform else build_busybox_base
    kind = "multi" if multiplatform else "busybox"
    ref = build(
        registry_host,
        repository=repository or f"base/{kind}",
        tag=tag,
        workdir=state_dir / "base-image" / kind,
        force=force,
    )
    click.echo(ref)


@dev.command(
    "podman",
    context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False},
)
@click.option(
    "--registry",
    "registries",
    multiple=True,
    metavar="HOST:PORT",
    help="Extra registry to reach over plain HTTP (the recorded dev registry always is).",
)
@_state_dir_option(" podman's storage is STATE_DIR/podman.")
@click.argument("podman_args", nargs=-1, required=True, type=click.UNPROCESSED)
def podman(registries: tuple[str, ...], state_dir: Path, podman_args: tuple[str, ...]) -> None:
    """Run podman as a test "node" with its own storage and config (after `--`).

    \b
    Example:
      ecr-oci dev podman -- run --rm 127.0.0.1:5000/waggle/hello-sensor:0.1.0

    Uses runc, cgroupfs, file events and nofile/nproc ulimits of 1024 (what works on machines
    without CAP_SYS_RESOURCE), and no network for containers. Exits with podman's status.
    """
    insecure = list(registries)
    recorded = _recorded_registry(state_dir)
    if recorded is not None and recorded.host not in insecure:
        insecure.append(recorded.host)
    env = PodmanEnv(state_dir / "podman", insecure_registries=insecure)
    argv = env.command(podman_args)
    argv[0] = require_program(argv[0])
    # Output streams straight to the terminal: this is the demo's visible result.
    sys.exit(subprocess.call(argv, env=env.process_env(), stdin=subprocess.DEVNULL))
