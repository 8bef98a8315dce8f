"""``ecr-oci admin …``: manage principals, teams, namespaces, visibility, grants and tokens, and read
the audit log, through the ECR service's admin API (``/api/v1/admin``, docs/access.md).

    $ ecr-oci admin bootstrap --config ecr.toml --name admin       # prints a generated password
    $ ecr-oci admin user create ana                                 # prints a generated password
    $ ecr-oci admin namespace create waggle --owner ana --visibility public
    $ ecr-oci admin robot create ci-bot --namespace waggle --expires 90d
    $ ecr-oci admin grant waggle push --principal ci-bot
    $ ecr-oci admin token create ci-bot --name github-actions      # the token, once
    $ ecr-oci admin audit --action grant --json

The service URL is ``--service`` or ``$ECR_SERVICE_URL`` (as for ``ecr-oci search``). The caller's
credentials: ``--username`` with ``--password-stdin``, else the entry for the service's
``host:port`` in the docker auth files (``--authfile``, else podman's and docker's, as ``ecr-oci
login`` writes them). ``bootstrap`` is the exception: it works on the database directly (the first
admin cannot log in before it exists), like ``ecr-oci db upgrade``.

Passwords given to the service are read from a file (``--password-file``, ``-`` for stdin) or
generated and printed once on stdout; they never appear in the arguments (``ps`` shows those).
Exit codes: 1 failure (401: log in; 403: not allowed; 404), 2 bad input, 3 the name is taken.
"""

from __future__ import annotations

import functools
import re
import secrets
import sys
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote

import click

from ecr_oci.cli.main import cli
from ecr_oci.cli.options import authfile_option, echo_json, echo_table
from ecr_oci.cli.service import config_option, migrated_engine
from ecr_oci.cli.service_api import ServiceApi, ServiceApiError, service_credentials, service_option

__all__ = ["admin"]

F = TypeVar("F", bound=Callable[..., Any])
_DURATION = re.compile(r"^(\d{1,5})([hdw])$")


@dataclass(frozen=True)
class Conn:
    """The service (with the caller's credentials) and how to print."""

    api: ServiceApi
    as_json: bool

    def call(self, method: str, path: str, *, json: Any = None, params: dict[str, Any] | None = None) -> Any:
        """One request to the admin API; its JSON answer (None for 204); errors as one line."""
        return self.api.call(method, path, json=json, params=params)


def _read_secret_stdin() -> str:
    value = sys.stdin.readline().rstrip("\r\n")
    if not value:
        raise ServiceApiError("--password-stdin: nothing on standard input", exit_code=2)
    return value


def connection(command: F) -> F:
    """Adds ``--service``, ``--username``, ``--password-stdin``, ``--authfile``, ``--json`` and
    passes ``conn: Conn``."""

    @functools.wraps(command)
    def wrapper(
        service_url: str,
        username: str | None,
        password_stdin: bool,
        authfile: Path | None,
        as_json: bool,
        **kwargs: Any,
    ) -> Any:
        if password_stdin and not username:
            raise ServiceApiError("--password-stdin needs --username", exit_code=2)
        if username and not password_stdin:
            raise ServiceApiError("--username needs --password-stdin", exit_code=2)
        auth = (username, _read_secret_stdin()) if username else service_credentials(service_url, authfile)
        return command(conn=Conn(ServiceApi(service_url, auth), as_json), **kwargs)

    decorated: Any = wrapper
    for option in reversed(
        [
            service_option,
            click.option("-u", "--username", help="Log in as this principal (with --password-stdin)."),
            click.option("--password-stdin", is_flag=True, help="Read the password or API token from stdin."),
            authfile_option(),
            click.option("--json", "as_json", is_flag=True, help="Print the API's JSON."),
        ]
    ):
        decorated = option(decorated)
    return decorated  # type: ignore[no-any-return]


def _new_password(password_file: Path | None) -> tuple[str, bool]:
    """(password, generated?): the first line of ``password_file`` (``-``: stdin), or a new one."""
    if password_file is None:
        return secrets.token_urlsafe(18), True
    try:
        text = sys.stdin.readline() if str(password_file) == "-" else password_file.read_text()
    except OSError as err:
        raise ServiceApiError(f"{password_file}: cannot read ({err.strerror})", exit_code=2) from None
    password = text.splitlines()[0] if text else ""
    if not password:
        raise ServiceApiError(f"{password_file}: no password in it", exit_code=2)
    return password, False


def _password_file_option(whose: str) -> Callable[[F], F]:
    """``--password-file`` (passed as ``password_file``) for :func:`_new_password`."""
    return click.option(
        "--password-file",
        type=click.Path(dir_okay=False, allow_dash=True, path_type=Path),
        help=f"Read {whose} from this file's first line (- for stdin); else one is made.",
    )


def _report_password(
    as_json: bool,
    document: dict[str, Any],
    generated: str | None,
    *,
    shown: str,
    done: str,
    done_to_stderr: bool = False,
) -> None:
    """After a password was set: ``document`` as JSON (with the ``generated`` password, if any); else a
    generated password alone on stdout (``shown`` on stderr says whose), or ``done``."""
    if as_json:
        echo_json(document | ({"password": generated} if generated is not None else {}))
    elif generated is not None:
        click.echo(shown, err=True)
        click.echo(generated)
    else:
        click.echo(done, err=done_to_stderr)


def _expiry(value: str | None) -> str | None:
    """``--expires``: ``90d``, ``12h``, ``2w`` from now, or an ISO 8601 date/time; as ISO 8601 UTC."""
    if value is None:
        return None
    match = _DURATION.match(value)
    if match:
        amount, unit = int(match.group(1)), match.group(2)
        delta = {"h": timedelta(hours=amount), "d": timedelta(days=amount), "w": timedelta(weeks=amount)}
        return (datetime.now(UTC) + delta[unit]).isoformat()
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        raise ServiceApiError(
            f"--expires {value!r}: give a duration (90d, 12h, 2w) or an ISO date (2027-01-31)", exit_code=2
        ) from None
    return (when if when.tzinfo else when.replace(tzinfo=UTC)).isoformat()


def _q(name: str) -> str:
    return quote(name, safe="")


def _show_principals(conn: Conn, items: list[dict[str, Any]]) -> None:
    if conn.as_json:
        echo_json(items)
        return
    echo_table(
        ("NAME", "KIND", "ADMIN", "DISABLED", "EXPIRES", "TEAMS", "SCOPE"),
        [
            (
                p["name"],
                p["kind"],
                "yes" if p["admin"] else "-",
                "yes" if p["disabled"] else "-",
                p.get("expires_at") or "-",
                ",".join(p.get("teams") or []) or "-",
                ",".join(p.get("scope") or []) or "-",
            )
            for p in items
        ],
    )


def _done(conn: Conn, answer: Any, text: str) -> None:
    if conn.as_json:
        echo_json(answer if answer is not None else {"ok": True})
    else:
        click.echo(text)


# ---------------------------------------------------------------------------- groups


@cli.group()
def admin() -> None:
    """Manage users, robots, nodes, teams, namespaces, grants and tokens; read the audit log.

    \b
    Example:
      ecr-oci admin bootstrap --config ecr.toml --name admin
      ecr-oci login 127.0.0.1:8000 -u admin --password-stdin
      ecr-oci admin user create ana
      ecr-oci admin namespace create waggle --owner ana
      ecr-oci admin grant waggle/hello push --principal ana
    """


@admin.command("bootstrap")
@config_option
@click.option("--name", default="admin", show_default=True, help="The first admin's name.")
@click.option("--password-stdin", is_flag=True, help="Read its password from stdin (else one is made).")
@click.option("--json", "as_json", is_flag=True, help="Print name and password as JSON.")
def bootstrap(config_path: Path | None, name: str, password_stdin: bool, as_json: bool) -> None:
    """Create the first admin directly in the database (refused when an admin exists).

    Without --password-stdin a password is generated and printed on stdout, once.
    """
    from ecr_oci.server.db.engine import session_factory
    from ecr_oci.server.services.accounts import bootstrap_admin
    from ecr_oci.server.services.errors import ConflictError
    from ecr_oci.server.settings import Settings

    password, generated = (_read_secret_stdin(), False) if password_stdin else _new_password(None)
    try:
        with (
            migrated_engine(Settings.load(config_path)) as engine,
            session_factory(engine, write=True).begin() as session,
        ):
            bootstrap_admin(session, name, password)
    except ConflictError as err:
        raise ServiceApiError(str(err), code=err.code, exit_code=3) from None
    _report_password(
        as_json,
        {"name": name, "password": None},
        password if generated else None,
        shown=f"admin {name} created; its password (shown once):",
        done=f"admin {name} created",
        done_to_stderr=True,
    )


@admin.command("whoami")
@connection
def whoami(conn: Conn) -> None:
    """Who the service thinks you are: teams, namespaces you manage or may use."""
    me = conn.call("GET", "/api/v1/me")
    if conn.as_json:
        echo_json(me)
        return
    if me.get("name") is None:
        click.echo("anonymous (log in with ecr-oci login)")
        return
    click.echo(f"{me['name']} ({me['kind']}{', admin' if me['admin'] else ''})")
    click.echo(f"teams:      {', '.join(me['teams']) or '-'}")
    spaces = ", ".join(f"{ns} ({level})" for ns, level in me["namespaces"].items())
    click.echo(f"namespaces: {spaces or '-'}")


# ---------------------------------------------------------------------------- principals


@admin.group()
def user() -> None:
    """Users: people, with a password (and API tokens)."""


@user.command("create")
@click.argument("name")
@click.option("--admin", "is_admin", is_flag=True, help="An admin: every right everywhere.")
@_password_file_option("the new user's password")
@connection
def user_create(conn: Conn, name: str, is_admin: bool, password_file: Path | None) -> None:
    """Create user NAME (a generated password is printed on stdout, once)."""
    password, generated = _new_password(password_file)
    answer = conn.call(
        "POST", "/api/v1/admin/users", json={"name": name, "password": password, "admin": is_admin}
    )
    _report_password(
        conn.as_json,
        answer,
        password if generated else None,
        shown=f"user {name} created; its password (shown once):",
        done=f"user {name} created",
    )


@user.command("password")
@click.argument("name")
@_password_file_option("the new password")
@connection
def user_password(conn: Conn, name: str, password_file: Path | None) -> None:
    """Set a new password for NAME (admins; a user for itself)."""
    password, generated = _new_password(password_file)
    conn.call("PUT", f"/api/v1/admin/principals/{_q(name)}/password", json={"password": password})
    _report_password(
        conn.as_json,
        {"name": name},
        password if generated else None,
        shown=f"new password of {name} (shown once):",
        done=f"password of {name} changed",
    )


def _principal_commands(group: click.Group, kind: str) -> None:
    """``list``, ``show``, ``disable``, ``enable``, ``delete`` for ``kind``'s group."""

    @group.command("list")
    @connection
    def list_(conn: Conn) -> None:
        _show_principals(conn, conn.call("GET", "/api/v1/admin/principals", params={"kind": kind}))

    list_.help = f"List {kind}s."

    @group.command("show")
    @click.argument("name")
    @connection
    def show(conn: Conn, name: str) -> None:
        _show_principals(conn, [conn.call("GET", f"/api/v1/admin/principals/{_q(name)}")])

    show.help = f"Show one {kind}."

    for verb in ("disable", "enable"):

        @group.command(verb)
        @click.argument("name")
        @connection
        def toggle(conn: Conn, name: str, verb: str = verb) -> None:
            answer = conn.call("POST", f"/api/v1/admin/principals/{_q(name)}/{verb}")
            _done(conn, answer, f"{name} {verb}d")

        toggle.help = f"{verb.capitalize()} {kind} NAME (its password and tokens)."

    @group.command("delete")
    @click.argument("name")
    @connection
    def delete(conn: Conn, name: str) -> None:
        conn.call("DELETE", f"/api/v1/admin/principals/{_q(name)}")
        _done(conn, {"deleted": name}, f"{name} deleted")

    delete.help = f"Delete {kind} NAME with its tokens and grants."


_principal_commands(user, "user")


@admin.group()
def robot() -> None:
    """Robots: CI accounts with API tokens only, limited to some namespaces."""


@robot.command("create")
@click.argument("name")
@click.option("-n", "--namespace", "namespaces", multiple=True, required=True, help="Its scope (repeatable).")
@click.option("--expires", help="When it stops working: 90d, 12h, 2w, or an ISO date.")
@connection
def robot_create(conn: Conn, name: str, namespaces: tuple[str, ...], expires: str | None) -> None:
    """Create robot NAME scoped to --namespace (then: grant, and token create)."""
    body = {"name": name, "namespaces": list(namespaces), "expires_at": _expiry(expires)}
    answer = conn.call("POST", "/api/v1/admin/robots", json=body)
    _done(conn, answer, f"robot {name} created (scope: {', '.join(namespaces)})")


_principal_commands(robot, "robot")


@admin.group()
def node() -> None:
    """Nodes: Waggle node identities, with API tokens only."""


@node.command("create")
@click.argument("name")
@click.option(
    "--public-key",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="The node's public key (PEM, from `ecr-oci node keygen`): it then logs in with "
    "assertions signed by its private key (`ecr-oci node credential`) instead of an API token.",
)
@connection
def node_create(conn: Conn, name: str, public_key: Path | None) -> None:
    """Create node NAME (then: grant, and token create or --public-key)."""
    body: dict[str, str] = {"name": name}
    if public_key is not None:
        body["public_key"] = public_key.read_text()
    answer = conn.call("POST", "/api/v1/admin/nodes", json=body)
    _done(conn, answer, f"node {name} created")


_principal_commands(node, "node")


# ---------------------------------------------------------------------------- tokens


@admin.group()
def token() -> None:
    """API tokens (``ecr_<id>_<secret>``): what robots and nodes log in with."""


@token.command("create")
@click.argument("principal")
@click.option("--name", default="", help="What it is for (shown in lists).")
@click.option("--expires", help="When it stops working: 90d, 12h, 2w, or an ISO date.")
@connection
def token_create(conn: Conn, principal: str, name: str, expires: str | None) -> None:
    """Create a token for PRINCIPAL; it is printed on stdout once (log in with it)."""
    body = {"name": name, "expires_at": _expiry(expires)}
    answer = conn.call("POST", f"/api/v1/admin/principals/{_q(principal)}/tokens", json=body)
    if conn.as_json:
        echo_json(answer)
        return
    click.echo(f"token {answer['id']} for {principal} (shown once):", err=True)
    click.echo(answer["token"])


@token.command("list")
@click.argument("principal")
@connection
def token_list(conn: Conn, principal: str) -> None:
    """List PRINCIPAL's tokens (never their secrets)."""
    items = conn.call("GET", f"/api/v1/admin/principals/{_q(principal)}/tokens")
    if conn.as_json:
        echo_json(items)
        return
    echo_table(
        ("ID", "NAME", "EXPIRES", "CREATED"),
        [(str(t["id"]), t["name"] or "-", t["expires_at"] or "-", t["created_at"]) for t in items],
    )


@token.command("revoke")
@click.argument("principal")
@click.argument("token_id", type=int)
@connection
def token_revoke(conn: Conn, principal: str, token_id: int) -> None:
    """Revoke token TOKEN_ID of PRINCIPAL."""
    conn.call("DELETE", f"/api/v1/admin/principals/{_q(principal)}/tokens/{token_id}")
    _done(conn, {"revoked": token_id}, f"token {token_id} of {principal} revoked")


# ---------------------------------------------------------------------------- teams


@admin.group()
def team() -> None:
    """Teams: grants to a team hold for each member."""


@team.command("create")
@click.argument("name")
@connection
def team_create(conn: Conn, name: str) -> None:
    """Create team NAME."""
    _done(conn, conn.call("POST", "/api/v1/admin/teams", json={"name": name}), f"team {name} created")


@team.command("list")
@connection
def team_list(conn: Conn) -> None:
    """List teams and their members."""
    items = conn.call("GET", "/api/v1/admin/teams")
    if conn.as_json:
        echo_json(items)
        return
    echo_table(("TEAM", "MEMBERS"), [(t["name"], ", ".join(t["members"]) or "-") for t in items])


def _change_members(conn: Conn, method: str, name: str, principals: tuple[str, ...]) -> None:
    """PUT (add) or DELETE (remove) each of ``principals`` in team ``name``; print its members."""
    answer = None
    for principal in principals:
        answer = conn.call(method, f"/api/v1/admin/teams/{_q(name)}/members/{_q(principal)}")
    _done(conn, answer, f"team {name}: {', '.join((answer or {}).get('members', [])) or '-'}")


@team.command("add")
@click.argument("name")
@click.argument("principals", nargs=-1, required=True)
@connection
def team_add(conn: Conn, name: str, principals: tuple[str, ...]) -> None:
    """Add PRINCIPALS to team NAME."""
    _change_members(conn, "PUT", name, principals)


@team.command("remove")
@click.argument("name")
@click.argument("principals", nargs=-1, required=True)
@connection
def team_remove(conn: Conn, name: str, principals: tuple[str, ...]) -> None:
    """Remove PRINCIPALS from team NAME."""
    _change_members(conn, "DELETE", name, principals)


@team.command("delete")
@click.argument("name")
@connection
def team_delete(conn: Conn, name: str) -> None:
    """Delete team NAME and its grants."""
    conn.call("DELETE", f"/api/v1/admin/teams/{_q(name)}")
    _done(conn, {"deleted": name}, f"team {name} deleted")


# ---------------------------------------------------------------------------- namespaces, rules


@admin.group()
def namespace() -> None:
    """Namespaces: the first path component of a bundle, with an owner and a default visibility."""


@namespace.command("create")
@click.argument("name")
@click.option("--owner", help="A principal that gets admin on everything in it.")
@click.option("--visibility", type=click.Choice(["public", "private"]), default="private", show_default=True)
@connection
def namespace_create(conn: Conn, name: str, owner: str | None, visibility: str) -> None:
    """Create namespace NAME."""
    body = {"name": name, "owner": owner, "visibility": visibility}
    answer = conn.call("POST", "/api/v1/admin/namespaces", json=body)
    _done(conn, answer, f"namespace {name} created ({visibility}, owner {owner or '-'})")


@namespace.command("list")
@connection
def namespace_list(conn: Conn) -> None:
    """List namespaces (all for admins; those you manage otherwise)."""
    items = conn.call("GET", "/api/v1/admin/namespaces")
    if conn.as_json:
        echo_json(items)
        return
    echo_table(
        ("NAMESPACE", "OWNER", "VISIBILITY"), [(n["name"], n["owner"] or "-", n["visibility"]) for n in items]
    )


@admin.command("visibility")
@click.argument("target", metavar="NS[/NAME]")
@click.argument("visibility", type=click.Choice(["public", "private", "default"]))
@connection
def visibility(conn: Conn, target: str, visibility: str) -> None:
    """Set a namespace's default visibility, or one bundle's (default: follow the namespace)."""
    value = None if visibility == "default" else visibility
    conn.call("PUT", "/api/v1/admin/visibility", json={"target": target, "visibility": value})
    _done(conn, {"target": target, "visibility": value}, f"{target}: {visibility}")


def _subject(principal: str | None, team_name: str | None) -> None:
    if (principal is None) == (team_name is None):
        raise ServiceApiError("give exactly one of --principal or --team", exit_code=2)


@admin.command("grant")
@click.argument("target", metavar="NS[/NAME]")
@click.argument("action", type=click.Choice(["pull", "push", "admin"]))
@click.option("-p", "--principal", help="A user, robot or node.")
@click.option("-t", "--team", "team_name", help="A team.")
@connection
def grant(conn: Conn, target: str, action: str, principal: str | None, team_name: str | None) -> None:
    """Grant ACTION (pull < push < admin) on a namespace or one bundle; replaces an earlier grant."""
    _subject(principal, team_name)
    body = {"target": target, "action": action, "principal": principal, "team": team_name}
    answer = conn.call("POST", "/api/v1/admin/grants", json=body)
    who = f"principal {principal}" if principal else f"team {team_name}"
    _done(conn, answer, f"{who}: {action} on {target}")


@admin.command("revoke")
@click.argument("target", metavar="NS[/NAME]")
@click.option("-p", "--principal", help="A user, robot or node.")
@click.option("-t", "--team", "team_name", help="A team.")
@connection
def revoke(conn: Conn, target: str, principal: str | None, team_name: str | None) -> None:
    """Remove the grant on a namespace or bundle from a principal or team."""
    _subject(principal, team_name)
    params = {"target": target, "principal": principal, "team": team_name}
    conn.call("DELETE", "/api/v1/admin/grants", params=params)
    who = f"principal {principal}" if principal else f"team {team_name}"
    _done(conn, params, f"{who}: no grant on {target}")


@admin.command("grants")
@click.option("--namespace", "namespace_name", help="Only this namespace.")
@click.option("-p", "--principal", help="Only this principal's own grants.")
@connection
def grants(conn: Conn, namespace_name: str | None, principal: str | None) -> None:
    """List grants."""
    items = conn.call(
        "GET", "/api/v1/admin/grants", params={"namespace": namespace_name, "principal": principal}
    )
    if conn.as_json:
        echo_json(items)
        return
    echo_table(
        ("TARGET", "ACTION", "SUBJECT"),
        [
            (
                g["target"],
                g["action"],
                f"principal:{g['principal']}" if g["principal"] else f"team:{g['team']}",
            )
            for g in items
        ],
    )


# ---------------------------------------------------------------------------- audit


@admin.command("audit")
@click.option("--action", help="login, token, grant (grant.add, grant.remove) …")
@click.option("--actor", help="Only what this principal did.")
@click.option("--since", help="Only from this ISO time on (2026-11-01, 2026-11-01T12:00:00Z).")
@click.option("--limit", type=click.IntRange(1, 1000), default=50, show_default=True)
@click.option("--cursor", help="next_cursor of the previous page.")
@connection
def audit(
    conn: Conn,
    action: str | None,
    actor: str | None,
    since: str | None,
    limit: int,
    cursor: str | None,
) -> None:
    """The audit log, newest first (admins only)."""
    params = {"action": action, "actor": actor, "since": since, "limit": limit, "cursor": cursor}
    page = conn.call("GET", "/api/v1/admin/audit", params=params)
    if conn.as_json:
        echo_json(page)
        return
    echo_table(
        ("TIME", "ACTOR", "ACTION", "OUTCOME", "TARGET", "DETAIL"),
        [
            (
                r["time"],
                r["actor"] or "-",
                r["action"],
                r["outcome"],
                r["target"] or "-",
                " ".join(f"{k}={v}" for k, v in sorted(r["detail"].items())) or "-",
            )
            for r in page["items"]
        ],
    )
    if page.get("next_cursor"):
        click.echo(f"(more: --cursor {page['next_cursor']})", err=True)
