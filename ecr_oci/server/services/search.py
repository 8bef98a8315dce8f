"""Search and detail queries over the index: what ``/api/v1`` and the OCI referrers route serve.

    >>> from ecr_oci.server.db.engine import make_engine, session_factory
    >>> from ecr_oci.server.db.migrate import upgrade
    >>> from ecr_oci.server.services.visibility import Visibility
    >>> engine = make_engine("sqlite://"); upgrade(engine)
    >>> with session_factory(engine)() as session:
    ...     page = search(session, SearchQuery(text="sensor"), visible=Visibility.everything())
    >>> page.items, page.next_cursor
    ([], None)

Every query takes ``visible`` (:class:`~ecr_oci.server.services.visibility.Visibility`) and filters
by it; a repository that may not be seen raises :class:`NotFoundError` exactly like a missing one
(issue 5). Nothing here speaks HTTP: bad input raises :class:`InvalidInputError` with a stable
code (``BAD_CURSOR``, ``BAD_PARAMETER``, ``DIGEST_INVALID``).

Text search is the same on both databases: the user's text is cut into words (``\\w+``, at most
:data:`MAX_WORDS`), and a version matches when it has every word (in name, description, keywords
or authors). Punctuation is never query syntax, so no input can be an FTS syntax error: on SQLite
each word becomes a quoted FTS5 string (``"word"``), on PostgreSQL the words go through
``websearch_to_tsquery``, which by design accepts any text.

Pages are keyset pages (no OFFSET: page 500 costs what page 1 costs): the cursor is the last row's
sort key and id, base64url JSON, plus a fingerprint of the query so that a cursor cannot be reused
with other filters.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, get_args

from sqlalchemy import (
    ColumnElement,
    Double,
    Select,
    and_,
    bindparam,
    column,
    exists,
    func,
    literal_column,
    or_,
    select,
    table,
    tuple_,
    union,
)
from sqlalchemy.orm import Session

from ecr_oci.digest import Digest
from ecr_oci.errors import InvalidReferenceError
from ecr_oci.mediatypes import MediaType
from ecr_oci.server.db.models import (
    FTS_TABLE,
    Layer,
    ManifestRow,
    Platform,
    Repository,
    Signature,
    Version,
    VersionKeyword,
    VersionRequirement,
)
from ecr_oci.server.schemas import (
    ActivityEvent,
    ActivitySummary,
    Author,
    BundleDetail,
    BundleProfiles,
    DeviceHistory,
    LayerInfo,
    OciDescriptor,
    OciIndex,
    PlatformInfo,
    ReferrerInfo,
    ReferrerList,
    SearchPage,
    SignatureInfo,
    SortOrder,
    VersionBrief,
    VersionDetail,
    VersionProfiles,
    VersionPulls,
    VersionSummary,
)
from ecr_oci.server.services.activity import pull_counts, recent_events
from ecr_oci.server.services.cursor import BAD_CURSOR, decode_cursor, encode_cursor
from ecr_oci.server.services.errors import InvalidInputError, NotFoundError
from ecr_oci.server.services.index import requirement_name
from ecr_oci.server.services.profiles import (
    MetricSort,
    PerformanceFilters,
    device_profiles,
    metric_sort_rows,
    performance_clause,
)
from ecr_oci.server.services.visibility import Visibility

__all__ = [
    "DEFAULT_LIMIT",
    "MAX_LIMIT",
    "MAX_QUERY_LENGTH",
    "MAX_WORDS",
    "RANK_CANDIDATES",
    "SearchFilters",
    "SearchQuery",
    "activity",
    "bundle_detail",
    "bundle_profiles",
    "oci_referrers_index",
    "parse_digest",
    "query_words",
    "referrers",
    "search",
    "version_detail",
]

DEFAULT_LIMIT = 20
MAX_LIMIT = 100
#: Characters of ``q`` accepted (the route refuses longer text with a 4xx before it gets here).
MAX_QUERY_LENGTH = 1000
#: Words of ``q`` used; more would only make the query slower, not better.
MAX_WORDS = 16
#: Characters kept of one word (FTS tokens longer than this match nothing useful).
MAX_WORD_LENGTH = 64
#: Events listed in an activity summary.
RECENT_EVENTS = 50
#: FTS5 bm25 column weights, in the order of the table's columns (name, description, keywords,
#: authors): a name hit ranks above a keyword hit above a description hit (PostgreSQL: setweight A/B/C).
_BM25_WEIGHTS = (10.0, 1.0, 5.0, 1.0)
#: Relevance ranks a bounded candidate set, not every match (docs/service.md, "Relevance ranks a
#: bounded candidate set"): per tier, the this-many most recently indexed matches.
RANK_CANDIDATES = 500
_CURSOR_VERSION = 1
#: A SELECT of any columns.
_AnySelect = Select[*tuple[Any, ...]]
_WORD_RE = re.compile(r"\w+")
_REQUIREMENT_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
_FINGERPRINT_RE = re.compile(r"(?:sha256:)?([0-9a-fA-F]{64})")
#: The SQLite FTS5 table (rowid = ``version.id``) and its name as a MATCH operand.
_FTS = table(FTS_TABLE, column("rowid"))
_FTS_NAME: ColumnElement[Any] = literal_column(FTS_TABLE)


@dataclass(frozen=True)
class SearchFilters:
    """Exact filters, all optional, ANDed. Each is checked by :func:`search` (bad → ``BAD_PARAMETER``).

    ``platform`` is ``os/arch[/variant]``; ``requirement`` a requirement name (``pytorch`` matches
    ``pytorch>=2.0``) or a spec prefix (``pytorch>=2`` matches ``pytorch>=2.1``); ``signed_by`` the
    hex SHA-256 of a signer's PKIX DER public key (``sha256:`` prefix allowed).

    Performance (issue 6; :mod:`~ecr_oci.server.services.profiles`): ``device`` a device name,
    ``max_rss`` bytes (``2GiB`` too), ``max_metric`` ``inference_ms:p95<200`` each; a version
    matches when one (platform, device) aggregate of its profiles passes all of them.
    """

    namespace: str | None = None
    keyword: str | None = None
    license: str | None = None
    platform: str | None = None
    requirement: str | None = None
    signed_by: str | None = None
    device: str | None = None
    max_rss: str | int | None = None
    max_metric: tuple[str, ...] = ()

    @property
    def performance(self) -> PerformanceFilters:
        """The performance filters, parsed (raises ``BAD_PARAMETER``)."""
        return PerformanceFilters.parse(device=self.device, max_rss=self.max_rss, max_metric=self.max_metric)


@dataclass(frozen=True)
class SearchQuery:
    """``sort``: a :data:`~ecr_oci.server.schemas.SortOrder`, or ``metric:<name>:<p50|p95|p99>``
    (ascending: the version's best device first; versions without the metric are left out)."""

    text: str | None = None
    filters: SearchFilters = field(default_factory=SearchFilters)
    sort: SortOrder | str = "relevance"
    cursor: str | None = None
    limit: int = DEFAULT_LIMIT


def query_words(text: str | None) -> list[str]:
    """The words of ``text`` that search uses (lower case, at most :data:`MAX_WORDS`).

    >>> query_words('NEAR("x" * -y) hello-sensor')
    ['near', 'x', 'y', 'hello', 'sensor']
    """
    if not text:
        return []
    words = []
    for match in _WORD_RE.finditer(text[:MAX_QUERY_LENGTH].lower()):
        words.append(match.group()[:MAX_WORD_LENGTH])
        if len(words) == MAX_WORDS:
            break
    return words


def parse_digest(text: str) -> Digest:
    """``text`` as a digest, or :class:`InvalidInputError` ``DIGEST_INVALID``."""
    try:
        return Digest.parse(text)
    except InvalidReferenceError as err:
        raise InvalidInputError(str(err), code="DIGEST_INVALID") from None


# --- search ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Cursor:
    sort: str
    fingerprint: str
    key: Any
    id: int

    def encode(self) -> str:
        return encode_cursor(
            {"v": _CURSOR_VERSION, "s": self.sort, "f": self.fingerprint, "k": self.key, "i": self.id}
        )

    @classmethod
    def decode(cls, text: str, *, sort: str, fingerprint: str) -> _Cursor:
        """Raise ``BAD_CURSOR`` for anything that is not a cursor this query handed out."""
        body = decode_cursor(text)
        if (
            not isinstance(body, dict)
            or body.get("v") != _CURSOR_VERSION
            or not isinstance(body.get("i"), int)
            or isinstance(body.get("i"), bool)
            or not _valid_key(body.get("s"), body.get("k"))
        ):
            raise InvalidInputError(BAD_CURSOR, code="BAD_CURSOR")
        if body["s"] != sort or body.get("f") != fingerprint:
            raise InvalidInputError(
                "cursor belongs to another query (text, filters or sort changed): start again "
                "without a cursor",
                code="BAD_CURSOR",
            )
        return cls(sort, fingerprint, body["k"], body["i"])


def _valid_key(sort: object, key: object) -> bool:
    if sort == "rank":
        return isinstance(key, int | float) and not isinstance(key, bool) and key == key  # not NaN
    if sort == "name":
        return isinstance(key, str)
    if sort == "created":
        return key is None or isinstance(key, str)
    if sort == "metric":
        return isinstance(key, int | float) and not isinstance(key, bool) and key == key  # not NaN
    return False


def _fingerprint(words: Sequence[str], filters: SearchFilters, sort: MetricSort | None = None) -> str:
    """A short hash of what selects the rows; a cursor is valid only for the same selection."""
    selection: list[Any] = [list(words), asdict(filters)] + ([sort.text] if sort is not None else [])
    raw = json.dumps(selection, sort_keys=True).encode()
    return hashlib.sha256(raw).hexdigest()[:16]


def search(session: Session, query: SearchQuery, *, visible: Visibility) -> SearchPage:
    """One page of versions matching ``query``, in its sort order, that ``visible`` allows.

    Raises :class:`InvalidInputError` (``BAD_CURSOR``, ``BAD_PARAMETER``) for bad input.
    """
    by_metric = MetricSort.parse(query.sort)
    if by_metric is None and query.sort not in get_args(SortOrder):
        raise InvalidInputError(
            f"sort must be one of {', '.join(get_args(SortOrder))} or metric:METRIC:STAT",
            code="BAD_PARAMETER",
        )
    if not 1 <= query.limit <= MAX_LIMIT:
        raise InvalidInputError(f"limit must be 1..{MAX_LIMIT}", code="BAD_PARAMETER")
    text = (query.text or "").strip()
    if len(text) > MAX_QUERY_LENGTH:
        raise InvalidInputError(f"q is longer than {MAX_QUERY_LENGTH} characters", code="BAD_PARAMETER")
    words = query_words(text)
    filters = _normalized(query.filters)
    performance = filters.performance
    by_rank = bool(words) and query.sort == "relevance"
    sort_key = "rank" if by_rank else ("created" if query.sort == "created" else "name")
    if by_metric is not None:
        sort_key = "metric"
    fingerprint = _fingerprint(words, filters, by_metric)
    cursor = _Cursor.decode(query.cursor, sort=sort_key, fingerprint=fingerprint) if query.cursor else None
    if text and not words:
        return SearchPage(items=[], next_cursor=None)  # only punctuation: nothing can match it

    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        _plan_for_these_values(session)
    clauses = [visible.repository_filter(Version.name.expression), *_filter_clauses(filters)]
    if performance and by_metric is None:  # a metric sort applies them to the summaries it reads
        clauses.append(performance_clause(performance))
    stmt: _AnySelect
    if by_metric is not None:
        # SQLite: the words select the grouped rows from outside; inside, the planner probed the
        # match list once per metric row (0.6 s at 10k versions, 6k summaries)
        inside = bool(words) and dialect != "sqlite"
        selecting = [*clauses, _text_filter(words, dialect)] if inside else clauses
        keyed = metric_sort_rows(by_metric, performance, selecting)
        stmt = select(keyed.c.id, keyed.c.key)
        if words and not inside:
            stmt = stmt.where(_text_filter(words, dialect, keyed.c.id))
        if cursor is not None:
            stmt = stmt.where(tuple_(keyed.c.key, keyed.c.id) > tuple_(float(cursor.key), cursor.id))
        stmt = stmt.order_by(keyed.c.key, keyed.c.id)
    elif by_rank:
        stmt = _ranked(words, dialect, clauses, after=(float(cursor.key), cursor.id) if cursor else None)
    else:
        sort_column = Version.created if sort_key == "created" else Version.name
        stmt = select(Version.id, sort_column).where(*clauses)
        if words:  # the text only selects (no rank computed); the rows carry their sort key
            stmt = stmt.where(_text_filter(words, dialect))
        if sort_key == "name":
            if cursor is not None:
                stmt = stmt.where(tuple_(Version.name, Version.id) > tuple_(str(cursor.key), cursor.id))
            stmt = stmt.order_by(Version.name, Version.id)
        else:
            if cursor is not None:
                stmt = stmt.where(_after_created(cursor.key, cursor.id, nulls_last=dialect != "postgresql"))
            stmt = stmt.order_by(Version.created.desc(), Version.id.desc())

    # Two steps: the sort runs over narrow (id, sort key) rows only — sorting every match's whole
    # row (description, config JSON) cost more than ranking it — then one query loads the page.
    rows = session.execute(stmt.limit(query.limit + 1)).all()
    more = len(rows) > query.limit
    rows = rows[: query.limit]
    ids = [int(row[0]) for row in rows]
    loaded = {v.id: v for v in session.scalars(select(Version).where(Version.id.in_(ids)))}
    platforms = _platforms_of(session, ids)
    items = [
        _summary(loaded[row[0]], platforms.get(row[0], []), score=-float(row[1]) if by_rank else None)
        for row in rows
        if row[0] in loaded  # deleted between the two queries: skipped
    ]
    next_cursor = None
    if more and rows:
        key = float(rows[-1][1]) if by_rank or by_metric is not None else rows[-1][1]
        next_cursor = _Cursor(sort_key, fingerprint, key, ids[-1]).encode()
    return SearchPage(items=items, next_cursor=next_cursor)


def _plan_for_these_values(session: Session) -> None:
    """Make PostgreSQL plan this transaction's queries for their values, never generically.

    Why: psycopg prepares a statement run 5 times, and PostgreSQL then may switch to a generic plan
    that ignores the values; but a search filter's selectivity varies with them (a keyword on 2.5 %
    of the versions, a signer on 1.5 %, a namespace on 2 %), and the generic plan picked after
    five cheap runs took 22 ms where the plan for the values took 3 ms (benchmarks.service,
    "keyword + namespace" at 100k versions). Planning anew costs ~0.2 ms.
    """
    session.execute(select(func.set_config("plan_cache_mode", "force_custom_plan", True)))  # SET LOCAL


def _fts_expression(words: Sequence[str]) -> str:
    """Each word as an FTS5 string, ANDed: ``"..."`` with ``"`` doubled (sqlite.org/fts5.html §3.1);
    the words are ``\\w+`` so that cannot occur, but the quoting does not rely on it."""
    return " AND ".join('"' + w.replace('"', '""') + '"' for w in words)


def _tsquery(words: Sequence[str]) -> ColumnElement[Any]:
    """The words as a tsquery. Rendered as a literal (escaped by SQLAlchemy; the words are ``\\w+``)
    so that PostgreSQL plans each query for its words: how many rows a word matches decides
    between walking the newest versions and the GIN index, and a generic plan for a prepared
    statement (psycopg prepares a statement run 5 times) cannot know it."""
    return func.websearch_to_tsquery(
        literal_column("'simple'::regconfig"), bindparam("ts_query", " ".join(words), literal_execute=True)
    )


def _text_filter(
    words: Sequence[str], dialect: str, version_id: ColumnElement[int] | None = None
) -> ColumnElement[bool]:
    """Versions holding every word, as a plain condition: no rank is computed. ``version_id``: the
    column holding the version id (SQLite only; default ``version.id``)."""
    if dialect == "sqlite":
        matching = select(_FTS.c.rowid).where(
            _FTS_NAME.op("MATCH")(bindparam("fts_query", _fts_expression(words)))
        )
        column = version_id if version_id is not None else Version.id
        return column.in_(matching.scalar_subquery())
    if dialect == "postgresql":
        return literal_column("version.search_vector").op("@@")(_tsquery(words))
    raise InvalidInputError(f"text search is not supported on {dialect}", code="BAD_PARAMETER")


def _ranked(
    words: Sequence[str],
    dialect: str,
    clauses: Sequence[ColumnElement[bool]],
    *,
    after: tuple[float, int] | None,
) -> _AnySelect:
    """``SELECT id, rank ... ORDER BY rank, id``: the matching versions that pass ``clauses``, best
    first (lower rank = better), after the cursor's ``(rank, id)``; the caller adds the LIMIT.

    Only a bounded candidate set is ranked (docs/service.md, "Relevance ranks a bounded candidate
    set"): ranking costs per row, and a common word matches a fifth of the catalogue. The
    candidates are the :data:`RANK_CANDIDATES` most recently indexed matches (highest id) that pass
    the filters; on SQLite also the :data:`RANK_CANDIDATES` most recently indexed that hold every
    word in their name or keywords (the strong hits, cheap there with an FTS5 column filter). The
    filters apply before the cap, so they never empty a page that has matches. Both selections stop
    early: the full-text index yields matches in id order and the LIMIT ends the walk. The candidate
    set does not depend on the cursor, so keyset pages over it are consistent.
    """
    if dialect == "sqlite":
        fts, fts_name = _FTS, _FTS_NAME
        expression = _fts_expression(words)

        def newest(fts_query: str, name: str) -> _AnySelect:
            return (
                select(Version.id)
                .select_from(fts)
                .join(Version, Version.id == fts.c.rowid)
                .where(fts_name.op("MATCH")(bindparam(name, fts_query)), *clauses)
                .order_by(fts.c.rowid.desc())
                .limit(RANK_CANDIDATES)
            )

        candidates = union(
            newest("{name keywords} : (" + expression + ")", "fts_strong").subquery().select(),
            newest(expression, "fts_any").subquery().select(),
        ).cte("candidates")
        rank = func.bm25(fts_name, *_BM25_WEIGHTS)
        hits = (
            select(fts.c.rowid.label("vid"), rank.label("rank"))
            .where(
                fts_name.op("MATCH")(bindparam("fts_query", expression)),
                # a rowid range FTS5 seeks to: the doclist walk starts at the oldest candidate
                fts.c.rowid >= select(func.min(candidates.c.id)).scalar_subquery(),
                # "+ 0": not a rowid constraint for FTS5, which would re-run the MATCH once per
                # candidate; the one MATCH walks its doclist and tests membership instead
                (fts.c.rowid + 0).in_(select(candidates.c.id)),
            )
            .subquery("hits")
        )
    elif dialect == "postgresql":
        vector: ColumnElement[Any] = literal_column("version.search_vector")
        tsquery = _tsquery(words)
        pool = (
            select(Version.id)
            .where(vector.op("@@")(tsquery), *clauses)
            .order_by(Version.id.desc())
            .limit(RANK_CANDIDATES)
            .subquery("pool")
        )
        # float8: the cursor's float compares exactly
        rank_pg = (-func.ts_rank(vector, tsquery)).cast(Double).label("rank")
        hits = select(Version.id.label("vid"), rank_pg).join(pool, pool.c.id == Version.id).subquery("hits")
    else:
        raise InvalidInputError(f"text search is not supported on {dialect}", code="BAD_PARAMETER")
    vid, rank_col = hits.c.vid, hits.c.rank
    stmt = select(vid, rank_col)
    if after is not None:
        stmt = stmt.where(tuple_(rank_col, vid) > tuple_(after[0], after[1]))
    return stmt.order_by(rank_col, vid)


def _after_created(created: str | None, last_id: int, *, nulls_last: bool) -> ColumnElement[bool]:
    """Rows after (created, id) in ``created DESC, id DESC`` order.

    Where NULL ``created`` sorts depends on the database (SQLite: NULL lowest, so last when
    descending; PostgreSQL: NULL highest, so first); each keeps its own order so that its index on
    ``(created, id)`` serves the sort, and the cursor condition follows that order.
    """
    in_nulls = and_(Version.created.is_(None), Version.id < last_id)
    if created is None:
        return in_nulls if nulls_last else or_(in_nulls, Version.created.is_not(None))
    after = tuple_(Version.created, Version.id) < tuple_(created, last_id)
    return or_(after, Version.created.is_(None)) if nulls_last else after


def _normalized(filters: SearchFilters) -> SearchFilters:
    """Filters in the form the index stores them; raises ``BAD_PARAMETER`` for a malformed one."""
    platform = filters.platform
    if platform is not None:
        parts = platform.strip().split("/")
        if len(parts) not in (2, 3) or not all(parts):
            raise InvalidInputError(
                f"platform {platform[:80]!r} is not os/architecture[/variant], e.g. linux/arm64",
                code="BAD_PARAMETER",
            )
        platform = "/".join(parts)
    requirement = filters.requirement
    if requirement is not None:
        requirement = requirement.strip().lower()
        if not _REQUIREMENT_NAME_RE.match(requirement):
            raise InvalidInputError(
                f"requirement {requirement[:80]!r} must start with a package name, e.g. pytorch",
                code="BAD_PARAMETER",
            )
    signed_by = filters.signed_by
    if signed_by is not None:
        match = _FINGERPRINT_RE.fullmatch(signed_by.strip())
        if not match:
            raise InvalidInputError(
                "signed_by must be the hex SHA-256 of the signer's public key (64 hex characters)",
                code="BAD_PARAMETER",
            )
        signed_by = match.group(1).lower()
    license_ = filters.license
    if license_ is not None:
        license_ = _canonical_license(license_.strip())
    performance = filters.performance
    return SearchFilters(
        namespace=filters.namespace.strip() if filters.namespace is not None else None,
        keyword=filters.keyword.strip().lower() if filters.keyword is not None else None,
        license=license_,
        platform=platform,
        requirement=requirement,
        signed_by=signed_by,
        device=performance.device,
        max_rss=performance.max_rss,
        max_metric=tuple(bound.text for bound in performance.bounds),
    )


def _canonical_license(text: str) -> str:
    """The SPDX canonical form the index stores (``mit`` → ``MIT``); unknown text as given."""
    from ecr_oci.bundle.spec_license import normalize_license

    try:
        return normalize_license(text)
    except ValueError:
        return text


def _filter_clauses(filters: SearchFilters) -> list[ColumnElement[bool]]:
    clauses: list[ColumnElement[bool]] = []
    if filters.namespace is not None:
        clauses.append(Version.namespace == filters.namespace)
    if filters.license is not None:
        clauses.append(Version.license == filters.license)
    if filters.keyword is not None:
        clauses.append(
            exists().where(VersionKeyword.version_id == Version.id, VersionKeyword.keyword == filters.keyword)
        )
    if filters.platform is not None:
        os_, arch, *variant = filters.platform.split("/")
        conditions = [Platform.version_id == Version.id, Platform.os == os_, Platform.architecture == arch]
        if variant:
            conditions.append(Platform.variant == variant[0])
        clauses.append(exists().where(*conditions))
    if filters.requirement is not None:
        clauses.append(_requirement_clause(filters.requirement))
    if filters.signed_by is not None:
        clauses.append(
            exists().where(
                Signature.key_fingerprint == filters.signed_by,
                Signature.repository_id == Version.repository_id,
                Signature.subject_digest == Version.image_digest,
            )
        )
    return clauses


def _requirement_clause(requirement: str) -> ColumnElement[bool]:
    """A bare name is an indexed equality on the requirement's name (the indexer's
    :func:`requirement_name`); with a version part (``pytorch>=2``) the whole spec must also
    start with it."""
    name = requirement_name(requirement)
    conditions = [VersionRequirement.version_id == Version.id, VersionRequirement.name == name]
    if requirement != name:
        conditions.append(func.lower(VersionRequirement.spec).startswith(requirement, autoescape=True))
    return exists().where(*conditions)


# --- rendering rows ----------------------------------------------------------------------------


def _platforms_of(session: Session, version_ids: Sequence[int]) -> dict[int, list[Platform]]:
    """Platforms of many versions in one query (a page of 100 is one round trip, not 100)."""
    found: dict[int, list[Platform]] = {}
    if not version_ids:
        return found
    rows = session.scalars(select(Platform).where(Platform.version_id.in_(version_ids)).order_by(Platform.id))
    for platform in rows:
        found.setdefault(platform.version_id, []).append(platform)
    return found


def _platform_text(platform: Platform) -> str:
    return "/".join([platform.os, platform.architecture] + ([platform.variant] if platform.variant else []))


def _authors(raw: object) -> list[Author]:
    authors = []
    for item in raw if isinstance(raw, list) else []:
        if isinstance(item, dict) and isinstance(item.get("name"), str):
            email = item.get("email")
            authors.append(Author(name=item["name"], email=email if isinstance(email, str) else None))
        elif isinstance(item, str):
            authors.append(Author(name=item))
    return authors


def _strings(raw: object) -> list[str]:
    return [item for item in raw if isinstance(item, str)] if isinstance(raw, list) else []


def _summary(
    version: Version, platforms: Sequence[Platform], *, score: float | None = None
) -> VersionSummary:
    return VersionSummary(
        repository=version.name,
        namespace=version.namespace,
        version=version.tag,
        description=version.description,
        license=version.license,
        keywords=_strings(version.keywords),
        authors=_authors(version.authors),
        requirements=_strings(version.requirements),
        platforms=[_platform_text(p) for p in platforms],
        image_digest=version.image_digest,
        bundle_digest=version.bundle_digest,
        total_size=version.total_size,
        created=version.created,
        score=score,
    )


def _platform_info(platform: Platform) -> PlatformInfo:
    return PlatformInfo(
        os=platform.os, architecture=platform.architecture, variant=platform.variant, digest=platform.digest
    )


def _referrer_info(row: ManifestRow) -> ReferrerInfo:
    annotations = row.annotations if isinstance(row.annotations, dict) else {}
    return ReferrerInfo(
        digest=row.digest,
        media_type=row.media_type,
        artifact_type=row.artifact_type,
        kind=row.kind,
        size=row.size,
        annotations={k: v for k, v in annotations.items() if isinstance(v, str)},
    )


# --- detail queries ------------------------------------------------------------------------------


def _repository(session: Session, name: str, *, visible: Visibility) -> Repository:
    """The visible repository ``name``; :class:`NotFoundError` when missing or not visible."""
    repo = session.scalar(
        select(Repository).where(
            Repository.name == name, visible.repository_filter(Repository.name.expression)
        )
    )
    if repo is None:
        # the same text for missing and private, and without the name: an error body must not
        # carry a private bundle's name to whoever may not see it (docs/access.md)
        raise NotFoundError("no such bundle (check the name; a private one needs ecr-oci login)")
    return repo


def _newest_first(stmt: _AnySelect) -> Select[Any]:
    # NULL created (an image without bundle metadata) last on both databases
    return stmt.order_by(Version.created.is_(None), Version.created.desc(), Version.id.desc())


def bundle_detail(session: Session, namespace: str, name: str, *, visible: Visibility) -> BundleDetail:
    """The bundle ``namespace/name`` with its versions, newest first. Raises :class:`NotFoundError`."""
    repo = _repository(session, f"{namespace}/{name}", visible=visible)
    versions = list(session.scalars(_newest_first(select(Version).where(Version.repository_id == repo.id))))
    platforms = _platforms_of(session, [v.id for v in versions])
    measured = device_profiles(session, [v.id for v in versions])
    briefs = [
        VersionBrief(
            version=v.tag,
            image_digest=v.image_digest,
            image_media_type=v.image_media_type,
            bundle_digest=v.bundle_digest,
            total_size=v.total_size,
            created=v.created,
            platforms=[_platform_info(p) for p in platforms.get(v.id, [])],
            profiles=measured.get(v.id, []),
        )
        for v in versions
    ]
    latest = _summary(versions[0], platforms.get(versions[0].id, [])) if versions else None
    return BundleDetail(
        repository=repo.name,
        namespace=repo.namespace,
        name=repo.name.split("/", 1)[-1],
        latest=latest,
        versions=briefs,
    )


def version_detail(
    session: Session, namespace: str, name: str, version: str, *, visible: Visibility
) -> VersionDetail:
    """One version: layers, platforms, referrers of its image, signatures. Raises :class:`NotFoundError`."""
    repo = _repository(session, f"{namespace}/{name}", visible=visible)
    row = session.scalar(select(Version).where(Version.repository_id == repo.id, Version.tag == version))
    if row is None:
        raise NotFoundError(f"{repo.name} has no version {version[:128]!r}")
    platforms = _platforms_of(session, [row.id]).get(row.id, [])
    layers = session.scalars(select(Layer).where(Layer.version_id == row.id).order_by(Layer.id))
    subjects = [row.image_digest, *(p.digest for p in platforms)]
    signatures = session.scalars(
        select(Signature)
        .where(Signature.repository_id == repo.id, Signature.subject_digest.in_(subjects))
        .order_by(Signature.id)
    )
    return VersionDetail(
        summary=_summary(row, platforms),
        image_media_type=row.image_media_type,
        homepage=row.homepage,
        source_url=row.source_url,
        source_commit=row.source_commit,
        platforms=[_platform_info(p) for p in platforms],
        layers=[
            LayerInfo(role=la.role, media_type=la.media_type, digest=la.digest, size=la.size) for la in layers
        ],
        referrers=[_referrer_info(m) for m in _referrer_rows(session, repo.id, row.image_digest)],
        signatures=[
            SignatureInfo(
                kind=s.kind,
                subject_digest=s.subject_digest,
                manifest_digest=s.manifest_digest,
                key_fingerprint=s.key_fingerprint,
                predicate_type=s.predicate_type or None,
            )
            for s in signatures
        ],
        config=row.config,
        profiles=device_profiles(session, [row.id]).get(row.id, []),
        declared_profile=_declared_profiles(session, repo.id, [row]).get(row.id),
    )


def _declared_profiles(
    session: Session, repository_id: int, versions: Sequence[Version]
) -> dict[int, dict[str, Any]]:
    """The initial profile of each version's bundle (read by the indexer), by version id."""
    digests = {v.bundle_digest for v in versions if v.bundle_digest}
    if not digests:
        return {}
    rows = session.execute(
        select(ManifestRow.digest, ManifestRow.details).where(
            ManifestRow.repository_id == repository_id, ManifestRow.digest.in_(sorted(digests))
        )
    )
    details: dict[str, dict[str, Any]] = {digest: found for digest, found in rows}
    found: dict[int, dict[str, Any]] = {}
    for v in versions:
        declared = (details.get(v.bundle_digest or "") or {}).get("declared_profile")
        if isinstance(declared, dict):
            found[v.id] = declared
    return found


def bundle_profiles(session: Session, namespace: str, name: str, *, visible: Visibility) -> BundleProfiles:
    """Declared and measured profiles of every version (newest first), and each device's history
    across versions (oldest first): one request answers "did 0.2 get slower than 0.1 on the same
    device?". Raises :class:`NotFoundError`."""
    repo = _repository(session, f"{namespace}/{name}", visible=visible)
    versions = list(session.scalars(_newest_first(select(Version).where(Version.repository_id == repo.id))))
    measured = device_profiles(session, [v.id for v in versions])
    declared = _declared_profiles(session, repo.id, versions)
    items = [
        VersionProfiles(
            version=v.tag,
            image_digest=v.image_digest,
            created=v.created,
            declared=declared.get(v.id),
            measured=measured.get(v.id, []),
        )
        for v in versions
    ]
    history: dict[str, list[VersionProfiles]] = {}
    for item in reversed(items):
        for device in sorted({d.device for d in item.measured}):
            history.setdefault(device, []).append(
                item.model_copy(update={"measured": [d for d in item.measured if d.device == device]})
            )
    return BundleProfiles(
        repository=repo.name,
        versions=items,
        devices=[DeviceHistory(device=d, versions=history[d]) for d in sorted(history)],
    )


def _referrer_rows(
    session: Session, repository_id: int, subject: str, artifact_type: str | None = None
) -> list[ManifestRow]:
    """Manifests whose subject is ``subject`` (the fallback index ``sha256-<hex>`` is bookkeeping,
    not a referrer)."""
    stmt = select(ManifestRow).where(
        ManifestRow.repository_id == repository_id,
        ManifestRow.subject_digest == subject,
        ManifestRow.kind != "fallback-index",
    )
    if artifact_type is not None:
        stmt = stmt.where(ManifestRow.artifact_type == artifact_type)
    return list(session.scalars(stmt.order_by(ManifestRow.id)))


def referrers(
    session: Session, repository: str, digest: str, *, visible: Visibility, artifact_type: str | None = None
) -> ReferrerList:
    """The referrers of ``digest`` in ``repository`` (a known repository with none: an empty list).

    Raises :class:`InvalidInputError` ``DIGEST_INVALID`` and :class:`NotFoundError`.
    """
    subject = str(parse_digest(digest))
    repo = _repository(session, repository, visible=visible)
    rows = _referrer_rows(session, repo.id, subject, artifact_type)
    return ReferrerList(repository=repo.name, subject=subject, items=[_referrer_info(m) for m in rows])


def oci_referrers_index(found: ReferrerList) -> OciIndex:
    """The OCI image index the referrers API answers (distribution-spec §"Listing Referrers").

    ``artifactType`` is the manifest's own; a manifest without one (a cosign ``.sig``) is listed
    without it, because the index does not keep config media types. Serialise with
    ``exclude_none=True``: absent fields are left out, not null.
    """
    return OciIndex(
        mediaType=str(MediaType.OCI_INDEX),
        manifests=[
            OciDescriptor(
                mediaType=item.media_type,
                digest=item.digest,
                size=item.size,
                artifactType=item.artifact_type or None,
                annotations=item.annotations or None,
            )
            for item in found.items
        ],
    )


def activity(
    session: Session,
    namespace: str,
    name: str,
    *,
    visible: Visibility,
    show_who: bool = True,
    recent: int = RECENT_EVENTS,
) -> ActivitySummary:
    """Pull counts per version (newest version first) and the latest events of ``namespace/name``;
    ``show_who=False`` leaves actors, source addresses and user agents out (null).

    The counting rule is :func:`~ecr_oci.server.services.activity.pull_counts`' (manifest GETs of
    the version's image). Raises :class:`NotFoundError`.
    """
    repo = _repository(session, f"{namespace}/{name}", visible=visible)
    counts = pull_counts(session, repo.name)
    versions = session.execute(
        _newest_first(select(Version.tag, Version.image_digest).where(Version.repository_id == repo.id))
    ).all()
    return ActivitySummary(
        repository=repo.name,
        pulls=[
            VersionPulls(version=tag, image_digest=image, pulls=counts.get(tag, 0)) for tag, image in versions
        ],
        recent=[
            ActivityEvent(
                action=e.action,
                digest=e.digest,
                tag=e.tag,
                actor=e.actor if show_who else None,
                source_addr=e.source_addr if show_who else None,
                user_agent=e.user_agent if show_who else None,
                timestamp=e.timestamp.isoformat(),
            )
            for e in recent_events(session, repo.name, limit=recent)
        ],
    )
