"""Chip-fitted models: the sizes and neuron of a ``chip-snn`` derived from a hardware profile's limits alone.

:func:`derive_fit` is pure: a profile and the data's dimensions in, a :class:`FitPlan` out, with one reason per
decision naming the limit that forced it. No chip is special-cased, so a new profile gets a fitted model too.

The derivation, for the chain ``[host: Linear -> LIF] -> (Linear -> chip neuron) x L -> Linear -> Output``:

1. **Read-out**: ``n_classes <= outputs_per_chip`` (when given), else :class:`FitError` naming the limit.
2. **Layers**: ``L`` hidden layers, the full spiking MLP's depth (:class:`~neuroposter.models.snn_mlp.
   SpikingMLPConfig`: 2), fewer when ``max_layers`` counts fewer weighted layers (hidden + read-out).
3. **Widths** start at the full MLP's hidden widths and are capped by ``max_channels``; by ``fan_in`` (a hidden
   layer's width is the fan-in of the layer after it, the read-out included); by ``fan_out`` (a neuron sends to
   every neuron of the next layer) unless the profile says fan-out is split exactly by neuron copies
   (``limits.fan_out_split: exact``, the mapper's business; ``fan_out_unit: core`` counts destination cores, so
   the cap is ``fan_out x neurons_per_core``; ``fan_out_unit: population`` counts destination layers and caps no
   width) or the read-out alone already needs more
   destinations than ``fan_out`` (then no width cap can help: left to the mapper); and by the neuron budget
   ``neurons_per_chip`` (minus ``n_classes`` output neurons unless the chip has separate ones,
   ``outputs_per_chip``), scaled down proportionally. A limit the profile splits exactly (``fan_in_split`` /
   ``fan_out_split: exact``: partial-sum relays, neuron copies) is the mapper's and caps nothing.
4. **Input**: the chip accepts ``min(inputs_per_chip, fan_in, max_channels)`` channels (the given ones);
   when ``d_in`` exceeds it, a **host projection** ``d_in -> host_dim`` (a Linear and the project's LIF on the
   host CPU, lowered with ``placement = host``) feeds the chip's input channels.
5. **Kernel memory** (``kernel_memory_per_core[i]``, one core per layer as on Speck): ``in_i * out_i <=
   kernel_memory_per_core[i]`` for every chip layer, the read-out included; the larger side of a layer that
   does not fit is reduced (balanced, ``isqrt`` of the memory, when both sides can shrink); a ``d_in`` that
   would squeeze the first layer below that forces a host projection.
6. **Neuron**: the profile's ``neuron.model`` (with its parameters), else the first of
   ``limits.neuron_models`` that :data:`~neuroposter.models.chip_neurons.CHIP_NEURONS` provides (``LIF`` ->
   ``lif``, ``IF`` -> ``if``).
7. **Weights**: ``limits.weight_bits`` on the chip's grid (:func:`neuroposter.targets.training_arithmetic`);
   the host projection stays float.

Not derived (left to the mapper and the export's verification): cores per chip and neurons per core (a layer
may span cores), synapse memory, delays; grouped / blocked connectivity for a fan-in below the desired width
is not used -- widths are capped instead (a reason says so).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from typing import Any, Mapping

from neuroposter.errors import NeuroposterError

__all__ = ["FitError", "FitPlan", "derive_fit", "needs_fit", "chip_neuron_of", "ConvLayer", "ConvFitPlan",
           "derive_conv_fit", "side_limit"]


class FitError(NeuroposterError):
    """No chip-fitted model exists for a profile (names the limit), or the profile's neuron is unavailable."""


@dataclass(frozen=True)
class FitPlan:
    """A chip-fitted ``chip-snn`` for one profile.

    Attributes:
        profile: the hardware profile's name.
        d_in: input channels of the data.
        n_classes: genres.
        T: time steps per sample (recorded; the chain runs every step).
        host_dim: width of the host projection (0: none).
        widths: widths of the chip's hidden layers.
        neuron: the chip neuron (a CHIP_NEURONS name).
        neuron_params: its constructor parameters.
        weight_bits: the chip's weight precision (None: unknown, weights left float).
        reasons: one line per decision, naming the limit that forced it.
    """

    profile: str
    d_in: int
    n_classes: int
    T: int
    host_dim: int
    widths: tuple[int, ...]
    neuron: str
    neuron_params: Mapping[str, Any] = field(default_factory=dict)
    weight_bits: int | None = None
    reasons: tuple[str, ...] = ()

    @property
    def chip_in(self) -> int:
        """Channels entering the chip."""
        return self.host_dim or self.d_in

    @property
    def chip_neurons(self) -> int:
        """Neurons on the chip (hidden layers; the read-out is currents)."""
        return int(sum(self.widths))

    def to_model_kwargs(self) -> dict[str, Any]:
        """The ``chip-snn`` constructor kwargs (plain JSON, as ``model.json`` stores them)."""
        return {"d_in": int(self.d_in), "n_classes": int(self.n_classes), "host_dim": int(self.host_dim),
                "widths": [int(w) for w in self.widths], "neuron": self.neuron,
                "neuron_params": dict(self.neuron_params), "chip": self.profile}

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON of the whole plan."""
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        out.update(widths=list(self.widths), neuron_params=dict(self.neuron_params), reasons=list(self.reasons))
        return out

    def describe(self) -> str:
        """One line: ``truenorth: host 1664 -> 256, chip 256 -> [256, 128] -> 8 (if neurons, 1-bit weights)``."""
        host = f"host {self.d_in} -> {self.host_dim}, " if self.host_dim else ""
        bits = f"{self.weight_bits}-bit weights" if self.weight_bits else "float weights"
        return (f"{self.profile}: {host}chip {self.chip_in} -> {list(self.widths)} -> {self.n_classes} "
                f"({self.neuron} neurons, {bits})")


def _given(limits: Any, name: str) -> int | None:
    v = getattr(limits, name, None)
    return None if v is None else int(v)


def chip_neuron_of(profile: Any) -> tuple[str, dict[str, Any], str]:
    """``(neuron name, parameters, reason)``: the profile's ``neuron`` entry, else the first of its
    ``limits.neuron_models`` that CHIP_NEURONS provides.

    Raises:
        FitError: the profile names no neuron a fitted model can use.
    """
    from neuroposter.models.chip_neurons import CHIP_NEURONS

    spec = getattr(profile, "neuron", None)
    if spec is not None:
        if spec.model not in CHIP_NEURONS:
            raise FitError(f"profile {profile.name!r} names neuron {spec.model!r}, which no fitted model has "
                           f"(CHIP_NEURONS: {', '.join(CHIP_NEURONS.names())})")
        return spec.model, dict(spec.params), f"neuron {spec.model}: the profile's neuron.model" + (
            f" ({spec.note.strip()})" if spec.note else "")
    models = tuple(getattr(profile.limits, "neuron_models", None) or ())
    for m in models:
        if m.lower() in CHIP_NEURONS:
            return m.lower(), {}, f"neuron {m.lower()}: the first of limits.neuron_models {list(models)} a fitted " \
                                  "model provides (no neuron entry in the profile)"
    raise FitError(f"profile {profile.name!r} names no neuron a fitted model can use: neuron_models "
                   f"{list(models) or 'not given'}, CHIP_NEURONS: {', '.join(CHIP_NEURONS.names())} (add a "
                   "`neuron: {model: ...}` entry to the profile)")


def _default_params(neuron: str, given: Mapping[str, Any]) -> dict[str, Any]:
    """The neuron's parameters: the profile's, completed by the full model's ``tau`` / ``v_th`` where the
    neuron's constructor takes them (adapted by the neuron class's ``fitted_params`` when it has one: e.g. Xylo's
    threshold on the scale of its synaptic filter)."""
    import inspect

    from neuroposter.models.chip_neurons import chip_neuron_class
    from neuroposter.models.snn_mlp import SpikingMLPConfig

    try:
        cls = chip_neuron_class(neuron)
        sig = inspect.signature(cls.__init__)
    except ValueError as exc:       # ChipNeuronError: the neuron's module is not there
        raise FitError(str(exc)) from None
    full = SpikingMLPConfig()
    out = {k: v for k, v in (("tau", full.tau), ("v_th", full.v_th)) if k in sig.parameters}
    adapt = getattr(cls, "fitted_params", None)
    if adapt is not None:
        out = adapt(out, given)
    out.update({k: v for k, v in given.items() if k in sig.parameters})
    return out


def derive_fit(profile: Any, d_in: int, n_classes: int, T: int) -> FitPlan:
    """The chip-fitted ``chip-snn`` for ``profile`` (module docstring); pure.

    Args:
        profile: a hardware profile (name, path or :class:`~neuroposter.profiling.profiles.HardwareProfile`).
        d_in: input channels of the data (pooled features).
        n_classes: genres.
        T: time steps per sample.

    Raises:
        FitError: the read-out does not fit (``outputs_per_chip``), a limit leaves no room for a layer, or the
            profile has no usable neuron.
    """
    from neuroposter.models.snn_mlp import SpikingMLPConfig
    from neuroposter.profiling.profiles import load_profile

    prof = load_profile(profile)
    lim = prof.limits
    name = prof.name
    d_in, n_classes = int(d_in), int(n_classes)
    reasons: list[str] = []

    opc = _given(lim, "outputs_per_chip")
    if opc is not None and n_classes > opc:
        raise FitError(f"{name}: {n_classes} classes need {n_classes} read-out channels > outputs_per_chip {opc}; "
                       "no fitted model can read them out")

    full = SpikingMLPConfig()
    widths = [int(full.hidden1), int(full.hidden2)]
    ml = _given(lim, "max_layers")
    if ml is not None and len(widths) + 1 > ml:
        if ml < 2:
            raise FitError(f"{name}: max_layers {ml} leaves no hidden layer beside the read-out")
        reasons.append(f"{ml - 1} hidden layers instead of {len(widths)}: max_layers {ml} (hidden + read-out)")
        widths = widths[: ml - 1]

    def cap(limit: str, value: int | None, why: str) -> None:
        nonlocal widths
        if value is None:
            return
        new = [min(w, value) for w in widths]
        if new != widths:
            reasons.append(f"hidden widths {widths} -> {new}: {limit} {value} ({why})")
            widths = new

    mc = _given(lim, "max_channels")
    fi = _given(lim, "fan_in")
    if fi is not None and str(getattr(lim, "fan_in_split", None) or "") == "exact":
        reasons.append(f"fan_in {fi} not a width or input cap: the profile splits fan-in exactly into partial sums "
                       "(fan_in_split: exact; the mapper places the relays)")
        fi = None
    fo = _given(lim, "fan_out")
    cap("max_channels", mc, "channels per layer")
    cap("fan_in", fi, "a layer's width is the next layer's fan-in")
    unit = str(getattr(lim, "fan_out_unit", None) or "neuron")
    if fo is not None and unit == "population":
        reasons.append(f"fan_out {fo} not a width cap: it counts destination layers (fan_out_unit: population) "
                       "and each layer of the chain feeds one")
        fo = None
    elif fo is not None and unit == "core":
        core = _given(lim, "neurons_per_core")
        fo = None if core is None else int(fo) * int(core)   # the neurons fo destination cores hold
    if fo is not None:
        if str(getattr(lim, "fan_out_split", None) or "") == "exact":
            reasons.append(f"fan_out {fo} not a width cap: the profile splits fan-out exactly (fan_out_split: "
                           "exact; the mapper copies neurons)")
        elif n_classes > fo:
            reasons.append(f"fan_out {fo} not a width cap: the read-out alone needs {n_classes} destinations per "
                           "neuron (left to the mapper)")
        else:
            cap("fan_out", fo, "a neuron sends to every neuron of the next layer")

    npc = _given(lim, "neurons_per_chip")
    if npc is not None:
        budget = npc - (0 if opc is not None else n_classes)
        if budget < len(widths):
            raise FitError(f"{name}: neurons_per_chip {npc} leaves {budget} neurons for {len(widths)} hidden layers")
        if sum(widths) > budget:
            scale = budget / sum(widths)
            new = [max(1, int(math.floor(w * scale))) for w in widths]
            reasons.append(f"hidden widths {widths} -> {new}: neurons_per_chip {npc}"
                           + ("" if opc is not None else f" minus {n_classes} output neurons"))
            widths = new

    ipc = _given(lim, "inputs_per_chip")
    accept = [(k, v) for k, v in (("inputs_per_chip", ipc), ("fan_in", fi), ("max_channels", mc)) if v is not None]
    host_dim = 0
    if accept:
        lim_name, chip_in = min(accept, key=lambda kv: kv[1])
        if d_in > chip_in:
            host_dim = chip_in
            reasons.append(f"host projection {d_in} -> {chip_in}: {lim_name} {chip_in}")

    kmem = tuple(getattr(lim, "kernel_memory_per_core", None) or ())
    if kmem:
        host_dim, widths = _fit_kernel_memory(name, kmem, d_in, host_dim, widths, n_classes, reasons)

    neuron, given, why = chip_neuron_of(prof)
    params = _default_params(neuron, given)
    reasons.append(why)
    wb = _given(lim, "weight_bits")
    reasons.append(f"weights: {wb}-bit on the chip's grid: weight_bits {wb}" if wb else
                   "weights: float (the profile gives no weight_bits)")
    if host_dim:
        reasons.append("host projection: float weights and the project's LIF on the host CPU (placement: host)")
    return FitPlan(profile=name, d_in=d_in, n_classes=n_classes, T=int(T), host_dim=int(host_dim),
                   widths=tuple(int(w) for w in widths), neuron=neuron, neuron_params=params, weight_bits=wb,
                   reasons=tuple(reasons))


def _fit_kernel_memory(name: str, kmem: tuple[int, ...], d_in: int, host_dim: int, widths: list[int],
                       n_classes: int, reasons: list[str]) -> tuple[int, list[int]]:
    """``(host_dim, widths)`` with ``in_i * out_i <= kmem[i]`` for every chip layer (hidden layers, then the
    read-out); the larger shrinkable side of a layer that does not fit is cut, to ``isqrt(kmem[i])`` when both
    sides can shrink (balanced) and to ``kmem[i] // other`` otherwise. The input is shrinkable through the host
    projection (one is introduced when the fixed ``d_in`` would leave the first layer narrower than the balanced
    ``isqrt(kmem[0])``), a hidden width always, the classes never.

    Raises:
        FitError: more chip layers than cores listed, or a layer that cannot fit.
    """
    dims = [host_dim or d_in, *widths, n_classes]
    n_layers = len(dims) - 1
    if n_layers > len(kmem):
        raise FitError(f"{name}: {n_layers} chip layers but kernel_memory_per_core lists {len(kmem)} cores")

    def label(j: int) -> str:
        return "host projection" if j == 0 else f"hidden width {j - 1}"

    for i in range(n_layers):
        k = int(kmem[i])
        if dims[i] * dims[i + 1] <= k:
            continue
        can_in = i > 0 or host_dim > 0
        can_out = i < n_layers - 1
        if i == 0 and not can_in and (not can_out or k // dims[0] < min(dims[1], math.isqrt(k))):
            can_in = True              # the fixed input would squeeze the first layer: project it on the host
        why = f"kernel_memory_per_core[{i}] {k} (in x out = {dims[i]} x {dims[i + 1]})"
        old = (dims[i], dims[i + 1])
        if can_in and can_out:
            j = i if dims[i] >= dims[i + 1] else i + 1
            dims[j] = min(dims[j], max(math.isqrt(k), k // dims[2 * i + 1 - j]))
            if dims[i] * dims[i + 1] > k:
                o = 2 * i + 1 - j
                dims[o] = k // dims[j]
        elif can_in:
            dims[i] = k // dims[i + 1]
        elif can_out:
            dims[i + 1] = k // dims[i]
        if min(dims[i], dims[i + 1]) < 1 or not (can_in or can_out):
            raise FitError(f"{name}: {why} cannot be met")
        for j, before in ((i, old[0]), (i + 1, old[1])):
            if dims[j] != before:
                reasons.append(f"{label(j)} {before} -> {dims[j]}: {why}" if j > 0
                               else f"host projection {d_in} -> {dims[j]}: {why}")
        if i == 0 and dims[0] != d_in:
            host_dim = dims[0]
    return host_dim, dims[1:-1]


def needs_fit(mapping: Any) -> bool:
    """Whether a full model's mapping (a :class:`~neuroposter.targets.mapping.MappingResult` or its dict) was
    refused, i.e. the chip needs a fitted variant."""
    fits = mapping.get("fits") if isinstance(mapping, Mapping) else getattr(mapping, "fits", None)
    return not bool(fits)


# ---------------------------------------------------------------------------------------------------------------
# the convolutional variant of the pixel SDT (``fit --input images``)


@dataclass(frozen=True)
class ConvLayer:
    """One weighted layer of a :class:`ConvFitPlan` (a convolution with the chip neuron, or the read-out).

    Attributes:
        role: ``"stem"``, ``"sdsa"`` (a convolution standing in for an SDSA block), ``"mlp"`` (for a block's MLP)
            or ``"readout"``.
        c_in, c_out: input / output channels (the read-out: flattened inputs, classes).
        kernel: kernel side (1 for the read-out).
        side_in: input map side (the read-out: the flattened map's side).
        pool: the 2x2 sum pool after the neuron (2) or none (1).
        placement: ``"chip"`` or ``"host"``.
        core: the chip core (layer index on the chip), None on the host.
    """

    role: str
    c_in: int
    c_out: int
    kernel: int
    side_in: int
    pool: int
    placement: str
    core: int | None

    @property
    def side_out(self) -> int:
        """The map side the convolution (padding ``k // 2``) writes its neurons on (before the pool)."""
        return self.side_in

    @property
    def kernel_entries(self) -> int:
        """``c_in * c_out * k * k`` (the read-out: ``c_in * c_out``, ``c_in`` the flattened map)."""
        return int(self.c_in * self.c_out * self.kernel * self.kernel)

    @property
    def neurons(self) -> int:
        """Neurons the layer keeps (``c_out * side^2``; the read-out: its ``c_out`` currents)."""
        return int(self.c_out) if self.role == "readout" else int(self.c_out * self.side_out ** 2)


@dataclass(frozen=True)
class ConvFitPlan:
    """A chip-fitted convolutional variant of the pixel SDT (``chip-cnn``) for one profile.

    Attributes:
        profile: the hardware profile's name.
        image_size: the square image side.
        n_classes: genres.
        T: time steps of direct encoding.
        layers: the weighted layers in order (convolutions, then the read-out).
        neuron: the chip neuron (a CHIP_NEURONS name); neuron_params: its parameters.
        weight_bits: the chip's weight precision (None: float).
        conv_bias: whether the chip's convolutions have a bias.
        reasons: one line per decision, naming the limit that forced it.
    """

    profile: str
    image_size: int
    n_classes: int
    T: int
    layers: tuple[ConvLayer, ...]
    neuron: str
    neuron_params: Mapping[str, Any] = field(default_factory=dict)
    weight_bits: int | None = None
    conv_bias: bool = True
    reasons: tuple[str, ...] = ()

    @property
    def host_layers(self) -> int:
        """Leading layers that run on the host CPU."""
        return sum(1 for lay in self.layers if lay.placement == "host")

    @property
    def chip_layers(self) -> int:
        """Weighted layers on the chip, the read-out included (one core each)."""
        return sum(1 for lay in self.layers if lay.placement == "chip")

    def to_model_kwargs(self) -> dict[str, Any]:
        """The ``chip-cnn`` constructor kwargs (plain JSON, as ``model.json`` stores them)."""
        convs = [[int(lay.c_out), int(lay.kernel), int(lay.pool)] for lay in self.layers if lay.role != "readout"]
        return {"n_classes": int(self.n_classes), "image_size": int(self.image_size), "T": int(self.T),
                "convs": convs, "host_layers": int(self.host_layers), "neuron": self.neuron,
                "neuron_params": dict(self.neuron_params), "conv_bias": bool(self.conv_bias), "chip": self.profile}

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON of the whole plan."""
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        out.update(layers=[{**{f.name: getattr(lay, f.name) for f in fields(lay)}, "side_out": lay.side_out,
                            "kernel_entries": lay.kernel_entries, "neurons": lay.neurons} for lay in self.layers],
                   neuron_params=dict(self.neuron_params), reasons=list(self.reasons))
        return out

    def describe(self) -> str:
        """One line: ``speck: images 3x32x32, host conv3x3 3->16, chip [conv3x3 16->64 /2, ...] -> 10 (...)``."""
        def one(lay: ConvLayer) -> str:
            if lay.role == "readout":
                return f"linear {lay.c_in}->{lay.c_out}"
            return f"conv{lay.kernel}x{lay.kernel} {lay.c_in}->{lay.c_out}" + (" /2" if lay.pool == 2 else "")
        host = [one(lay) for lay in self.layers if lay.placement == "host"]
        chip = [one(lay) for lay in self.layers if lay.placement == "chip"]
        bits = f"{self.weight_bits}-bit weights" if self.weight_bits else "float weights"
        return (f"{self.profile}: images 3x{self.image_size}x{self.image_size}, "
                + (f"host [{', '.join(host)}], " if host else "")
                + f"chip [{', '.join(chip)}] on {self.chip_layers} cores ({self.neuron} neurons, {bits})")


def side_limit(prof: Any, limit: str, fact: str) -> tuple[int | None, str]:
    """A map-side limit: ``limits.<limit>`` when the profile has it, else its ``facts.<fact>``."""
    v = getattr(prof.limits, limit, None)
    if v is not None:
        return int(v), f"limits.{limit}"
    v = (getattr(prof, "facts", None) or {}).get(fact)
    return (None, "") if v is None else (int(v), f"facts.{fact}")


def derive_conv_fit(profile: Any, image_size: int, n_classes: int, T: int) -> ConvFitPlan:
    """The chip-fitted convolutional variant of the pixel SDT for ``profile``; pure (the profile's limits alone).

    The pixel SDT (:class:`~neuroposter.models.sdt_pixels.PixelSDT`, its default widths) is
    ``conv3x3 -> LIF -> avgpool2`` twice, then SDSA blocks with membrane shortcuts, then a read-out. The plan keeps
    the stem (``conv3x3 -> chip neuron -> 2x2 sum pool``, twice; ``c1`` then ``d`` channels), replaces every SDT
    block by what a chain of convolutions with the chip neuron can do -- a 3x3 convolution and a 2x2 sum pool for
    the SDSA's token mixing, two 1x1 convolutions (``d -> mlp_hidden -> d``) for its MLP -- and reads out with a
    Linear over the flattened map. Then, layer by layer (chip layer ``i`` on core ``i``):

    * **input**: direct encoding feeds the analog image as the first convolution's current, and a chip's cores take
      spike events (no profile describes an analog input), so that layer (convolution, neuron, pool) runs on the
      host, in float, and the chip receives its spike events;
    * ``max_layers`` (chip layers, read-out included): the MLP's then the SDSA's replacements are dropped from the
      last block first; the stem and the read-out always stay;
    * ``max_kernel_size``, the input side (``limits.max_input_side`` or ``facts.max_input_side_count``) and the
      output map side (``limits.max_output_side`` or ``facts.max_output_fmap_side_count``): refused with the
      limit (a smaller ``--image-size`` helps);
    * ``max_channels``, ``kernel_memory_per_core[i]`` (``c_in c_out k^2``) and ``neuron_memory_per_core[i]``
      (``c_out side^2``): a layer's output channels are cut to fit; for the read-out (classes fixed) the layer
      before it is cut;
    * the neuron (:func:`chip_neuron_of`) and ``weight_bits`` as for :func:`derive_fit`.

    Raises:
        FitError: a limit no width can meet (named), an image side that is not a multiple of 4, or no neuron.
    """
    import inspect

    from neuroposter.models.sdt_pixels import PixelSDT
    from neuroposter.profiling.profiles import load_profile

    prof = load_profile(profile)
    lim = prof.limits
    name = prof.name
    S, n_classes = int(image_size), int(n_classes)
    if S < 4 or S % 4:
        raise FitError(f"image size {S} must be a positive multiple of 4 (the stem's two 2x2 poolings)")
    reasons: list[str] = []
    full = {k: p.default for k, p in inspect.signature(PixelSDT.__init__).parameters.items()
            if p.default is not inspect.Parameter.empty}
    c1, d, depth, hidden = int(full["c1"]), int(full["d_model"]), int(full["depth"]), int(full["mlp_hidden"])

    # what of the SDT the chip cannot do, and why (from the profile)
    nir_nodes = {str(x) for x in (getattr(prof, "nir_nodes", None) or ())}
    leak = getattr(lim, "full_leak", None)
    leak_note = (getattr(lim, "notes", None) or {}).get("full_leak")
    and_why = []
    if nir_nodes and "Threshold" not in nir_nodes:
        and_why.append("no stateless Threshold node (nir_nodes)")
    if leak is not True:
        and_why.append(f"limits.full_leak {leak}" + (f": {' '.join(str(leak_note).split())}" if leak_note else ""))
    if and_why:
        reasons.append(f"SDSA blocks not on the chip: spike-driven self-attention masks Q with K^T V, an AND of two "
                       f"spike trains that needs a neuron forgetting its input every step ({'; '.join(and_why)}); "
                       "each block is replaced by a 3x3 convolution + 2x2 sum pool (token mixing) and two 1x1 "
                       "convolutions (its MLP)")
    else:
        reasons.append("SDSA blocks replaced by convolutions all the same: a fitted chain has one path per layer")
    fo, unit = _given(lim, "fan_out"), str(getattr(lim, "fan_out_unit", None) or "neuron")
    reasons.append("membrane shortcuts not on the chip: the SDT adds a layer's membrane potential (not its spikes) "
                   "to a later layer's, while a core sends only spike events to its destinations"
                   + (f" (at most fan_out {fo} destination {'layers' if unit == 'population' else unit + 's'})"
                      if fo is not None else "") + "; the fitted model is a plain chain")

    plan: list[list[Any]] = [["stem", 3, c1, 2, "host"], ["stem", c1, d, 2, "chip"]]
    reasons.append("stem conv1 (with its neuron and pool) on the host: direct encoding feeds the analog image as its "
                   "current, and the chip's cores take spike events (the profile describes no analog input); the "
                   "chip receives its spike events")
    for _ in range(depth):
        plan += [["sdsa", d, d, 2, "chip"], ["mlp", d, hidden, 1, "chip"], ["mlp", hidden, d, 1, "chip"]]

    ml = _given(lim, "max_layers")
    n_chip = sum(1 for p in plan if p[4] == "chip") + 1
    if ml is not None and n_chip > ml:
        n_stem = sum(1 for p in plan if p[0] == "stem" and p[4] == "chip")
        if n_stem + 1 > ml:
            raise FitError(f"{name}: max_layers {ml} leaves no room for the stem's {n_stem} chip layers and the "
                           "read-out")
        keep = ml - 1
        dropped = []
        while sum(1 for p in plan if p[4] == "chip") > keep:
            dropped.append(plan.pop()[0])
        reasons.append(f"{len(dropped)} block layers dropped ({', '.join(reversed(dropped))}): max_layers {ml} "
                       "(chip layers, read-out included)")
    mk = _given(lim, "max_kernel_size")
    mc = _given(lim, "max_channels")
    kmem = tuple(int(v) for v in (getattr(lim, "kernel_memory_per_core", None) or ()))
    nmem = tuple(int(v) for v in (getattr(lim, "neuron_memory_per_core", None) or ()))
    in_side, in_src = side_limit(prof, "max_input_side", "max_input_side_count")
    out_side, out_src = side_limit(prof, "max_output_side", "max_output_fmap_side_count")

    layers: list[ConvLayer] = []
    side, c_prev, core = S, 3, 0
    for role, _cin, cout, pool, place in plan:
        k = 3 if role in ("stem", "sdsa") else 1
        if pool == 2 and (side < 2 or side % 2):
            pool = 1
            reasons.append(f"{role} layer at map side {side}: no 2x2 pool (the side is not even)")
        cout = int(cout)
        if place == "chip":
            if mk is not None and k > mk:
                raise FitError(f"{name}: a {k}x{k} kernel > max_kernel_size {mk}")
            if core == 0 and in_side is not None and side > in_side:
                raise FitError(f"{name}: the chip's input map side {side} > {in_src} {in_side}; use a smaller "
                               f"--image-size")
            if out_side is not None and side > out_side:
                raise FitError(f"{name}: layer {len(layers)} writes a {side}x{side} map > {out_src} {out_side}; use a "
                               "smaller --image-size")
            if core >= max(len(kmem), len(nmem), 0) and (kmem or nmem):
                raise FitError(f"{name}: chip layer {core} but kernel/neuron_memory_per_core list "
                               f"{max(len(kmem), len(nmem))} cores")
            label = f"{role} layer {len(layers)} (core {core})"
            if mc is not None and cout > mc:
                reasons.append(f"{label} channels {cout} -> {mc}: max_channels {mc}")
                cout = mc
            if kmem and c_prev * cout * k * k > kmem[core]:
                new = kmem[core] // (c_prev * k * k)
                if new < 1:
                    raise FitError(f"{name}: {label}: kernel_memory_per_core[{core}] {kmem[core]} < {c_prev} x 1 x "
                                   f"{k}x{k}")
                reasons.append(f"{label} channels {cout} -> {new}: kernel_memory_per_core[{core}] {kmem[core]} "
                               f"(in x out x k x k = {c_prev} x {cout} x {k}x{k})")
                cout = new
            if nmem and cout * side * side > nmem[core]:
                new = nmem[core] // (side * side)
                if new < 1:
                    raise FitError(f"{name}: {label}: neuron_memory_per_core[{core}] {nmem[core]} < one channel of "
                                   f"{side}x{side}")
                reasons.append(f"{label} channels {cout} -> {new}: neuron_memory_per_core[{core}] {nmem[core]} "
                               f"(out x H x W = {cout} x {side} x {side})")
                cout = new
        layers.append(ConvLayer(role, c_prev, cout, k, side, pool, place, core if place == "chip" else None))
        if place == "chip":
            core += 1
        c_prev, side = cout, side // pool

    # the read-out: Flatten + Linear over the last map; its kernel is c_in x classes (classes fixed)
    if kmem and core >= len(kmem):
        raise FitError(f"{name}: the read-out needs core {core}, kernel_memory_per_core lists {len(kmem)} cores")
    flat = c_prev * side * side
    if kmem and flat * n_classes > kmem[core]:
        last = layers[-1]
        new = kmem[core] // (side * side * n_classes)
        if new < 1 or last.placement != "chip":
            raise FitError(f"{name}: the read-out ({flat} x {n_classes}) exceeds kernel_memory_per_core[{core}] "
                           f"{kmem[core]} and no chip layer before it can shrink; use a smaller --image-size")
        reasons.append(f"{last.role} layer {len(layers) - 1} (core {last.core}) channels {last.c_out} -> {new}: "
                       f"the read-out's kernel_memory_per_core[{core}] {kmem[core]} (in x out = {flat} x {n_classes})")
        layers[-1] = ConvLayer(last.role, last.c_in, new, last.kernel, last.side_in, last.pool, last.placement,
                               last.core)
        flat = new * side * side
    if nmem and core < len(nmem) and n_classes > nmem[core]:
        raise FitError(f"{name}: {n_classes} read-out neurons > neuron_memory_per_core[{core}] {nmem[core]}")
    layers.append(ConvLayer("readout", flat, n_classes, 1, side, 1, "chip", core))
    reasons.append(f"read-out: Flatten {c_prev}x{side}x{side} -> Linear {flat} -> {n_classes} on core {core}")

    neuron, given, why = chip_neuron_of(prof)
    params = _default_params(neuron, given)
    reasons.append(why + "; the host layer uses the same neuron")
    wb = _given(lim, "weight_bits")
    reasons.append(f"weights: {wb}-bit on the chip's grid: weight_bits {wb}" if wb else
                   "weights: float (the profile gives no weight_bits)")
    sb = _given(lim, "state_bits")
    if sb:
        reasons.append(f"chip convolutions without bias: a deployed bias is a neuron offset on the state_bits {sb} "
                       "grid, which quantisation-aware training (weights on the chip's grid) does not model; bias-free "
                       "connections deploy exactly what was trained")
    reasons.append("host layer: float weights (placement: host)")
    return ConvFitPlan(profile=name, image_size=S, n_classes=n_classes, T=int(T), layers=tuple(layers),
                       neuron=neuron, neuron_params=params, weight_bits=wb, conv_bias=not sb, reasons=tuple(reasons))
