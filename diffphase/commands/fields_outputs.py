"""The records ``diagnose`` writes beside its tables (THEORY E): the JSON parameters that apply
to a request (the others left out, not null), the solver record, and the figures.

``diagnosis`` is a :class:`~diffphase.commands.fields.FieldDiagnosis` (a checked request);
``given`` the options as the command received them."""

from __future__ import annotations

from ..outputs import OutputSet


def json_parameters(diagnosis, given: dict) -> dict:
    """The parameters that apply to the request (the others are left out, not null)."""
    model, process = given["model"], given["process"]
    network = diagnosis.source.network is not None
    matrix_free = diagnosis.spectra == "matrix-free"
    applies = {"schedule": process == "ddpm", "steps": process == "ddpm",
               "fractions": bool(model), "variances": bool(model), "subspace": bool(model),
               "n_train": model == "empirical", "reference": given["reference"] is not None,
               "data_variance": model is None and diagnosis.rows is None,
               "score": not network, "model": not network,
               "torch": given["torch_path"] is not None,
               "diffusers": given["diffusers"] is not None, "dtype": network,
               "krylov_steps": matrix_free, "krylov_probes": matrix_free,
               "hutchinson_probes": matrix_free, "top_k": matrix_free or diagnosis.rows is not None,
               "data": given["data"] is not None, "dataset": given["dataset"] is not None,
               "key": given["key"] is not None, "limit": given["limit"] is not None}
    device = given["device"] if (model == "empirical" or network) else "cpu"
    parameters = {"score": given["score_path"], "model": model, "torch": given["torch_path"],
                  "diffusers": str(given["diffusers"]), "dtype": given["dtype"],
                  "dim": diagnosis.source.field.dim, "times": diagnosis.times,
                  "process": process, "schedule": given["schedule"], "steps": given["steps"],
                  "fractions": given["fractions"], "variances": given["variances"],
                  "subspace": given["subspace"], "rotation": given["rotation"],
                  "n_train": given["samples"],
                  "reference": str(given["reference"]) if given["reference"] else None,
                  "trajectories": given["points"],
                  "t_start": given["t_start"] if given["t_start"] is not None
                  else float(diagnosis.times[0]),
                  "data_variance": given["data_variance"], "threshold": given["threshold"],
                  "spectra": diagnosis.spectra, "krylov_steps": given["krylov_steps"],
                  "krylov_probes": given["krylov_probes"],
                  "hutchinson_probes": given["hutchinson_probes"], "top_k": given["top_k"],
                  "data": str(given["data"]), "dataset": given["dataset"], "key": given["key"],
                  "limit": given["limit"], "device": device}
    return {k: v for k, v in parameters.items() if applies.get(k, True)}


def json_solver(diagnosis, summaries, time_col: str, process: str,
                 relative_step: float, steps_per_efold: int, probes) -> dict:
    solver = {"spectra": diagnosis.spectra,
              "trajectories": "probability-flow ODE, Heun in (x/a_t, sqrt(tau)), steps uniform "
                              "in log tau",
              "steps_per_efold": steps_per_efold,
              "time_convention": f"{time_col} ({process}); tau = D_t/a_t^2",
              "spectra_of": "Jn = D_t J"}
    if diagnosis.estimate is not None:
        solver["estimated_memory_bytes"] = diagnosis.estimate[0]
    if diagnosis.spectra == "matrix-free":
        solver.update({"method": "Golub-Kahan bidiagonalization (singular values of Jn) and "
                                 "Lanczos (its symmetric part), full reorthogonalization; "
                                 "stochastic Lanczos quadrature; Hutchinson for |A|/|J|",
                       "forward_products": summaries[0]["forward_products"],
                       "rows_per_network_call": diagnosis.krylov["chunk_rows"]})
        return solver
    route_used = summaries[0]["jacobian_route"]
    solver.update({"jacobian_route": route_used,
                   "probes": probes if probes else diagnosis.source.field.dim})
    if route_used == "central":
        solver["relative_step"] = relative_step
    return solver


def write_figures(outputs: OutputSet, stem: str, formats, summaries, comparison, label: str,
                   matrix_free: bool, parameters: dict | None = None) -> None:
    if not formats:  # nothing drawn when no figure is written (--json alone)
        return
    from ..plotting import close
    from ..plotting.fields import comparison_figure, diagnostics_figure, matrix_free_figure

    draw = matrix_free_figure if matrix_free else diagnostics_figure
    figure = draw(summaries, title=label, parameters=parameters)
    outputs.save_figure(figure, stem, formats)
    close(figure)
    if comparison is not None:
        figure = comparison_figure(comparison, title=label, parameters=parameters)
        outputs.save_figure(figure, f"{stem}_theory", formats)
        close(figure)
