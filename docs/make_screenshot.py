"""Make docs/gallery.png: serve a work dir's production model, open the gallery in headless Chromium (the browser
the tests drive), click a product and capture the page with its neighbours.

docs/gallery.png was made so (two models of the 3,000 real photos, the second trained for 2 epochs only):

    .venv/bin/fashionrec pipeline run --catalog ../shared/data/fashion-sample-3k --workdir work/real3k
    .venv/bin/fashionrec pipeline run --catalog ../shared/data/fashion-sample-3k --workdir work/real3k-short --epochs 2 --seed 3
    .venv/bin/python docs/make_screenshot.py --workdir work/real3k --catalog ../shared/data/fashion-sample-3k \
        --compare-workdir work/real3k-short --article-type Heels

Needs what the browser tests need: `make test-tools` (chromium, chromium-driver) and the dev extra (selenium).
"""

from __future__ import annotations

import argparse
import contextlib
import tempfile
from pathlib import Path
from typing import Any

from fashionrec.config import LOOPBACK
from fashionrec.deploy.local_target import LocalServing, register_encoder
from fashionrec.local.deployment import production_deployment
from fashionrec.serving.processes import LIVE_DIR, LocalTorchServe, LocalTransformer, serve_locally
from fashionrec.serving.release import Deployment
from fashionrec.web.browser import headless_chromium
from fashionrec.web.gallery import GallerySettings, serving_gallery
from fashionrec.workdir import WorkDir

PATIENCE_S = 120
# True once every photo on the page has loaded (or failed): the screenshot shows no half-drawn thumbnails.
PHOTOS_LOADED = "return [...document.images].every(img => img.complete)"
# The grid's thumbnails load lazily, when scrolled to; the screenshot shows the ones below the neighbours too.
LOAD_EVERY_PHOTO = "document.querySelectorAll('img[loading=lazy]').forEach(img => { img.loading = 'eager'; })"


def capture(gallery_url: str, out: Path, article_type: str, pick: int, window: tuple[int, int], profile: Path) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select, WebDriverWait

    with headless_chromium(profile, window) as driver:
        wait = WebDriverWait(driver, PATIENCE_S)

        def grid_shows(summary: str) -> Any:
            return lambda d: d.find_element(By.ID, "pager-summary").text != summary and d.execute_script(PHOTOS_LOADED)

        driver.get(gallery_url)
        wait.until(lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-ready") == "true")
        if article_type:
            before = driver.find_element(By.ID, "pager-summary").text
            Select(driver.find_element(By.ID, "filter-articleType")).select_by_value(article_type)
            wait.until(grid_shows(before))
        driver.find_elements(By.CSS_SELECTOR, "#grid article.product")[pick].click()
        wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#columns .hit, #columns .error"))
        driver.execute_script(LOAD_EVERY_PHOTO)
        wait.until(lambda d: d.execute_script(PHOTOS_LOADED))
        driver.execute_script("window.scrollTo(0, 0)")
        out.parent.mkdir(parents=True, exist_ok=True)
        if not driver.save_screenshot(str(out)):
            raise RuntimeError(f"Chromium did not write {out}")


def serve_beside(
    predictor: LocalTorchServe, transformer: LocalTransformer, other: Deployment, root: Path, stack: contextlib.ExitStack
) -> str:
    """A second transformer for another model version, its encoder registered in the same TorchServe (as during a
    rollout); stopped with ``stack``. Returns its URL."""
    register_encoder(LocalServing.of(predictor, transformer, root / "serve" / LIVE_DIR), other.model_store)
    beside = LocalTransformer(
        root / "transformer-compare",
        index_dir=other.index_dir,
        feature_repo=other.feature_repo,
        predictor_host=f"{LOOPBACK}:{predictor.inference_port}",
    )
    stack.callback(beside.stop)
    beside.start()
    return beside.url


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", type=Path, default=Path("work/real3k"), help="a work dir with a production model")
    parser.add_argument(
        "--catalog", type=Path, help=f"the catalogue it was trained on (default: {WorkDir(Path('WORKDIR')).catalog})"
    )
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "gallery.png")
    parser.add_argument("--article-type", default="", help="filter the grid to this articleType before clicking")
    parser.add_argument("--pick", type=int, default=0, help="click the grid's product at this position (0: the first)")
    parser.add_argument("--top-k", type=int, default=5)
    parser.add_argument(
        "--compare-workdir", type=Path, help="another work dir's production model (same catalogue), served and shown side by side"
    )
    parser.add_argument("--width", type=int, default=1400)
    parser.add_argument("--height", type=int, default=1300)
    args = parser.parse_args()
    catalog = args.catalog or WorkDir(args.workdir).catalog
    with (
        tempfile.TemporaryDirectory(prefix="fashionrec-screenshot-") as tmp,
        serve_locally(production_deployment(args.workdir), Path(tmp) / "serve") as (predictor, transformer),
        contextlib.ExitStack() as stack,
    ):
        compare_url = None
        if args.compare_workdir is not None:
            assert isinstance(predictor, LocalTorchServe)
            compare_url = serve_beside(predictor, transformer, production_deployment(args.compare_workdir), Path(tmp), stack)
        settings = GallerySettings(catalog, transformer.url, compare_url=compare_url, port=0, top_k=args.top_k)
        with serving_gallery(settings) as gallery:
            capture(gallery.url, args.out, args.article_type, args.pick, (args.width, args.height), Path(tmp) / "chromium")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
