"""Dataset loaders: a user's rows of numbers, from a file, a folder of images or a bundled set.

Contract
--------
Rows are samples, columns are features (THEORY section 0: the data ``y``).

* :func:`peek_shape` gives ``(rows, features)`` of a source without reading its values (array
  headers, line counts, image headers), so that a job's memory can be checked before it loads.
* :func:`load_rows` reads a source: ``data`` a path to a ``.npy`` file, an ``.npz`` archive (array
  chosen by ``key``; the only one when ``key`` is None), a numeric ``.csv`` file (comma-separated;
  a first line that is not numeric is a header) or a folder of PNG/JPEG images (one row per image,
  sorted by file name; grayscale, or RGB when any image has colour; resized to ``image_size``
  ``(H, W)`` when given, else all must have one size); or ``dataset="digits"`` (scikit-learn's
  bundled 8 x 8 digits, 1797 x 64, no download); from Python, ``data`` may also be a numpy array.
  ``limit`` keeps the first rows (files). Arrays of more than two axes keep their first axis as
  rows and flatten the others.
* :func:`prepare_rows` centres every feature and scales: ``trace`` (``tr C / d = 1``, i.e. a mean
  squared norm ``d``), ``standardize`` (unit variance per feature; constant features stay 0) or
  ``none``. ``C = X^T X / n`` of the centred rows ``X`` (the covariance of the empirical law).

Errors: a source that cannot be used raises :class:`~diffphase.errors.ParameterError` naming
``data`` (or ``key``, ``dataset``, ``limit``, ``image_size``, ``normalize``) and what is allowed:
a missing or unreadable path, a file of another kind, strings, objects or complex numbers, NaN or
infinite entries, a ragged or non-numeric CSV, fewer than two rows, features that are all
constant, a folder with other files or no image, an archive without the key. The optional
readers (scikit-learn, Pillow) are the ``data`` extra; without them
:class:`~diffphase.errors.MissingDependencyError` says how to install it.
"""

from __future__ import annotations

import csv
import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import MissingDependencyError, ParameterError, require_choice, require_int

#: bundled datasets (scikit-learn, no download) -> (rows, features)
DATASETS = {"digits": (1797, 64)}
#: feature scalings of :func:`prepare_rows`
NORMALIZATIONS = ("trace", "standardize", "none")
#: image file suffixes read from a folder
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
#: array dtypes accepted: booleans, integers, floats
NUMERIC_KINDS = "biuf"
#: what ``data`` may be, in the errors
DATA_ALLOWED = "an existing .npy, .npz or numeric .csv file, or a folder of PNG or JPEG images"
#: image modes read as grayscale; every other mode is read as RGB
GRAY_MODES = ("1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "F")


@dataclass
class LoadedRows:
    """Rows read from a source: ``rows`` (n, d) floats, ``source`` (a path or dataset name),
    ``kind`` (``npy``, ``npz``, ``csv``, ``images``, ``dataset``) and what was read (``details``:
    the key, image size and mode, the header...)."""

    rows: np.ndarray
    source: str
    kind: str
    details: dict = field(default_factory=dict)


@dataclass
class PreparedRows:
    """Centred and scaled rows (:func:`prepare_rows`). ``scale``: the factor of ``trace`` (1 for
    the others); ``feature_scales``: per-feature divisors (``standardize``; ones otherwise);
    ``constant_features``: features with zero variance; ``trace_per_dim``: ``tr C / d`` after."""

    rows: np.ndarray
    normalize: str
    scale: float
    feature_scales: np.ndarray
    constant_features: int
    trace_per_dim: float


# ----------------------------------------------------------------------------- options
def parse_image_size(text) -> tuple[int, int] | None:
    """``"28"`` -> ``(28, 28)``, ``"32x48"`` -> ``(32, 48)`` (H x W, each in [1, 4096]); None
    stays None."""
    if text is None or isinstance(text, tuple):
        return text
    match = re.fullmatch(r"\s*(\d+)\s*(?:[xX]\s*(\d+))?\s*", str(text))
    sizes = None if match is None else [int(g) for g in match.groups(match.group(1))]
    if sizes is None or not all(1 <= s <= 4096 for s in sizes):
        raise ParameterError("image_size", text, "H or HxW, integers in [1, 4096], e.g. 28 or "
                             "32x48")
    return sizes[0], sizes[1]


def check_source(data, dataset, key=None, limit=None, image_size=None) -> dict:
    """Check the choice of source (nothing is read): exactly one of ``data`` or ``dataset``;
    ``key`` only with an archive, ``image_size`` only with a folder; ``limit`` an integer
    ``>= 2``. Returns the checked ``{"path", "kind" | "dataset", "key", "limit",
    "image_size"}``."""
    if limit is not None:
        limit = require_int("limit", limit, minimum=2)
    if (data is None) == (dataset is None):
        if data is None:
            raise ParameterError("data", None, f"{DATA_ALLOWED}, or dataset digits")
        raise ParameterError("dataset", dataset, "not together with data (give one source)")
    size = parse_image_size(image_size)
    if dataset is not None:
        require_choice("dataset", dataset, tuple(DATASETS))
        if key is not None:
            raise ParameterError("key", key, "only with an .npz file given as data")
        if size is not None:
            raise ParameterError("image_size", image_size, "only with a folder of images")
        return {"dataset": dataset, "key": None, "limit": limit, "image_size": None}
    if isinstance(data, np.ndarray):
        path, kind = data, "array"
    else:
        path = _existing_path(data)
        kind = _kind_of(path)
    if key is not None and kind != "npz":
        raise ParameterError("key", key, "only with an .npz file given as data")
    if size is not None and kind != "images":
        raise ParameterError("image_size", image_size, "only with a folder of images")
    return {"path": path, "kind": kind, "key": key, "limit": limit, "image_size": size}


def _existing_path(data) -> Path:
    text = str(data)
    if not text.strip():
        raise ParameterError("data", text, DATA_ALLOWED)
    path = Path(text).expanduser()
    try:
        exists = path.exists()
    except OSError:
        exists = False
    if not exists:
        raise ParameterError("data", text, f"{DATA_ALLOWED} (no such file or folder)")
    return path


def _kind_of(path: Path) -> str:
    if path.is_dir():
        return "images"
    suffix = path.suffix.lower()
    kinds = {".npy": "npy", ".npz": "npz", ".csv": "csv"}
    if suffix not in kinds or not path.is_file():
        raise ParameterError("data", str(path), f"{DATA_ALLOWED} (not a file of these kinds)")
    return kinds[suffix]


# ----------------------------------------------------------------------------- peeking
def peek_shape(data=None, dataset=None, key=None, limit=None, image_size=None
               ) -> tuple[int, int]:
    """``(rows, features)`` that :func:`load_rows` would return, read from headers only (the
    checks of :func:`check_source` and of the files' kinds happen here too)."""
    source = check_source(data, dataset, key, limit, image_size)
    if "dataset" in source:
        rows, features = DATASETS[source["dataset"]]
    else:
        peekers = {"npy": _peek_npy, "npz": _peek_npz, "csv": _peek_csv, "images": _peek_images,
                   "array": _peek_array}
        rows, features = peekers[source["kind"]](source["path"], key, source["image_size"])
    return (rows if source["limit"] is None else min(rows, source["limit"])), features


def _rows_and_features(shape: tuple, where: str) -> tuple[int, int]:
    if len(shape) < 2:
        raise ParameterError("data", f"{where}: an array of shape {shape}",
                             "an array of rows (samples) by features: two axes or more")
    return int(shape[0]), int(np.prod(shape[1:], dtype=np.int64))


def _check_dtype(dtype: np.dtype, where: str) -> None:
    if dtype.kind not in NUMERIC_KINDS:
        raise ParameterError("data", f"{where}: values of type {dtype}",
                             "real numbers (booleans, integers or floats; not strings, objects "
                             "or complex numbers)")


def _peek_array(array: np.ndarray, key, image_size) -> tuple[int, int]:
    _check_dtype(array.dtype, "array")
    return _rows_and_features(array.shape, "array")


def _array_header(member) -> tuple[tuple, np.dtype]:
    """``(shape, dtype)`` from the header of an ``.npy`` stream (the values are not read)."""
    fmt = np.lib.format
    version = fmt.read_magic(member)
    read = fmt.read_array_header_1_0 if version == (1, 0) else fmt.read_array_header_2_0
    shape, _, dtype = read(member)
    return shape, dtype


def _peek_npy(path: Path, key, image_size) -> tuple[int, int]:
    try:
        with path.open("rb") as handle:
            shape, dtype = _array_header(handle)
    except OSError as exc:
        raise ParameterError("data", str(path), f"a readable .npy file ({exc.strerror})"
                             ) from None
    except ValueError:
        raise ParameterError("data", str(path), "a readable .npy file (no valid .npy header)"
                             ) from None
    _check_dtype(np.dtype(dtype), path.name)
    return _rows_and_features(shape, path.name)


def _npz_member(path: Path, key) -> tuple[zipfile.ZipFile, str]:
    try:
        archive = zipfile.ZipFile(path)
    except (OSError, zipfile.BadZipFile) as exc:
        raise ParameterError("data", str(path), f"a readable .npz archive ({_first_line(exc)})"
                             ) from None
    names = [n[:-4] for n in archive.namelist() if n.endswith(".npy")]
    if not names:
        archive.close()
        raise ParameterError("data", str(path), "an .npz archive holding at least one array")
    if key is None:
        if len(names) > 1:
            archive.close()
            raise ParameterError("key", None, f"one of {', '.join(names)} (the archive holds "
                                 "several arrays)")
        key = names[0]
    if key not in names:
        archive.close()
        raise ParameterError("key", key, f"one of {', '.join(names)}")
    return archive, key


def _peek_npz(path: Path, key, image_size) -> tuple[int, int]:
    archive, key = _npz_member(path, key)
    with archive, archive.open(f"{key}.npy") as member:
        try:
            shape, dtype = _array_header(member)
        except (ValueError, OSError) as exc:
            raise ParameterError("data", str(path), f"an .npz archive of arrays ({key}: "
                                 f"{_first_line(exc)})") from None
    _check_dtype(np.dtype(dtype), f"{path.name}[{key}]")
    return _rows_and_features(shape, f"{path.name}[{key}]")


def _csv_lines(path: Path):
    try:
        handle = path.open(newline="")
        return handle
    except OSError as exc:
        raise ParameterError("data", str(path), f"a readable file ({exc.strerror})") from None


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _peek_csv(path: Path, key, image_size) -> tuple[int, int]:
    with _csv_lines(path) as handle:
        try:
            reader = csv.reader(handle)
            first = next(reader, None)
            rows = sum(1 for line in reader if line)
        except (UnicodeDecodeError, csv.Error) as exc:
            raise ParameterError("data", str(path), f"a text CSV file ({_first_line(exc)})"
                                 ) from None
    if first is None:
        raise ParameterError("data", str(path), "a CSV file with rows of numbers (it is empty)")
    header = not all(_is_number(cell) for cell in first)
    return rows + (0 if header else 1), len(first)


def _image_files(folder: Path) -> list[Path]:
    try:
        entries = sorted(p for p in folder.iterdir() if not p.name.startswith("."))
        others = [p.name for p in entries
                  if p.suffix.lower() not in IMAGE_SUFFIXES or not p.is_file()]
    except OSError as exc:
        raise ParameterError("data", str(folder), f"a readable folder ({exc.strerror})") from None
    if others:
        raise ParameterError("data", str(folder), "a folder of PNG or JPEG images only (found "
                             f"{', '.join(others[:3])}{' ...' if len(others) > 3 else ''})")
    if not entries:
        raise ParameterError("data", str(folder), "a folder holding PNG or JPEG images (it has "
                             "none)")
    return entries


def _pillow():
    try:
        from PIL import Image, UnidentifiedImageError
    except ImportError:
        raise MissingDependencyError("Pillow", "data") from None
    return Image, UnidentifiedImageError


def _open_image(path: Path):
    image_module, unidentified = _pillow()
    try:
        return image_module.open(path)
    except (unidentified, OSError, ValueError) as exc:
        raise ParameterError("data", str(path), f"a readable PNG or JPEG image "
                             f"({_first_line(exc)})") from None


def _image_headers(folder: Path, limit, image_size) -> tuple[list[Path], tuple[int, int], bool]:
    """The files read, the size ``(H, W)`` every image gets, and whether any has colour."""
    files = _image_files(folder)[:limit]
    sizes, color = set(), False
    for path in files:
        with _open_image(path) as image:
            sizes.add((image.height, image.width))
            color = color or image.mode not in GRAY_MODES
    if image_size is None and len(sizes) > 1:
        raise ParameterError("image_size", None, "H or HxW to resize images of different sizes "
                             f"(found {len(sizes)} sizes, e.g. "
                             f"{', '.join(f'{h}x{w}' for h, w in sorted(sizes)[:2])})")
    return files, image_size or sizes.pop(), color


def _peek_images(folder: Path, key, image_size) -> tuple[int, int]:
    files, (height, width), color = _image_headers(folder, None, image_size)
    return len(files), height * width * (3 if color else 1)


# ----------------------------------------------------------------------------- loading
def load_rows(data=None, dataset=None, key=None, limit=None, image_size=None) -> LoadedRows:
    """The rows of a source (see the module contract), as finite floats with at least two rows.

    Parameters
    ----------
    data : a path (``.npy``, ``.npz``, ``.csv`` or a folder of PNG/JPEG images), or a numpy
        array of rows (the Python API).
    dataset : ``"digits"`` instead of ``data``.
    key : the array of an ``.npz`` archive. limit : keep the first ``limit >= 2`` rows.
    image_size : ``(H, W)``, ``"H"`` or ``"HxW"``: resize every image (bilinear).
    """
    source = check_source(data, dataset, key, limit, image_size)
    if "dataset" in source:
        loaded = _load_dataset(source["dataset"])
    else:
        readers = {"npy": _load_npy, "npz": _load_npz, "csv": _load_csv, "array": _load_array}
        if source["kind"] == "images":
            loaded = _load_images(source["path"], source["limit"], source["image_size"])
        else:
            loaded = readers[source["kind"]](source["path"], key)
    if source["limit"] is not None:
        loaded.rows = loaded.rows[: source["limit"]]
    loaded.rows = _checked_rows(loaded.rows, loaded.source)
    return loaded


def _checked_rows(rows: np.ndarray, where: str) -> np.ndarray:
    _check_dtype(rows.dtype, where)
    _rows_and_features(rows.shape, where)
    array = np.ascontiguousarray(rows.reshape(rows.shape[0], -1), dtype=float)
    bad = ~np.isfinite(array)
    if bad.any():
        row, column = (int(i) for i in np.argwhere(bad)[0])
        raise ParameterError("data", f"{where}: {int(bad.sum())} NaN or infinite entries (first "
                             f"at row {row}, column {column})", "finite numbers only")
    if array.shape[0] < 2:
        raise ParameterError("data", f"{where}: {array.shape[0]} row", "at least 2 rows "
                             "(samples)")
    if array.shape[1] < 1:
        raise ParameterError("data", f"{where}: no features", "at least 1 feature (column)")
    return array


def _load_dataset(name: str) -> LoadedRows:
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        raise MissingDependencyError("scikit-learn", "data") from None
    rows = np.asarray(load_digits().data, dtype=float)
    return LoadedRows(rows, name, "dataset", {"dataset": name, "values": "gray levels 0-16"})


def _load_array(array: np.ndarray, key) -> LoadedRows:
    _peek_array(array, key, None)
    return LoadedRows(array, f"array of shape {array.shape}", "array")


def _load_npy(path: Path, key) -> LoadedRows:
    _peek_npy(path, key, None)  # dtype and shape, refused before the values are read
    try:
        rows = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError):
        raise ParameterError("data", str(path), "a readable .npy file (its values could not be "
                             "read)") from None
    return LoadedRows(rows, str(path), "npy")


def _load_npz(path: Path, key) -> LoadedRows:
    _peek_npz(path, key, None)
    archive, key = _npz_member(path, key)
    archive.close()
    try:
        with np.load(path, allow_pickle=False) as bundle:
            rows = bundle[key]
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
        raise ParameterError("data", str(path), f"a readable .npz archive ({_first_line(exc)})"
                             ) from None
    return LoadedRows(rows, f"{path}[{key}]", "npz", {"key": key})


def _load_csv(path: Path, key) -> LoadedRows:
    _, features = _peek_csv(path, key, None)
    with _csv_lines(path) as handle:
        first = next(csv.reader(handle), [])
    header = not all(_is_number(cell) for cell in first)
    try:
        rows = np.loadtxt(path, delimiter=",", skiprows=int(header), ndmin=2, dtype=float)
    except ValueError:
        raise ParameterError("data", str(path), _csv_problem(path, header, features)) from None
    details = {"header": [cell.strip() for cell in first]} if header else {}
    return LoadedRows(rows, str(path), "csv", details)


def _csv_problem(path: Path, header: bool, features: int) -> str:
    """What is wrong with a CSV that numpy refused: the first ragged or non-numeric row."""
    with _csv_lines(path) as handle:
        for number, line in enumerate(csv.reader(handle), start=1):
            if (number == 1 and header) or not line:
                continue
            if len(line) != features:
                return (f"a CSV file whose rows all have {features} fields (line {number} has "
                        f"{len(line)})")
            bad = next((cell for cell in line if not _is_number(cell)), None)
            if bad is not None:
                return f"a CSV file of numbers only (line {number} has {bad.strip()!r})"
    return "a CSV file of comma-separated numbers"


def _load_images(folder: Path, limit, image_size) -> LoadedRows:
    files, (height, width), color = _image_headers(folder, limit, image_size)
    mode = "RGB" if color else "L"
    image_module, _ = _pillow()
    rows = np.empty((len(files), height * width * (3 if color else 1)))
    for i, path in enumerate(files):
        with _open_image(path) as image:
            try:
                picture = image.convert(mode)
                if picture.size != (width, height):
                    picture = picture.resize((width, height), image_module.BILINEAR)
                rows[i] = np.asarray(picture, dtype=float).ravel()
            except (OSError, ValueError) as exc:
                raise ParameterError("data", str(path), "a readable PNG or JPEG image "
                                     f"({_first_line(exc)})") from None
    return LoadedRows(rows, str(folder), "images",
                      {"images": len(files), "height": height, "width": width, "mode": mode})


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0][:120]


# ----------------------------------------------------------------------------- conventions
def prepare_rows(rows, normalize: str = "trace") -> PreparedRows:
    """Centre every feature, then scale (``trace``, ``standardize`` or ``none``; see the module
    contract). Rows whose features are all constant are refused (``data``)."""
    require_choice("normalize", normalize, NORMALIZATIONS)
    array = _checked_rows(np.asarray(rows), "rows")
    centred = array - array.mean(axis=0)
    variances = np.einsum("ij,ij->j", centred, centred) / centred.shape[0]
    spread = np.abs(array).max(axis=0)
    constant = variances <= (64 * np.finfo(float).eps * np.maximum(spread, 1e-300)) ** 2
    if constant.all():
        raise ParameterError("data", f"{array.shape[0]} rows whose {array.shape[1]} features "
                             "are all constant", "rows that vary in at least one feature")
    centred[:, constant] = 0.0
    variances[constant] = 0.0
    scales = np.ones(array.shape[1])
    scale = 1.0
    if normalize == "trace":
        scale = float(np.sqrt(np.mean(variances)))
        centred /= scale
    elif normalize == "standardize":
        scales[~constant] = np.sqrt(variances[~constant])
        centred /= scales
    trace = float(np.einsum("ij,ij->", centred, centred) / centred.size)
    return PreparedRows(centred, normalize, scale, scales, int(constant.sum()), trace)
