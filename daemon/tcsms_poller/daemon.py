"""The daemon's lifecycle: start in dependency order, serve, reload, drain, stop.

Start: state, then sinks (so the first commit has somewhere to go), then workers, then the
listener; each reports started only when truly ready, so a startup failure surfaces before
``READY=1``, and the workers' first pull waits for it. Stop (the awaitable ``shutdown_trigger``
returns): let workers finish the cycle in hand (a pulled queue page is always committed), stop
the listener, give the sinks a grace period to deliver what is committed, then close the state.
Everything that was committed and not delivered is still in the outbox for the next start.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import (
    AbstractContextManager,
    AsyncExitStack,
    asynccontextmanager,
    nullcontext,
    suppress,
)
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import anyio
import structlog
from anyio.abc import TaskGroup, TaskStatus

from tcsms_poller import __version__
from tcsms_poller.backoff import Backoff
from tcsms_poller.cluster.claims import NumberClaimer
from tcsms_poller.cluster.instances import instance_id
from tcsms_poller.cluster.leases import Coordinator, Membership, pull_lease
from tcsms_poller.cluster.rates import RateCoordinator, SharedLimits
from tcsms_poller.config import Config, ServerSettings, load_config, read_numbers_file
from tcsms_poller.exits import ConfigError
from tcsms_poller.health import HealthBoard
from tcsms_poller.healthfile import write_health_url
from tcsms_poller.housekeeping import Housekeeper
from tcsms_poller.intake import Intake
from tcsms_poller.logs import learn_secrets, report_held_lines
from tcsms_poller.masking import Masker
from tcsms_poller.metrics import Metrics
from tcsms_poller.sdnotify import Notifier, run_watchdog
from tcsms_poller.sinks.fleet import SinkFleet, SinkReloadError
from tcsms_poller.state import StateStore, open_state
from tcsms_poller.state.lock import state_lock
from tcsms_poller.state.roles import NumberClaims
from tcsms_poller.tencent.api import Action
from tcsms_poller.tencent.client import Credentials, RetryPolicy, TencentClient
from tcsms_poller.tencent.ratelimit import RateLimiters
from tcsms_poller.workers import Worker, WorkerContext, build_workers, poll_cycle, run_worker

if TYPE_CHECKING:
    from tcsms_poller.server import ListenerContext

__all__ = ["Daemon", "build_client"]

log = structlog.get_logger("tcsms_poller.daemon")

_UNCHANGED = "the previous configuration stays"
_RESTORED = "the previous configuration stays: its stopped sinks were restarted from their cursors"
SINK_GRACE = 10.0  # seconds the sinks get to deliver at shutdown, unless run --drain-grace


def build_client(
    config: Config, metrics: Metrics, clock: Callable[[], float] = time.time
) -> TencentClient:
    """The one API client of a process, configured from ``tencent``."""
    tencent = config.tencent
    return TencentClient(
        endpoint=tencent.endpoint,
        region=tencent.region,
        credentials=Credentials(
            tencent.secret_id.reveal(), tencent.secret_key.reveal(), tencent.token.reveal()
        ),
        # In a cluster each instance uses the share of every limit the database grants it.
        limiters=RateLimiters(
            tencent.rate_limits.model_dump(), shared=config.state.url is not None
        ),
        metrics=metrics,
        timeout=tencent.timeout,
        queue_timeout=tencent.queue_timeout,
        retry=RetryPolicy(
            max_attempts=tencent.retry.max_attempts,
            backoff=Backoff(initial=0.2, maximum=tencent.retry.max_backoff),
        ),
        clock=clock,
    )


class Daemon:
    """One running tcsms-poller: its parts and their lifecycle."""

    def __init__(
        self,
        config: Config,
        *,
        config_path: Path | None = None,
        notifier: Notifier | None = None,
        clock: Callable[[], float] = time.time,
        sink_grace: float = SINK_GRACE,
    ) -> None:
        self.config = config
        self.sink_grace = sink_grace
        self.metrics = Metrics()
        self._masker = Masker()  # the health board's: /healthz is public
        self._learn_secrets(config)
        self.board = HealthBoard(clock, masker=self._masker)
        self._config_path = config_path
        self._notifier = notifier or Notifier(None)
        self._clock = clock
        self._stopping = anyio.Event()
        self._serving = anyio.Event()  # READY=1 was sent: the workers may pull
        self._reload_lock = anyio.Lock()
        self._store: StateStore | None = None
        self._fleet: SinkFleet | None = None
        self.membership: Membership | None = None  # cluster mode (state.url)
        self.shared_limits: SharedLimits | None = None
        self.claimer = NumberClaimer()  # alone: every number is this daemon's
        self.context: WorkerContext | None = None
        self.listen_address: tuple[str, int] | None = None

    @property
    def state_dir(self) -> Path:
        """Where the database, dead letters and sink files without a path live."""
        return self.config.state.path.parent

    # -- running -------------------------------------------------------------------------------

    @asynccontextmanager
    async def _opened(self) -> AsyncIterator[tuple[StateStore, TencentClient]]:
        """The state (locked against a second daemon, or joined to the cluster on a PostgreSQL
        state) and the client, open for a run."""
        with self._single_daemon_lock():
            store = await open_state(self.config.state, clock=self._clock)
            self._store = store
            client = build_client(self.config, self.metrics, self._clock)
            if self.config.state.url is not None:
                self.membership = Membership(
                    cast(Coordinator, store),
                    instance_id(self.config.state.instance_id),
                    ttl=self.config.state.lease_ttl,
                    healthy=self._health_summary,
                )
                membership = self.membership
                for name in _pull_leases(self.config):
                    membership.lease(name)
                membership.export(self.metrics.cluster_lease_held)
                self.shared_limits = SharedLimits(
                    cast(RateCoordinator, store),
                    membership.instance,
                    client.limiters,
                    ttl=membership.ttl,
                    safety=membership.safety,
                )
                self.shared_limits.export(self.metrics.cluster_rate_share)
                self.claimer = NumberClaimer(
                    cast(NumberClaims, store), membership.instance, ttl=membership.ttl
                )
                self.metrics.cluster_number_claims.labels(membership.instance).set_function(
                    lambda: self.claimer.held_count
                )
            try:
                await self._sync_numbers(self.config, await self._read_numbers_files(self.config))
                yield store, client
            finally:
                with anyio.move_on_after(5, shield=True):
                    await client.aclose()
                    await store.aclose()

    def _single_daemon_lock(self) -> AbstractContextManager[object]:
        """SQLite: a file lock keeps off a second daemon. PostgreSQL: none, the daemons on one
        database form a cluster and share the work under leases (``cluster/``)."""
        if self.config.state.url is not None:
            return nullcontext()
        return state_lock(self.config.state.path)

    def _health_summary(self) -> tuple[bool, str | None]:
        """This instance's health for the cluster registry (``status`` shows it)."""
        failing = [health.name for health in self.board.unhealthy()]
        return (not failing, ", ".join(failing) or None)

    async def _start_pipeline(
        self, root: TaskGroup, store: StateStore, client: TencentClient
    ) -> tuple[SinkFleet, WorkerContext]:
        """Join the cluster (PostgreSQL), start the sinks; build the context the workers
        share."""
        if self.membership is not None:
            await root.start(self.membership.run)
        if self.shared_limits is not None:
            await root.start(self.shared_limits.run)
            await root.start(self.claimer.run)
        fleet = self._fleet = SinkFleet(
            store=store,
            metrics=self.metrics,
            board=self.board,
            state_dir=self.state_dir,
            clock=self._clock,
            membership=self.membership,
        )
        await root.start(fleet.run, self.config.sinks)
        ctx = self.context = WorkerContext(
            client=client,
            store=store,
            intake=Intake(store, self.metrics),
            metrics=self.metrics,
            board=self.board,
            stopping=self._stopping,
            unhealthy_retry=self.config.tencent.unhealthy_retry,
            clock=self._clock,
        )
        if self.membership is not None:
            ctx.leases = self.membership.lease
        ctx.claimer = self.claimer
        return fleet, ctx

    async def serve(
        self,
        shutdown_trigger: Callable[[], Awaitable[None]],
        *,
        task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
    ) -> None:
        """Run until ``shutdown_trigger`` returns, then stop gracefully."""
        log.info(
            "daemon.starting",
            version=__version__,
            config=str(self._config_path or "-"),
            apps=[app.sms_sdk_app_id for app in self.config.apps],
        )
        async with self._opened() as (store, client), anyio.create_task_group() as root:
            fleet, ctx = await self._start_pipeline(root, store, client)
            workers = build_workers(self.config, ctx)
            workers_done = anyio.Event()
            workers_scope = await root.start(self._run_workers, workers, ctx, workers_done)
            housekeeper = Housekeeper(
                store=store,
                fleet=fleet,
                metrics=self.metrics,
                board=self.board,
                notifier=self._notifier,
            )
            root.start_soon(housekeeper.run)
            root.start_soon(report_held_lines)  # a burst's count even if silence follows
            # Pings come from the event loop, so a blocked loop stops them; so does a write
            # pending for longer than systemd would wait for a ping (a hung disk), which no
            # retry inside the process can cure.
            stall_limit = self._notifier.watchdog_timeout or 0.0
            root.start_soon(
                run_watchdog, self._notifier, lambda: store.write_stalled_for() < stall_limit
            )
            async with AsyncExitStack() as listener:
                if self.config.server is not None:
                    # Imported here: uvicorn and Starlette would slow the start-up of a daemon
                    # without a listener (docs/benchmarks.md).
                    from tcsms_poller.server import serving

                    context = self._listener_context(self.config.server, ctx)
                    self.listen_address = await listener.enter_async_context(serving(context))
                    listener.callback(self._publish_health_url(*self.listen_address))
                self._notifier.ready()
                log.info("daemon.ready", workers=[w.name for w in workers], sinks=fleet.names)
                self._serving.set()
                task_status.started()

                await shutdown_trigger()
                # 1. Stop pulling: workers finish the cycle in hand, bounded by the API timeout.
                self._notifier.stopping()
                log.info("daemon.stopping")
                self._stopping.set()
                with anyio.move_on_after(self.config.tencent.timeout + 5):
                    await workers_done.wait()
                workers_scope.cancel()
                await workers_done.wait()
            # 2. The listener has stopped (leaving the stack): each push answered OK is stored.
            # 3. Give the sinks a grace period to deliver what is committed.
            drained = await fleet.drain(self.sink_grace)
            # 4. Hand the leases over at once; stop the chores; the state closes on the way out.
            if self.membership is not None:
                await self.membership.leave()
            root.cancel_scope.cancel()
        log.info("daemon.stopped", drained=drained, outbox_head=store.head)

    def _publish_health_url(self, host: str, port: int) -> Callable[[], None]:
        """Write ``healthz.url`` for ``healthcheck --url-file``; what removes it at stop."""
        try:
            path = write_health_url(self.state_dir, host, port)
        except OSError as error:  # the healthcheck then says so; the daemon serves on
            log.warning("daemon.health_url_unwritten", error=f"{type(error).__name__}: {error}")
            return lambda: None

        def remove() -> None:
            with suppress(OSError):
                path.unlink()

        return remove

    def _listener_context(self, settings: ServerSettings, ctx: WorkerContext) -> ListenerContext:
        from tcsms_poller.server import ListenerContext  # here, not at the top: see run

        return ListenerContext(
            settings=settings,
            intake=ctx.intake,
            store=ctx.store,
            metrics=self.metrics,
            board=self.board,
            health=self.board.register("listener", "listener"),
            app_ids=tuple(app.sms_sdk_app_id for app in self.config.apps),
            conversion_apps=frozenset(
                app.sms_sdk_app_id for app in self.config.apps if app.conversions.enabled
            ),
            tracking={app.sms_sdk_app_id: app.tracking for app in self.config.apps},
            clock=self._clock,
            cluster=None if self.membership is None else self._describe_cluster,
        )

    def _describe_cluster(self) -> dict[str, Any]:
        """``/healthz``'s cluster detail: the leases held here, the number claims, the shares."""
        assert self.membership is not None
        detail = self.membership.describe()
        detail["number_claims"] = self.claimer.held_count
        if self.context is not None:
            limiters = self.context.client.limiters.created()
            detail["rate_shares"] = {action: one.rate for action, one in sorted(limiters.items())}
        return detail

    async def run_once(self, *, drain_timeout: float) -> bool:
        """One pass of every worker, then drain every sink; True if all of it succeeded."""
        async with self._opened() as (store, client), anyio.create_task_group() as root:
            fleet, ctx = await self._start_pipeline(root, store, client)
            workers = build_workers(self.config, ctx)

            async def one_pass(worker: Worker) -> None:
                # poll_cycle says when more work is due at once (full pages, overdue numbers).
                while (await poll_cycle(worker, ctx)).more_due:
                    pass

            async with anyio.create_task_group() as passes:
                for worker in workers:
                    passes.start_soon(one_pass, worker)
            drained = await fleet.drain(drain_timeout)
            if self.membership is not None:
                await self.membership.leave()
            root.cancel_scope.cancel()
        failed = [w.name for w in workers if w.health.failing_since is not None]
        log.info("once.completed", drained=drained, failed_workers=failed, outbox_head=store.head)
        return drained and not failed

    async def _run_workers(
        self,
        workers: list[Worker],
        ctx: WorkerContext,
        done: anyio.Event,
        *,
        task_status: TaskStatus[anyio.CancelScope] = anyio.TASK_STATUS_IGNORED,
    ) -> None:
        try:
            with anyio.CancelScope() as scope:
                async with anyio.create_task_group() as tg:
                    for worker in workers:
                        await tg.start(partial(run_worker, worker, ctx, begin=self._serving))
                    task_status.started(scope)
        finally:
            done.set()

    # -- reload ----------------------------------------------------------------------------------

    async def reload(self) -> None:
        """SIGHUP: re-read the configuration, the numbers file and the sinks; keep the rest.

        Reloads run one at a time (two quick SIGHUPs must not start a sink twice); one that
        arrives before READY=1 has nothing to reload, since start-up reads everything anew.
        """
        if not self._serving.is_set():
            log.warning("daemon.reload_ignored", reason="still starting")
            return
        async with self._reload_lock:
            await self._reload()

    async def _reload(self) -> None:
        """All or nothing: a reload that fails leaves the configuration and the sinks as they
        were, and says so in one ``daemon.reload_failed`` line."""
        self._notifier.reloading()
        log.info("daemon.reloading")
        try:
            await self._apply(self._reread())
        except ConfigError as error:
            self._reload_failed(str(error), hint=_UNCHANGED)
        except SinkReloadError as error:
            details: dict[str, Any] = {"hint": _UNCHANGED}
            if error.restored:
                details = {"restored": error.restored, "hint": _RESTORED}
            if error.unrestored:
                details["unrestored"] = error.unrestored
                details["hint"] += "; not restarted: see sink.restore_failed"
            self._reload_failed(str(error), **details)
        except Exception as error:  # noqa: BLE001 - no file, however broken, stops the daemon
            self._reload_failed(f"{type(error).__name__}: {error}", hint=_UNCHANGED)
        else:
            self.metrics.reload_successful.set(1)
            log.info("daemon.reloaded", sinks=self._fleet.names if self._fleet else [])
        finally:
            self._notifier.ready()

    def _reload_failed(self, error: str, **details: Any) -> None:
        """The one line a failed reload logs; the metric that shows it until the next one."""
        self.metrics.reload_successful.set(0)
        log.error("daemon.reload_failed", error=error, **details)

    def _reread(self) -> Config:
        """The running configuration with the file's ``sinks`` and ``apps``."""
        if self._config_path is None:
            return self.config
        new = load_config(self._config_path)
        self._learn_secrets(new)  # before its sinks are built: they may log, and fail, with them
        self._warn_restart_needed(new)
        return self.config.model_copy(update={"sinks": new.sinks, "apps": new.apps})

    async def _apply(self, config: Config) -> None:
        """Switch to ``config``; ``self.config`` changes only once all of it runs."""
        # 1. Read every numbers file: one that cannot be read fails before anything changed.
        from_files = await self._read_numbers_files(config)
        # 2. The sinks, all or nothing (``SinkFleet.reload``).
        if self._fleet is not None:
            await self._fleet.reload(config.sinks)
        # 3. The tracked numbers: only a failing database can stop them now; then the sinks
        #    go back as well (the numbers synced so far stay, the next reload completes them).
        try:
            await self._sync_numbers(config, from_files)
        except Exception:
            if self._fleet is not None:
                try:
                    await self._fleet.reload(self.config.sinks)
                except SinkReloadError as undo:  # the numbers' error is the one to report
                    names = [one.sink_name for one in self.config.sinks]
                    log.error("sink.restore_failed", sinks=names, error=str(undo))
            raise
        self.config = config

    def _learn_secrets(self, config: Config) -> None:
        """Mask every secret of ``config`` in the logs and on /healthz from now on; those
        learnt before stay masked, so a reload that fails, or a secret rotated, loses none."""
        secrets = config.secrets()
        learn_secrets(secrets)
        self._masker.learn(secrets)

    def _warn_restart_needed(self, new: Config) -> None:
        for section in ("tencent", "state", "server", "log"):
            if getattr(new, section) != getattr(self.config, section):
                log.warning(
                    "daemon.restart_required",
                    section=section,
                    hint="only numbers and sinks change on reload",
                )

    async def _read_numbers_files(self, config: Config) -> dict[str, tuple[str, ...]]:
        """Each app's numbers from its ``numbers_file`` (none without one), by app id."""
        from_files: dict[str, tuple[str, ...]] = {}
        for app in config.apps:
            from_files[app.sms_sdk_app_id] = ()
            if app.by_number.numbers_file is not None:
                from_files[app.sms_sdk_app_id] = await anyio.to_thread.run_sync(
                    read_numbers_file, app.by_number.numbers_file
                )
        return from_files

    async def _sync_numbers(self, config: Config, from_files: dict[str, tuple[str, ...]]) -> None:
        """Make the tracked numbers of each app match its ``numbers`` and its file's."""
        assert self._store is not None
        for app in config.apps:
            app_id = app.sms_sdk_app_id
            await self._store.sync_numbers(app_id, "config", app.by_number.numbers)
            added, removed = await self._store.sync_numbers(app_id, "file", from_files[app_id])
            if added or removed:
                log.info("numbers.synced", app_id=app_id, added=added, removed=removed)


def _pull_leases(config: Config) -> list[str]:
    """The leases of the configured queue and statistics workers (wanted from the start)."""
    names = []
    for app in config.apps:
        for enabled, action in (
            (app.replies.enabled, Action.PULL_SMS_REPLY_STATUS),
            (app.send_status.enabled, Action.PULL_SMS_SEND_STATUS),
            (app.statistics.enabled, Action.CALLBACK_STATUS_STATISTICS),
        ):
            name = pull_lease(app.sms_sdk_app_id, action)
            if enabled and name is not None:
                names.append(name)
    return names
