"""Dataset loaders (``diffphase.data.loaders``): every source reads back what was written, the
conventions hold, and every bad file is refused by ``diffphase analyze`` with one line naming the
option, exit code 2 and nothing written."""

from __future__ import annotations

import sys
import tomllib
from pathlib import Path

import numpy as np
import pytest

from diffphase.cli import main
from diffphase.data.loaders import load_rows, parse_image_size, peek_shape, prepare_rows
from diffphase.errors import MissingDependencyError, ParameterError

Image = pytest.importorskip("PIL.Image", reason="Pillow (the data extra) is not installed")


def _write_images(folder: Path, count: int, size=(6, 5), mode="L", seed=0) -> list[np.ndarray]:
    """``count`` random images (H x W = ``size``) as PNG files; returns their pixel arrays."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    shape = size if mode == "L" else (*size, 3)
    pixels = []
    for i in range(count):
        array = rng.integers(0, 256, size=shape, dtype=np.uint8)
        Image.fromarray(array, mode=mode).save(folder / f"img_{i:03d}.png")
        pixels.append(array)
    return pixels


# ----------------------------------------------------------------------------- sources
def test_npy_rows_and_higher_axes_are_flattened(tmp_path):
    rows = np.arange(24.0).reshape(4, 3, 2)
    np.save(tmp_path / "x.npy", rows)
    loaded = load_rows(str(tmp_path / "x.npy"))
    assert loaded.rows.shape == (4, 6) and loaded.kind == "npy"
    np.testing.assert_array_equal(loaded.rows, rows.reshape(4, 6))
    assert peek_shape(str(tmp_path / "x.npy")) == (4, 6)


def test_npz_key_csv_header_and_limit(tmp_path):
    a, b = np.random.default_rng(1).normal(size=(2, 7, 3))
    np.savez(tmp_path / "x.npz", a=a, b=b)
    np.testing.assert_array_equal(load_rows(str(tmp_path / "x.npz"), key="b").rows, b)
    np.savez(tmp_path / "one.npz", only=a)
    np.testing.assert_array_equal(load_rows(str(tmp_path / "one.npz")).rows, a)
    lines = [",".join(repr(float(v)) for v in row) for row in a]
    (tmp_path / "x.csv").write_text("p,q,r\n" + "\n".join(lines))
    loaded = load_rows(str(tmp_path / "x.csv"), limit=5)
    np.testing.assert_allclose(loaded.rows, a[:5], rtol=1e-15)
    assert loaded.details["header"] == ["p", "q", "r"]
    assert peek_shape(str(tmp_path / "x.csv")) == (7, 3)
    (tmp_path / "plain.csv").write_text("1,2\n3,4\n5,6\n")
    assert load_rows(str(tmp_path / "plain.csv")).rows.tolist() == [[1, 2], [3, 4], [5, 6]]


def test_image_folder_gray_color_and_resize(tmp_path):
    gray = _write_images(tmp_path / "gray", 5, size=(6, 5))
    loaded = load_rows(str(tmp_path / "gray"))
    assert loaded.rows.shape == (5, 30) and loaded.details["mode"] == "L"
    np.testing.assert_array_equal(loaded.rows, np.stack([g.ravel() for g in gray]))
    color = _write_images(tmp_path / "color", 4, size=(3, 4), mode="RGB")
    loaded = load_rows(str(tmp_path / "color"), limit=3)
    assert loaded.rows.shape == (3, 3 * 4 * 3)
    np.testing.assert_array_equal(loaded.rows[2], color[2].ravel())
    assert peek_shape(str(tmp_path / "color")) == (4, 36)
    resized = load_rows(str(tmp_path / "gray"), image_size="4x3")
    assert resized.rows.shape == (5, 12) and resized.details["height"] == 4
    assert load_rows(str(tmp_path / "gray"), image_size="2").rows.shape == (5, 4)


def test_jpeg_and_mixed_modes_read_as_rgb(tmp_path):
    folder = tmp_path / "mixed"
    _write_images(folder, 2, size=(4, 4))
    Image.fromarray(np.full((4, 4, 3), 200, np.uint8), mode="RGB").save(folder / "z.jpg")
    loaded = load_rows(str(folder))
    assert loaded.rows.shape == (3, 48) and loaded.details["mode"] == "RGB"
    first = np.asarray(Image.open(folder / "img_000.png"), dtype=float)
    np.testing.assert_array_equal(loaded.rows[0].reshape(4, 4, 3)[..., 1], first)


def test_image_size_parsing():
    assert parse_image_size("28") == (28, 28) and parse_image_size("32x48") == (32, 48)
    for bad in ("0", "x", "3x", "5000", "2.5"):
        with pytest.raises(ParameterError, match="image_size"):
            parse_image_size(bad)


# ----------------------------------------------------------------------------- conventions
def test_normalizations_against_their_definitions():
    rng = np.random.default_rng(2)
    rows = rng.normal(size=(50, 6)) * np.array([3.0, 1.0, 0.5, 2.0, 1.0, 1.0]) + 7.0
    rows[:, 5] = 4.0  # a constant feature
    for normalize in ("trace", "standardize", "none"):
        prepared = prepare_rows(rows, normalize)
        np.testing.assert_allclose(prepared.rows.mean(axis=0), 0.0, atol=1e-12)
        variances = (prepared.rows**2).mean(axis=0)
        assert prepared.constant_features == 1 and variances[5] == 0.0
        if normalize == "trace":
            assert variances.sum() / 6 == pytest.approx(1.0, rel=1e-12)
        elif normalize == "standardize":
            np.testing.assert_allclose(variances[:5], 1.0, rtol=1e-12)
        else:
            np.testing.assert_allclose(prepared.rows, rows - rows.mean(axis=0), atol=1e-12)


def test_missing_extra_names_the_install_hint(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "sklearn.datasets", None)
    with pytest.raises(MissingDependencyError, match=r"diffphase\[data\]"):
        load_rows(dataset="digits")
    _write_images(tmp_path / "imgs", 2)
    monkeypatch.setitem(sys.modules, "PIL", None)
    with pytest.raises(MissingDependencyError, match=r"Pillow.*diffphase\[data\]"):
        load_rows(str(tmp_path / "imgs"))


def test_pyproject_declares_the_data_extra():
    project = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())
    extra = project["project"]["optional-dependencies"]["data"]
    assert any(r.startswith("scikit-learn") for r in extra)
    assert any(r.startswith("Pillow") for r in extra)


# ----------------------------------------------------------------------------- bad files
def _bad_files(root: Path) -> dict[str, tuple[list[str], str]]:
    """Case -> (the options given, the option the error must name)."""
    np.save(root / "strings.npy", np.array([["a", "b"], ["c", "d"]]))
    np.save(root / "objects.npy", np.array([[1, None], [2, 3]], dtype=object), allow_pickle=True)
    np.save(root / "complex.npy", np.ones((4, 2), dtype=complex))
    nan = np.ones((4, 2))
    nan[2, 1] = np.nan
    np.save(root / "nan.npy", nan)
    np.save(root / "one_row.npy", np.ones((1, 3)))
    np.save(root / "constant.npy", np.full((5, 3), 2.0))
    (root / "inf.csv").write_text("1,2\n3,inf\n")
    (root / "ragged.csv").write_text("1,2,3\n4,5\n6,7,8\n")
    (root / "words.csv").write_text("1,2\n3,four\n")
    (root / "garbage.npy").write_bytes(b"not an array at all")
    (root / "empty").mkdir()
    _write_images(root / "with_text", 2)
    (root / "with_text" / "notes.txt").write_text("hello")
    _write_images(root / "broken", 2)
    (root / "broken" / "zz.png").write_bytes(b"no png here")
    _write_images(root / "sizes", 1, size=(4, 4))
    _write_images(root / "sizes2", 1, size=(5, 5), seed=1)
    (root / "sizes2" / "img_000.png").rename(root / "sizes" / "other.png")
    (root / "words.txt").write_text("1,2\n")
    np.savez(root / "two.npz", a=np.ones((3, 2)), b=np.zeros((3, 2)))
    data = ["--data"]
    return {
        "strings": (data + [str(root / "strings.npy")], "--data"),
        "objects": (data + [str(root / "objects.npy")], "--data"),
        "complex": (data + [str(root / "complex.npy")], "--data"),
        "nan": (data + [str(root / "nan.npy")], "--data"),
        "inf": (data + [str(root / "inf.csv")], "--data"),
        "ragged": (data + [str(root / "ragged.csv")], "--data"),
        "non-numeric": (data + [str(root / "words.csv")], "--data"),
        "one-row": (data + [str(root / "one_row.npy")], "--data"),
        "all-constant": (data + [str(root / "constant.npy")], "--data"),
        "unreadable": (data + [str(root / "garbage.npy")], "--data"),
        "missing": (data + [str(root / "nowhere.npy")], "--data"),
        "wrong-kind": (data + [str(root / "words.txt")], "--data"),
        "empty-folder": (data + [str(root / "empty")], "--data"),
        "non-image": (data + [str(root / "with_text")], "--data"),
        "broken-image": (data + [str(root / "broken")], "--data"),
        "image-sizes": (data + [str(root / "sizes")], "--image-size"),
        "npz-no-key": (data + [str(root / "two.npz")], "--key"),
        "npz-wrong-key": (data + [str(root / "two.npz"), "--key", "c"], "--key"),
        "key-not-npz": (data + [str(root / "nan.npy"), "--key", "a"], "--key"),
        "no-source": ([], "--data"),
        "two-sources": (data + [str(root / "nan.npy"), "--dataset", "digits"], "--dataset"),
    }


def test_every_bad_file_is_one_line_exit_2_naming_the_option(tmp_path, capsys):
    cases = _bad_files(tmp_path)
    for case, (options, option) in cases.items():
        out = tmp_path / f"out-{case}"
        with pytest.raises(SystemExit) as info:
            main(["analyze", *options, "--out", str(out)])
        err = capsys.readouterr().err
        lines = [line for line in err.splitlines() if line.strip()]
        assert info.value.code == 2, (case, err)
        assert len(lines) == 1 and lines[0].startswith("error:"), (case, err)
        assert option in lines[0], (case, lines[0])
        assert not out.exists(), case  # refused before any output


def test_library_errors_name_the_parameters(tmp_path):
    np.save(tmp_path / "c.npy", np.ones((3, 2), dtype=complex))
    with pytest.raises(ParameterError, match="invalid data"):
        load_rows(str(tmp_path / "c.npy"))
    with pytest.raises(ParameterError, match="invalid limit"):
        load_rows(str(tmp_path / "c.npy"), limit=1)
    with pytest.raises(ParameterError, match="invalid normalize"):
        prepare_rows(np.ones((3, 2)), "unit")
