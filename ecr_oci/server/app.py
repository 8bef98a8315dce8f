"""``create_app(settings)``: the ECR service as one FastAPI app.

    >>> from ecr_oci.server.settings import Settings
    >>> app = create_app(Settings(database_url="sqlite://", reconcile_interval=0))
    >>> sorted(r.path for r in app.routes if r.path.startswith("/events"))
    ['/events']

What it wires (routes → services → storage, STYLE.md §9):

- ``app.state.settings``; ``app.state.engine``; ``app.state.sessions`` (read sessions) and
  ``app.state.write_sessions`` (``BEGIN IMMEDIATE`` on SQLite, see ``db.engine``);
  ``app.state.registry_client()`` → a new :class:`RegistryClient` for the configured registry
  (the caller closes it); ``app.state.blob_cache`` (small immutable blobs);
  ``app.state.reconciler`` (one reconcile at a time in this process); ``app.state.event_queue``
  (:class:`EventQueue`: the indexing worker over the ``pending_event`` table; a process of its
  own with ``index_process``, unless the database is in memory or ``registry_client`` is given).
- the routers of ``ecr_oci.server.routes``: ``notifications`` (``POST /events``), ``api``
  (``/api/v1``), ``referrers`` (``/v2/<name>/referrers/<digest>``) and ``admission``
  (``POST /admission/validate``; ``app.state.admission``, with a registry client of its own);
- the JSON error handlers of ``routes.errors``;
- a lifespan that applies the migrations (``migrate_on_start``), starts the indexing worker
  (which first drains what an earlier run left queued; stopped, after its batch, at shutdown), and
  runs reconcile once at start
  (``reconcile_on_start``) and then every ``reconcile_interval`` seconds (0: never), in a worker
  thread so that requests are served meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import threading
from collections.abc import AsyncIterator, Callable

from fastapi import FastAPI

from ecr_oci.errors import Error
from ecr_oci.oci.reads import MetadataReader
from ecr_oci.oci.registry import RegistryClient
from ecr_oci.server.db.engine import make_engine, session_factory
from ecr_oci.server.db.migrate import upgrade
from ecr_oci.server.routes import admin, admission, api, notifications, referrers, token
from ecr_oci.server.routes.errors import install_error_handlers
from ecr_oci.server.services.access import RuleCache
from ecr_oci.server.services.activity import SERVICE_USER_AGENT
from ecr_oci.server.services.admission import AdmissionController, AdmissionPolicy
from ecr_oci.server.services.audit import AuditLog
from ecr_oci.server.services.credentials import Authenticator
from ecr_oci.server.services.index import BlobCache
from ecr_oci.server.services.queue import EventQueue, WorkerProcess
from ecr_oci.server.services.reconcile import Reconciler
from ecr_oci.server.services.tokens import ServiceRegistryAuth, TokenIssuer
from ecr_oci.server.settings import Settings, SettingsError

__all__ = ["create_app", "service_client", "token_issuer"]

log = logging.getLogger("ecr_oci.server")

RegistryClientFactory = Callable[[], RegistryClient]


def create_app(settings: Settings, *, registry_client: RegistryClientFactory | None = None) -> FastAPI:
    """The service for ``settings``; ``registry_client`` replaces how registry clients are made
    (tests: a client with other timeouts or credentials)."""
    engine = make_engine(settings.database_url)
    issuer = token_issuer(settings) if settings.access_control else None
    client_factory = registry_client or functools.partial(service_client, settings, issuer)
    shared = SharedClient(client_factory)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if settings.migrate_on_start:
            await asyncio.to_thread(upgrade, engine)
        app.state.event_queue.start()
        app.state.audit.start()
        app.state.reconciler.resume()
        task = asyncio.create_task(_periodic_reconcile(app.state.reconciler, settings))
        try:
            yield
        finally:
            app.state.reconciler.stop()
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            await asyncio.to_thread(app.state.event_queue.stop)
            await asyncio.to_thread(app.state.audit.stop)
            shared.close()
            admission_client.close()
            engine.dispose()

    app = FastAPI(
        title="ECR service",
        version="1",
        summary="Index and search of the Edge Code Repository's OCI registry",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.engine = engine
    app.state.sessions = session_factory(engine)
    app.state.write_sessions = session_factory(engine, write=True)
    app.state.registry_client = client_factory
    app.state.blob_cache = BlobCache()
    app.state.reconciler = Reconciler(app.state.write_sessions, client_factory)
    app.state.rules = RuleCache(recheck=settings.rules_recheck)
    app.state.authenticator = Authenticator(audience=settings.token_service)
    app.state.audit = AuditLog(app.state.write_sessions)
    app.state.token_issuer = issuer
    # the webhook keeps one registry client of its own (connections reused across reviews)
    admission_client = SharedClient(client_factory)
    app.state.admission = AdmissionController(_admission_policy(settings), client=admission_client.get)
    app.state.event_queue = EventQueue(
        app.state.write_sessions,
        shared.get,
        cache=app.state.blob_cache,
        batch=settings.index_batch,
        linger=settings.index_linger,
        workers=settings.index_workers,
        # a process of its own builds its own reader: only from the settings, not a custom factory
        process=WorkerProcess(settings.database_url, functools.partial(service_reader, settings))
        if settings.index_process
        and registry_client is None
        and WorkerProcess.can_share(settings.database_url)
        else None,
    )
    install_error_handlers(app)
    for module in (notifications, api, referrers, admission, token, admin):
        app.include_router(module.router)
    return app


class SharedClient:
    """One registry client kept alive for a worker (the indexing queue's thread, the admission
    webhook): its connections (and TLS sessions, and the auth token) are reused instead of being
    set up again per event (a new client costs a TLS context, a TCP connect and a token round
    trip). Made on first use, closed when the app stops; httpx clients are thread-safe."""

    def __init__(self, factory: RegistryClientFactory) -> None:
        self._factory = factory
        self._client: RegistryClient | None = None
        self._lock = threading.Lock()

    def get(self) -> RegistryClient:
        with self._lock:
            if self._client is None:
                self._client = self._factory()
            return self._client

    def close(self) -> None:
        with self._lock:
            client, self._client = self._client, None
        if client is not None:
            client.close()


def _admission_policy(settings: Settings) -> AdmissionPolicy:
    """The webhook's policy; an unreadable or non-cosign key file stops the service from starting."""
    try:
        return AdmissionPolicy.from_files(
            registry=settings.registry,
            trusted_key_files=settings.admission_trusted_keys,
            deployments=settings.admission_deployments,
            exempt_images=settings.admission_exempt_images,
            cache_ttl=settings.admission_cache_ttl,
        )
    except OSError as err:
        raise SettingsError(f"admission_trusted_keys: cannot read {err.filename}: {err.strerror}") from None


def service_client(settings: Settings, issuer: TokenIssuer | None = None) -> RegistryClient:
    """A registry client for the service: short timeouts and few retries (a notification handler
    must answer the registry quickly), and its own User-Agent, so that the registry's pull events
    for the service's own reads are not counted as anyone's pulls (``services.activity``).
    ``issuer``: the service's token signer when it has one loaded (else read from the settings)."""
    return RegistryClient(
        settings.registry,
        insecure=settings.registry_insecure,
        auth=_service_auth(settings, issuer),
        user_agent=SERVICE_USER_AGENT,
        timeout=10.0,
        retries=1,
        backoff=0.2,
    )


def service_reader(settings: Settings) -> MetadataReader:
    """The indexing worker's lean reader of manifests and metadata blobs: the same registry,
    timeouts, User-Agent and minted tokens as :func:`service_client`."""
    auth = _service_auth(settings)
    return MetadataReader(
        settings.registry,
        insecure=settings.registry_insecure,
        authorize=auth.authorization if auth is not None else None,
        user_agent=SERVICE_USER_AGENT,
        timeout=10.0,
        retries=1,
        backoff=0.2,
    )


def _service_auth(settings: Settings, issuer: TokenIssuer | None = None) -> ServiceRegistryAuth | None:
    """The service's own registry access (tokens it mints) where the registry wants tokens."""
    if not settings.access_control:
        return None
    return ServiceRegistryAuth(issuer if issuer is not None else token_issuer(settings))


def token_issuer(settings: Settings) -> TokenIssuer:
    """The registry-token signer of ``settings`` (its key and certificate are made when missing)."""
    return TokenIssuer(
        settings.token_key_file,
        settings.token_cert_file,
        issuer=settings.token_issuer,
        service=settings.token_service,
        ttl=settings.token_ttl,
    )


#: Pauses before retrying a reconcile that could not reach the registry (then every interval).
RECONCILE_RETRY_S = (1.0, 2.0, 5.0, 10.0, 30.0, 60.0)


async def _periodic_reconcile(reconciler: Reconciler, settings: Settings) -> None:
    """Reconcile at start (optional) and every ``reconcile_interval`` s. A pass that fails is
    retried soon (:data:`RECONCILE_RETRY_S`), not only an interval later: at start the registry
    is often not up yet (``make run`` starts the service first, because the registry needs its
    token certificate and notification endpoint), and the events of what it already holds will
    never come."""
    pending = settings.reconcile_on_start
    failures = 0
    while pending or settings.reconcile_interval > 0:
        if not pending:
            await asyncio.sleep(settings.reconcile_interval)
        pending = False
        try:
            report = await asyncio.to_thread(reconciler.run)
            log.info("reconcile: %s", report.summary())
            failures = 0
        except asyncio.CancelledError:
            raise
        except Exception as err:
            if isinstance(err, Error):  # the registry is down or refused: one line, no traceback
                log.warning("reconcile failed: %s", err)
            else:
                log.exception("reconcile failed")
            if failures < len(RECONCILE_RETRY_S):
                await asyncio.sleep(RECONCILE_RETRY_S[failures])
                failures += 1
                pending = True
