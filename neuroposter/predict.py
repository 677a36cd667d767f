"""Classify poster image files with a trained run or a deployed export bundle (``neuroposter predict``).

The front end is the one the run was trained on, rebuilt from its inputs' manifests -- nothing is re-implemented:

* spiking runs (``sdt``, ``snn-mlp``, chip-fitted) and the ANN twin (``ann-transformer``): the run's encoded set
  (:func:`neuroposter.encode.load_encoded`) names its feature store, whose manifest records the DenseNet-169 weights
  (:func:`neuroposter.features.build_backbone`) and whose dataset records the image policy
  (``ImagePolicy.apply``); the image is preprocessed (:func:`neuroposter.features.preprocess`), run through the
  backbone (:func:`neuroposter.features.run_backbone`), stored as the store stores it (float16, clipped), and
  encoded with the set's fitted encoder (``SpikeEncoder.normalize`` / ``encode``; a stochastic encoder is seeded
  as the set seeds that poster: by its dataset index when the file is a poster of the dataset, else by the file's
  SHA-256). The ANN twin reads the normalised features instead of spikes.
* image runs: ``cnn`` -- the feature store's dataset image policy and :func:`~neuroposter.features.preprocess`;
  ``vit`` -- the dataset's image policy and :func:`neuroposter.models.vit.image_to_tensor` at the model's size
  (as :func:`neuroposter.targets.inputs.evaluation_inputs` loads them).

The network: a run's float model (:func:`neuroposter.train.load_run`; a quantisation-aware run's forward is its
deployed arithmetic), or a bundle's deployed network on its target: ``nir`` -- ``graph.nir`` in the reference
simulator (same step, float); chips -- ``graph_q.nir`` in the reference simulator, or the chip's own integer
arithmetic where one is registered (:func:`neuroposter.targets.vendor.chip_arithmetic`, Xylo); ``loihi`` -- the
integer reference of ``graph_int.nir`` (per hop, re-timed; bit-exact to Lava's fixed point); ``onnx`` --
onnxruntime on ``model.onnx``.

Probabilities are the sigmoid of the time-mean logits; a genre is predicted when its probability reaches the
run's tuned threshold (``metrics.json`` ``thresholds``, tuned on validation), else 0.5.

Energy (bundles only): the deployed network's op counts on THAT poster's spikes, counted as the bundle counts its
test samples (:func:`neuroposter.profiling.stored.nir_counts` / :func:`~neuroposter.profiling.stored.chip_counts`)
and priced in the device view (:func:`neuroposter.profiling.foreign.price` -> ``estimate_energy``) on the chip's
profile (chip bundles), on every neuromorphic profile that publishes per-op energy (nir bundles) or on the ANN
profiles (onnx bundles: the ONNX graph's stored counts, the same for every poster). The network only: the
DenseNet-169 front end is not included. "unpublished" where the profile has no per-op energy.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from neuroposter.errors import DataError, ManifestError, UsageError

__all__ = ["IMAGE_SUFFIXES", "DEFAULT_THRESHOLD", "HOST_PROFILE", "Poster", "GenreScore", "PosterPrediction",
           "Prediction", "FrontEnd", "read_posters", "front_end", "predict_run", "predict_bundle", "probabilities",
           "decide", "thresholds_of"]

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
DEFAULT_THRESHOLD = 0.5
#: profile pricing a chip bundle's host-side layers (a fitted model's projection), as the report's default
HOST_PROFILE = "jetson_agx_orin"
_FP16_MAX = float(np.finfo(np.float16).max)
_FRONT_END_NOTE = "network only: the DenseNet-169 front end (image -> features) and the spike encoding are excluded"
_CHIPS_GRAPH = "graph_q.nir"


@dataclass(frozen=True)
class Poster:
    """One poster file: its path, image (RGB, as decoded), SHA-256, and its row in the run's dataset if it is one."""

    path: Path
    image: Any
    sha256: str
    dataset_index: int | None = None
    title: str | None = None


@dataclass(frozen=True)
class GenreScore:
    genre: str
    probability: float
    threshold: float
    predicted: bool


@dataclass
class PosterPrediction:
    """The result for one poster: genres by probability (all of them; ``top`` limits the text), the predicted ones,
    the mean logits, and (bundles) the energy per inference on that poster."""

    poster: Poster
    scores: list[GenreScore]
    logits: list[float]
    energy: list[dict[str, Any]] = field(default_factory=list)

    @property
    def predicted(self) -> list[str]:
        return [s.genre for s in self.scores if s.predicted]

    def to_dict(self, top: int | None = None) -> dict[str, Any]:
        return {"poster": str(self.poster.path), "sha256": self.poster.sha256,
                "dataset_index": self.poster.dataset_index, "title": self.poster.title,
                "predicted": self.predicted,
                "genres": [{"genre": s.genre, "probability": s.probability, "threshold": s.threshold,
                            "predicted": s.predicted} for s in self.scores[:top]],
                "logits": self.logits, "energy": self.energy}


@dataclass
class Prediction:
    """What :func:`predict_run` / :func:`predict_bundle` return."""

    source: str                    # "run" or "bundle"
    run: Path
    model: str
    network: str                   # what computed the logits
    front_end: str                 # what turned the image into the network's input
    thresholds: str                # where the decision thresholds come from
    posters: list[PosterPrediction]
    bundle: Path | None = None
    target: str | None = None
    energy_note: str | None = None

    def to_dict(self, top: int | None = None) -> dict[str, Any]:
        return {"source": self.source, "run": str(self.run), "model": self.model, "bundle":
                None if self.bundle is None else str(self.bundle), "target": self.target, "network": self.network,
                "front_end": self.front_end, "thresholds": self.thresholds, "probability": "sigmoid of the "
                "time-mean logits", "energy_note": self.energy_note,
                "posters": [p.to_dict(top) for p in self.posters]}


# ------------------------------------------------------------------------------------------------ posters


def read_posters(paths: Sequence[str | os.PathLike[str]]) -> list[Poster]:
    """Decodes poster files (jpg/png) as RGB images.

    Raises:
        UsageError: a path that does not exist, is not a file, or is not a .jpg/.jpeg/.png.
        DataError: a file that cannot be read or decoded as an image.
    """
    from PIL import Image

    out = []
    for p in paths:
        path = Path(p)
        if not path.exists():
            raise UsageError(f"poster {path}: no such file")
        if not path.is_file():
            raise UsageError(f"poster {path}: not a file")
        if path.suffix.lower() not in IMAGE_SUFFIXES:
            raise UsageError(f"poster {path}: not a .jpg/.jpeg/.png image file")
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise DataError(f"poster {path}: cannot be read ({exc.strerror or type(exc).__name__})") from None
        try:
            import io

            with Image.open(io.BytesIO(data)) as im:
                im.load()
                img = im.convert("RGB")
        except Exception as exc:  # noqa: BLE001 - PIL raises many types for a bad file
            raise DataError(f"poster {path}: not a readable image ({type(exc).__name__}: "
                            f"{str(exc).strip().splitlines()[0] if str(exc).strip() else 'cannot decode'})") from None
        out.append(Poster(path, img, hashlib.sha256(data).hexdigest()))
    return out


def _identify(posters: Sequence[Poster], dataset: Any) -> list[Poster]:
    """Each poster with its dataset row and title when its bytes are a poster of ``dataset`` (SHA-256 match)."""
    from dataclasses import replace

    items = getattr(dataset, "items", None)
    if items is None or "sha256" not in items.columns:
        return list(posters)
    index = {str(h).strip(): i for i, h in enumerate(items["sha256"].tolist()) if str(h or "").strip()}
    out = []
    for p in posters:
        i = index.get(p.sha256)
        title = str(items["title"].iat[i]) if i is not None and "title" in items.columns else None
        out.append(replace(p, dataset_index=i, title=title))
    return out


# ------------------------------------------------------------------------------------------------ front end


@dataclass
class FrontEnd:
    """The front end of a run: image files -> the model's input.

    Attributes:
        kind: the model's input kind (``ModelSpec.inputs``).
        dataset: the dataset whose image policy applies (its posters are recognised by hash).
        description: one line for the output.
        encoded: the run's encoded set (feature-fed runs), else None.
        store: its feature store (feature-fed runs and ``cnn``), else None.
    """

    kind: str
    dataset: Any
    description: str
    encoded: Any = None
    store: Any = None
    image_size: int | tuple[int, int] | None = None
    _backbone: Any = None

    def features(self, posters: Sequence[Poster]) -> tuple[np.ndarray, np.ndarray]:
        """(pooled ``[B, D]``, tokens ``[B, N, D]``) float32, exactly as the feature store holds them (float16)."""
        from neuroposter.features import preprocess_batch, run_backbone

        if self._backbone is None:
            self._backbone = _backbone_of(self.store)
        pooled, tokens = [], []
        for p in posters:    # one at a time: posters of any size, each under the dataset's image policy
            x = preprocess_batch([self.dataset.image_policy.apply(p.image)])
            pp, tk = run_backbone(self._backbone, x)
            pooled.append(_as_stored(pp))
            tokens.append(_as_stored(tk))
        return np.concatenate(pooled), np.concatenate(tokens)

    def encoder_input(self, posters: Sequence[Poster]) -> np.ndarray:
        """The raw features the encoder reads, ``[B, N, D]`` (``N = 1`` for a pooled set)."""
        pooled, tokens = self.features(posters)
        return pooled[:, None, :] if self.encoded.form == "pooled" else tokens

    def spikes(self, posters: Sequence[Poster]) -> np.ndarray:
        """uint8 spikes ``[T, B, N, D]`` from the encoded set's fitted encoder."""
        from neuroposter.encode import STOCHASTIC_ENCODERS
        from neuroposter.encode.build import sample_seed

        enc = self.encoded.encoder
        seed = int((self.encoded.manifest.get("config") or {}).get("seed", 0))
        u = enc.normalize(self.encoder_input(posters))
        if enc.name in STOCHASTIC_ENCODERS:
            return np.stack([enc.encode(u[i], seed=sample_seed(seed, _sample_index(p)), normalized=True)
                             for i, p in enumerate(posters)], axis=1)
        return np.asarray(enc.encode(u, seed=seed, normalized=True))

    def model_input(self, posters: Sequence[Poster]) -> Any:
        """The model's input: spikes ``[T, B, N, D]`` (numpy uint8), normalised features ``[B, N, D]`` or images
        ``[B, 3, H, W]`` (float32 torch tensors)."""
        import torch

        if self.kind in ("spike_tokens", "spike_pooled"):
            return self.spikes(posters)
        if self.kind == "feature_tokens":
            return torch.from_numpy(np.ascontiguousarray(self.encoded.encoder.normalize(self.encoder_input(posters)),
                                                         dtype=np.float32))
        if self.kind == "images":
            if self.store is not None:
                from neuroposter.features import preprocess

                return torch.stack([preprocess(self.dataset.image_policy.apply(p.image)) for p in posters])
            from neuroposter.models.vit import image_to_tensor

            return torch.stack([image_to_tensor(self.dataset.image_policy.apply(p.image), self.image_size)
                                for p in posters])
        raise DataError(f"no front end for model input {self.kind!r}")


def _as_stored(a: np.ndarray) -> np.ndarray:
    """float32 values as the feature store keeps them (clipped to float16's range, stored as float16)."""
    return np.minimum(np.asarray(a, dtype=np.float32), _FP16_MAX).astype(np.float16).astype(np.float32)


def _sample_index(p: Poster) -> int:
    """The per-sample seed index of a stochastic encoder: the dataset index (as the encoded set seeds it), else a
    stable number from the file's SHA-256."""
    return int(p.dataset_index) if p.dataset_index is not None else int(p.sha256[:8], 16)


def _backbone_of(store: Any) -> Any:
    """The DenseNet-169 backbone with the weights the store records (a ``file:`` id must still match its file)."""
    from neuroposter.features import build_backbone, resolve_weights

    wid = str(store.weights)
    if wid.startswith("file:"):
        if not store.weights_path:
            raise ManifestError(f"{store.path}: its weights {wid} name no file (extra.weights_path); "
                                "run `neuroposter features --force`")
        spec = resolve_weights(store.weights_path)
        if spec.id != wid:
            raise ManifestError(f"the weights file {store.weights_path} changed since the features at {store.path} "
                                f"were extracted ({spec.id} != {wid}); run `neuroposter features --force`")
        return build_backbone(spec)
    return build_backbone(resolve_weights(wid))


def front_end(loaded: Any, run_dir: str | os.PathLike[str]) -> FrontEnd:
    """The front end a run was trained with, from its manifest's inputs (checked against their recorded keys).

    Raises:
        ManifestError: an input is missing or changed (the message says what to re-run).
    """
    from neuroposter.models import MODELS
    from neuroposter.targets.inputs import open_run_input

    run_dir = Path(run_dir)
    kind = MODELS.get(loaded.model_name).inputs
    if kind in ("spike_tokens", "spike_pooled", "feature_tokens"):
        path, enc = open_run_input(run_dir, loaded.manifest, "encoded")
        store = enc.features
        what = ("normalised features" if kind == "feature_tokens"
                else f"{enc.encoder.name} encoder, T={enc.T}")
        desc = (f"DenseNet-169 (weights {store.weights}, {enc.form} features of {store.path}) -> {what} "
                f"(encoded set {path})")
        return FrontEnd(kind, store.dataset, desc, encoded=enc, store=store)
    if kind == "images":
        if "features" in (loaded.manifest.get("inputs") or {}):
            path, store = open_run_input(run_dir, loaded.manifest, "features")
            return FrontEnd(kind, store.dataset, f"image policy of {store.dataset_path}, ImageNet normalisation "
                            f"(the {loaded.model_name}'s own DenseNet-169 backbone)", store=store)
        path, ds = open_run_input(run_dir, loaded.manifest, "dataset")
        size = loaded.model.image_size   # a square side, or (H, W) (sdt-frontend)
        hw = "x".join(map(str, size)) if isinstance(size, (tuple, list)) else f"{size}x{size}"
        return FrontEnd(kind, ds, f"image policy of {path}, resized to {hw}, ImageNet normalisation",
                        image_size=size)
    raise DataError(f"no front end for a {loaded.model_name!r} run (model input {kind!r})")


# ------------------------------------------------------------------------------------------------ decisions


def probabilities(mean_logits: np.ndarray) -> np.ndarray:
    """Sigmoid of the time-mean logits ``[B, C]`` (float64)."""
    z = np.asarray(mean_logits, dtype=np.float64)
    return 1.0 / (1.0 + np.exp(-z))


def thresholds_of(loaded: Any, n_classes: int) -> tuple[np.ndarray, str]:
    """The run's tuned per-genre thresholds (``metrics.json`` ``thresholds``) and where they come from, else 0.5."""
    thr = (loaded.metrics or {}).get("thresholds")
    if isinstance(thr, (list, tuple)) and len(thr) == n_classes:
        try:
            arr = np.asarray([float(t) for t in thr], dtype=np.float64)
        except (TypeError, ValueError):
            arr = None
        if arr is not None and np.all(np.isfinite(arr)):
            return arr, "per-genre thresholds tuned on the validation split (metrics.json)"
    return np.full(n_classes, DEFAULT_THRESHOLD), f"{DEFAULT_THRESHOLD} (the run records no tuned thresholds)"


def decide(posters: Sequence[Poster], mean_logits: np.ndarray, genres: Sequence[str],
           thresholds: np.ndarray) -> list[PosterPrediction]:
    """Per poster: every genre sorted by probability (ties by vocabulary order), predicted when ``p >= threshold``
    (the training's tuned-threshold rule)."""
    m = np.asarray(mean_logits, dtype=np.float64).reshape(len(posters), -1)
    if m.shape[1] != len(genres):
        raise DataError(f"the network has {m.shape[1]} outputs but the run names {len(genres)} genres")
    probs = probabilities(m)
    out = []
    for i, p in enumerate(posters):
        order = sorted(range(len(genres)), key=lambda g: (-probs[i, g], g))
        scores = [GenreScore(str(genres[g]), float(probs[i, g]), float(thresholds[g]),
                             bool(probs[i, g] >= thresholds[g])) for g in order]
        out.append(PosterPrediction(p, scores, [float(v) for v in m[i]]))
    return out


def _genres(loaded: Any, fe: FrontEnd) -> list[str]:
    if fe.encoded is not None:
        return list(fe.encoded.genres)
    return [str(g) for g in fe.dataset.genres]


# ------------------------------------------------------------------------------------------------ runs


def predict_run(run_dir: str | os.PathLike[str], paths: Sequence[str | os.PathLike[str]]) -> Prediction:
    """Classifies poster files with a run's model (its own forward; the front end it was trained with).

    Raises:
        UsageError / DataError: bad poster files (see :func:`read_posters`).
        ManifestError: the run or one of its inputs is missing or changed.
    """
    import torch

    from neuroposter.train import load_run
    from neuroposter.train.loop import logits_of

    posters = read_posters(paths)
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise UsageError(f"--run {run_dir.name}: no run at {run_dir} (train it with `neuroposter train`, or pass a "
                         "run name or path)")
    loaded = load_run(run_dir)
    fe = front_end(loaded, run_dir)
    posters = _identify(posters, fe.dataset)
    x = fe.model_input(posters)
    with torch.no_grad():
        xt = torch.as_tensor(np.asarray(x), dtype=torch.float32) if isinstance(x, np.ndarray) else x
        mean = logits_of(loaded.model, xt).detach().cpu().numpy().astype(np.float64)
    genres = _genres(loaded, fe)
    thr, thr_src = thresholds_of(loaded, len(genres))
    return Prediction("run", run_dir, loaded.model_name, f"the run's model (its forward, {loaded.model_name})",
                      fe.description, thr_src, decide(posters, mean, genres, thr))


# ------------------------------------------------------------------------------------------------ bundles


def _bundle_run(bundle: Path, manifest: Mapping[str, Any]) -> Path:
    """The run a bundle was exported from, checked to be the same version (run key and checkpoint hash)."""
    from neuroposter.manifest import input_path, require_manifest

    info = (manifest.get("inputs") or {}).get("run")
    run = input_path(bundle, manifest, "run")
    if run is None or not isinstance(info, Mapping):
        raise ManifestError(f"{bundle}: its manifest records no run (inputs.run); export it again")
    if not run.is_dir():
        raise ManifestError(f"the run {run} that bundle {bundle} was exported from is missing; train it again and "
                            "re-export, or pass --run")
    now = require_manifest(run, "run", rerun="neuroposter train")
    target = str(manifest.get("target") or bundle.parent.name)
    cmd = f"neuroposter export --target {target} --run {run} --force"
    key, ckpt = info.get("key"), info.get("checkpoint_sha256")
    now_ckpt = ((now.get("files") or {}).get("checkpoint.pt") or {}).get("sha256")
    if key is not None and now.get("key") is not None and key != now.get("key"):
        raise ManifestError(f"{bundle} is stale: it was exported from another version of run {run.name} (run key "
                            f"{str(key)[:12]}, now {str(now.get('key'))[:12]}); rebuild it with `{cmd}`")
    if ckpt is not None and now_ckpt is not None and ckpt != now_ckpt:
        raise ManifestError(f"{bundle} is stale: it was exported from another checkpoint of run {run.name} (sha256 "
                            f"{str(ckpt)[:12]}, now {str(now_ckpt)[:12]}); rebuild it with `{cmd}`")
    return run


def _chip_profile(target: str, manifest: Mapping[str, Any]) -> str:
    """The hardware profile a chip / Loihi bundle was deployed on (its ``profile`` option, else the target's)."""
    from neuroposter.targets import get_target

    opt = (manifest.get("config") or {}).get("profile")
    if opt:
        return str(opt)
    prof = str(get_target(target).profile)
    return target if prof == "<target>" else prof


def _price(counts: Any, profiles: Sequence[str] | None, placement: str) -> list[dict[str, Any]]:
    """Device-view energy of ``counts`` on each profile, as plain records (``"unpublished"`` where unavailable)."""
    from neuroposter.profiling.foreign import price
    from neuroposter.profiling.profiles import load_profile

    breakdowns, not_shown = price(counts, profiles)
    out = []
    for b in breakdowns:
        prof = load_profile(b.profile)
        rec: dict[str, Any] = {"placement": placement, "profile": b.profile, "view": b.view,
                               "evidence": b.evidence, "scope": b.scope, "source": list(prof.sources)}
        if b.available:
            rec.update(status="priced", energy_pj=b.total_pj, low_pj=b.low_pj, high_pj=b.high_pj,
                       includes=list(b.includes), excludes=list(b.excludes))
        else:
            rec.update(status="unpublished", energy_pj=None, reason=b.reason)
        out.append(rec)
    for name, reason in sorted(not_shown.items()):
        out.append({"placement": placement, "profile": name, "view": "device", "status": "unpublished",
                    "energy_pj": None, "reason": reason, "shown": False})
    return out


def _read_bundle(bundle: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    from neuroposter._io import read_json
    from neuroposter.manifest import MANIFEST_NAME, read_manifest, require_manifest

    if not bundle.is_dir():
        raise UsageError(f"--bundle {bundle}: no such folder")
    if not (bundle / MANIFEST_NAME).is_file():
        raise UsageError(f"--bundle {bundle}: not an export bundle (no manifest.json)")
    head = read_manifest(bundle)
    if head.get("kind") != "export":
        raise UsageError(f"--bundle {bundle}: holds a {head.get('kind')!r} artifact, not an export bundle")
    target = str(head.get("target") or bundle.parent.name)
    if head.get("status") == "failed" or bundle.name.endswith(".failed"):
        raise DataError(f"{bundle} is a failed export kept for inspection (its verification failed); predict with "
                        "the bundle at its own name, or re-export")
    manifest = require_manifest(bundle, "export", rerun=f"neuroposter export --target {target} --force")
    summary = read_json(bundle / "summary.json")
    if summary.get("ok") is False:
        reason = str(summary.get("reason") or "not deployed").strip().splitlines()[0]
        raise DataError(f"{bundle}: nothing is deployed there -- {target} refused the network ({reason[:300]}); "
                        "use a bundle that deployed, or `neuroposter fit --target " + target + "`")
    return manifest, summary


def predict_bundle(bundle: str | os.PathLike[str], paths: Sequence[str | os.PathLike[str]], *,
                   profiles: Sequence[str] | None = None) -> Prediction:
    """Classifies poster files with a bundle's deployed network on its target, with its energy per poster.

    Args:
        bundle: an export bundle folder (``EXPORT_ROOT/<target>/<run>``).
        paths: poster image files.
        profiles: nir and onnx bundles: the profiles pricing the counts (default: every neuromorphic profile that
            publishes per-op energy / every ANN profile). Chip and Loihi bundles: the chip's own profile, always.

    Raises:
        UsageError: not a bundle folder, bad poster files. DataError: a failed or refused bundle.
        ManifestError: a changed bundle, or one whose run is missing or stale.
    """
    import torch

    from neuroposter.train import load_run

    bundle = Path(bundle)
    manifest, summary = _read_bundle(bundle)
    target = str(summary.get("target") or manifest.get("target") or bundle.parent.name)
    posters = read_posters(paths)
    run_dir = _bundle_run(bundle, manifest)
    loaded = load_run(run_dir)
    fe = front_end(loaded, run_dir)
    posters = _identify(posters, fe.dataset)
    x = fe.model_input(posters)
    genres = _genres(loaded, fe)
    thr, thr_src = thresholds_of(loaded, len(genres))
    energy: list[list[dict[str, Any]]]
    if target == "onnx":
        mean, network, energy, note = _onnx(bundle, x, len(posters), profiles)
    else:
        if not isinstance(x, np.ndarray):
            raise DataError(f"{bundle}: a {target} bundle deploys a spiking network, but run {run_dir.name} "
                            f"({loaded.model_name}) does not read spikes")
        spikes = torch.from_numpy(np.ascontiguousarray(x))
        if target == "nir":
            mean, network, energy, note = _nir(bundle, run_dir, fe, spikes, profiles)
        elif target == "loihi":
            mean, network, energy, note = _loihi(bundle, manifest, run_dir, fe, spikes)
        else:
            mean, network, energy, note = _chip(bundle, target, manifest, run_dir, fe, spikes)
    preds = decide(posters, mean, genres, thr)
    for pp, e in zip(preds, energy):
        pp.energy = e
    return Prediction("bundle", run_dir, loaded.model_name, network, fe.description, thr_src, preds, bundle=bundle,
                      target=target, energy_note=note)


def _nir(bundle: Path, run_dir: Path, fe: FrontEnd, spikes: Any, profiles: Sequence[str] | None) -> tuple:
    from neuroposter.ir import simulate
    from neuroposter.ir.graph_io import read_graph
    from neuroposter.ir.lower import to_graph_input
    from neuroposter.profiling.stored import nir_counts
    from neuroposter.targets.verify import mean_logits

    graph = read_graph(bundle / "graph.nir")
    x = to_graph_input(spikes, graph)
    res = simulate(graph, x, mode="same_step", arithmetic="float", record=False)
    mean = mean_logits(res.aligned_output(), int(x.shape[1]))
    energy = []
    for i in range(int(spikes.shape[1])):
        c = nir_counts(graph, spikes[:, i:i + 1], run_dir=run_dir, encoded=str(fe.encoded.path), samples_requested=1)
        energy.append(_price(c["model"].counts, profiles, "network"))
    note = (f"device view: this poster's op counts (graph.nir in the reference simulator, same step, float; counted "
            f"as the bundle counts its test samples) x each profile's published per-op energies; {_FRONT_END_NOTE}")
    return mean, "graph.nir in the reference simulator (same step, float)", energy, note


def _chip(bundle: Path, target: str, manifest: Mapping[str, Any], run_dir: Path, fe: FrontEnd, spikes: Any) -> tuple:
    from neuroposter.ir.graph_io import read_graph
    from neuroposter.ir.lower import to_graph_input
    from neuroposter.profiling.profiles import load_profile
    from neuroposter.profiling.stored import chip_counts
    from neuroposter.targets.vendor import VendorError, chip_arithmetic

    if not (bundle / _CHIPS_GRAPH).is_file():
        raise DataError(f"{bundle}: no {_CHIPS_GRAPH} (nothing deployed); re-export it")
    graph_q = read_graph(bundle / _CHIPS_GRAPH)
    prof_name = _chip_profile(target, manifest)
    profile = load_profile(prof_name)
    x = to_graph_input(spikes, graph_q)
    arith = chip_arithmetic(str(profile.name))
    mean = None
    network = f"{_CHIPS_GRAPH} in the reference simulator ({target}'s n-bit weights and states, same step)"
    if arith is not None:
        try:
            mean = np.asarray(arith(graph_q, x, profile), dtype=np.float64)
            network = f"{_CHIPS_GRAPH} in {target}'s integer arithmetic ({arith.__module__}.{arith.__name__})"
        except VendorError as exc:
            network += f" ({target}'s integer arithmetic does not take this graph: {exc})"
    if mean is None:
        from neuroposter.ir import simulate
        from neuroposter.targets.verify import mean_logits

        res = simulate(graph_q, x, mode="same_step", arithmetic="float", record=False)
        mean = mean_logits(res.aligned_output(), int(x.shape[1]))
    lim = profile.limits
    energy = []
    for i in range(int(x.shape[1])):
        entries = chip_counts(graph_q, np.ascontiguousarray(x[:, i:i + 1]), run_dir=run_dir,
                              encoded=str(fe.encoded.path), chip=target, samples_requested=1,
                              weight_bits=lim.weight_bits, state_bits=lim.state_bits)
        e = _price(entries["model"].counts, [prof_name], "chip")
        if "host" in entries:
            e += _price(entries["host"].counts, [HOST_PROFILE], "host")
        energy.append(e)
    note = (f"device view: this poster's op counts on the deployed graph ({_CHIPS_GRAPH}, counted as the bundle counts "
            f"its test samples) x the {prof_name} profile's per-op energies (host-side layers, if any, on "
            f"{HOST_PROFILE}); {_FRONT_END_NOTE}")
    return mean, network, energy, note


def _loihi(bundle: Path, manifest: Mapping[str, Any], run_dir: Path, fe: FrontEnd, spikes: Any) -> tuple:
    from neuroposter.ir.graph import flatten
    from neuroposter.ir.graph_io import read_graph
    from neuroposter.ir.lower import to_graph_input
    from neuroposter.ir.retime import retime
    from neuroposter.profiling.profiles import load_profile
    from neuroposter.profiling.stored import chip_counts
    from neuroposter.targets.loihi.builder import plan_network
    from neuroposter.targets.loihi.target import reference_mean_logits

    prof_name = _chip_profile("loihi", manifest)
    profile = load_profile(prof_name)
    graph = read_graph(bundle / "graph.nir")
    flat_int = flatten(read_graph(bundle / "graph_int.nir"), strict=True)
    plan = plan_network(flat_int, max_delay=profile.limits.max_delay)
    x = to_graph_input(spikes, graph)
    mean = reference_mean_logits(plan, flat_int, x, retime(flat_int).delays)
    energy = []
    for i in range(int(x.shape[1])):
        entries = chip_counts(graph, np.ascontiguousarray(x[:, i:i + 1]), run_dir=run_dir,
                              encoded=str(fe.encoded.path), chip="loihi", samples_requested=1,
                              weight_bits=profile.limits.weight_bits, state_bits=profile.limits.state_bits,
                              graph_label="graph.nir, the float graph of graph_int.nir")
        energy.append(_price(entries["model"].counts, [prof_name], "chip"))
    note = (f"device view: this poster's op counts on graph.nir (the float graph of graph_int.nir, counted as the "
            f"bundle counts its test samples) x the {prof_name} profile's per-op energies; {_FRONT_END_NOTE}")
    return (mean, "graph_int.nir: the Loihi 2 integer reference (per hop, re-timed; bit-exact to Lava fixed point)",
            energy, note)


def _onnx(bundle: Path, x: Any, n: int, profiles: Sequence[str] | None) -> tuple:
    import onnxruntime as ort

    from neuroposter.profiling.profiles import list_profiles, load_profile
    from neuroposter.profiling.stored import read_op_counts

    sess = ort.InferenceSession(str(bundle / "model.onnx"), providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    arr = np.ascontiguousarray(np.asarray(x.detach().cpu().numpy() if hasattr(x, "detach") else x, dtype=np.float32))
    out = np.asarray(sess.run(None, {name: arr})[0], dtype=np.float64)
    mean = out.mean(axis=0) if out.ndim == 3 else out
    names = list(profiles) if profiles is not None else [p for p in list_profiles() if load_profile(p).kind == "ann"]
    try:
        counts = read_op_counts(bundle)["model"].counts
        per = _price(counts, names, "network")
    except (DataError, KeyError) as exc:
        per = [{"placement": "network", "status": "not counted", "energy_pj": None,
                "reason": f"the bundle stores no op counts ({exc}); export it again"}]
    note = ("device view: the ONNX graph's stored op counts (op_counts.json; the same for every poster: an ANN does "
            f"every MAC whatever the input) x each ANN profile's per-op energy; {_FRONT_END_NOTE} where the model "
            "reads features (an image model's own backbone is part of its network)")
    return mean, "model.onnx in onnxruntime (CPU)", [per for _ in range(n)], note
