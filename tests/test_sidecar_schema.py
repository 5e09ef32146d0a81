"""One sidecar schema: every command's JSON files start with the envelope published in
``diffphase/schemas/sidecar.schema.json`` (schema version, time stamp, versions, parameters,
seed, solver, convergence), and the seed is null exactly for the commands that draw no random
numbers."""

from __future__ import annotations

import datetime
import json
import sys
from pathlib import Path

import pytest

from diffphase.cli import main
from diffphase.outputs import (
    SIDECAR_SCHEMA,
    SIDECAR_SCHEMA_VERSION,
    load_sidecar_schema,
    run_metadata,
    schema_errors,
)

pytest.importorskip("sklearn")  # analyze --dataset digits

#: (command line with small sizes, whether it draws random numbers); a command that takes
#: --seed is given --seed 3, which its sidecar must record
RUNS = [
    (["spectrum", "--tau", "0.1", "--n-grid", "100"], False),
    (["phase-diagram", "spectral", "--n-tau", "5", "--n-rows", "3"], False),
    (["critical-times"], False),
    (["phase-diagram", "memorization", "--n-log-n-per-d", "4"], False),
    (["simulate", "memorization", "--experiment", "speciation", "--probes", "2", "--dims", "8"],
     True),
    (["phase-diagram", "hierarchy", "--depths", "2", "--eps", "0,0.5,1", "--f", "0.2,0.6",
      "--s-values", "2"], False),
    (["simulate", "hierarchy", "--v", "8", "--m", "2", "--depths", "2", "--samples", "20",
      "--population", "0", "--noise", "0.2,0.8"], True),
    (["sampler-error", "--steps", "50", "--dim", "8", "--k", "2"], False),
    (["phase-diagram", "sampler", "--steps-max", "64", "--n-steps", "3", "--dims", "8,16",
      "--k", "2"], False),
    (["diagnose", "--model", "linear-manifold", "--times", "1", "--trajectories", "1"], True),
    (["phase-diagram", "fields"], True),
    (["analyze", "--dataset", "digits", "--limit", "300", "--n-tau", "5", "--probes", "20",
      "--jacobian-probes", "0"], True),
    (["validate", "--model", "sampler"], True),
]


def _run(args, capsys) -> tuple[int, str]:
    with pytest.raises(SystemExit) as info:
        main([str(a) for a in args])
    out = capsys.readouterr()
    return info.value.code, out.err


def test_the_schema_is_shipped_and_declares_the_envelope():
    schema = load_sidecar_schema()
    assert SIDECAR_SCHEMA.parent.name == "schemas" and SIDECAR_SCHEMA.parent.parent.name == \
        "diffphase"
    assert set(schema["required"]) >= {"schema_version", "timestamp", "diffphase_version",
                                       "python_version", "dependencies", "seed", "solver",
                                       "convergence", "parameters"}
    assert set(schema["properties"]["dependencies"]["required"]) >= {"numpy", "scipy", "sympy",
                                                                     "numba"}
    assert schema_errors(run_metadata("x", {}), schema) == []


def test_the_package_data_ships_the_schema():
    pyproject = (Path(__file__).resolve().parents[1] / "pyproject.toml").read_text()
    assert '"schemas/*.json"' in pyproject


@pytest.mark.parametrize("change, message", [
    (lambda m: m.pop("seed"), "'seed' is required"),
    (lambda m: m.update(seed=-1), "minimum"),
    (lambda m: m.update(seed=1.5), "type integer or null"),
    (lambda m: m.update(seed=True), "type integer or null"),
    (lambda m: m.update(timestamp="yesterday"), "timestamp"),
    (lambda m: m.update(schema_version="0.9"), "schema_version"),
    (lambda m: m["dependencies"].pop("numpy"), "'numpy' is required"),
    (lambda m: m["dependencies"].update(numpy=None), "dependencies.numpy"),
    (lambda m: m.update(solver=[]), "$.solver"),
    (lambda m: m.update(convergence=None), "$.convergence"),
])
def test_the_validator_catches_a_broken_envelope(change, message):
    metadata = run_metadata("x", {"a": 1}, seed=0)
    change(metadata)
    errors = schema_errors(json.loads(json.dumps(metadata)), load_sidecar_schema())
    assert any(message in e for e in errors), errors


def test_the_validator_refuses_keywords_it_does_not_check():
    assert schema_errors({}, {"type": "object", "oneOf": []})


def test_the_envelope_reserves_its_keys():
    with pytest.raises(ValueError, match="timestamp"):
        run_metadata("x", {}, timestamp="now")


@pytest.mark.parametrize("args, random", RUNS, ids=[" ".join(r[0][:2]) for r in RUNS])
def test_every_sidecar_validates_against_the_schema(args, random, tmp_path, capsys,
                                                    monkeypatch):
    from diffphase.cli import cli

    monkeypatch.chdir(tmp_path)
    node = cli
    for part in args:
        if not hasattr(node, "commands") or part not in node.commands:
            break
        node = node.commands[part]
    takes_seed = any("--seed" in p.opts for p in node.params)
    extra = ["--seed", "3"] if takes_seed else []
    out = tmp_path / "out"
    before = datetime.datetime.now(datetime.UTC).replace(microsecond=0)
    code, err = _run([*args, *extra, "--out", out], capsys)
    assert code == 0, err
    sidecars = sorted(out.rglob("*.json"))
    assert sidecars, list(out.rglob("*"))
    schema = load_sidecar_schema()
    for path in sidecars:
        document = json.loads(path.read_text())
        assert schema_errors(document, schema) == [], path.name
        assert document["schema_version"] == SIDECAR_SCHEMA_VERSION
        assert document["command"] == " ".join(a for a in args if a in _command_words(args))
        stamp = datetime.datetime.fromisoformat(document["timestamp"])
        assert stamp >= before and stamp.tzinfo is not None
        assert document["python_version"] == ".".join(map(str, sys.version_info[:3]))
        if takes_seed:
            assert document["seed"] == 3, path.name
        assert (document["seed"] is None) == (not random), path.name


def _command_words(args) -> set[str]:
    words = []
    for a in args:
        if a.startswith("-"):
            break
        words.append(a)
    return set(words)
