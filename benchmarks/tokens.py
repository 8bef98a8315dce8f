"""``python -m benchmarks.tokens [--requests 10000] [--threads 8]``: the token server's issue rate
and latency over real HTTP (issue 5). Targets: ≥ 2,000 tokens/s and p99 ≤ 10 ms.

    $ .venv/bin/python -m benchmarks.tokens --requests 4000 --no-write

A real ``ecr-oci serve`` (``LocalService``: uvicorn with uvloop and httptools, one process, access
control on, SQLite in a temp folder) on a loopback port; its database is seeded through the ORM
with realistic rule counts (1,000 namespaces, a third public; 200 teams of 5 members; 10,000 grants
to users, teams, robots and nodes; 500 users with a password; 100 robots and 50 nodes with one API
token each). Then, per scenario, ``hey`` (a compiled load generator, built by ``make go-tools``; a
Python client would be the bottleneck) sends ``GET /token?service=…&scope=…`` as podman does over
``--threads`` keep-alive connections, after a warm-up; every request is timed by ``hey``, and the
rate is requests / wall time:

- ``anonymous``: a public repository's ``pull`` scope, no credentials;
- ``robot token``: a robot's API token (basic auth) for ``pull,push`` on a repository it may push;
- ``user password``: a user's password for ``pull,push`` (argon2 is checked once, then remembered
  by ``Authenticator`` for :data:`~ecr_oci.server.services.credentials.VERIFIED_TTL_S`).

``hey`` shares the machine with the service, as a node's podman would not: on a small machine the
figures are a floor. The results go to docs/benchmarks.md between ``<!-- token-bench:start -->``
and ``<!-- token-bench:end -->``.
"""

from __future__ import annotations

import argparse
import csv
import io
import random
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlencode

import httpx
import jwt
from sqlalchemy import insert

from benchmarks.machine import describe_machine
from benchmarks.measure import percentile
from benchmarks.report import say, verdict, write_section
from ecr_oci.devenv.service import LocalService
from ecr_oci.server.db.accounts import (
    AccessGrant,
    NamespaceRow,
    Principal,
    RobotScope,
    Team,
    TeamMember,
)
from ecr_oci.server.db.engine import make_engine, session_factory
from ecr_oci.server.db.migrate import upgrade
from ecr_oci.server.services.access import bump_rules_version
from ecr_oci.server.services.credentials import hash_password, new_api_token

DOCS = Path(__file__).resolve().parents[1] / "docs" / "benchmarks.md"
#: The load generator (``make go-tools`` builds it).
HEY = Path(__file__).resolve().parents[1] / ".tools" / "bin" / "hey"
START = "<!-- token-bench:start -->"
END = "<!-- token-bench:end -->"
TARGET_RATE = 2000.0
TARGET_P99_MS = 10.0
SERVICE = "ecr-registry"
NAMESPACES, TEAMS, GRANTS = 1000, 200, 10_000
USERS, ROBOTS, NODES = 500, 100, 50
PASSWORD = "bench-password-1"  # noqa: S105 - a throwaway benchmark user


@dataclass
class Seeded:
    robot: tuple[str, str]
    robot_repo: str
    user: tuple[str, str]
    user_repo: str
    public_repo: str


def seed(database_url: str) -> Seeded:
    """The rule counts of the module docstring, bulk-inserted through the ORM."""
    rng = random.Random(5)  # noqa: S311 - reproducible test data, not a secret
    engine = make_engine(database_url)
    upgrade(engine)
    user_hash = hash_password(PASSWORD)
    with session_factory(engine, write=True).begin() as session:
        session.execute(
            insert(Principal),
            [{"kind": "user", "name": f"user{i}", "password_hash": user_hash, "is_admin": False,
              "disabled": False, "description": ""} for i in range(USERS)]
            + [{"kind": "robot", "name": f"robot{i}", "password_hash": None, "is_admin": False,
                "disabled": False, "description": ""} for i in range(ROBOTS)]
            + [{"kind": "node", "name": f"node{i}", "password_hash": None, "is_admin": False,
                "disabled": False, "description": ""} for i in range(NODES)],
        )  # fmt: skip
        ids = {p.name: p.id for p in session.query(Principal)}
        session.execute(
            insert(NamespaceRow),
            [{"name": f"ns{i}", "owner_id": ids[f"user{i % USERS}"],
              "visibility": "public" if i % 3 == 0 else "private", "description": ""}
             for i in range(NAMESPACES)],
        )  # fmt: skip
        ns_ids = {n.name: n.id for n in session.query(NamespaceRow)}
        session.execute(insert(Team), [{"name": f"team{i}"} for i in range(TEAMS)])
        team_ids = {t.name: t.id for t in session.query(Team)}
        members = {
            (team_ids[f"team{t}"], ids[f"user{rng.randrange(USERS)}"]) for t in range(TEAMS) for _ in range(5)
        }
        session.execute(insert(TeamMember), [{"team_id": t, "principal_id": p} for t, p in members])
        scopes = {
            (ids[f"robot{r}"], f"ns{(r * 7 + k) % NAMESPACES}") for r in range(ROBOTS) for k in range(3)
        }
        session.execute(insert(RobotScope), [{"principal_id": p, "namespace": n} for p, n in scopes])
        grants: dict[tuple[int, str, int | None, int | None], str] = {}
        robot_scopes = sorted(scopes)
        while len(grants) < GRANTS:
            kind = rng.random()
            action = rng.choice(("pull", "pull", "push", "admin"))
            if kind < 0.1:  # a robot, inside its scope
                principal, namespace = rng.choice(robot_scopes)
                team = None
            else:
                namespace = f"ns{rng.randrange(NAMESPACES)}"
                if kind < 0.4:
                    principal, team = None, team_ids[f"team{rng.randrange(TEAMS)}"]
                elif kind < 0.5:
                    principal, team = ids[f"node{rng.randrange(NODES)}"], None
                else:
                    principal, team = ids[f"user{rng.randrange(USERS)}"], None
            repository = f"{namespace}/app{rng.randrange(20)}" if rng.random() < 0.5 else ""
            grants[(ns_ids[namespace], repository, principal, team)] = action
        session.execute(
            insert(AccessGrant),
            [{"namespace_id": ns, "repository": repo, "principal_id": p, "team_id": t, "action": a}
             for (ns, repo, p, t), a in grants.items()],
        )  # fmt: skip
        robot_id, robot_ns = robot_scopes[0]
        session.add(
            AccessGrant(namespace_id=ns_ids[robot_ns], repository="", principal_id=robot_id, action="push")
        )
        principals = {p.id: p for p in session.query(Principal).where(Principal.kind != "user")}
        token = ""
        for row in principals.values():
            _, plaintext = new_api_token(session, row, name="bench")
            if row.id == robot_id:
                token = plaintext
        bump_rules_version(session)
        robot_name = principals[robot_id].name
    engine.dispose()
    return Seeded(
        robot=(robot_name, token),
        robot_repo=f"{robot_ns}/app1",
        user=("user1", PASSWORD),
        user_repo="ns1/app1",  # user1 owns ns1 (private): admin there
        public_repo="ns3/app1",
    )


@dataclass
class Figure:
    scenario: str
    requests: int
    seconds: float
    latencies_ms: list[float]

    @property
    def rate(self) -> float:
        return self.requests / self.seconds

    @property
    def p99(self) -> float:
        return percentile(self.latencies_ms, 0.99)

    @property
    def passed(self) -> bool:
        return self.rate >= TARGET_RATE and self.p99 <= TARGET_P99_MS


def run_scenario(
    url: str, scenario: str, scope: str, auth: tuple[str, str] | None, *, requests: int, threads: int
) -> Figure:
    """``hey`` sends ``requests`` GETs from ``threads`` concurrent keep-alive connections (after a
    warm-up of 200: connections, the argon2 check once, the caches); its CSV gives each request's
    time, status and start offset."""
    query = urlencode({"service": SERVICE, "scope": scope, **({"account": auth[0]} if auth else {})})
    command = [str(HEY), "-c", str(threads)] + (["-a", f"{auth[0]}:{auth[1]}"] if auth else [])
    subprocess.run([*command, "-n", "200", f"{url}/token?{query}"], check=True, capture_output=True)
    done = subprocess.run(
        [*command, "-n", str(requests), "-o", "csv", f"{url}/token?{query}"],
        check=True,
        capture_output=True,
        text=True,
    )
    rows = list(csv.DictReader(io.StringIO(done.stdout)))
    failed = [r for r in rows if r["status-code"] != "200"]
    if failed or len(rows) != requests:
        raise SystemExit(f"{scenario}: {len(failed)} failed of {len(rows)} answered, {requests} sent")
    latencies = [float(r["response-time"]) * 1000 for r in rows]
    seconds = max(float(r["offset"]) + float(r["response-time"]) for r in rows)
    return Figure(scenario, requests, seconds, latencies)


def check_access(url: str, scope: str, auth: tuple[str, str] | None, expected: list[str]) -> None:
    """The scenario asks what it means to: the token carries the expected actions (read without
    checking the signature: the service made it a moment ago over loopback)."""
    response = httpx.get(
        f"{url}/token", params={"service": SERVICE, "scope": scope}, auth=auth, trust_env=False
    )
    response.raise_for_status()
    access = jwt.decode(response.json()["token"], options={"verify_signature": False})["access"]
    actions = access[0]["actions"] if access else []
    if actions != expected:
        raise SystemExit(f"{scope}: granted {actions}, expected {expected}")


def markdown(figures: Sequence[Figure], machine: dict[str, str], threads: int) -> str:
    lines = [
        "## Token server: issue rate and latency",
        "",
        f"`python -m benchmarks.tokens` — {NAMESPACES:,} namespaces, {GRANTS:,} grants, {TEAMS} teams, "
        f"{USERS} users, {ROBOTS} robots, {NODES} nodes (SQLite); `GET /token` over loopback HTTP to one "
        f"`ecr-oci serve` process (uvicorn, uvloop, httptools) from `hey` with {threads} keep-alive "
        "connections on the same machine. "
        f"Targets: ≥ {TARGET_RATE:,.0f} tokens/s and p99 ≤ {TARGET_P99_MS:.0f} ms.",
        "",
        "| scenario | requests | tokens/s | p50 ms | p99 ms | max ms | target |",
        "|---|---:|---:|---:|---:|---:|---|",
    ]
    for f in figures:
        lines.append(
            f"| {f.scenario} | {f.requests:,} | {f.rate:,.0f} | {statistics.median(f.latencies_ms):.2f} | "
            f"{f.p99:.2f} | {max(f.latencies_ms):.2f} | {verdict(f.passed)} |"
        )
    lines += ["", "Machine: " + "; ".join(f"{k} {v}" for k, v in machine.items())]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.tokens", description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=10000, help="Timed requests per scenario.")
    parser.add_argument("--threads", type=int, default=8, help="Concurrent client connections.")
    parser.add_argument("--no-write", action="store_true", help="Do not update docs/benchmarks.md.")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="ecr-token-bench-") as tmp:
        root = Path(tmp)
        database_url = f"sqlite:///{root / 'ecr.db'}"
        say("seeding the rules …")
        seeded = seed(database_url)
        service = LocalService(
            root / "service",
            registry="127.0.0.1:9",
            database_url=database_url,
            settings={"reconcile_interval": 0, "reconcile_on_start": False, "token_service": SERVICE},
        )
        scenarios = [
            ("anonymous, public pull", f"repository:{seeded.public_repo}:pull", None, ["pull"]),
            ("robot API token, push", f"repository:{seeded.robot_repo}:pull,push", seeded.robot,
             ["pull", "push"]),
            ("user password, push", f"repository:{seeded.user_repo}:pull,push", seeded.user,
             ["pull", "push"]),
        ]  # fmt: skip
        figures = []
        with service:
            for name, scope, auth, expected in scenarios:
                check_access(service.url, scope, auth, expected)
                figure = run_scenario(
                    service.url, name, scope, auth, requests=args.requests, threads=args.threads
                )
                p50 = statistics.median(figure.latencies_ms)
                say(
                    f"{name:28} {figure.rate:8,.0f} tokens/s  p50 {p50:6.2f} ms"
                    f"  p99 {figure.p99:6.2f} ms  {verdict(figure.passed)}"
                )
                figures.append(figure)
    body = markdown(figures, describe_machine({}), args.threads)
    print(body)
    if not args.no_write:
        write_section(DOCS, body, start_marker=START, end_marker=END)
    return 0


if __name__ == "__main__":
    sys.exit(main())
