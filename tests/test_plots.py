"""bench/plots.py writes valid PNG pictures (short inputs; the pictures of the README are
drawn from the whole series by ``.venv/bin/python bench/plots.py``)."""

from __future__ import annotations

import struct

import pytest

from bench import plots

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def png_size(path) -> tuple[int, int]:
    """(width, height) from a PNG's IHDR chunk; fails on anything that is not a PNG."""
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE
    assert data[12:16] == b"IHDR"
    assert data[-8:-4] == b"IEND"
    return struct.unpack(">II", data[16:24])


def test_nab_picture_of_a_short_series(tmp_path):
    out = tmp_path / "nab.png"
    assert plots.main(["nab", "--limit", "600", "--out", str(out)]) == 0
    w, h = png_size(out)
    assert w > 500 and h > 300
    s = plots.score_nab(plots.NAB_CSV, limit=600)
    assert len(s["values"]) == 600 and s["z"][0] is None and s["z"][-1] is not None


def test_bearing_picture_of_the_shortest_run(tmp_path):
    out = tmp_path / "b.png"
    assert plots.main(["bearing", "--bearing", "2_4", "--out", str(out)]) == 0
    assert png_size(out)[0] > 500


def test_missing_input_is_a_clear_error(tmp_path, capsys):
    assert plots.main(["nab", "--csv", str(tmp_path / "none.csv"), "--out", str(tmp_path / "x.png")]) == 1
    assert "cannot read NAB series" in capsys.readouterr().err
    assert not (tmp_path / "x.png").exists()


def test_labelled_windows_of_the_shipped_series():
    wins = plots.nab_windows(plots.NAB_WINDOWS, plots.NAB_CSV)
    assert len(wins) == 4 and all(a < b for a, b in wins)
    with pytest.raises(plots.ConfigError):
        plots.nab_windows(plots.NAB_CSV.parent / "missing.json", plots.NAB_CSV)
