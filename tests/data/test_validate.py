"""Validation: every injected defect is caught with its reason, no clean image is rejected, nothing is lost."""

import json
import re
from pathlib import Path

import pandas as pd
import pytest

from fashionrec.data.catalog import read_styles
from fashionrec.data.provenance import dataset_digest
from fashionrec.data.synth import DEFECTS, inject_defects, synth_catalog
from fashionrec.data.validation.checks import ValidationSettings
from fashionrec.data.validation.quarantine import validate_catalog
from fashionrec.data.validation.report import ValidationFailed, output_paths, write_outputs

Damaged = tuple[Path, pd.DataFrame, pd.DataFrame]  # catalogue folder, its table, the injected defects


@pytest.fixture(scope="module")
def damaged(tmp_path_factory: pytest.TempPathFactory) -> Damaged:
    root = tmp_path_factory.mktemp("damaged")
    table = synth_catalog(root, items_per_type=20, seed=3)
    injected = inject_defects(root, table, dict.fromkeys(DEFECTS, 0.008), seed=1)
    return root, table, injected


def test_every_defect_kind_is_caught_with_its_reason(damaged: Damaged) -> None:
    root, _, injected = damaged
    result = validate_catalog(root)
    quarantine = result.quarantine
    for record in injected.itertuples(index=False):
        found = quarantine[quarantine["id"] == record.id]
        if record.reason:
            assert set(found["reason"]) == {record.reason}, (record.defect, found.to_dict("records"))
        else:  # normalised, not rejected
            assert found.empty, (record.defect, found.to_dict("records"))
            assert int(str(record.id)) in set(result.valid["id"])
    assert result.metrics["normalised_from_L"] >= 1 and result.metrics["normalised_from_CMYK"] >= 1
    assert result.gx_success is False


def test_no_clean_image_is_rejected(damaged: Damaged) -> None:
    root, table, injected = damaged
    result = validate_catalog(root)
    touched = set(injected["id"])
    wrongly = result.quarantine[result.quarantine["id"].notna() & ~result.quarantine["id"].isin(touched)]
    assert wrongly.empty, wrongly.to_dict("records")
    rejected = {r.id for r in injected.itertuples() if r.reason}
    listed = set(read_styles(root / "styles.csv").rows["id"])
    assert set(result.valid["id"].astype(str)) == listed - rejected
    assert len(listed) < len(table)  # duplicate_id defects took the ids of two rows


def test_every_row_is_accounted_for_exactly_once(damaged: Damaged) -> None:
    root, _, injected = damaged
    result = validate_catalog(root)
    rows = result.quarantine[result.quarantine["kind"] == "row"]
    assert len(result.valid) + len(rows) == result.rows_in == result.metrics["rows_in"]
    lines = list(result.valid["line_number"]) + list(rows["line_number"])
    assert sorted(lines) == sorted(set(lines))  # no line in both tables, none twice
    assert set(lines) == set(range(2, result.rows_in + 2))
    images = result.quarantine[result.quarantine["kind"] == "image"]
    assert set(images["reason"]) == {"image_without_row"}
    assert set(images["id"]) == set(injected.loc[injected["defect"] == "orphan_image", "id"])


def test_quarantine_carries_the_measured_value(damaged: Damaged) -> None:
    root, _, _ = damaged
    result = validate_catalog(root)
    first = {str(r["reason"]): r for r in result.quarantine.groupby("reason").first().reset_index().to_dict("records")}
    assert float(first["too_dark"]["value"]) < ValidationSettings().min_brightness
    assert float(first["blurry"]["value"]) < ValidationSettings().min_sharpness
    assert first["format_mismatch"]["value"] == "PNG"
    assert "different labels" in str(first["conflicting_duplicate"]["detail"])
    assert "pixels" in str(first["decompression_bomb"]["detail"])


def test_settings_override_and_unknown_keys(damaged: Damaged) -> None:
    root, _, _ = damaged
    relaxed = validate_catalog(root, ValidationSettings.from_overrides({"allow_format_mismatch": True, "min_sharpness": 0.0}))
    reasons = set(relaxed.quarantine["reason"])
    assert "format_mismatch" not in reasons and "blurry" not in reasons
    with pytest.raises(ValueError, match="unknown validation settings"):
        ValidationSettings.from_overrides({"min_sharpnes": 3})


def test_rare_classes_are_reported_and_excluded_only_when_configured(tiny_catalog: Path) -> None:
    kept = validate_catalog(tiny_catalog, ValidationSettings(min_class_count=11))
    assert len(kept.rare_classes) == 6 and kept.quarantine.empty
    excluded = validate_catalog(tiny_catalog, ValidationSettings(min_class_count=11, exclude_rare_classes=True))
    assert set(excluded.quarantine["reason"]) == {"rare_class"} and excluded.valid.empty


def test_outputs_manifest_and_fail_fast(damaged: Damaged, tmp_path: Path) -> None:
    root, _, _ = damaged
    result = validate_catalog(root)
    paths = output_paths(tmp_path / "out")
    metrics = write_outputs(result, root, paths)
    assert metrics["rows_valid"] == len(pd.read_parquet(paths.valid))
    assert len(pd.read_csv(paths.quarantine)) == len(result.quarantine)
    report = paths.report.read_text()
    assert "data:image/jpeg;base64," in report and "conflicting_duplicate" in report  # thumbnails of what was rejected
    docs = paths.data_docs.read_text()
    assert "catalog_images" in docs and "Unsuccessful Expectations" in docs  # GX Data Docs, rendered
    # Self-contained: nothing loads from the network (air-gapped clusters), styles inline; run and asset named.
    assert not re.search(r"<(link|script|img)[^>]+(href|src)=\"https?://", docs)
    assert "<style>" in docs and ".table" in docs
    assert "__none__" not in docs and f"validate {root.name}" in docs and f"image facts of {root.name}" in docs
    manifest = json.loads(paths.manifest.read_text())
    assert manifest["dataset_digest"] == dataset_digest(result.valid)
    assert manifest["rows_valid"] == len(result.valid) and len(manifest["images"]) == len(result.valid)
    assert sum(manifest["class_counts"].values()) == len(result.valid)
    strict = validate_catalog(root, ValidationSettings(min_valid_fraction=0.99))
    with pytest.raises(ValidationFailed, match=r"only \d+\.\d% of \d+ rows are valid"):
        write_outputs(strict, root, output_paths(tmp_path / "strict"))
    assert (tmp_path / "strict" / "report.html").is_file()  # the report is written before failing


def test_identical_data_gives_an_identical_digest(tiny_catalog: Path, tmp_path: Path) -> None:
    import shutil

    first = dataset_digest(validate_catalog(tiny_catalog).valid)
    copy = tmp_path / "copy"
    shutil.copytree(tiny_catalog, copy)
    lines = (copy / "styles.csv").read_text().splitlines()
    (copy / "styles.csv").write_text("\n".join([lines[0], *reversed(lines[1:])]) + "\n")  # same data, other order
    assert dataset_digest(validate_catalog(copy).valid) == first
    (copy / "images" / "10000.jpg").write_bytes((copy / "images" / "10001.jpg").read_bytes())
    assert dataset_digest(validate_catalog(copy).valid) != first


def test_report_only_checks_count_but_never_quarantine(tiny_catalog: Path, tmp_path: Path) -> None:
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(tiny_catalog, copy)
    lines = (copy / "styles.csv").read_text().splitlines()
    fields = lines[1].split(",")
    fields[7], fields[5] = "20x1", ""  # a year that is not a year, no baseColour
    lines[1] = ",".join(fields)
    (copy / "styles.csv").write_text("\n".join(lines) + "\n")
    result = validate_catalog(copy)
    assert result.quarantine.empty and len(result.valid) == 60
    assert result.metrics["invalid_year"] == 1 and result.metrics["missing_baseColour"] == 1
    reported = {r["reason"]: r for r in result.gx_results}
    assert reported["invalid_year"]["success"] is False and reported["invalid_year"]["quarantine"] is False


def test_ids_that_differ_only_in_leading_zeros_are_one_duplicated_id(tiny_catalog: Path, tmp_path: Path) -> None:
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(tiny_catalog, copy)
    lines = (copy / "styles.csv").read_text().splitlines()
    first = lines[1].split(",", 1)[0]
    shutil.copy2(copy / "images" / f"{first}.jpg", copy / "images" / f"0{first}.jpg")
    (copy / "styles.csv").write_text("\n".join([*lines, "0" + lines[1]]) + "\n")  # the same product, zero-padded
    result = validate_catalog(copy)
    duplicates = result.quarantine[result.quarantine["reason"] == "duplicate_id"]
    assert sorted(duplicates["id"]) == sorted([first, f"0{first}"])
    assert result.valid["id"].is_unique and int(first) not in set(result.valid["id"])


def test_clean_catalogue_passes(tiny_catalog: Path) -> None:
    result = validate_catalog(tiny_catalog)
    assert result.gx_success is True and result.quarantine.empty
    assert result.valid["image"].map(len).min() > 100
    assert result.valid["image_sha256"].str.len().eq(64).all()


def flipped(bits: int, start: int = 0) -> str:
    """A 256-bit perceptual hash with ``bits`` bits set from bit ``start``: the distance to zeros() is ``bits``."""
    code = bytearray(32)
    for bit in range(start, start + bits):
        code[bit // 8] |= 1 << (bit % 8)
    return code.hex()


def facts_of(hashes: list[str], labels: list[str]) -> pd.DataFrame:
    return pd.DataFrame({"id": [str(10 + i) for i in range(len(hashes))], "phash": hashes, "articleType": labels})


def test_a_chain_of_small_edits_does_not_link_unrelated_images() -> None:
    from fashionrec.data.imagefacts import near_duplicate_groups

    chain = [flipped(8 * i) for i in range(5)]  # each 8 bits from the next, 32 bits end to end; radius 12
    groups = near_duplicate_groups(chain, radius=12)
    assert groups == [[0, 1, 2], [3, 4]]  # single linkage made one group of all five, 32 bits end to end
    assert near_duplicate_groups([flipped(0)] * 3 + [flipped(100)], radius=12) == [[0, 1, 2]]


def test_only_the_minority_of_a_near_duplicate_group_is_quarantined() -> None:
    from fashionrec.data.validation.quarantine import _duplicate_conflicts

    same = [flipped(0)] * 5 + [flipped(60)] * 4 + [flipped(120)] * 2
    labels = ["Lipstick"] * 4 + ["Free Gifts"] + ["Shirts", "Shirts", "Tshirts", "Tshirts"] + ["Socks", "Socks"]
    conflict, described, agreeing, kept = _duplicate_conflicts(facts_of(same, labels), radius=12)
    assert list(conflict) == [False] * 4 + [True] + [True] * 4 + [False] * 2  # the odd one out; a tie: all four
    assert "unlike 4 of 5 near-identical images labelled Lipstick" in str(described.iloc[4])
    assert "no majority" in str(described.iloc[5])
    assert (agreeing, kept) == (2, 4)  # the socks agree; the four lipsticks are kept as the majority
