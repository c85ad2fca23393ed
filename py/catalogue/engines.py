"""The two engines that run a batch's tasks: in this process, or on a Ray cluster. Same worker, same rows.

* :func:`run_embedded`: one :class:`~grounded_inpaint.catalogue.work.Worker` in this process, the
  tasks in order. No extra dependency.
* :func:`run_ray`: Ray Data. The tasks become a dataset (``ray.data.from_items``), mapped with
  ``map_batches`` by :class:`RayBatchWorker` — a callable class, so each actor of the pool
  (``compute=ray.data.ActorPoolStrategy(size=N)``) loads the models once — with one GPU per
  actor when the cluster has GPUs and the torch threads per actor set so the actors together use
  the CPUs once (:func:`plan_pool`). Ray Data restarts an actor that dies and retries its tasks
  (its defaults for actor pools: ``max_restarts=-1``, ``max_task_retries=-1``); a retried task
  finds the images it had finished complete and returns their recorded rows, so each image is
  done once. A local Ray is started on demand (and stopped afterwards), or the run joins a cluster
  (``address``; ``"auto"`` = the one ``ray start`` made on this machine). Ray is an optional extra
  (:data:`RAY_HINT`).

Both call ``on_row(row)`` for every finished image, in the order they finish.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import asdict, dataclass
from typing import Any, Callable, Mapping, Sequence

from .work import Job, Task, Worker, failed_row

__all__ = ["RAY_HINT", "RayMissingError", "RayEngineError", "PoolPlan", "plan_pool", "run_embedded", "run_ray", "RayBatchWorker", "import_ray",
           "compact_task", "expand_task"]

log = logging.getLogger(__name__)

OnRow = Callable[[dict], None]

#: How to install the Ray engine.
RAY_HINT = 'pip install "grounded-inpaint[ray]"   (or: pip install "ray[data]")'
#: Most Ray Data blocks per run: one image per block up to this, then several images per block.
MAX_BLOCKS = 20_000
#: Object store of a local Ray started here (tasks and rows are small; the images never pass through it).
LOCAL_OBJECT_STORE_BYTES = 256 * 1024 * 1024


class RayMissingError(ImportError):
    """``--engine ray`` without Ray installed (the message has the pip command)."""


class RayEngineError(RuntimeError):
    """Ray could not go on (the actors could not start, the cluster went away); the message says
    why in one line, from the last line of Ray's error."""


def import_ray() -> Any:
    """``import ray`` and ``ray.data``, or :class:`RayMissingError` with the pip command."""
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError as exc:
        raise RayMissingError(f"the Ray engine needs Ray Data, which is not installed ({exc}): {RAY_HINT}") from None
    return ray


def run_embedded(job: Job, tasks: Sequence[Task], on_row: OnRow, *, threads: int | None = None) -> None:
    """Do ``tasks`` in this process, in order (models loaded once); ``on_row`` gets each row."""
    if not tasks:
        return
    worker = Worker(job, threads=threads)
    for task in tasks:
        on_row(worker(task))


@dataclass(frozen=True)
class PoolPlan:
    """How many actors, and what each one gets."""

    actors: int
    threads: int
    gpus: float
    cpus: float

    def describe(self) -> str:
        gpu = f", {self.gpus:g} GPU" if self.gpus else ""
        return f"{self.actors} actor(s), {self.threads} torch thread(s){gpu} each"


def plan_pool(resources: Mapping[str, float], *, actors: int | None, threads: int | None, device: str,
              tasks: int | None = None) -> PoolPlan:
    """The actor pool for a cluster with ``resources`` (``ray.cluster_resources()``).

    With GPUs (and ``device`` not ``cpu``/``mps``): one actor per GPU (or ``actors``, sharing
    the GPUs evenly when there are more actors than GPUs), each with ``threads`` (default: its
    share of the CPUs, at most 4) for the pre- and post-processing. Without: ``actors`` (default
    one per 4 CPUs), each with ``threads`` (default: the CPUs shared evenly), so the actors
    together use every CPU once. Never more actors than ``tasks`` (each would load the models for nothing).

    Raises:
        ValueError: ``device`` asks for CUDA but the cluster has no GPU.
    """
    cpus = max(1, int(resources.get("CPU", 1)))
    gpus = int(resources.get("GPU", 0))
    wants_cuda = device.startswith("cuda")
    if wants_cuda and gpus == 0:
        raise ValueError(f"--device {device} was asked for but the Ray cluster has no GPU; use --device cpu or auto")
    if gpus > 0 and (device == "auto" or wants_cuda):
        n = min(actors or gpus, tasks or actors or gpus)
        per_gpu = min(1.0, gpus / n)
        t = threads or max(1, min(4, cpus // n))
        return PoolPlan(n, t, per_gpu, float(min(t, max(1, cpus // n))))
    n = actors or max(1, cpus // 4)
    n = min(n, tasks) if tasks else n
    t = threads or max(1, cpus // n)
    return PoolPlan(n, t, 0.0, float(min(t, cpus)))


class RayBatchWorker:
    """The callable class of Ray Data's actor pool: each actor loads the models once (a
    :class:`~grounded_inpaint.catalogue.work.Worker`) and turns batches of tasks into rows.

    Arguments:
        job: the :class:`~grounded_inpaint.catalogue.work.Job` as JSON.
        threads: torch threads of this actor.
        log_level: of the ``grounded_inpaint`` logger in the actor.

    Batches are ``{"task": [Task JSON, …]}``; the result is ``{"row": [row JSON, …]}`` (JSON text
    keeps the columns' types simple for Arrow whatever the settings hold).
    """

    def __init__(self, job: str, threads: int, log_level: int = logging.WARNING) -> None:
        logging.basicConfig(level=log_level, format="%(levelname)s %(message)s")
        logging.getLogger("grounded_inpaint").setLevel(log_level)
        os.environ["OMP_NUM_THREADS"] = str(threads)
        self.job = Job.from_json(job)
        self.worker = Worker(self.job, threads=threads)

    def __call__(self, batch: Mapping[str, Any]) -> dict[str, list[str]]:
        rows = [json.dumps(self.worker(expand_task(str(text), self.job)), default=str) for text in batch["task"]]
        return {"row": rows}


def compact_task(task: Task, job: Job) -> str:
    """``task`` as JSON holding only the settings that differ from the run's (a catalogue of
    100 000 images then takes a few tens of MB in Ray's object store, not a few hundred)."""
    data = asdict(task)
    data["settings"] = {k: v for k, v in task.settings.items() if job.run_settings.get(k, _MISSING) != v}
    return json.dumps(data, default=str)


def expand_task(text: str, job: Job) -> Task:
    """The :class:`Task` of :func:`compact_task`'s JSON (the run's settings filled back in)."""
    data = json.loads(text)
    data["settings"] = {**job.run_settings, **data["settings"]}
    return Task(**data)


_MISSING = object()


def _quiet_ray(verbose: bool) -> None:
    # Ray Data logs a failed actor's whole traceback before raising it to us; we say it in one line
    level = logging.INFO if verbose else logging.CRITICAL
    for name in ("ray", "ray.data", "ray.data._internal"):
        logging.getLogger(name).setLevel(level)


def run_ray(
    job: Job,
    tasks: Sequence[Task],
    on_row: OnRow,
    *,
    actors: int | None = None,
    threads: int | None = None,
    address: str | None = None,
    verbose: bool = False,
    passes: int = 2,
) -> PoolPlan | None:
    """Do ``tasks`` on Ray Data with a pool of actors; ``on_row`` gets each row as it arrives.

    Arguments:
        actors, threads: the pool (:func:`plan_pool` fills in what is ``None``).
        address: a running cluster to join (``"auto"``, ``"ray://host:10001"``, ``"host:6379"``);
            ``None``: the cluster ``RAY_ADDRESS`` names, or a local Ray started here for this run.
            When Ray is already initialised in this process, that session is used as it is.
        verbose: show Ray's own logs and the workers' output.
        passes: Ray retries what dies; should a task still come back without a row, its images go
            through the pool again, up to this many passes in all, and then get a failed row.

    Returns:
        The pool used (``None`` when there was nothing to do).
    """
    if not tasks:
        return None
    ray = import_ray()
    _quiet_ray(verbose)
    started = False
    if not ray.is_initialized():
        options: dict[str, Any] = dict(include_dashboard=False, log_to_driver=verbose,
                                       logging_level=logging.INFO if verbose else logging.ERROR)
        if address is None and not os.environ.get("RAY_ADDRESS"):
            options.update(num_cpus=os.cpu_count() or 1, object_store_memory=LOCAL_OBJECT_STORE_BYTES)
        else:
            options["address"] = address
        log.info("starting Ray%s", f" (joining {address})" if address else "")
        # Ray's C++ core logs a warning on every actor pool of Ray Data (its workers' constructor
        # arguments live in the object store); keep its console for fatal errors unless verbose
        quiet_core = not verbose and "RAY_BACKEND_LOG_LEVEL" not in os.environ
        if quiet_core:
            os.environ["RAY_BACKEND_LOG_LEVEL"] = "fatal"
        try:
            ray.init(**options)
        finally:
            if quiet_core:
                os.environ.pop("RAY_BACKEND_LOG_LEVEL", None)
        started = True
    try:
        context = ray.data.DataContext.get_current()
        context.enable_progress_bars = False  # ours shows images/s and time left for both engines
        plan = plan_pool(ray.cluster_resources(), actors=actors, threads=threads, device=str(job.run_settings.get("device", "auto")),
                         tasks=len(tasks))
        log.info("Ray pool: %s", plan.describe())
        remaining = list(tasks)
        seen: set[int] = set()
        for _ in range(max(1, passes)):
            if not remaining:
                break
            blocks = min(len(remaining), MAX_BLOCKS)
            dataset = ray.data.from_items([{"task": compact_task(t, job)} for t in remaining], override_num_blocks=blocks)
            dataset = dataset.map_batches(
                RayBatchWorker,
                fn_constructor_kwargs=dict(job=job.to_json(), threads=plan.threads,
                                           log_level=logging.INFO if verbose else logging.WARNING),
                batch_size=1,
                compute=ray.data.ActorPoolStrategy(size=plan.actors),
                num_cpus=plan.cpus,
                num_gpus=plan.gpus,
            )
            try:
                for record in dataset.iter_rows():
                    row = json.loads(record["row"])
                    if row["index"] in seen:  # a retried task repeats a row already reported
                        continue
                    seen.add(row["index"])
                    on_row(row)
            except ray.exceptions.RayError as exc:  # e.g. every actor failed to load the models
                lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
                raise RayEngineError(
                    f"the Ray engine stopped: {lines[-1] if lines else type(exc).__name__} (the images finished so far "
                    "are kept; run again to go on; -v shows Ray's own logs)"
                ) from (exc if verbose else None)
            remaining = [t for t in remaining if t.index not in seen]
            if remaining:
                log.warning("%d image(s) came back from Ray without a result; running them again", len(remaining))
        for task in remaining:
            on_row(failed_row(task, job.out, f"no result from the Ray workers after {passes} passes", run_id=job.run_id))
        return plan
    finally:
        if started:
            ray.shutdown()

