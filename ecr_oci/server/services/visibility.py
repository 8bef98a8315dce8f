"""What a principal may see: the ONE place every query asks (issue 5 fills it in).

    >>> from sqlalchemy import column
    >>> v = Visibility.everything()
    >>> v.allows_repository("waggle/hello-sensor")
    True
    >>> str(Visibility.only({"waggle/a"}).repository_filter(column("name")))
    'name IN (__[POSTCOMPILE_name_1])'

Why one value instead of checks spread over routes: issue 5 adds users and access rules; every
search, detail and referrers query then filters by the same :class:`Visibility`, so nothing can
leak through a query that forgot a check. Today every request gets :meth:`Visibility.everything`.
Services take it as an argument (``visible=``) and apply :meth:`repository_filter` to the
repository-name column of their query; routes get it from ``routes.deps.get_visibility``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import ColumnElement, false, true

__all__ = ["Visibility"]


@dataclass(frozen=True, slots=True)
class Visibility:
    """Everything, or a set of repository names and namespaces (``ns`` means ``ns/*``)."""

    all: bool = False
    repositories: frozenset[str] = frozenset()
    namespaces: frozenset[str] = frozenset()

    @classmethod
    def everything(cls) -> Visibility:
        return cls(all=True)

    @classmethod
    def only(cls, repositories: Iterable[str] = (), namespaces: Iterable[str] = ()) -> Visibility:
        return cls(repositories=frozenset(repositories), namespaces=frozenset(namespaces))

    def allows_repository(self, name: str) -> bool:
        """Whether the repository ``namespace/name`` may be shown at all."""
        if self.all:
            return True
        return name in self.repositories or name.split("/", 1)[0] in self.namespaces

    def repository_filter(self, name_column: ColumnElement[str]) -> ColumnElement[bool]:
        """A WHERE clause over a column holding ``namespace/name`` (``repository.name``,
        ``version.name``): true for the rows this principal may see."""
        if self.all:
            return true()
        clauses: list[ColumnElement[bool]] = []
        if self.repositories:
            clauses.append(name_column.in_(sorted(self.repositories)))
        for namespace in sorted(self.namespaces):
            clauses.append(name_column.startswith(namespace + "/", autoescape=True))
        if not clauses:
            return false()
        result = clauses[0]
        for clause in clauses[1:]:
            result = result | clause
        return result
