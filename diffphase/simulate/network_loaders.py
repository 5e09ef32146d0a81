"""Load a trained network as a :class:`~diffphase.simulate.network_scores.NetworkScore`: a
diffusers folder or a user's torch factory (optional ``torch`` extra; THEORY 0 and E).

Contract
--------
* :func:`load_diffusers` reads a folder written by ``save_pretrained``, from the local disk only
  (``local_files_only``; nothing is downloaded): a model folder (``config.json`` naming a
  diffusers model class, and its weights) with ``scheduler_config.json`` beside it or in
  ``scheduler/``, or a pipeline folder (``model_index.json``) whose model component (``unet``,
  ``transformer``...) and ``scheduler`` are read. The model must take ``(sample, timestep)`` and
  return ``.sample`` (``UNet2DModel`` and models with its call signature); its input shape is
  ``(in_channels, sample_size, sample_size)`` from its config.
* :func:`scheduler_convention` reads what the network predicts and its noise levels from the
  scheduler, exactly (see :mod:`~diffphase.simulate.network_scores` for the maths): every
  scheduler with ``alphas_cumprod`` (DDPM, DDIM, PNDM, DPM-Solver, Euler, Heun, LMS, UniPC...:
  training timesteps, ``prediction_type`` epsilon, v_prediction or sample; Euler's continuous
  v-prediction timesteps ``log(sigma) / 4``), ``ScoreSdeVeScheduler`` (VE sigmas, the model
  returns the score) and the EDM schedulers (Karras sigmas, EDM preconditioning with
  ``sigma_data``). Others (flow matching...) are refused by name.
* :func:`load_torch_factory` imports ``package.module:factory`` and calls ``factory()``, which
  returns ``(module, info)`` or a dict with ``module`` and the info keys
  (:func:`network_from_spec`): ``prediction`` (epsilon, v, x0, score), ``time`` (``timestep``
  with ``alphas_cumprod`` or ``betas``; ``sigma``, ``tau``, ``ou``, ``edm`` with ``tau_range``,
  default ``(1e-8, 1e8)``), ``shape`` (one input's shape) and optionally ``sigma_data``; or
  ``scheduler`` (a diffusers scheduler, read as above) instead of ``prediction`` and ``time``.

Errors name the option: ``--diffusers`` (a missing folder, a folder without a model or a
scheduler, an unknown class) and ``--torch`` (an import error, a factory that raises, an info
that is not understood); whatever user code raises is a
:class:`~diffphase.simulate.jacobians.UserCodeError` naming it.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import json
from pathlib import Path

import numpy as np

from ..errors import MissingDependencyError, ParameterError, require_choice
from .jacobians import call_user_code
from .network_scores import PREDICTIONS, NetworkScore, NoiseLevels, Prediction
from .torch_adapter import require_torch

#: the time conventions a torch factory may declare
FACTORY_TIMES = ("timestep", "log-sigma", "sigma", "tau", "ou", "edm")
#: the keys a torch factory's info may hold
FACTORY_KEYS = ("module", "prediction", "time", "alphas_cumprod", "betas", "tau_range", "shape",
                "sigma_data", "scheduler")
#: the trained range assumed for a continuous time convention without ``tau_range``
DEFAULT_TAU_RANGE = (1e-8, 1e8)
#: diffusers' ``prediction_type`` -> :data:`~diffphase.simulate.network_scores.PREDICTIONS`
DIFFUSERS_PREDICTIONS = {"epsilon": "epsilon", "v_prediction": "v", "sample": "x0"}
#: what a diffusers folder must hold, in the errors
FOLDER_ALLOWED = ("a folder saved with save_pretrained: a diffusers model (config.json and its "
                  "weights, or a pipeline with model_index.json) and its scheduler "
                  "(scheduler_config.json)")


def require_diffusers():
    """Import and return diffusers, or raise :class:`MissingDependencyError` naming the extra."""
    require_torch()
    if importlib.util.find_spec("diffusers") is None:
        raise MissingDependencyError("diffusers", "torch")
    import diffusers

    return diffusers


# --------------------------------------------------------------------------- schedulers
def scheduler_convention(scheduler, name: str = "--diffusers") -> tuple[NoiseLevels, Prediction]:
    """The noise levels and prediction of a diffusers scheduler (see the module contract)."""
    kind = type(scheduler).__name__
    config = dict(getattr(scheduler, "config", {}))
    predicted = config.get("prediction_type", "epsilon")
    if kind.startswith("EDM"):
        edm = {"epsilon": "edm-epsilon", "v_prediction": "edm-v"}
        if predicted not in edm:
            raise ParameterError(f"{name} prediction_type", predicted, "epsilon or v_prediction")
        sigmas = float(config["sigma_min"]), float(config["sigma_max"])
        return (NoiseLevels("ve", "edm", (sigmas[0] ** 2, sigmas[1] ** 2)),
                Prediction(edm[predicted], float(config["sigma_data"])))
    if kind == "ScoreSdeVeScheduler":
        sigmas = float(config["sigma_min"]), float(config["sigma_max"])
        return NoiseLevels("ve", "sigma", (sigmas[0] ** 2, sigmas[1] ** 2)), Prediction("score")
    if hasattr(scheduler, "alphas_cumprod"):
        if predicted not in DIFFUSERS_PREDICTIONS:
            raise ParameterError(f"{name} prediction_type", predicted,
                                 "epsilon, v_prediction or sample")
        continuous = config.get("timestep_type") == "continuous" and predicted == "v_prediction"
        abar = np.asarray(scheduler.alphas_cumprod.detach().cpu().double().numpy()
                          if hasattr(scheduler.alphas_cumprod, "detach")
                          else scheduler.alphas_cumprod, dtype=float)
        levels = NoiseLevels.from_alphas_cumprod(abar, "log-sigma" if continuous else "timestep")
        return levels, Prediction(DIFFUSERS_PREDICTIONS[predicted])
    raise ParameterError(f"{name} scheduler", kind, "a scheduler with alphas_cumprod (DDPM, DDIM, "
                         "Euler, DPM-Solver...), ScoreSdeVeScheduler or an EDM scheduler")


# --------------------------------------------------------------------------- diffusers folders
def _read_json(path: Path, name: str) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ParameterError(name, str(path), f"a readable JSON file ({type(exc).__name__})"
                             ) from None


def _model_class(diffusers, class_name):
    found = getattr(diffusers, str(class_name), None) if class_name else None
    if isinstance(found, type) and issubclass(found, diffusers.ModelMixin):
        return found
    return None


def _model_folder(diffusers, folder: Path) -> tuple[Path, type]:
    """The folder of the model's ``config.json`` and the model class it names."""
    config = folder / "config.json"
    if config.is_file():
        found = _model_class(diffusers, _read_json(config, "--diffusers").get("_class_name"))
        if found is not None:
            return folder, found
    index = folder / "model_index.json"
    components = _read_json(index, "--diffusers") if index.is_file() else {}
    for component, entry in components.items():
        if isinstance(entry, list) and len(entry) == 2 and entry[0] == "diffusers":
            found = _model_class(diffusers, entry[1])
            if found is not None and (folder / component / "config.json").is_file():
                return folder / component, found
    raise ParameterError("--diffusers", str(folder), FOLDER_ALLOWED)


def _scheduler(diffusers, folder: Path):
    for path in (folder / "scheduler_config.json", folder / "scheduler" / "scheduler_config.json"):
        if path.is_file():
            config = _read_json(path, "--diffusers")
            kind = getattr(diffusers, str(config.get("_class_name")), None)
            if not isinstance(kind, type) or not hasattr(kind, "from_config"):
                raise ParameterError("--diffusers scheduler", config.get("_class_name"),
                                     "a diffusers scheduler class")
            return call_user_code(f"--diffusers {folder}", kind.from_config, config,
                                  where="when building its scheduler")
    raise ParameterError("--diffusers", str(folder), FOLDER_ALLOWED)


@contextlib.contextmanager
def _quiet_diffusers(diffusers):
    """diffusers' own warnings (a dtype cast) held back while the model is loaded."""
    logging = diffusers.utils.logging
    level = logging.get_verbosity()
    logging.set_verbosity_error()
    try:
        yield
    finally:
        logging.set_verbosity(level)


def _sample_shape(config, name: str) -> tuple[int, ...]:
    size, channels = config.get("sample_size"), config.get("in_channels")
    sizes = [size, size] if isinstance(size, int) else list(size or [])
    if not isinstance(channels, int) or len(sizes) != 2:
        raise ParameterError(f"{name} model config", {"sample_size": size, "in_channels": channels},
                             "integers in_channels and sample_size (or [H, W])")
    return (channels, *map(int, sizes))


def load_diffusers(folder, *, dtype: str = "float32", device: str = "cpu",
                   batch_rows: int | None = None) -> NetworkScore:
    """The network and scheduler of a local diffusers folder as a score field."""
    diffusers = require_diffusers()
    path = Path(str(folder)).expanduser()
    if not str(folder).strip() or not path.is_dir():
        raise ParameterError("--diffusers", str(folder), f"an existing folder: {FOLDER_ALLOWED}")
    model_dir, model_class = _model_folder(diffusers, path)
    scheduler = _scheduler(diffusers, path)
    name = f"--diffusers {folder}"
    levels, prediction = scheduler_convention(scheduler, name)
    with _quiet_diffusers(diffusers):
        model = call_user_code(name, lambda: model_class.from_pretrained(
            str(model_dir), local_files_only=True), where="when loading its weights")
    options = {} if batch_rows is None else {"batch_rows": batch_rows}
    with _quiet_diffusers(diffusers):
        return NetworkScore(model, prediction, levels, _sample_shape(model.config, name),
                            dtype=dtype, device=device, name=name, **options)


# --------------------------------------------------------------------------- torch factories
def _import_target(path: str):
    """``package.module:attribute`` imported, every failure an error naming ``--torch``."""
    if not isinstance(path, str) or path.count(":") != 1 or not all(
            part.strip() for part in path.split(":")):
        raise ParameterError("--torch", path, "'package.module:factory'")
    module_name, attribute = path.split(":")
    target = call_user_code(f"--torch {path}", importlib.import_module, module_name,
                            where="when imported")
    for part in attribute.split("."):
        target = call_user_code(f"--torch {path}", getattr, target, part, where="when looked up")
    if not callable(target):
        raise ParameterError("--torch", path, "a callable factory() -> (module, info)")
    return target


def _spec_dict(spec, name: str) -> dict:
    if isinstance(spec, tuple) and len(spec) == 2 and isinstance(spec[1], dict):
        spec = {"module": spec[0], **spec[1]}
    if not isinstance(spec, dict) or "module" not in spec:
        raise ParameterError(f"{name} result", type(spec).__name__,
                             "(module, info) or a dict with module and its info")
    unknown = sorted(set(spec) - set(FACTORY_KEYS))
    if unknown:
        raise ParameterError(f"{name} info key", unknown[0], "one of " + ", ".join(FACTORY_KEYS))
    return spec


def _factory_levels(spec: dict, name: str) -> NoiseLevels:
    time = require_choice(f"{name} time", spec.get("time"), FACTORY_TIMES)
    if time in ("timestep", "log-sigma"):
        if "alphas_cumprod" in spec:
            abar = np.asarray(spec["alphas_cumprod"], dtype=float)
        elif "betas" in spec:
            abar = np.cumprod(1.0 - np.asarray(spec["betas"], dtype=float))
        else:
            raise ParameterError(f"{name} info", sorted(spec), "alphas_cumprod or betas with "
                                 f"time {time}")
        return NoiseLevels.from_alphas_cumprod(abar, time)
    low, high = (float(v) for v in spec.get("tau_range", DEFAULT_TAU_RANGE))
    return NoiseLevels("vp" if time == "ou" else "ve", time, (low, high))


def network_from_spec(spec, name: str, *, dtype: str = "float32", device: str = "cpu",
                      batch_rows: int | None = None) -> NetworkScore:
    """A :class:`NetworkScore` from a factory's ``(module, info)`` (see the module contract)."""
    spec = _spec_dict(spec, name)
    if spec.get("scheduler") is not None:
        levels, prediction = scheduler_convention(spec["scheduler"], name)
        if "prediction" in spec:
            prediction = Prediction(require_choice(f"{name} prediction", spec["prediction"],
                                                   PREDICTIONS), prediction.data_std)
    else:
        kind = require_choice(f"{name} prediction", spec.get("prediction"), PREDICTIONS)
        prediction = Prediction(kind, spec.get("sigma_data"))
        levels = _factory_levels(spec, name)
    if "shape" not in spec:
        raise ParameterError(f"{name} info", sorted(spec), "a shape: the shape of one input")
    options = {} if batch_rows is None else {"batch_rows": batch_rows}
    return NetworkScore(spec["module"], prediction, levels, spec["shape"], dtype=dtype,
                        device=device, name=name, **options)


def load_torch_factory(path: str, *, dtype: str = "float32", device: str = "cpu",
                       batch_rows: int | None = None) -> NetworkScore:
    """Import ``package.module:factory``, call it and build the network it describes."""
    require_torch()
    factory = _import_target(path)
    name = f"--torch {path}"
    spec = call_user_code(name, factory, where="when called")
    return network_from_spec(spec, name, dtype=dtype, device=device, batch_rows=batch_rows)
