"""Poster datasets: the Kaggle MovieGenre.csv importer, the synthetic generator, the downloader.

Public API::

    load_dataset(path) -> PosterDataset           # read an imported dataset (contract section 2)
    import_kaggle(csv, posters, out, ...)         # MovieGenre.csv + posters -> dataset folder
    generate_synth(out, n=800, seed=0)            # synthetic posters in the Kaggle on-disk format
    download_posters(csv, posters, ...)           # fetch poster URLs (resumable, bounded, atomic)
    ImagePolicy(mode, height, width)              # how posters are resized later
"""

from __future__ import annotations

from neuroposter.data.dataset import PosterDataset, load_dataset
from neuroposter.data.download import DownloadResult, download_posters
from neuroposter.data.kaggle import CSV_COLUMNS, SKIP_REASONS, ImportResult, import_kaggle, read_kaggle_csv
from neuroposter.data.policy import POLICY_MODES, ImagePolicy
from neuroposter.data.split import stratified_split
from neuroposter.data.synth import SYNTH_GENRES, SYNTH_SIZES, SynthResult, generate_synth

__all__ = [
    "CSV_COLUMNS",
    "POLICY_MODES",
    "SKIP_REASONS",
    "SYNTH_GENRES",
    "SYNTH_SIZES",
    "DownloadResult",
    "ImagePolicy",
    "ImportResult",
    "PosterDataset",
    "SynthResult",
    "download_posters",
    "generate_synth",
    "import_kaggle",
    "load_dataset",
    "read_kaggle_csv",
    "stratified_split",
]
