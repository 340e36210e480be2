from pathlib import Path

from typer.testing import CliRunner

from fashionrec.cli import app
from fashionrec.data.changes import ChangeLog
from fashionrec.workdir import WorkDir

runner = CliRunner()


def test_synth_then_validate(tmp_path: Path) -> None:
    result = runner.invoke(app, ["data", "synth", "--out", str(tmp_path / "cat"), "--items-per-type", "2", "--types", "3"])
    assert result.exit_code == 0, result.output
    assert len((tmp_path / "cat" / "styles.csv").read_text().splitlines()) == 7
    result = runner.invoke(app, ["validate", "--catalog", str(tmp_path / "cat"), "--out", str(tmp_path / "v")])
    assert result.exit_code == 0, result.output
    assert {p.name for p in (tmp_path / "v").iterdir()} == {
        "valid.parquet",
        "quarantine.csv",
        "report.html",
        "data_docs.html",
        "dataset_manifest.json",
    }
    result = runner.invoke(
        app,
        [
            "validate",
            "--catalog",
            str(tmp_path / "cat"),
            "--out",
            str(tmp_path / "v"),
            "--settings",
            '{"min_valid_fraction": 1.5}',
        ],
    )
    assert result.exit_code != 0 and "rows are valid" in str(result.exception)


def test_synth_with_defects_writes_the_ground_truth(tmp_path: Path) -> None:
    result = runner.invoke(
        app,
        ["data", "synth", "--out", str(tmp_path), "--items-per-type", "3", "--defects", '{"blurry": 0.05, "zero_byte": 0.05}'],
    )
    assert result.exit_code == 0, result.output
    truth = (tmp_path / "defects.csv").read_text().splitlines()
    assert truth[0] == "id,defect,reason" and len(truth) == 5


def test_query_needs_images_or_item_ids_but_not_both(tmp_path: Path) -> None:
    assert runner.invoke(app, ["query"]).exit_code == 2
    image = tmp_path / "x.jpg"
    image.write_bytes(b"x")
    assert runner.invoke(app, ["query", str(image), "--item-id", "1"]).exit_code == 2


def test_query_against_nothing_fails_cleanly() -> None:
    result = runner.invoke(app, ["query", "--item-id", "1", "--url", "http://127.0.0.1:9"])
    assert result.exit_code == 1
    assert "cannot reach" in result.output


def test_pipeline_compile(tmp_path: Path) -> None:
    result = runner.invoke(app, ["pipeline", "compile", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "training_pipeline.yaml").is_file()


def test_serve_without_a_run_says_what_to_do(tmp_path: Path) -> None:
    result = runner.invoke(app, ["serve", "--workdir", str(tmp_path)])
    assert result.exit_code != 0
    assert "pipeline run" in str(result.exception)


def test_an_experiment_without_running_servers_says_what_to_start(tmp_path: Path) -> None:
    result = runner.invoke(app, ["experiment", "2", "--workdir", str(tmp_path)])
    assert result.exit_code == 1
    assert "nothing is served" in result.output and "fashionrec serve --workdir" in " ".join(result.output.split())


def test_catalog_compact_folds_the_workdirs_old_changes(tmp_path: Path) -> None:
    log = ChangeLog(str(WorkDir(tmp_path).catalog_changes))
    first, second = log.append("add", [1], ["v1"], rows=b"rows"), log.append("remove", [1])
    result = runner.invoke(app, ["catalog", "compact", "--workdir", str(tmp_path)])
    assert result.exit_code == 0 and "folded 0 change(s)" in result.output, result.output  # younger than the retention
    result = runner.invoke(app, ["catalog", "compact", "--workdir", str(tmp_path), "--older-than-days", "0"])
    assert result.exit_code == 0 and "folded 2 change(s)" in result.output, result.output
    assert ChangeLog(str(WorkDir(tmp_path).catalog_changes)).changes() == [second]  # the removal is 1's last change
    assert not Path(log.rows_uri(first)).exists()
