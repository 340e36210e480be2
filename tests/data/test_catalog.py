from pathlib import Path

import pandas as pd
import pytest

from fashionrec.config import STYLES_COLUMNS
from fashionrec.data.catalog import CatalogError, edit_catalogue, normal_id, read_styles, styles_lines, write_styles

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


def test_editing_styles_keeps_every_other_line_byte_for_byte(tmp_path: Path) -> None:
    header = ",".join(STYLES_COLUMNS)
    lines = [
        "1,Men,Apparel,Topwear,Tshirts,Blue,Summer,2012,Casual,Tee, with a comma",  # Kaggle's unquoted comma
        "2,Women,Apparel",  # malformed: too few fields
        "3,Men,Apparel,Topwear,Shirts,Red,Fall,2011,Formal,Caf\xe9 shirt",
    ]
    path = tmp_path / "styles.csv"
    path.write_bytes((header + "\n" + "\n".join(lines) + "\n").encode("utf-8")[:-1] + b"\xff\n")  # a stray byte
    new = pd.DataFrame([["4", "Men", "Apparel", "Topwear", "Tshirts", "Black", "Summer", "2020", "Casual", "New, tee"]],
                       columns=list(STYLES_COLUMNS))  # fmt: skip
    dropped = edit_catalogue(tmp_path, "edit-1", {"1"}, styles_lines(new))
    assert dropped == [lines[0] + "\n"]
    written = path.read_bytes()
    assert written.startswith(header.encode() + b"\n" + lines[1].encode() + b"\n" + lines[2].encode("utf-8") + b"\xff\n")
    assert written.endswith(b'4,Men,Apparel,Topwear,Tshirts,Black,Summer,2020,Casual,"New, tee"\n')
    table = read_styles(path)
    assert list(table.rows["id"]) == ["3", "4"] and [m.line_number for m in table.malformed] == [2]


def test_an_id_is_compared_without_its_leading_zeros_quotes_or_spaces() -> None:
    assert normal_id("0123") == normal_id(' "123" ') == normal_id(123) == "123"
    assert normal_id("0") == "0" and normal_id("12a") == "12a"  # not a number: compared as written


def test_styles_lines_leave_a_missing_value_empty(tmp_path: Path) -> None:
    rows = read_styles(write(tmp_path, "0042,Men,Apparel,Topwear,Shirts,Blue,,2011,,Shirt, Pack of 2")).rows
    rows = rows.mask(rows == "")  # as validation hands them over: a missing value is NA
    assert styles_lines(rows) == ['42,Men,Apparel,Topwear,Shirts,Blue,,2011,,"Shirt, Pack of 2"\n']
