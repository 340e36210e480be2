"""`fashionrec web` and the gallery options of `fashionrec serve`: every place is an option, bad ones are explained."""

from pathlib import Path

from sample_catalogue import ROWS, WITH_PHOTOS, write_catalogue
from typer.testing import CliRunner

from fashionrec.cli import app
from fashionrec.config import GALLERY_PORT

runner = CliRunner()


def test_every_place_the_gallery_uses_is_an_option() -> None:
    web = runner.invoke(app, ["web", "--help"], terminal_width=200)
    assert web.exit_code == 0
    for option in ("--url", "--catalog", "--compare-url", "--host", "--port", "--top-k", "--max-upload-bytes"):
        assert option in web.output, option
    assert str(GALLERY_PORT) in web.output
    serve = runner.invoke(app, ["serve", "--help"], terminal_width=200)
    assert all(option in serve.output for option in ("--web-port", "--no-web", "--catalog"))


def test_a_missing_catalogue_or_a_public_address_is_refused_with_the_reason(tmp_path: Path) -> None:
    missing = runner.invoke(app, ["web", "--url", "http://127.0.0.1:9", "--catalog", str(tmp_path / "nothing"), "--port", "0"])
    assert missing.exit_code == 1 and "no catalogue" in missing.output
    catalog = write_catalogue(tmp_path / "catalog", ROWS, WITH_PHOTOS)
    public = runner.invoke(app, ["web", "--url", "http://127.0.0.1:9", "--catalog", str(catalog), "--host", "0.0.0.0"])
    assert public.exit_code == 1 and "loopback only" in public.output
