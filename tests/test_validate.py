import shutil
from pathlib import Path

import pandas as pd
from PIL import Image

from fashionrec.validate import validate_catalog, write_outputs


def damaged_copy(tiny_catalog: Path, dest: Path) -> dict[str, str]:
    """Copy the catalogue and break some rows in known ways; return {id: expected reason}."""
    shutil.copytree(tiny_catalog, dest)
    styles = pd.read_csv(dest / "styles.csv", dtype=str)
    ids = list(styles["id"])
    images = dest / "images"
    (images / f"{ids[0]}.jpg").write_bytes(b"this is not a jpeg")
    data = (images / f"{ids[1]}.jpg").read_bytes()
    (images / f"{ids[1]}.jpg").write_bytes(data[: len(data) // 3])
    (images / f"{ids[2]}.jpg").unlink()
    (images / f"{ids[3]}.jpg").write_bytes(b"")
    Image.new("RGB", (8, 8)).save(images / f"{ids[4]}.jpg")
    lines = (dest / "styles.csv").read_text().splitlines()
    row5 = lines[6].split(",")
    row5[4] = ""  # no articleType
    lines[6] = ",".join(row5)
    lines.append(lines[8])  # duplicate id of row 8
    lines.append("123,Men,only three fields")
    (dest / "styles.csv").write_text("\n".join(lines) + "\n")
    return {
        ids[0]: "undecodable_image",
        ids[1]: "undecodable_image",
        ids[2]: "missing_image",
        ids[3]: "undecodable_image",
        ids[4]: "image_too_small",
        ids[5]: "missing_label",
        ids[7]: "duplicate_id",
    }


def test_every_defect_is_quarantined_with_its_reason_and_nothing_is_lost(tiny_catalog: Path, tmp_path: Path) -> None:
    expected = damaged_copy(tiny_catalog, tmp_path / "catalog")
    result = validate_catalog(tmp_path / "catalog")
    quarantine = result.quarantine
    by_id = quarantine.dropna(subset=["id"]).groupby("id")["reason"].agg(set).to_dict()
    assert {k: {v} for k, v in expected.items()} == by_id
    assert list(quarantine.loc[quarantine["reason"] == "malformed_csv_row", "line_number"]) == [
        len((tmp_path / "catalog" / "styles.csv").read_text().splitlines())
    ]
    duplicate_rows = quarantine[quarantine["reason"] == "duplicate_id"]
    assert len(duplicate_rows) == 2  # both copies: which one is right cannot be known
    # Invariant: every input row is accounted for exactly once.
    assert len(result.valid) + len(result.quarantine) == result.rows_in
    assert not set(result.valid["id"].astype(str)) & set(quarantine["id"].dropna())
    assert result.gx_success is False
    assert all(detail for detail in quarantine["detail"])


def test_clean_catalogue_passes_and_outputs_are_written(tiny_catalog: Path, tmp_path: Path) -> None:
    result = validate_catalog(tiny_catalog)
    assert result.gx_success is True and result.quarantine.empty
    metrics = write_outputs(result, tmp_path / "valid.parquet", tmp_path / "q.csv", tmp_path / "report.html")
    assert metrics["rows_in"] == metrics["rows_valid"] == len(result.valid) == 60
    valid = pd.read_parquet(tmp_path / "valid.parquet")
    assert valid["image"].map(len).min() > 100
    assert valid["image_sha256"].str.len().eq(64).all()
    assert "Great Expectations" in (tmp_path / "report.html").read_text()
