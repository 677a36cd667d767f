"""The demo's size presets: what each one runs (the stages' command lines, not their results)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from neuroposter.cli.demo import SIZES, stages

ARGS = SimpleNamespace(workspace="ws", export_root="exp", seed=0)


def _lines(size: str) -> dict[str, list[str]]:
    return {s.name: s.argv(ARGS, SIZES[size]) for s in stages(SIZES[size])}


def test_every_preset_sets_the_same_knobs() -> None:
    keys = {k: set(v) for k, v in SIZES.items()}
    assert len({frozenset(v) for v in keys.values()}) == 1, keys


def test_default_is_one_seed_and_full_adds_seeds() -> None:
    default, full = _lines("default"), _lines("full")
    assert not any("seed +" in n for n in default)
    assert sum("seed +" in n for n in full) == 2 * (SIZES["full"]["seeds"] - 1)


@pytest.mark.parametrize("size", sorted(SIZES))
def test_every_preset_trains_fine_tunes_and_deploys_the_pixel_sdt(size: str) -> None:
    lines = _lines(size)
    argv = lines["train sdt-pixels"]
    assert argv[:3] == ["train", "--model", "sdt-pixels"]
    assert argv[argv.index("--image-size") + 1] == str(SIZES[size]["pixels"])
    assert argv[argv.index("--patience") + 1] == str(SIZES[size]["patience"])    # the same early-stopping budget
    assert lines["export nir sdt-pixels"][lines["export nir sdt-pixels"].index("--run") + 1] == "sdt-pixels"
    qat = lines["train sdt-pixels-loihi (quantisation-aware fine-tune)"]
    assert qat[qat.index("--init-from") + 1] == "sdt-pixels" and qat[qat.index("--target") + 1] == "loihi"
    names = list(lines)   # trained before fine-tuned before exported; the fine-tune's NIR graph too
    assert names.index("train sdt-pixels") < names.index("train sdt-pixels-loihi (quantisation-aware fine-tune)") \
        < names.index("export nir sdt-pixels-loihi") < names.index("export loihi sdt-pixels-loihi")
    assert names.index("train sdt-pixels") < names.index("export nir sdt-pixels")


def test_the_pixel_sdt_is_larger_in_full() -> None:
    assert SIZES["full"]["pixels"] > SIZES["default"]["pixels"] >= 16


@pytest.mark.parametrize("size", sorted(SIZES))
def test_chip_fine_tunes_use_the_qat_patience(size: str) -> None:
    lines = _lines(size)
    qat = [v for n, v in lines.items() if "fine-tune" in n]
    assert qat and all(v[v.index("--patience") + 1] == str(SIZES[size]["qat_patience"]) for v in qat)


def test_the_comparison_bundles_run_fewer_lava_samples_and_fine_tunes_fewer_consumers() -> None:
    lines = _lines("full")
    cmp = lines["export loihi sdt (float-trained, for comparison)"]
    assert cmp.count("--samples") == 1 and cmp[cmp.index("--samples") + 1] == "4"
    assert lines["export loihi sdt-loihi"][lines["export loihi sdt-loihi"].index("--samples") + 1] == \
        str(SIZES["full"]["lava_samples"])
    assert "consumer_samples=2" in lines["export nir sdt-loihi"] and "consumer_samples=2" not in lines["export nir sdt"]


def test_default_leaves_the_float_comparisons_and_the_conv_fit_to_full() -> None:
    default, full = _lines("default"), _lines("full")
    assert not any("float-trained, for comparison" in n for n in default)
    assert sum("float-trained, for comparison" in n for n in full) == 2
    assert not any(v[0] == "fit" and "images" in v for v in default.values())
    assert any(v[0] == "fit" and "images" in v for v in full.values())


def test_the_spiking_front_end_is_trained_from_the_sdt_and_deployed_where_the_preset_asks() -> None:
    for size in SIZES:
        lines = _lines(size)
        if not SIZES[size]["frontend"]:
            assert not any("sdt-frontend" in n for n in lines)
            continue
        argv = lines["train sdt-frontend"]
        assert argv[argv.index("--init-from") + 1] == "sdt"
        names = list(lines)
        assert names.index("train sdt") < names.index("train sdt-frontend") < names.index("export nir sdt-frontend")
        loihi = lines["export loihi sdt-frontend (float-trained)"]
        assert loihi[loihi.index("--min-trained-agreement") + 1] == "0"
    assert SIZES["full"]["frontend"] and not SIZES["default"]["frontend"]


def test_a_refused_fit_is_found_under_its_own_name() -> None:
    """The demo reads a fit's verdict from the bundle fit writes: fit-T, or fit-T-pixels with --input images."""
    from neuroposter.cli.demo import _bundle

    for size in SIZES:
        for name, argv in _lines(size).items():
            if argv[0] == "fit":
                images = "--input" in argv and argv[argv.index("--input") + 1] == "images"
                assert _bundle(argv).name == f"fit-{argv[argv.index('--target') + 1]}" + ("-pixels" if images else "")


def test_the_pixel_sdt_on_chips_fine_tunes_only_for_loihi_and_fits_a_conv_variant_only_on_conv_chips() -> None:
    lines = _lines("full")
    tunes = [n for n in lines if n.startswith("train sdt-pixels-")]
    assert tunes == ["train sdt-pixels-loihi (quantisation-aware fine-tune)"]   # no chip QAT that would be refused
    fits = [v for v in lines.values() if v[0] == "fit" and "images" in v]
    assert [v[v.index("--target") + 1] for v in fits] == ["speck"]              # the conv-native profile
    assert all(f"export {c} sdt-pixels" in lines for c in ("spinnaker", "spinnaker2", "truenorth", "xylo", "speck"))
