"""Deployment targets.

Each target is one :class:`~neuroposter.targets.base.Target` subclass (the contract: lower -> quantise
for the profile -> build -> run -> verify -> bundle), registered by name as a lazily imported
``"module:Class"`` so that listing targets (e.g. for ``--help``) imports nothing heavy. One class may
serve several names: the simulated chips share :class:`~neuroposter.targets.chips.ChipTarget`, each
driven by the hardware profile of its name.
"""

from __future__ import annotations

import importlib
from typing import Any, Callable

from neuroposter._registry import Registry
from neuroposter.targets.base import ExportRequest, ExportResult, Target, UnsupportedNodeError

__all__ = ["TARGETS", "CHIP_TARGET", "chip_targets", "get_target", "get_exporter", "ExportRequest", "ExportResult",
           "UnsupportedNodeError", "TARGET_WEIGHT_SCHEME", "training_targets", "training_arithmetic",
           "training_quantiser"]

TARGETS: Registry[str] = Registry("target")
TARGETS.add("nir", "neuroposter.targets.nir_target:NirTarget")
TARGETS.add("onnx", "neuroposter.targets.onnx_target:OnnxTarget")
TARGETS.add("loihi", "neuroposter.targets.loihi.target:LoihiTarget")

# Simulated chips: the profile of the same name in hardware_profiles/ drives each of them.
CHIP_TARGET = "neuroposter.targets.chips:ChipTarget"
for _chip in ("spinnaker", "spinnaker2", "truenorth", "xylo", "speck"):
    TARGETS.add(_chip, CHIP_TARGET)


def chip_targets() -> list[str]:
    """The registered simulated-chip targets (served by the profile-driven chip target)."""
    return [n for n in TARGETS.names() if TARGETS.get(n) == CHIP_TARGET]


def get_target(name: str) -> Target:
    """A fresh instance of target ``name`` (imports its module now).

    Raises:
        KeyError: unknown name (the message lists the registered ones).
    """
    module, cls = TARGETS.get(name).split(":")
    return getattr(importlib.import_module(module), cls)()


def get_exporter(name: str) -> Callable[[ExportRequest], ExportResult]:
    """The export function of target ``name``: runs the contract's stages (:func:`~.base.run_export`)."""
    from neuroposter.targets.base import run_export

    TARGETS.get(name)   # an unknown name fails here, listing the valid ones

    def export(request: ExportRequest) -> ExportResult:
        return run_export(get_target(name), request)

    return export


# The weight grid each integer target's quantiser puts a connection on (the arithmetic quantisation-aware
# training emulates, :mod:`neuroposter.ir.qat`): Loihi 2's mantissa x power-of-two exponent
# (:func:`~neuroposter.targets.loihi.fixed_point.quantize_weights`, widths from the profile's ``fixed_point``);
# the simulated chips' linear grid (:func:`~neuroposter.ir.quantize.quantize_nbit`, ``limits.weight_bits``).
TARGET_WEIGHT_SCHEME: dict[str, str] = {"loihi": "pow2", **{c: "grid" for c in chip_targets()}}


def training_targets() -> list[str]:
    """The targets ``neuroposter train --target`` can train for (those with an integer weight arithmetic)."""
    return [n for n in TARGETS.names() if n in TARGET_WEIGHT_SCHEME]


def training_arithmetic(name: str, profile: str | None = None) -> Any:
    """The weight arithmetic of target ``name`` on its hardware profile, for quantisation-aware training.

    Args:
        name: a target of :func:`training_targets`.
        profile: a profile name or path (default: the target's own).

    Returns:
        A :class:`neuroposter.ir.qat.Arithmetic`.

    Raises:
        KeyError: not a training target (the message lists the valid ones).
        ProfileError: the profile does not load. QATError: it gives no weight precision.
    """
    from neuroposter.ir.qat import Arithmetic, QATError
    from neuroposter.profiling.profiles import load_profile

    if name not in TARGET_WEIGHT_SCHEME:
        raise KeyError(f"target {name!r} has no integer weight arithmetic to train with; "
                       f"valid: {', '.join(training_targets())}")
    target = get_target(name)
    prof = load_profile(profile or (name if target.profile == "<target>" else target.profile))
    scheme = TARGET_WEIGHT_SCHEME[name]
    bits = (prof.fixed_point.weight_bits if scheme == "pow2" and prof.fixed_point is not None
            else prof.limits.weight_bits)
    if not bits:
        raise QATError(f"profile {prof.name!r} gives no weight precision (limits.weight_bits) for target {name!r}")
    return Arithmetic(name, prof.name, scheme, int(bits))


def training_quantiser(arithmetic: Any) -> Callable[[Any], Any] | None:
    """The model -> flattened deployed integer graph of a target whose network is integer (Loihi 2), for the
    integer neurons of quantisation-aware training (:func:`neuroposter.ir.qat.enable`); None for targets whose
    deployed network stays float (the simulated chips: weights on their grid only). A model with an analog input
    (the pixel SDT) needs the arithmetic's ``input_amax`` (:class:`neuroposter.ir.qat.Arithmetic`): its graded
    input's scale, the same the export uses."""
    if arithmetic.target != "loihi":
        return None
    from neuroposter.profiling.profiles import load_profile

    profile = load_profile(arithmetic.profile)

    def integer_graph(model: Any) -> Any:
        from neuroposter.ir.graph import flatten
        from neuroposter.ir.lower import lower_model
        from neuroposter.ir.qat import QATError
        from neuroposter.ir.quantize import QuantizationError
        from neuroposter.targets.loihi.fixed_point import quantize_loihi

        graph = lower_model(model, T=1)
        # a direct-encoded (analog) input: the range the export's graded input uses too (the Loihi target reads
        # graph.metadata["input_amax"], which the lowering records from the arithmetic's input_amax)
        amax = (graph.metadata or {}).get("input_amax")
        try:
            graph_int, _ = quantize_loihi(flatten(graph, strict=True), profile,
                                          input_amax=None if amax is None else float(amax))
        except QuantizationError as exc:
            raise QATError(f"the deployed integer graph cannot be built: {exc}") from None
        return flatten(graph_int, strict=True)

    return integer_graph
