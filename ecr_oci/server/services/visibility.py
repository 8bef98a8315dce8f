"""What a principal may see: the ONE value every query applies (``services.access`` computes it).

    >>> from sqlalchemy import column
    >>> v = Visibility.everything()
    >>> v.allows_repository("waggle/hello-sensor")
    True
    >>> str(Visibility.only({"waggle/a"}).repository_filter(column("name")))
    'name IN (__[POSTCOMPILE_name_1])'

Why one value instead of checks spread over routes: issue 5 adds users and access rules; every
search, detail and referrers query then filters by the same :class:`Visibility`, so nothing can
leak through a query that forgot a check. ``RuleSet.visibility`` (services/access.py) derives it
from the caller's identity; routes get it from ``routes.deps.get_visibility``. Services take it
as an argument (``visible=``) and apply :meth:`repository_filter` to the repository-name column of
their query.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import ColumnElement, and_, false, or_, true

__all__ = ["Visibility"]


@dataclass(frozen=True, slots=True)
class Visibility:
    """Everything, or a set of repository names and namespaces (``ns`` means ``ns/*``) minus the
    ``hidden`` repositories (private bundles in a namespace whose default is public)."""

    all: bool = False
    repositories: frozenset[str] = frozenset()
    namespaces: frozenset[str] = frozenset()
    hidden: frozenset[str] = frozenset()

    @classmethod
    def everything(cls) -> Visibility:
        return cls(all=True)

    @classmethod
    def only(
        cls, repositories: Iterable[str] = (), namespaces: Iterable[str] = (), *, hidden: Iterable[str] = ()
    ) -> Visibility:
        return cls(
            repositories=frozenset(repositories), namespaces=frozenset(namespaces), hidden=frozenset(hidden)
        )

    def allows_repository(self, name: str) -> bool:
        """Whether the repository ``namespace/name`` may be shown at all."""
        if self.all:
            return True
        if name in self.repositories:
            return True
        return name.split("/", 1)[0] in self.namespaces and name not in self.hidden

    def repository_filter(self, name_column: ColumnElement[str]) -> ColumnElement[bool]:
        """A WHERE clause over a column holding ``namespace/name`` (``repository.name``,
        ``version.name``): true for the rows this principal may see."""
        if self.all:
            return true()
        prefixes: list[ColumnElement[bool]] = [
            name_column.startswith(namespace + "/", autoescape=True) for namespace in sorted(self.namespaces)
        ]
        in_namespaces = or_(*prefixes) if prefixes else false()
        if self.hidden:
            in_namespaces = and_(in_namespaces, name_column.not_in(sorted(self.hidden)))
        if self.repositories:
            return or_(name_column.in_(sorted(self.repositories)), in_namespaces)
        return in_namespaces
