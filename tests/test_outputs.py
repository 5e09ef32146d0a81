"""Output files: claimed before any work, written atomically with umask permissions, and no
stale temporaries left behind by a killed run."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from diffphase.errors import ParameterError
from diffphase.outputs import TEMP_SUFFIX, OutputSet, remove_stale_temporaries, temporary_file


def _ended_pid() -> int:
    """The id of a process that has already exited."""
    proc = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    return int(proc.stdout)


@pytest.mark.parametrize("umask", [0o022, 0o002, 0o077])
def test_files_get_the_permissions_the_umask_allows(tmp_path, umask):
    old = os.umask(umask)
    try:
        out = OutputSet(tmp_path / "out")
        out.claim(["a.csv", "b.json"])
        csv_path = out.write_csv("a.csv", {"x": [1.0, 2.0]})
        json_path = out.write_json("b.json", {"x": 1})
    finally:
        os.umask(old)
    for path in (csv_path, json_path):
        assert path.stat().st_mode & 0o777 == 0o666 & ~umask


def test_a_figure_is_written_whole_with_umask_permissions(tmp_path):
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots()
    ax.plot([0, 1], [0, 1])
    old = os.umask(0o022)
    try:
        (path,) = OutputSet(tmp_path).save_figure(fig, "fig", ("png",))
    finally:
        os.umask(old)
        plt.close(fig)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert path.stat().st_mode & 0o777 == 0o644
    assert not list(tmp_path.glob(f"*{TEMP_SUFFIX}"))


def test_claim_removes_temporaries_of_ended_processes_only(tmp_path):
    stale = tmp_path / f".a.csv.{_ended_pid()}.xyz{TEMP_SUFFIX}"
    live = tmp_path / f".a.csv.{os.getpid()}.xyz{TEMP_SUFFIX}"
    foreign = tmp_path / ".a.csv.notapid.tmp"
    for path in (stale, live, foreign):
        path.write_text("half")
    OutputSet(tmp_path).claim(["a.csv"])
    assert not stale.exists()
    assert live.exists() and foreign.exists()
    assert remove_stale_temporaries(tmp_path / "missing") == []


def test_temporary_names_carry_the_process_id(tmp_path):
    fd, name = temporary_file(tmp_path / "x.csv")
    os.close(fd)
    assert f".x.csv.{os.getpid()}." in name and name.endswith(TEMP_SUFFIX)


def test_a_folder_in_place_of_an_output_file_is_refused_before_work(tmp_path):
    (tmp_path / "a.csv").mkdir()
    with pytest.raises(ParameterError, match="--out.*a.csv"):
        OutputSet(tmp_path, force=True).claim(["a.csv"])


def test_out_under_a_regular_file_is_refused(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(ParameterError, match="--out.*is a file"):
        OutputSet(tmp_path / "file" / "sub")
    with pytest.raises(ParameterError, match="--out.*is a file"):
        OutputSet(tmp_path / "file")


def test_an_empty_out_is_refused():
    with pytest.raises(ParameterError, match="--out"):
        OutputSet("")


def test_a_folder_that_cannot_be_created_is_refused_at_claim(tmp_path):
    with pytest.raises(ParameterError, match="--out.*create and write"):
        OutputSet("/proc/diffphase-cannot-exist/out").claim(["a.csv"])


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_a_read_only_folder_is_refused_at_claim(tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        with pytest.raises(ParameterError, match="--out.*create and write"):
            OutputSet(folder).claim(["a.csv"])
    finally:
        folder.chmod(0o755)


def test_existing_outputs_are_refused_without_force(tmp_path):
    (tmp_path / "a.csv").write_text("keep")
    with pytest.raises(ParameterError, match="--force"):
        OutputSet(tmp_path).claim(["a.csv"])
    out = OutputSet(tmp_path, force=True)
    out.claim(["a.csv"])
    out.write_text("a.csv", "new")
    assert (tmp_path / "a.csv").read_text() == "new"


def test_a_subfolder_keeps_force_and_resolution(tmp_path):
    parent = OutputSet(tmp_path, force=True)
    parent.dpi = 77
    child = parent.child("spectral")
    assert child.out_dir == tmp_path / "spectral" and child.force and child.dpi == 77


def test_no_outputs_claims_and_writes_nothing(tmp_path, monkeypatch):
    import matplotlib.pyplot as plt

    from diffphase.outputs import NoOutputs

    monkeypatch.chdir(tmp_path)
    outputs = NoOutputs()
    outputs.claim(["a.csv", "a.json"])
    outputs.write_csv("a.csv", {"x": [1.0]})
    outputs.write_json("a.json", {"x": 1})
    fig, _ = plt.subplots()
    outputs.save_figure(fig, "a", ("png", "pdf"))
    plt.close(fig)
    outputs.commit()
    assert outputs.written == [] and list(tmp_path.iterdir()) == []
    assert isinstance(outputs.child("x"), NoOutputs)
