"""The export-target contract: one request in, one verified bundle out.

Every target is one :class:`Target` subclass implementing the stages of the contract

    lower -> quantise (for the profile) -> build -> run -> verify -> bundle

and :func:`run_export` drives them the same way for every target (``docs/contracts.md``, "Adding a
target"): it validates the options, refuses a bad destination before any work, loads the run and its
evaluation inputs (:func:`neuroposter.targets.inputs.evaluation_inputs`, the one way to load them),
runs the stages, and writes the bundle through one writer (``targets._bundle``: lock, guarded
destination, every file hashed in ``manifest.json``, atomic swap). A verification below its bound keeps
the new bundle as ``<name>.failed`` and leaves the good one alone; a deliberate refusal (the chip cannot
host the network: :class:`Refusal` or ``Verdict(refused=True)``) is a result and stays at the final name.

Two bounds (:class:`Gate`, recorded in ``summary["gates"]``):

* **deployed vs trained** (targets with ``min_trained_agreement``: loihi, the chips, onnx): the deployed network
  (its integer reference simulation, the chip's arithmetic, onnxruntime) against the trained model on
  ``trained_samples`` samples of the split (default: the whole split); the bound is on ``set_agreement``
  (identical genre set), ``--min-trained-agreement`` (default 0.95);
* **simulator vs reference** (``min_agreement``, ``--min-agreement``, default 0.99): a chip simulator (Lava)
  against the integer reference on ``samples`` of those samples (seeded subset).
"""

from __future__ import annotations

import abc
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, ClassVar, Mapping

if TYPE_CHECKING:
    import numpy as np

__all__ = ["ExportRequest", "ExportResult", "UnsupportedNodeError", "Refusal", "Verdict", "Gate", "ExportContext",
           "Target", "run_export", "trained_gate", "gate_verdict"]


@dataclass(frozen=True)
class ExportRequest:
    """What `neuroposter export` asks a target to do.

    Attributes:
        target: registered target name (e.g. ``"loihi"``, ``"nir"``, ``"onnx"``, ``"xylo"``).
        run_dir: the training run to export (``WORKSPACE/runs/<name>``).
        out_dir: the bundle folder to write (``export/<target>/<run>`` unless ``--out``).
        workspace: the workspace root (to find datasets, features, encoded sets).
        options: target-specific options from the CLI (samples, agreement threshold, ...).
        force: replace an existing bundle at ``out_dir`` (``--force``); without it an existing bundle
            is refused. Whatever is not an export bundle is never replaced.
        write_config: writes ``resolved_config.yaml`` into the folder it is given (the CLI's writer);
            called inside the bundle before it is finalised, so the file is hashed with the rest.
    """

    target: str
    run_dir: Path
    out_dir: Path
    workspace: Path
    options: Mapping[str, Any] = field(default_factory=dict)
    force: bool = False
    write_config: Callable[[Path], None] | None = None


@dataclass(frozen=True)
class ExportResult:
    """What a target wrote and verified.

    Attributes:
        out_dir: the bundle folder (holds manifest.json and summary.json); for a failed verification
            the ``<name>.failed`` folder it was kept in.
        summary: the content of summary.json.
        lines: a short human-readable summary the CLI prints.
        ok: False when verification failed or the target refused the network (the CLI then exits 1
            after printing).
        failed: True when the verification failed: the new bundle was kept beside the requested one
            as ``<name>.failed`` and nothing was replaced. False for a success and for a deliberate
            refusal verdict (a chip that cannot host the network: ``ok`` False, bundle at its name,
            ``summary["reason"]`` says why).
    """

    out_dir: Path
    summary: Mapping[str, Any]
    lines: tuple[str, ...] = ()
    ok: bool = True
    failed: bool = False


class UnsupportedNodeError(Exception):
    """A target cannot host a node (type, fan-in, precision...); the message names node and limit."""

    def __init__(self, node: str, node_type: str, target: str, reason: str) -> None:
        super().__init__(f"{target} cannot host node {node!r} ({node_type}): {reason}")
        self.node, self.node_type, self.target, self.reason = node, node_type, target, reason


class Refusal(Exception):
    """Raised by a stage when the target cannot host the network: the bundle records the verdict."""

    def __init__(self, reason: str, lines: tuple[str, ...] | list[str] = ()) -> None:
        super().__init__(reason)
        self.reason, self.lines = reason, tuple(lines)


@dataclass(frozen=True)
class Verdict:
    """The outcome of :meth:`Target.verify`.

    Attributes:
        ok: every check holds and the network is hosted.
        reason: why not (None when ``ok``).
        refused: the target cannot host the network (a result, kept at the bundle's name) rather than a
            failed verification (kept as ``<name>.failed``).
    """

    ok: bool
    reason: str | None = None
    refused: bool = False


@dataclass(frozen=True)
class Gate:
    """One bound an export checks: ``value >= bound`` of ``verification.<check>.<metric>`` (``value < bound`` for
    an upper bound).

    Attributes:
        check: the verification section (``"deployed_vs_trained"``, ``"simulator_vs_reference"``).
        metric: its key the bound applies to.
        value: the measured value.
        bound: the minimum (the maximum of an upper bound).
        flag: the CLI flag that sets the bound.
        failure: the sentence that says what fell short (the verdict's reason when it fails).
        upper: the bound is an upper one (``value < bound``), e.g. a numerical difference.
    """

    check: str
    metric: str
    value: float
    bound: float
    flag: str
    failure: str
    upper: bool = False

    @property
    def ok(self) -> bool:
        """The value meets the bound."""
        return self.value < self.bound if self.upper else self.value >= self.bound

    def to_dict(self) -> dict[str, Any]:
        """The ``summary["gates"]`` entry."""
        return {"check": self.check, "metric": self.metric, "value": self.value,
                ("max" if self.upper else "min"): self.bound, "flag": self.flag, "ok": self.ok}


def trained_gate(ctx: "ExportContext", entry: Mapping[str, Any], deployed: str, hint: str | None = None) -> Gate:
    """The deployed-vs-trained bound on ``entry`` (a ``verification.deployed_vs_trained``): its ``set_agreement``
    (the fraction of samples whose genre set is identical) against ``--min-trained-agreement``.

    Args:
        ctx: the export (its ``min_trained_agreement`` option and split).
        entry: the comparison (:func:`neuroposter.targets.verify.compare`).
        deployed: what the deployed network is, in words (for the failure sentence).
        hint: what to do about a failure (appended to the sentence).
    """
    bound = float(ctx.options["min_trained_agreement"])
    value = float(entry["set_agreement"])
    iv = (entry.get("intervals") or {}).get("set_agreement")
    level = 100 * float((entry.get("bootstrap") or {}).get("level", 0.95))
    ci = f" ({level:g} % interval {iv[0]:.3f}-{iv[1]:.3f})" if iv else ""
    failure = (f"{deployed} keeps the trained model's genre set on {value:.3f} of {entry['samples']} "
               f"{ctx.options.get('split', 'test')} samples{ci}, below --min-trained-agreement {bound:g} "
               f"(top-1 agreement {float(entry['top1_agreement']):.3f})" + (f"; {hint}" if hint else ""))
    return Gate("deployed_vs_trained", "set_agreement", value, bound, "--min-trained-agreement", failure)


def gate_verdict(ctx: "ExportContext", gates: list[Gate]) -> Verdict:
    """Records ``summary["gates"]`` and returns the verdict: ok when every gate holds, else the failures joined."""
    ctx.summary["gates"] = [g.to_dict() for g in gates]
    failed = [g.failure for g in gates if not g.ok]
    return Verdict(not failed, "; ".join(failed) if failed else None)


@dataclass
class ExportContext:
    """What the stages share.

    Attributes:
        request: the export request.
        options: the validated options (defaults filled in).
        run: the loaded run (``neuroposter.train.load_run``).
        inputs: the evaluation samples (:class:`~neuroposter.targets.inputs.EvalInputs`).
        profile: the hardware profile the target deploys to (None for profile-free targets).
        summary: ``summary.json`` being built (``target``, ``run``, ``model`` filled in).
        lines: what the CLI prints, after the first line.
        files: bundle file name -> writer called with the file's path inside the temporary bundle.
        timings: stage -> seconds.
        needs_bytes: estimated bundle size (checked against free disk space before writing).
        scratch: a temporary folder for artifacts a stage writes before the bundle exists (an exported file a
            later stage verifies); removed when the export ends. :meth:`copy_file` registers one for the bundle.
    """

    request: ExportRequest
    options: dict[str, Any]
    run: Any
    inputs: Any
    profile: Any = None
    summary: dict[str, Any] = field(default_factory=dict)
    lines: list[str] = field(default_factory=list)
    files: dict[str, Callable[[Path], None]] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    needs_bytes: int | None = None
    scratch: Path | None = None

    def simulator_positions(self) -> "np.ndarray":
        """Positions in ``inputs`` of the simulator's sample: ``samples`` of them (all when fewer), the first ones
        for ``seed=None``, else a seeded random subset (sorted)."""
        from neuroposter.targets.inputs import select

        return select(self.inputs.samples, int(self.options["samples"]), self.options.get("seed"))

    def copy_file(self, name: str) -> None:
        """Registers ``scratch/name`` as bundle file ``name`` (copied byte for byte: what was verified is what
        is shipped)."""
        import shutil

        src = Path(self.scratch) / name
        self.files[name] = lambda dst: shutil.copyfile(src, dst)

    @property
    def run_name(self) -> str:
        """The exported run's folder name."""
        return Path(self.request.run_dir).name


class Target(abc.ABC):
    """One deployment target (see the module docstring; one subclass per target module).

    An instance serves one export (``targets.get_target`` makes a fresh one), so stages may keep what later
    stages need on ``self``; what goes into the bundle goes through ``ctx``.

    Class attributes:
        name: the registered target name (a class serving several chips takes it from the request).
        model_kinds: the model kinds it exports (``ModelSpec.kind``: ``"snn"``, ``"ann"``).
        defaults: option defaults (``samples`` and ``seed`` pick the simulator's sample -- the evaluation inputs
            of a target without a deployed-vs-trained bound: ``seed=None`` the first samples, an integer a seeded
            random subset; ``split``; ``trained_samples``: the deployed-vs-trained samples, the first ones of the
            split, default all).
        min_agreement: default bound of the simulator-vs-reference verification (None: no such bound).
        min_trained_agreement: default bound of the deployed-vs-trained verification on ``set_agreement`` (None:
            the target makes no such comparison, and its evaluation inputs are the ``samples``).
        profile: hardware profile name (None: the target has none; ``"<target>"``: the target's own name).
    """

    name: ClassVar[str] = ""
    model_kinds: ClassVar[tuple[str, ...]] = ("snn",)
    defaults: ClassVar[dict[str, Any]] = {"samples": 16, "split": "test", "seed": 0}
    min_agreement: ClassVar[float | None] = 0.99
    min_trained_agreement: ClassVar[float | None] = None
    profile: ClassVar[str | None] = None

    def options(self, given: Mapping[str, Any]) -> dict[str, Any]:
        """Defaults + the given options, validated (``samples``, ``trained_samples``, every other ``*_samples`` of
        ``defaults`` and the bounds).

        Raises:
            UsageError: an option out of range.
        """
        from neuroposter.targets._bundle import SAMPLES_LIMIT, fraction_option, samples_option

        opts = {**self.defaults, **{k: v for k, v in dict(given).items() if v is not None}}
        opts["samples"] = samples_option(given, self.defaults["samples"])
        if self.min_agreement is not None:
            opts["min_agreement"] = fraction_option(given, "min_agreement", self.min_agreement)
        if self.min_trained_agreement is not None:
            opts["min_trained_agreement"] = fraction_option(given, "min_trained_agreement",
                                                            self.min_trained_agreement)
            opts["trained_samples"] = samples_option({"samples": given.get("trained_samples")},
                                                     int(self.defaults.get("trained_samples", SAMPLES_LIMIT)),
                                                     flag="--trained-samples")
        for key in self.defaults:   # the target's other sample counts (count_samples, ...), as --samples
            if key.endswith("_samples") and key != "trained_samples":
                opts[key] = samples_option({"samples": given.get(key)}, self.defaults[key], flag=f"--opt {key}")
        return opts

    def input_samples(self, opts: Mapping[str, Any]) -> tuple[int, int | None]:
        """``(samples, seed)`` of the evaluation inputs: the first ``trained_samples`` of the split for a target
        with a deployed-vs-trained bound (the simulator's sample is then drawn from them), else ``samples`` with
        ``seed``."""
        if self.min_trained_agreement is not None:
            return int(opts["trained_samples"]), None
        return int(opts["samples"]), opts.get("seed")

    def check_model(self, run: Any, run_dir: Path, target: str) -> None:
        """Refuses a run whose model kind this target does not export (names the ones it does).

        Raises:
            DataError: the run's model is of another kind.
        """
        from neuroposter.errors import DataError
        from neuroposter.models import MODELS

        if MODELS.get(run.model_name).kind not in self.model_kinds:
            fit = [n for n in MODELS.names() if MODELS.get(n).kind in self.model_kinds]
            others = "onnx" if "ann" not in self.model_kinds else "nir or loihi"
            raise DataError(f"the {target} target exports {', '.join(fit)} runs; {run_dir} is a "
                            f"{run.model_name!r} run (use --target {others})")

    def load_profile(self, ctx: ExportContext) -> Any:
        """The hardware profile of this export (``--opt profile=...`` overrides the default)."""
        if self.profile is None and not ctx.options.get("profile"):
            return None
        from neuroposter.profiling.profiles import load_profile

        name = ctx.options.get("profile") or (ctx.request.target if self.profile == "<target>" else self.profile)
        return load_profile(name)

    @abc.abstractmethod
    def lower(self, ctx: ExportContext) -> Any:
        """The run's network in the target's interchange form (a NIR graph, an ONNX model)."""

    def quantise(self, ctx: ExportContext, lowered: Any) -> Any:
        """The lowered network in the profile's arithmetic (default: unchanged)."""
        return lowered

    def build(self, ctx: ExportContext, network: Any) -> Any:
        """The runnable network (default: the network itself)."""
        return network

    @abc.abstractmethod
    def run(self, ctx: ExportContext, built: Any) -> Any:
        """Runs the built network on ``ctx.inputs`` (and whatever references the verification needs)."""

    @abc.abstractmethod
    def verify(self, ctx: ExportContext, outputs: Any) -> Verdict:
        """Compares the run with its references (:mod:`neuroposter.targets.verify`), fills
        ``ctx.summary["verification"]`` and returns the verdict."""

    def bundle(self, ctx: ExportContext, verdict: Verdict) -> None:
        """Registers the bundle's artifact files in ``ctx.files`` and adds the CLI lines (default: none)."""


def _timed(ctx: ExportContext, stage: str, fn: Callable[..., Any], *args: Any) -> Any:
    t0 = time.perf_counter()
    out = fn(*args)
    ctx.timings[stage] = ctx.timings.get(stage, 0.0) + time.perf_counter() - t0
    return out


def run_export(target: Target, request: ExportRequest) -> ExportResult:
    """Runs the contract's stages for one request and writes the bundle (see the module docstring).

    Raises:
        UsageError: a refused ``--out`` or an option out of range. ManifestError: the run or its
            inputs are missing or changed. DataError: the run's model is not one the target exports.
            ResourceError: not enough disk space.
    """
    from neuroposter.targets._bundle import check_bundle_destination
    from neuroposter.targets.inputs import evaluation_inputs
    from neuroposter.train import load_run

    t_start = time.perf_counter()
    opts = target.options(request.options or {})
    check_bundle_destination(request)            # refuse a bad --out before minutes of work
    run = load_run(request.run_dir)
    target.check_model(run, Path(request.run_dir), request.target)
    n, seed = target.input_samples(opts)
    inputs = evaluation_inputs(run, request.run_dir, samples=n, split=str(opts["split"]), seed=seed)
    check_bundle_destination(request, [inputs.path])
    with tempfile.TemporaryDirectory(prefix=f"neuroposter-{request.target}-") as scratch:
        ctx = ExportContext(request, opts, run, inputs, scratch=Path(scratch))
        return _run_stages(target, ctx, t_start)


def _run_stages(target: Target, ctx: ExportContext, t_start: float) -> ExportResult:
    """The stages and the bundle of :func:`run_export`."""
    from neuroposter.targets._bundle import bundle_dir, failed_line, reject_bundle, write_bundle

    request, opts, run, inputs = ctx.request, ctx.options, ctx.run, ctx.inputs
    ctx.summary.update(target=request.target, run=ctx.run_name, model=run.model_name,
                       source_run=str(request.run_dir), samples=inputs.samples, inputs=inputs.info())
    for bound in ("min_agreement", "min_trained_agreement"):
        if opts.get(bound) is not None:
            ctx.summary[bound] = opts[bound]
    ctx.profile = target.load_profile(ctx)
    if ctx.profile is not None:
        ctx.summary["profile"] = ctx.profile.name
    try:
        lowered = _timed(ctx, "lower_s", target.lower, ctx)
        network = _timed(ctx, "quantise_s", target.quantise, ctx, lowered)
        built = _timed(ctx, "build_s", target.build, ctx, network)
        outputs = _timed(ctx, "run_s", target.run, ctx, built)
        verdict = _timed(ctx, "verify_s", target.verify, ctx, outputs)
        target.bundle(ctx, verdict)
    except Refusal as exc:
        verdict = Verdict(False, exc.reason, refused=True)
        ctx.lines.extend(exc.lines)
    ctx.summary["ok"] = bool(verdict.ok)
    if verdict.reason is not None and not verdict.ok:
        ctx.summary["reason"] = verdict.reason
    ctx.timings["total_s"] = time.perf_counter() - t_start
    ctx.summary["timings"] = dict(ctx.timings)
    failed = None
    with bundle_dir(request, protect=[inputs.path], needs_bytes=ctx.needs_bytes) as tmp:
        for name, write in ctx.files.items():
            write(tmp / name)
        write_bundle(tmp, target=request.target, run_dir=request.run_dir, run_manifest=run.manifest,
                     artifacts=list(ctx.files), summary=ctx.summary, options=_plain_options(opts),
                     inputs={inputs.name: inputs.record()})
        if not verdict.ok and not verdict.refused:
            failed = reject_bundle(tmp, request.out_dir, str(verdict.reason or "verification failed"))
    where = Path(failed if failed is not None else request.out_dir)
    head = f"{request.target}: {ctx.run_name} ({run.model_name}) -> {where}"
    lines = [head, *ctx.lines]
    if failed is not None:
        lines.append(failed_line(request.out_dir, failed))
    return ExportResult(where, ctx.summary, tuple(lines), bool(verdict.ok), failed=failed is not None)


def _plain_options(opts: Mapping[str, Any]) -> dict[str, Any]:
    """The options as the manifest's config (plain JSON values only)."""
    return {k: v for k, v in opts.items() if isinstance(v, (int, float, str, bool, type(None)))}
