"""The `unfold` command's offline parts (the servers are exercised in tests/integration)."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from app.cli import cli
from app.ingestion import parse_file


def test_datasets_synth_writes_an_uploadable_file_with_groups(tmp_path: Path):
    out = tmp_path / "planted.csv"
    result = CliRunner().invoke(
        cli, ["datasets", "synth", str(out), "--groups", "3", "--users-per-group", "40", "--items-per-group", "20"]
    )
    assert result.exit_code == 0, result.output
    parsed = parse_file(out)
    assert parsed.item_groups is not None and parsed.user_groups is not None
    assert len(set(parsed.item_groups.tolist())) == 3 and len(parsed.user_ids) == 120
    # Noise-free: every interaction stays inside its user's community.
    user_group = parsed.user_group_names[parsed.user_groups[parsed.users]]
    item_group = parsed.item_group_names[parsed.item_groups[parsed.items]]
    assert (user_group == item_group).all()


def test_datasets_synth_refuses_bad_parameters(tmp_path: Path):
    result = CliRunner().invoke(cli, ["datasets", "synth", str(tmp_path / "x.csv"), "--noise", "1.5"])
    assert result.exit_code != 0
    assert not (tmp_path / "x.csv").exists()
