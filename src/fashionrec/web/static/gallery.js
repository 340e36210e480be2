// The gallery page: browse the catalogue, ask for the neighbours of a product or of a photo, one column per
// transformer (two when the gallery compares two model versions). Every text from the catalogue or the servers is
// set with textContent, never parsed as HTML.
"use strict";

const state = { config: null, page: 1, query: null, session: anonymousSession(), excluded: new Set() };

// A random token per page load: the feedback events of one visit belong together, and to nobody.
function anonymousSession() {
  const bytes = new Uint8Array(12);
  crypto.getRandomValues(bytes);
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

// What the person was shown (an impression per hit) or chose (a click), reported through the gallery to the
// transformer that answered: shop engagement per model version. A failed report never disturbs the page.
function report(target, kind, answer, items) {
  const body = JSON.stringify({
    kind,
    request_id: answer.request_id,
    model_version: answer.model_version,
    session_id: state.session,
    items,
  });
  return fetch(`/api/feedback?target=${target}`, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body,
    keepalive: true,
  }).catch(() => undefined);
}
const SHOWN_ATTRIBUTES = ["gender", "articleType", "baseColour", "usage"];

function element(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

async function getJson(url, options) {
  let response;
  try {
    response = await fetch(url, options);
  } catch (error) {
    throw new Error(`the gallery did not answer (${error.message})`);
  }
  let body = null;
  try {
    body = await response.json();
  } catch (error) {
    body = null;
  }
  if (!response.ok) {
    const message = body && body.error ? body.error : `HTTP ${response.status}`;
    const failure = new Error(message);
    failure.status = response.status;
    throw failure;
  }
  return body;
}

function photo(itemId, name, hasPhoto = true) {
  const img = element("img");
  img.alt = name || `product ${itemId}`;
  img.loading = "lazy";
  img.addEventListener("error", () => img.classList.add("missing"), { once: true });
  if (hasPhoto) img.src = `/images/${itemId}.jpg`;
  else img.classList.add("missing"); // a product the transformer knows and the catalogue folder has no photo of
  return img;
}

function card(className, itemId, attributes, extra, hasPhoto = true, onOpen = undefined) {
  const node = element("article", className);
  node.dataset.itemId = String(itemId);
  node.tabIndex = 0;
  node.title = `more like ${attributes.productDisplayName || itemId}`;
  node.append(photo(itemId, attributes.productDisplayName, hasPhoto));
  if (extra) node.append(extra);
  node.append(element("h3", "name", attributes.productDisplayName || `#${itemId}`));
  const facts = element("p", "attributes");
  facts.textContent = SHOWN_ATTRIBUTES.map((a) => attributes[a]).filter(Boolean).join(" · ");
  node.append(facts, element("p", "item-id muted", `id ${itemId}`));
  const open = () => {
    if (onOpen) onOpen();
    showSimilarToItem(itemId, attributes);
  };
  node.addEventListener("click", open);
  node.addEventListener("keydown", (event) => {
    if (event.key === "Enter") open();
  });
  return node;
}

// ---- browsing -------------------------------------------------------------------------------------------------

function browseParams() {
  const params = new URLSearchParams();
  const search = document.getElementById("search").value.trim();
  if (search) params.set("q", search);
  for (const column of state.config.filters) {
    const value = document.getElementById(`filter-${column}`).value;
    if (value) params.set(column, value);
  }
  params.set("page", String(state.page));
  return params;
}

async function loadPage() {
  const grid = document.getElementById("grid");
  const summary = document.getElementById("pager-summary");
  let page;
  try {
    page = await getJson(`/api/products?${browseParams()}`);
  } catch (error) {
    summary.textContent = "";
    summary.append(element("span", "error", error.message));
    return;
  }
  state.page = page.page;
  grid.replaceChildren(...page.products.map((p) => card("product", p.item_id, p.attributes)));
  summary.textContent = page.total === 1 ? "1 product" : `${page.total} products`;
  document.getElementById("page-label").textContent = `page ${page.page} of ${page.pages}`;
  document.getElementById("prev").disabled = page.page <= 1;
  document.getElementById("next").disabled = page.page >= page.pages;
  if (!page.total) grid.append(element("p", "muted empty", "no product matches"));
}

async function setUpFilters() {
  const facets = await getJson("/api/facets");
  const holder = document.getElementById("filter-selects");
  for (const column of state.config.filters) {
    const label = element("label", null, column);
    const select = element("select");
    select.id = `filter-${column}`;
    select.name = column;
    select.append(new Option("all", ""));
    for (const value of facets[column] || []) select.append(new Option(value, value));
    select.addEventListener("change", () => {
      state.page = 1;
      loadPage();
      if (document.getElementById("filter-neighbours").checked) askAgain();
    });
    label.append(select);
    holder.append(label);
  }
  for (const id of ["filter-neighbours", "vary"]) document.getElementById(id).addEventListener("change", askAgain);
  let typing = null;
  document.getElementById("search").addEventListener("input", () => {
    clearTimeout(typing);
    typing = setTimeout(() => {
      state.page = 1;
      loadPage();
    }, 250);
  });
  document.getElementById("filters").addEventListener("submit", (event) => {
    event.preventDefault();
    state.page = 1;
    loadPage();
  });
  document.getElementById("prev").addEventListener("click", () => {
    state.page -= 1;
    loadPage();
  });
  document.getElementById("next").addEventListener("click", () => {
    state.page += 1;
    loadPage();
  });
}

// ---- neighbours -----------------------------------------------------------------------------------------------

function openResults(queryNode) {
  const results = document.getElementById("results");
  document.getElementById("query").replaceChildren(queryNode);
  results.hidden = false;
  const columns = document.getElementById("columns");
  columns.classList.toggle("side-by-side", state.config.targets.length > 1);
  columns.replaceChildren(
    ...state.config.targets.map((target) => {
      const column = element("section", "column");
      column.dataset.target = target.name;
      const head = element("header", "column-head");
      head.append(element("span", "model-version", "…"), element("span", "muted", ` ${target.name} · ${target.url}`));
      column.append(head, element("p", "muted status", "asking the transformer…"));
      return column;
    }),
  );
  results.scrollIntoView({ block: "start" });
}

function showHits(column, answer) {
  const target = column.dataset.target;
  const version = column.querySelector(".model-version");
  version.textContent = `model_version ${answer.model_version}`;
  version.dataset.modelVersion = answer.model_version;
  const hits = element("div", "cards hits");
  answer.hits.forEach((hit, rank) => {
    const score = element("p", "score", `#${rank + 1} · score ${hit.score.toFixed(3)}`);
    score.dataset.score = String(hit.score);
    const clicked = () => report(target, "click", answer, [[hit.item_id, rank + 1]]);
    const node = card("hit", hit.item_id, hit.attributes, score, hit.has_photo, clicked);
    const hide = element("button", "hide", "hide");
    hide.type = "button";
    hide.title = "never show this product among the neighbours";
    hide.addEventListener("click", (event) => {
      event.stopPropagation(); // hiding is not a click on the product
      state.excluded.add(hit.item_id);
      showExcluded();
      askAgain();
    });
    node.append(hide);
    hits.append(node);
  });
  if (!answer.hits.length) hits.append(element("p", "muted", "no neighbours"));
  column.querySelector(".status").replaceWith(hits);
  if (answer.hits.length && answer.request_id) {
    column.dataset.requestId = answer.request_id;
    report(target, "impression", answer, answer.hits.map((hit, rank) => [hit.item_id, rank + 1])).then((response) => {
      if (response && response.ok) column.dataset.reported = "true";
    });
  }
}

function showError(column, message) {
  const version = column.querySelector(".model-version");
  version.textContent = "no answer";
  const error = element("p", "error", message);
  error.setAttribute("role", "alert");
  column.querySelector(".status").replaceWith(error);
}

// The v2 steering parameters of a neighbours query (README, contract): the browsing filters when the switch applies
// them to the neighbours too, the products hidden by the person, one answer per product family when "vary" is on.
function neighbourParams(target) {
  const params = new URLSearchParams({ target });
  if (document.getElementById("filter-neighbours").checked) {
    const filter = {};
    for (const column of state.config.filters) {
      const value = document.getElementById(`filter-${column}`).value;
      if (value) filter[column] = value;
    }
    if (Object.keys(filter).length) params.set("filter", JSON.stringify(filter));
  }
  if (state.excluded.size) params.set("exclude_ids", JSON.stringify([...state.excluded]));
  if (document.getElementById("vary").checked) params.set("family_cap", "1");
  return params;
}

function showExcluded() {
  const node = document.getElementById("excluded");
  node.replaceChildren();
  if (!state.excluded.size) return;
  const reset = element("button", "link", "show them again");
  reset.type = "button";
  reset.addEventListener("click", () => {
    state.excluded.clear();
    showExcluded();
    askAgain();
  });
  node.append(element("span", null, `${state.excluded.size} hidden from the neighbours · `), reset);
}

function askAgain() {
  const previous = state.query;
  if (previous && !document.getElementById("results").hidden) askEveryTarget((target) => previous(target));
}

function askEveryTarget(request) {
  state.query = request;
  for (const column of document.querySelectorAll("#columns .column")) {
    for (const old of column.querySelectorAll(".hits, .error")) old.remove();
    if (!column.querySelector(".status")) column.append(element("p", "muted status", "asking the transformer…"));
    request(column.dataset.target)
      .then((answer) => state.query === request && showHits(column, answer))
      .catch((error) => state.query === request && showError(column, error.message));
  }
}

function showSimilarToItem(itemId, attributes) {
  const queryNode = element("div", "query-item");
  queryNode.dataset.itemId = String(itemId);
  queryNode.append(photo(itemId, attributes.productDisplayName));
  const words = element("div");
  words.append(
    element("h2", null, `More like ${attributes.productDisplayName || "#" + itemId}`),
    element("p", "muted", `product ${itemId} · ${SHOWN_ATTRIBUTES.map((a) => attributes[a]).filter(Boolean).join(" · ")}`),
  );
  queryNode.append(words);
  openResults(queryNode);
  askEveryTarget((target) => getJson(`/api/similar/item/${encodeURIComponent(itemId)}?${neighbourParams(target)}`));
}

function showSimilarToPhoto(file) {
  const queryNode = element("div", "query-item");
  const preview = element("img");
  preview.alt = file.name;
  preview.src = URL.createObjectURL(file);
  const words = element("div");
  words.append(element("h2", null, "More like your photo"), element("p", "muted", `${file.name} · ${file.size} bytes`));
  queryNode.append(preview, words);
  openResults(queryNode);
  if (file.size > state.config.max_upload_bytes) {
    const limit = (state.config.max_upload_bytes / 2 ** 20).toFixed(0);
    const message = `the photo is ${(file.size / 2 ** 20).toFixed(1)} MiB; photos up to ${limit} MiB are accepted`;
    askEveryTarget(() => Promise.reject(new Error(message)));
    return;
  }
  askEveryTarget((target) =>
    getJson(`/api/similar/image?${neighbourParams(target)}`, {
      method: "POST",
      headers: { "Content-Type": "application/octet-stream" },
      body: file,
    }),
  );
}

function setUpPhotoDrop() {
  const input = document.getElementById("photo");
  input.addEventListener("change", () => {
    if (input.files.length) showSimilarToPhoto(input.files[0]);
    input.value = ""; // the same file chosen again is a new query
  });
  const drop = document.getElementById("drop");
  for (const name of ["dragenter", "dragover"]) {
    drop.addEventListener(name, (event) => {
      event.preventDefault();
      drop.classList.add("over");
    });
  }
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (event) => {
    event.preventDefault();
    drop.classList.remove("over");
    if (event.dataTransfer.files.length) showSimilarToPhoto(event.dataTransfer.files[0]);
  });
  document.getElementById("close-results").addEventListener("click", () => {
    state.query = null;
    document.getElementById("results").hidden = true;
  });
}

async function start() {
  try {
    state.config = await getJson("/api/config");
    document.getElementById("targets").textContent = state.config.targets
      .map((t) => `${t.name}: ${t.url}`)
      .join("  |  ");
    await setUpFilters();
    setUpPhotoDrop();
    await loadPage();
    document.body.dataset.ready = "true"; // for people's scripts and the browser tests: the first page is shown
  } catch (error) {
    document.getElementById("targets").textContent = "";
    document.getElementById("targets").append(element("span", "error", error.message));
  }
}

document.addEventListener("DOMContentLoaded", start);
