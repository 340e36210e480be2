"""The gallery in a real headless Chromium (Selenium + Debian's chromedriver), in front of the real servers:
TorchServe serving two model versions' encoders, a transformer for each version, and the gallery comparing them.
What is asserted is what a person sees on the page."""

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select, WebDriverWait

from fashionrec.config import LOOPBACK
from fashionrec.deploy.local_target import LocalServing, register_encoder
from fashionrec.local.stages import StageOutputs
from fashionrec.serving.processes import LIVE_DIR, LocalTorchServe, LocalTransformer, serve_locally
from fashionrec.web.browser import headless_chromium
from fashionrec.web.gallery import GallerySettings, serving_gallery

pytestmark = pytest.mark.integration
TOP_K = 5
PAGE_SIZE = 24  # fashionrec.web.catalogue.DEFAULT_PAGE_SIZE: what the page asks for
PATIENCE_S = 90  # how long the page may take to show something (a cold TorchServe worker on 2 busy cores)


@dataclass(frozen=True)
class Gallery:
    url: str
    versions: dict[str, str]  # the model_version each column should show: primary, compare
    upload_limit: int
    transformers: dict[str, str]  # each column's transformer URL


@pytest.fixture(scope="module")
def gallery(
    stages: StageOutputs, second_version: StageOutputs, tiny_catalog: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Gallery]:
    """The production servers of the session's model, a second transformer for another model version (its encoder
    registered in the same TorchServe, as during a rollout), and the gallery showing both side by side."""
    root = tmp_path_factory.mktemp("serve")
    with serve_locally(stages.deployment, root) as (predictor, transformer):
        assert isinstance(predictor, LocalTorchServe)
        register_encoder(LocalServing.of(predictor, transformer, root / LIVE_DIR), second_version.model_store)
        other = LocalTransformer(
            root / "transformer-next",
            index_dir=second_version.index_dir,
            feature_repo=second_version.feature_repo,
            predictor_host=f"{LOOPBACK}:{predictor.inference_port}",
            predictor_key_file=predictor.key_file,
        )
        try:
            other.start()
            settings = GallerySettings(tiny_catalog, transformer.url, compare_url=other.url, port=0, top_k=TOP_K)
            with serving_gallery(settings) as server:
                versions = {"primary": stages.deployment.model_version, "compare": second_version.deployment.model_version}
                yield Gallery(server.url, versions, settings.max_upload_bytes, settings.targets())
        finally:
            other.stop()


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    with headless_chromium(tmp_path_factory.mktemp("chromium")) as driver:
        yield driver


@pytest.fixture
def page(gallery: Gallery, browser: Any) -> Any:
    """The gallery's page, freshly loaded and showing its first page of products."""
    browser.get(gallery.url)
    until(browser, lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-ready") == "true")
    return browser


def until(driver: Any, condition: Callable[[Any], Any]) -> Any:
    return WebDriverWait(driver, PATIENCE_S).until(condition)


def cards(driver: Any, selector: str = "#grid article.product") -> list[Any]:
    return list(driver.find_elements(By.CSS_SELECTOR, selector))


def column(driver: Any, target: str) -> Any:
    return driver.find_element(By.CSS_SELECTOR, f'#columns .column[data-target="{target}"]')


def answered(driver: Any, target: str) -> Any:
    """The column once the transformer answered it: its hits or its error."""
    return until(driver, lambda d: column(d, target).find_elements(By.CSS_SELECTOR, ".hit, .error") and column(d, target))


def hits_of(col: Any) -> list[tuple[int, float, str]]:
    """(item_id, score, text) of every hit a column shows, in order."""
    return [
        (
            int(hit.get_attribute("data-item-id")),
            float(hit.find_element(By.CSS_SELECTOR, ".score").get_attribute("data-score")),
            hit.text,
        )
        for hit in col.find_elements(By.CSS_SELECTOR, ".hit")
    ]


def test_the_grid_shows_the_catalogue_in_pages_and_filters_and_searches_it(page: Any, tiny_catalog: Path) -> None:
    import pandas as pd

    styles = pd.read_csv(tiny_catalog / "styles.csv", dtype=str)
    assert len(cards(page)) == PAGE_SIZE
    assert page.find_element(By.ID, "pager-summary").text == f"{len(styles)} products"
    pages = -(-len(styles) // PAGE_SIZE)
    assert page.find_element(By.ID, "page-label").text == f"page 1 of {pages}"
    first = cards(page)[0]
    assert first.find_element(By.TAG_NAME, "img").get_attribute("naturalWidth") not in (None, "0")  # the photo loaded
    assert first.find_element(By.CSS_SELECTOR, ".name").text == styles["productDisplayName"].iloc[0]

    page.find_element(By.ID, "next").click()
    until(page, lambda d: d.find_element(By.ID, "page-label").text == f"page 2 of {pages}")
    assert int(cards(page)[0].get_attribute("data-item-id")) == int(styles["id"].iloc[PAGE_SIZE])

    article_type = sorted(styles["articleType"].unique())[1]
    Select(page.find_element(By.ID, "filter-articleType")).select_by_value(article_type)
    expected = styles[styles["articleType"] == article_type]
    until(page, lambda d: d.find_element(By.ID, "pager-summary").text == f"{len(expected)} products")
    assert page.find_element(By.ID, "page-label").text == "page 1 of 1"  # a new filter starts on page 1
    assert {int(c.get_attribute("data-item-id")) for c in cards(page)} == set(expected["id"].astype(int))
    assert all(article_type in c.find_element(By.CSS_SELECTOR, ".attributes").text for c in cards(page))

    name = str(expected["productDisplayName"].iloc[0])
    page.find_element(By.ID, "search").send_keys(name.upper())  # case does not matter
    words = name.casefold().split()
    named = expected[[all(w in n.casefold() for w in words) for n in expected["productDisplayName"]]]
    summary = "1 product" if len(named) == 1 else f"{len(named)} products"
    until(page, lambda d: d.find_element(By.ID, "pager-summary").text == summary)
    assert {int(c.get_attribute("data-item-id")) for c in cards(page)} == set(named["id"].astype(int))
    assert name in {c.find_element(By.CSS_SELECTOR, ".name").text for c in cards(page)}


def test_clicking_a_product_shows_its_neighbours_from_both_model_versions_side_by_side(page: Any, gallery: Gallery) -> None:
    product = cards(page)[3]
    item_id = int(product.get_attribute("data-item-id"))
    product.click()
    for target, version in gallery.versions.items():
        col = answered(page, target)
        assert col.find_element(By.CSS_SELECTOR, ".model-version").text == f"model_version {version}"
        hits = hits_of(col)
        assert len(hits) == TOP_K and item_id not in [h[0] for h in hits]  # "more like this" leaves the item out
        scores = [score for _, score, _ in hits]
        assert scores == sorted(scores, reverse=True) and all(-1.0 <= s <= 1.0001 for s in scores)
        assert all(f"score {score:.3f}" in text and f"id {hit_id}" in text for hit_id, score, text in hits)
    assert gallery.versions["primary"] != gallery.versions["compare"]
    assert "side-by-side" in (page.find_element(By.ID, "columns").get_attribute("class") or "")
    assert page.find_element(By.CSS_SELECTOR, "#query .query-item").get_attribute("data-item-id") == str(item_id)

    first_hit = column(page, "primary").find_element(By.CSS_SELECTOR, ".hit")
    next_id = int(first_hit.get_attribute("data-item-id"))
    first_hit.click()  # a neighbour is a product too: more like it
    until(page, lambda d: d.find_element(By.CSS_SELECTOR, "#query .query-item").get_attribute("data-item-id") == str(next_id))
    assert next_id not in [h[0] for h in hits_of(answered(page, "primary"))]


def feedback_events(transformer_url: str, version: str) -> dict[str, float]:
    """The transformer's count of feedback events of ``version``, by type."""
    text = httpx.get(f"{transformer_url}/metrics", timeout=10).text
    return {
        sample.labels["type"]: sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "fashionrec_feedback_events_total" and sample.labels["model_version"] == version
    }


def test_the_page_reports_what_it_showed_and_what_was_clicked_to_the_transformer_that_answered(
    page: Any, gallery: Gallery
) -> None:
    before = {target: feedback_events(url, gallery.versions[target]) for target, url in gallery.transformers.items()}
    cards(page)[5].click()
    until(page, lambda d: all(column(d, target).get_attribute("data-reported") == "true" for target in gallery.versions))
    after = {target: feedback_events(url, gallery.versions[target]) for target, url in gallery.transformers.items()}
    for target in gallery.versions:  # one impression per hit shown, counted under the version that answered
        assert after[target].get("impression", 0) - before[target].get("impression", 0) == TOP_K
    column(page, "compare").find_elements(By.CSS_SELECTOR, ".hit")[2].click()  # the third of the compared version's
    url, version = gallery.transformers["compare"], gallery.versions["compare"]
    until(page, lambda d: feedback_events(url, version).get("click", 0) == before["compare"].get("click", 0) + 1)
    assert feedback_events(gallery.transformers["primary"], gallery.versions["primary"]).get("click", 0) == before["primary"].get(
        "click", 0
    )


def test_a_catalogue_photo_finds_its_own_product_first(page: Any, gallery: Gallery, tiny_catalog: Path) -> None:
    page.find_element(By.ID, "photo").send_keys(str(tiny_catalog / "images" / "10003.jpg"))
    primary = answered(page, "primary")
    hits = hits_of(primary)
    assert hits and hits[0][0] == 10003 and hits[0][1] > 0.99
    assert primary.find_element(By.CSS_SELECTOR, ".model-version").text == f"model_version {gallery.versions['primary']}"
    compare = answered(page, "compare")
    assert len(hits_of(compare)) == TOP_K
    assert compare.find_element(By.CSS_SELECTOR, ".model-version").text == f"model_version {gallery.versions['compare']}"
    assert "More like your photo" in page.find_element(By.ID, "query").text


def test_a_file_that_is_not_an_image_shows_the_transformers_message(page: Any, tmp_path: Path) -> None:
    document = tmp_path / "size-guide.pdf"
    document.write_bytes(b"%PDF-1.4\n% a size guide, not a photo\n")
    page.find_element(By.ID, "photo").send_keys(str(document))
    for target in ("primary", "compare"):
        error = answered(page, target).find_element(By.CSS_SELECTOR, ".error")
        assert "not a recognised image format" in error.text and error.get_attribute("role") == "alert"
    assert len(cards(page)) == PAGE_SIZE  # the page still works
    cards(page)[0].click()
    assert hits_of(answered(page, "primary"))


def test_a_photo_over_the_upload_limit_is_refused_with_a_message(page: Any, gallery: Gallery, tmp_path: Path) -> None:
    huge = tmp_path / "huge.jpg"
    huge.write_bytes(b"\xff\xd8\xff" + b"\0" * gallery.upload_limit)
    page.find_element(By.ID, "photo").send_keys(str(huge))
    error = answered(page, "primary").find_element(By.CSS_SELECTOR, ".error")
    assert f"photos up to {gallery.upload_limit / 2**20:.0f} MiB are accepted" in error.text


def test_the_page_loads_nothing_from_anywhere_else(page: Any, gallery: Gallery) -> None:
    cards(page)[0].click()
    answered(page, "primary")
    loaded = page.execute_script("return performance.getEntriesByType('resource').map(e => e.name)")
    assert loaded and all(url.startswith(gallery.url + "/") for url in loaded), loaded


def test_the_filters_apply_to_the_neighbours_and_a_hidden_product_stays_out(page: Any, tiny_catalog: Path) -> None:
    import pandas as pd

    styles = pd.read_csv(tiny_catalog / "styles.csv", dtype=str).set_index("id")
    gender = sorted(styles["gender"].unique())[0]
    Select(page.find_element(By.ID, "filter-gender")).select_by_value(gender)
    expected = int((styles["gender"] == gender).sum())
    until(page, lambda d: d.find_element(By.ID, "pager-summary").text == f"{expected} products")
    page.find_element(By.ID, "filter-neighbours").click()
    cards(page)[0].click()
    hits = hits_of(answered(page, "primary"))
    assert hits and all(styles.loc[str(item), "gender"] == gender for item, _, _ in hits)

    hidden = hits[0][0]
    first = column(page, "primary").find_element(By.CSS_SELECTOR, ".hit .hide")
    first.click()  # hide it: asked again without it, still filtered, and the query stays the same
    until(page, lambda d: hidden not in [h[0] for h in hits_of(answered(d, "primary"))])
    again = hits_of(answered(page, "primary"))
    assert again and all(styles.loc[str(item), "gender"] == gender for item, _, _ in again)
    assert page.find_element(By.ID, "excluded").text.startswith("1 hidden")

    page.find_element(By.ID, "vary").click()  # one per product family: still an answer, still filtered, still hidden
    until(page, lambda d: column(d, "primary").find_elements(By.CSS_SELECTOR, ".hit"))
    varied = hits_of(answered(page, "primary"))
    assert varied and hidden not in [h[0] for h in varied]
    assert all(styles.loc[str(item), "gender"] == gender for item, _, _ in varied)
    page.find_element(By.CSS_SELECTOR, "#excluded button").click()  # show them again
    until(page, lambda d: page.find_element(By.ID, "excluded").text == "")
