"""The one generic planner: from the declarations of `transferbench.pipeline.artifacts` alone, it walks the
dependency graph of the artifacts asked for, finds what the store lacks, builds the units (batched
as declared), runs them through the executor with one progress stage per artifact, stores each
result as it arrives, and serves artifacts by name.

`Planner` is the base of `transferbench.pipeline.runner.Benchmark`, which gives it the identities that key
artifacts (`prompt_inputs`, `task_identity`, ...), the unit context and the store. Artifacts handed
in from outside (a shipped reference's prompts and cells) come through a `Supply`; the planner
never imports where they come from.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Iterable, Protocol

from transferbench.errors import TransferbenchError
from transferbench.pipeline.artifacts import ARTIFACTS, Address, ArtifactSpec, Sizes
from transferbench.pipeline.executors import Unit
from transferbench.progress import Work


class Supply(Protocol):
    """Artifacts provided from outside the store (e.g. a reference bundle's prompts and cells).

    `training`: how its prompts were trained (`train_attention`, `prompts_per_pass`,
    `eval_kernel`), which keys every artifact computed from them."""

    training: dict[str, Any]

    def has(self, name: str, address: Address) -> bool: ...

    def get(self, name: str, address: Address) -> dict[str, Any] | None: ...


@dataclass
class _Job:
    """A unit of work and the store entries (stage, key) its result fills."""

    unit: Unit
    keys: list[tuple[str, str]]
    # Splits the unit's result into one entry per key (most units return exactly one).
    unpack: Callable[[Any], list[Any]]
    # Examples the unit's backbone passes process: its size, for the stage's progress and ETA.
    work: Work


def _unique(items: Iterable[Any]) -> list[Any]:
    return list(dict.fromkeys(items))


class Planner:
    """Plans, runs and serves the artifacts of `transferbench.pipeline.artifacts.ARTIFACTS` for a subclass
    that provides: `store`, `executor`, `context`, `tasks`, `seeds`, `config`, `prompts_per_pass`,
    `supplied` (a `Supply` or None), `suite`, `data(task)`, `sizes(task)`, the key identities
    (`prompt_inputs`, `null_inputs`, `task_identity`, `backbone_identity`, `device_key`) and,
    optionally, `progress_stage`."""

    def __init__(self) -> None:
        self._loaded: dict[tuple[str, str], Any] = {}  # (stage, key) -> entry read or computed here
        self._views: dict[tuple[str, str], Any] = {}  # (artifact, task) -> what a view holds

    def forget(self) -> None:
        """Drop the entries and views held in memory (the store is read again on next use)."""
        self._loaded.clear()
        self._views.clear()

    def progress_stage(self, description: str, works: list[Work]) -> Callable[[int], None] | None:
        """The callable marking a unit of a stage finished (None: no progress is reported)."""
        return None

    # ---- addresses and keys ---------------------------------------------------------------------
    def addresses(self, name: str, tasks: Iterable[str] | None = None,
                  seeds: Iterable[int] | None = None, sources: Iterable[str | None] | None = None) -> list[Address]:
        """Every entry of `name` for `tasks` (targets of a pair artifact) and `seeds`, in the order
        units are planned: seeds, then tasks (then sources); a pair artifact's `sources` (None in
        them: the null source, where it has one) default to all."""
        spec = ARTIFACTS.get(name)
        tasks = list(self.tasks) if tasks is None else list(tasks)
        seeds = list(self.seeds) if seeds is None else list(seeds)
        if spec.per == "task":
            return [Address(task) for task in tasks]
        if spec.per == "task_seed":
            return [Address(task, seed) for seed in seeds for task in tasks]
        every = [None, *self.tasks] if spec.null_source else list(self.tasks)
        chosen = every if sources is None else [source for source in every if source in set(sources)]
        return [Address(target, seed, source) for seed in seeds for target in tasks for source in chosen
                if source != target]

    def key_inputs(self, name: str, address: Address, options: dict[str, Any] | None = None) -> dict[str, Any]:
        """What an entry's store key hashes: the declaration's `key`, else the task's own prompt
        (the source's for a pair artifact; backbone and task for a `task` artifact), the name, its
        `settings`, options and `code`."""
        spec = ARTIFACTS.get(name)
        options = {**spec.options, **(options or {})}
        if spec.key is not None:
            return spec.key(spec, self, address, options)
        inputs = {"artifact": name, "settings": spec.settings, **({"options": options} if options else {}),
                  "code": spec.code}
        if spec.per == "task":
            return {**self.backbone_identity(), **self.task_identity(address.task), **inputs}
        if spec.per == "task_seed":
            return {"prompt": self.prompt_inputs(address.task, address.seed), **inputs}
        if address.source is None:
            raise TransferbenchError(f"artifact {name!r} has no null source")
        return {"source": self.prompt_inputs(address.source, address.seed),
                "target": self.task_identity(address.task), **inputs}

    def key(self, name: str, address: Address, **options: Any) -> str:
        """The store key of one entry of `name`."""
        return self.store.key(ARTIFACTS.get(name).stage, self.key_inputs(name, address, options))

    def stored_keys(self, names: Iterable[str]) -> list[tuple[str, str]]:
        """(stage, key) of every stored entry of `names` over this planner's tasks and seeds."""
        keys = [(ARTIFACTS.get(name).stage, self.key(name, address)) for name in names for address in self.addresses(name)]
        return [(stage, key) for stage, key in keys if self.store.path(stage, key).exists()]

    # ---- what is there ----------------------------------------------------------------------------
    def _entry(self, name: str, address: Address, options: dict[str, Any]) -> Any | None:
        """The entry from the supply or the store (memoised), or None when it is missing."""
        if self.supplied is not None and not options and self.supplied.has(name, address):
            return self.supplied.get(name, address)
        stage = ARTIFACTS.get(name).stage
        key = self.key(name, address, **options)
        if (stage, key) not in self._loaded:
            entry = self.store.load(stage, key)  # a corrupt file is removed and counts as missing
            if entry is None:
                return None
            self._loaded[stage, key] = entry
        return self._loaded[stage, key]

    def get(self, name: str, *, task: str, seed: int | None = None, source: str | None = None,
            **options: Any) -> Any:
        """One stored entry of `name` (computed first if missing): of `task`, of (task, seed), or of
        (source, target=`task`, seed); `options` select a declared variant (e.g. `positions=`)."""
        if ARTIFACTS.get(name).unit is None:
            raise TransferbenchError(f"artifact {name!r} is served only, not stored: read it with view({name!r}, task)")
        address = Address(task, seed, source)
        self._ensure(name, [address], options, ())
        entry = self._entry(name, address, options)
        if entry is None:
            raise TransferbenchError(f"artifact {name} of {address} is missing from {self.store.root} after computing "
                                     "it; is another process clearing the cache?")
        return entry

    def ensure(self, names: Iterable[str], tasks: Iterable[str] | None = None,
               sources: Iterable[str | None] | None = None) -> None:
        """Compute (or load) every entry of `names` and of what they need, for `tasks` (default:
        all; the targets of a pair artifact), a pair artifact's `sources` (default: all; None is
        the null source) and every seed: one batch of units and one progress stage per artifact."""
        for name in _unique(names):
            if name not in ARTIFACTS:
                from transferbench.registry import did_you_mean

                raise TransferbenchError(f"unknown artifact {name!r}{did_you_mean(name, ARTIFACTS.names())}")
            self._ensure(name, self.addresses(name, tasks, sources=sources), {}, ())

    def view(self, name: str, task: str) -> Any:
        """What a `TaskView` of `task` holds for `name`: the declaration's `view`, else its `serve`
        per seed (a list), per task, or, for a pair artifact read on the target, {source: per seed}."""
        memo = (name, task)
        if memo not in self._views:
            spec = ARTIFACTS.get(name)
            self._ensure(name, self.addresses(name, [task]), {}, ())
            if spec.view is not None:
                value = spec.view(self, task)
            elif spec.per == "task":
                value = spec.serve(self.get(name, task=task))
            elif spec.per == "task_seed":
                value = [spec.serve(self.get(name, task=task, seed=seed)) for seed in self.seeds]
            else:
                value = {source: [spec.serve(self.get(name, task=task, seed=seed, source=source)) for seed in self.seeds]
                         for source in self.tasks if source != task}
            self._views[memo] = value
        return self._views[memo]

    def cold_work(self, names: Iterable[str], skip: Iterable[str] = ()) -> Work:
        """Examples the backbone processes to compute `names` and what they need (less `skip`) for
        every task and seed from a cold cache: the declarations' cost models at the suite's sizes."""
        skip, total = set(skip), Work()
        for name in self._closure(names):
            if name not in skip:
                spec = ARTIFACTS.get(name)
                for address in self.addresses(name):
                    sizes = self.suite.sizes_for(address.task)
                    total = total + spec.work(Sizes(sizes.train, sizes.dev, sizes.test), self.config)
        return total

    def _closure(self, names: Iterable[str]) -> list[str]:
        out: list[str] = []

        def visit(name: str, path: tuple[str, ...]) -> None:
            if name in path:
                raise TransferbenchError(f"artifacts need each other in a cycle: {' -> '.join((*path, name))}")
            for dep in ARTIFACTS.get(name).needs:
                visit(dep, (*path, name))
            if name not in out:
                out.append(name)

        for name in names:
            visit(name, ())
        return out

    # ---- planning -----------------------------------------------------------------------------------
    def _ensure(self, name: str, addresses: list[Address], options: dict[str, Any], path: tuple[str, ...]) -> None:
        if name in path:
            raise TransferbenchError(f"artifacts need each other in a cycle: {' -> '.join((*path, name))}")
        spec = ARTIFACTS.get(name)
        if spec.unit is None:  # served only: what its view reads
            for dep in spec.needs:
                self._ensure(dep, self._needed(spec, dep, addresses), {}, (*path, name))
            return
        missing = [address for address in _unique(addresses) if self._entry(name, address, options) is None]
        if not missing:
            return
        batches = self._batches(name, spec, missing)
        for dep in spec.needs:
            self._ensure(dep, self._needed(spec, dep, [a for batch in batches for a in batch]), {}, (*path, name))
        self.store.check_writable(spec.stage)  # a read-only or full cache fails here, before compute
        self._execute(spec.title or name.replace("_", " "), [self._job(name, spec, batch, options) for batch in batches])

    def _needed(self, spec: ArtifactSpec, dep: str, addresses: list[Address]) -> list[Address]:
        """The entries of `dep` that units of `spec` at `addresses` read: of the same task and seed
        (the source's for a pair artifact; every seed for a `task` artifact), none for the null source."""
        per = ARTIFACTS.get(dep).per
        if per == "pair_seed":
            raise TransferbenchError(f"an artifact cannot need the pair artifact {dep!r}")
        out = []
        for address in addresses:
            task = address.source if spec.per == "pair_seed" else address.task
            if task is None:
                continue
            if per == "task":
                out.append(Address(task))
            else:
                out += [Address(task, seed) for seed in ([address.seed] if address.seed is not None else self.seeds)]
        return _unique(out)

    def _batches(self, name: str, spec: ArtifactSpec, missing: list[Address]) -> list[list[Address]]:
        """The units' entries: one each, a (target, seed) row, or the fixed groups of
        `prompts_per_pass` holding a missing entry (the same groups on every run, so a resumed run
        trains each entry with the same neighbours)."""
        if spec.batching == "each":
            return [[address] for address in missing]
        rows = _unique((address.task, address.seed) for address in missing)
        if spec.batching == "row":
            return [[a for a in missing if (a.task, a.seed) == row] for row in rows]
        size = self.prompts_per_pass
        orders = ([self.addresses(name)] if spec.per == "task_seed" else
                  [self.addresses(name, [target], [seed]) for target, seed in rows])
        wanted = set(missing)
        return [order[i : i + size] for order in orders for i in range(0, len(order), size)
                if wanted & set(order[i : i + size])]

    def _needed_value(self, spec: ArtifactSpec, address: Address) -> list[Any]:
        """The values the unit of `spec` at `address` reads, one per artifact in `needs`."""
        values = []
        for dep in spec.needs:
            needed = self._needed(spec, dep, [address])
            if not needed:  # the null source
                values.append(None)
                continue
            entry = self._entry(dep, needed[0], {})
            if entry is None:
                raise TransferbenchError(f"artifact {dep} of {needed[0]} is missing from {self.store.root} after "
                                         "computing it; is another process clearing the cache?")
            values.append(ARTIFACTS.get(dep).value(entry))
        return values

    def _job(self, name: str, spec: ArtifactSpec, batch: list[Address], options: dict[str, Any]) -> _Job:
        fn, ctx = spec.unit_function(), self.context
        trailing = tuple({**spec.options, **options}.values())
        keys = [(spec.stage, self.key(name, address, **options)) for address in batch]
        work = sum((spec.work(self.sizes(address.task), self.config) for address in batch), Work())
        first = batch[0]
        if spec.per == "task":
            return _Job(Unit(fn, (ctx, first.task, *trailing)), keys, lambda result: [result], work)
        if spec.per == "task_seed":
            if spec.batching == "groups":
                return _Job(Unit(fn, (ctx, [(a.task, a.seed) for a in batch], *trailing)), keys, list, work)
            return _Job(Unit(fn, (ctx, first.task, first.seed, *self._needed_value(spec, first), *trailing)), keys,
                        lambda result: [result], work)
        values = {a.source: (self._needed_value(spec, a) or [None])[0] for a in batch}
        if spec.batching == "row":
            sources = [a.source for a in batch]
            return _Job(Unit(fn, (ctx, first.task, first.seed, values, *trailing)), keys,
                        lambda row: [row[source] for source in sources], work)
        return _Job(Unit(fn, (ctx, first.task, first.seed, list(values.values()), *trailing)), keys, list, work)

    def _execute(self, description: str, jobs: list[_Job]) -> None:
        """Run the jobs' units through the executor; store each result in the driver as it arrives."""
        advance = self.progress_stage(description, [job.work for job in jobs]) or (lambda index: None)

        def store_result(index: int, result: Any) -> None:
            job = jobs[index]
            for (stage, key), entry in zip(job.keys, job.unpack(result), strict=True):
                self.store.save(stage, key, entry)  # atomic rename: never half-written
                self._loaded[stage, key] = entry
            advance(index)

        self.executor.run([job.unit for job in jobs], description, on_result=store_result)
