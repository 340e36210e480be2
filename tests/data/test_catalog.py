from pathlib import Path

import pytest

from fashionrec.config import STYLES_COLUMNS
from fashionrec.data.catalog import CatalogError, read_styles, write_styles

HEADER = ",".join(STYLES_COLUMNS)


def write(tmp_path: Path, *lines: str) -> Path:
    path = tmp_path / "styles.csv"
    path.write_text("\n".join([HEADER, *lines]) + "\n", encoding="utf-8")
    return path


def test_unquoted_commas_in_the_name_belong_to_the_name(tmp_path: Path) -> None:
    table = read_styles(
        write(
            tmp_path, "15970,Men,Apparel,Topwear,Shirts,Navy Blue,Fall,2011,Casual,Turtle Check Men Navy, Blue Shirt, Pack of 2"
        )
    )
    assert table.malformed == []
    assert table.rows.loc[0, "productDisplayName"] == "Turtle Check Men Navy, Blue Shirt, Pack of 2"
    assert table.rows.loc[0, "id"] == "15970"


def test_short_rows_are_reported_with_their_line_not_dropped(tmp_path: Path) -> None:
    table = read_styles(
        write(
            tmp_path,
            "1,Men,Apparel,Topwear,Shirts,Blue,Fall,2011,Casual,A shirt",
            "2,Men,broken",
            "",
            "3,Women,Apparel,Topwear,Tops,Red,Summer,2012,Casual,A top",
        )
    )
    assert list(table.rows["id"]) == ["1", "3"]
    assert list(table.rows["line_number"]) == [2, 5]
    assert len(table.malformed) == 1
    assert table.malformed[0].line_number == 3
    assert "expected 10 fields, found 3" in table.malformed[0].reason


def test_wrong_header_and_missing_file_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(CatalogError, match="not found"):
        read_styles(tmp_path / "styles.csv")
    (tmp_path / "styles.csv").write_text("a,b,c\n1,2,3\n")
    with pytest.raises(CatalogError, match="header"):
        read_styles(tmp_path / "styles.csv")


def test_write_then_read_round_trips_names_with_commas(tmp_path: Path) -> None:
    original = read_styles(write(tmp_path, "7,Men,Apparel,Topwear,Shirts,Blue,Fall,2011,Casual,Shirt, Pack of 2"))
    out = tmp_path / "out.csv"
    write_styles(original.rows, out)
    again = read_styles(out)
    assert again.rows.loc[0, "productDisplayName"] == "Shirt, Pack of 2"
    assert '"Shirt, Pack of 2"' in out.read_text()
