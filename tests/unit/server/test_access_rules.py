"""The access rules (services/access.py) as plain values: levels, registry actions, visibility.

The same table drives tests/integration/access/test_access_matrix.py against the real registry and
service; here each rule is pinned where it is decided, including the SQL filter of Visibility.
"""

from __future__ import annotations

import pytest
from sqlalchemy import column, create_engine, select, table

from ecr_oci.server.services.access import ANONYMOUS, Identity, NamespaceRule, RuleSet

RULES = RuleSet(
    namespaces={
        "open": NamespaceRule(owner="olive", public=True),
        "lab": NamespaceRule(owner="olive", public=False),
        "ci": NamespaceRule(owner=None, public=False),
    },
    overrides={"open/secret": False, "lab/showcase": True},
    grants={
        ("principal", "pat"): {"lab/app": "pull", "ci": "push"},
        ("team", "vision"): {"lab": "push"},
        ("principal", "bot"): {"lab": "push", "ci": "push"},
        ("principal", "node-1"): {"lab/app": "pull"},
    },
)
OWNER = Identity("olive")
PAT = Identity("pat")
MEMBER = Identity("mia", teams=frozenset({"vision"}))
BOT = Identity("bot", kind="robot", scope=frozenset({"ci"}))
NODE = Identity("node-1", kind="node")
OTHER = Identity("zed")
ADMIN = Identity("root", is_admin=True)


@pytest.mark.parametrize(
    ("who", "repository", "level"),
    [
        (ANONYMOUS, "open/app", "pull"),
        (ANONYMOUS, "open/secret", None),
        (ANONYMOUS, "lab/app", None),
        (ANONYMOUS, "lab/showcase", "pull"),
        (ANONYMOUS, "nowhere/app", None),
        (OWNER, "lab/app", "admin"),
        (OWNER, "open/secret", "admin"),
        (PAT, "lab/app", "pull"),
        (PAT, "lab/other", None),
        (PAT, "ci/x", "push"),
        (MEMBER, "lab/anything", "push"),
        (MEMBER, "open/secret", None),
        (BOT, "ci/x", "push"),
        (BOT, "lab/app", None),  # granted, but outside its scope
        (BOT, "open/app", "pull"),  # public: anyone
        (NODE, "lab/app", "pull"),
        (NODE, "lab/other", None),
        (OTHER, "lab/app", None),
        (ADMIN, "nowhere/app", "admin"),
        (PAT, "noslash", None),
    ],
)
def test_level(who: Identity, repository: str, level: str | None) -> None:
    assert RULES.level(who, repository) == level


def test_registry_actions_are_the_granted_subset() -> None:
    assert RULES.registry_actions(ANONYMOUS, "open/app", ["pull", "push"]) == {"pull"}
    assert RULES.registry_actions(PAT, "ci/x", ["pull", "push", "delete"]) == {"pull", "push"}
    assert RULES.registry_actions(OWNER, "lab/app", ["delete"]) == {"delete"}
    assert RULES.registry_actions(OWNER, "lab/app", ["*"]) == {"pull", "push", "delete", "*"}
    assert RULES.registry_actions(PAT, "ci/x", ["*"]) == {"pull", "push"}
    assert RULES.registry_actions(OTHER, "lab/app", ["pull"]) == set()


REPOSITORIES = ["open/app", "open/secret", "lab/app", "lab/other", "lab/showcase", "ci/x", "nowhere/app"]


@pytest.mark.parametrize("who", [ANONYMOUS, OWNER, PAT, MEMBER, BOT, NODE, OTHER, ADMIN])
def test_visibility_is_exactly_what_may_be_pulled(who: Identity) -> None:
    """Python check and SQL filter agree with ``level`` for every repository."""
    visible = RULES.visibility(who)
    expected = {r for r in REPOSITORIES if RULES.level(who, r) is not None}
    assert {r for r in REPOSITORIES if visible.allows_repository(r)} == expected
    names = table("repository", column("name"))
    engine = create_engine("sqlite://")
    with engine.begin() as connection:
        connection.exec_driver_sql("CREATE TABLE repository (name TEXT)")
        connection.exec_driver_sql(
            "INSERT INTO repository VALUES " + ",".join(f"('{r}')" for r in REPOSITORIES)
        )
        found = set(connection.scalars(select(names.c.name).where(visible.repository_filter(names.c.name))))
    assert found == expected
