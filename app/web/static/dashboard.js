// The dashboard's behaviour: read the /v1 API with the user's key and draw datasets, jobs, curves,
// model metrics, the embedding map and query answers. Everything shown comes from the JSON API, and
// every value from it is written with textContent (ids and labels are user data).
"use strict";

(function () {
  const KEY_STORAGE = "unfold.apiKey";
  const ACTIVE = new Set(["queued", "running"]);
  const QUALITY = /^(recall|ndcg|precision|hit_rate|map|mrr)@\d+$/;
  const FOLDING_HINTS = {
    "leakage@10": "share of top-10 items from a group the user never touched (0 is best)",
    "unreachable@10": "share of top-10 items no co-user ever consumed (0 is best)",
    positive_auc: "P(a held-out positive outscores a random item); 0.5 is chance",
    score_gap: "positives' mean score above random items', in their standard deviations",
    users: "users averaged over",
    map_separation: "share of the embedding map's spread between group means (1: apart, 0: folded)",
  };

  const state = {
    key: localStorage.getItem(KEY_STORAGE) || "",
    datasets: new Map(),
    jobs: [],
    selected: null, // job id
    dataset: null, // the dataset whose events and versions are shown
    job: null,
    model: null,
    map: null,
    mapSvg: null,
    follow: null, // AbortController of the selected job's event stream
    modelShown: null,
  };

  const $ = (id) => document.getElementById(id);

  class AuthNeeded extends Error {}

  class ApiError extends Error {
    constructor(status, detail) {
      super(detail);
      this.status = status;
    }
  }

  // fetch with the key; a 401 asks for a key, other errors carry the problem+json detail.
  async function api(path, init) {
    const headers = new Headers((init && init.headers) || {});
    if (state.key) headers.set("Authorization", `Bearer ${state.key}`);
    const response = await fetch(path, Object.assign({}, init, { headers }));
    if (response.status === 401) {
      needKey(true);
      throw new AuthNeeded("this API needs a key");
    }
    if (!response.ok) {
      let detail = `${response.status} ${response.statusText}`;
      try {
        detail = (await response.json()).detail || detail;
      } catch (_) { /* not JSON */ }
      throw new ApiError(response.status, detail);
    }
    needKey(false);
    return response;
  }

  const getJSON = async (path) => (await api(path)).json();

  function needKey(needed) {
    $("auth-banner").hidden = !needed;
    $("key-state").textContent = needed ? (state.key ? "key refused" : "key needed") : (state.key ? "key in use" : "");
    if (needed) $("api-key").focus();
  }

  function showError(error) {
    if (error instanceof AuthNeeded) return;
    const banner = $("error-banner");
    banner.textContent = error ? `Could not reach the API: ${error.message}` : "";
    banner.hidden = !error;
  }

  function cell(row, content, className) {
    const td = row.insertCell();
    if (content instanceof Node) td.appendChild(content);
    else td.textContent = content;
    if (className) td.className = className;
    return td;
  }

  function num(v) {
    return typeof v === "number" ? v.toLocaleString("en") : "—";
  }

  function fixed(v, digits) {
    return typeof v === "number" ? v.toFixed(digits === undefined ? 3 : digits) : "—";
  }

  function progressBar(fraction) {
    const outer = document.createElement("div");
    outer.className = "bar small";
    const inner = document.createElement("div");
    inner.style.width = `${Math.round(Math.max(0, Math.min(1, fraction || 0)) * 100)}%`;
    outer.appendChild(inner);
    return outer;
  }

  function statusBadge(status) {
    const span = document.createElement("span");
    span.className = `status ${status}`;
    span.textContent = status;
    return span;
  }

  // ---- datasets and jobs -------------------------------------------------------------------------

  async function refreshDatasets() {
    const page = await getJSON("/v1/datasets?limit=100");
    state.datasets = new Map(page.items.map((d) => [d.id, d]));
    const body = $("datasets").tBodies[0];
    body.replaceChildren();
    for (const d of page.items) {
      const row = body.insertRow();
      row.dataset.id = d.id;
      row.title = d.id;
      cell(row, d.name);
      cell(row, num(d.n_users), "num");
      cell(row, num(d.n_items), "num");
      cell(row, num(d.n_interactions), "num");
      const groups = d.stats && d.stats.n_item_groups;
      cell(row, groups ? `${groups} item groups` : "—", "muted");
      if (d.id === state.dataset) row.classList.add("selected");
      row.addEventListener("click", () => {
        state.dataset = d.id;
        for (const other of body.rows) other.classList.toggle("selected", other === row);
        refreshEvents().catch(showError);
      });
    }
    $("datasets-empty").hidden = page.items.length > 0;
    if (!state.datasets.has(state.dataset)) {
      state.dataset = page.items.length ? page.items[0].id : null;
      if (body.rows.length) body.rows[0].classList.add("selected");
    }
  }

  // ---- a dataset's events and versions, aliases and their retrains --------------------------------

  const SVG = "http://www.w3.org/2000/svg";

  // One bar per minute, oldest on the left; the tallest bar fills the height.
  function sparkline(container, counts) {
    const width = 600, height = 48, gap = 1;
    const svg = document.createElementNS(SVG, "svg");
    svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
    svg.setAttribute("preserveAspectRatio", "none");
    const top = Math.max(1, ...counts);
    const step = width / Math.max(1, counts.length);
    counts.forEach((n, i) => {
      if (!n) return;
      const rect = document.createElementNS(SVG, "rect");
      const h = Math.max(1, (n / top) * (height - 2));
      rect.setAttribute("x", String(i * step));
      rect.setAttribute("y", String(height - 1 - h));
      rect.setAttribute("width", String(Math.max(1, step - gap)));
      rect.setAttribute("height", String(h));
      const title = document.createElementNS(SVG, "title");
      title.textContent = `${n} events, ${counts.length - i} min ago`;
      rect.appendChild(title);
      svg.appendChild(rect);
    });
    const base = document.createElementNS(SVG, "line");
    base.setAttribute("class", "base");
    for (const [k, v] of [["x1", 0], ["x2", width], ["y1", height - 0.5], ["y2", height - 0.5]]) base.setAttribute(k, String(v));
    svg.appendChild(base);
    container.replaceChildren(svg);
  }

  async function refreshEvents() {
    const id = state.dataset;
    $("events-card").hidden = !id;
    if (!id) return;
    const path = `/v1/datasets/${encodeURIComponent(id)}`;
    const [stats, versions] = await Promise.all([getJSON(`${path}/events`), getJSON(`${path}/versions`)]);
    if (id !== state.dataset) return; // another dataset was picked meanwhile
    const d = state.datasets.get(id);
    $("events-dataset").textContent = d ? d.name : id;
    const lastHour = stats.per_minute.reduce((a, b) => a + b, 0);
    $("events-summary").textContent = `${num(stats.total)} events, ${num(stats.pending)} not in a version yet; ` +
      `latest version ${stats.latest_version}; ${num(lastHour)} in the last hour`;
    sparkline($("events-chart"), stats.per_minute);
    const body = $("versions").tBodies[0];
    body.replaceChildren();
    for (const v of versions.items) {
      const row = body.insertRow();
      cell(row, v.version === 1 ? "1 (upload)" : String(v.version));
      cell(row, v.version === 1 ? "—" : num(v.n_events), "num");
      cell(row, num(v.n_users), "num");
      cell(row, num(v.n_items), "num");
      cell(row, num(v.n_interactions), "num");
      cell(row, (v.created_at || "").slice(0, 16).replace("T", " "), "muted");
    }
  }

  function policyText(p) {
    const when = [];
    if (p.every_minutes) when.push(`every ${p.every_minutes} min`);
    if (p.after_events) when.push(`after ${num(p.after_events)} events`);
    const how = p.warm_start ? "warm-started" : "from scratch";
    return `Retrains ${when.join(" or ")}, ${how}; moves only if ${p.metric} drops at most ` +
      `${(p.tolerance * 100).toFixed(1)}%`;
  }

  function retrainTable(retrains) {
    const table = document.createElement("table");
    table.className = "list retrains";
    const head = table.createTHead().insertRow();
    for (const name of ["started", "trigger", "outcome", "current → new", "why"]) {
      const th = document.createElement("th");
      th.textContent = name;
      head.appendChild(th);
    }
    const body = table.createTBody();
    for (const r of retrains) {
      const row = body.insertRow();
      row.title = `${r.id} · job ${r.job_id || "none"} · new model ${r.new_model_id || "none"}`;
      cell(row, (r.created_at || "").slice(0, 16).replace("T", " "), "muted");
      cell(row, r.trigger);
      cell(row, statusBadge(r.outcome));
      cell(row, `${fixed(r.current_value, 4)} → ${fixed(r.new_value, 4)}`, "num");
      cell(row, r.reason || "", "muted");
    }
    return table;
  }

  async function refreshAliases() {
    const list = await getJSON("/v1/aliases");
    const box = $("aliases");
    box.replaceChildren();
    for (const a of list.items) {
      const block = document.createElement("div");
      block.className = "alias";
      block.dataset.name = a.name;
      const title = document.createElement("div");
      const name = document.createElement("strong");
      name.textContent = a.name;
      const model = document.createElement("code");
      model.textContent = a.model_id;
      title.append(name, " → ", model);
      const policy = document.createElement("p");
      policy.className = "muted";
      policy.textContent = a.policy ? policyText(a.policy) : "No retrain policy.";
      block.append(title, policy);
      if (a.retrains.length) block.appendChild(retrainTable(a.retrains));
      box.appendChild(block);
    }
    $("aliases-empty").hidden = list.items.length > 0;
  }

  async function refreshFilters() {
    const page = await getJSON("/v1/filters");
    const body = $("filters").tBodies[0];
    body.replaceChildren();
    for (const f of page.items) {
      const row = body.insertRow();
      row.dataset.name = f.name;
      cell(row, `@${f.name}`);
      cell(row, f.expression, "code");
      cell(row, f.description || "—", "muted");
    }
    $("filters-empty").hidden = page.items.length > 0;
  }

  async function refreshJobs() {
    const page = await getJSON("/v1/jobs?limit=30");
    state.jobs = page.items;
    const body = $("jobs").tBodies[0];
    body.replaceChildren();
    for (const job of page.items) {
      const row = body.insertRow();
      row.dataset.id = job.id;
      row.dataset.status = job.status;
      row.title = job.id;
      if (job.id === state.selected) row.classList.add("selected");
      const name = document.createElement("div");
      const ds = state.datasets.get(job.dataset_id);
      name.textContent = ds ? ds.name : job.dataset_id;
      const id = document.createElement("small");
      id.className = "muted";
      id.textContent = job.kind === "trial" ? `${job.id} · tuning trial` : job.id;
      const who = document.createElement("div");
      who.append(name, id);
      cell(row, who);
      cell(row, job.algorithm);
      cell(row, statusBadge(job.status));
      const p = job.progress;
      const progress = document.createElement("div");
      progress.appendChild(progressBar(p ? p.fraction : job.status === "succeeded" ? 1 : 0));
      const label = document.createElement("small");
      label.className = "muted";
      label.textContent = p ? `${p.phase || ""} ${p.step}/${p.total_steps} ${p.unit || ""}` : "";
      progress.appendChild(label);
      cell(row, progress);
      cell(row, p && typeof p.loss === "number" ? Charts.format(p.loss) : "—", "num");
      row.addEventListener("click", () => select(job.id));
    }
    $("jobs-empty").hidden = page.items.length > 0;
    const active = page.items.filter((j) => ACTIVE.has(j.status)).length;
    $("jobs-live").textContent = active ? `● live: ${active} active` : "";
    if (!state.selected && page.items.length) {
      const wanted = location.hash.slice(1);
      const first = page.items.find((j) => j.id === wanted) || page.items.find((j) => j.kind !== "trial") || page.items[0];
      select(first.id);
    }
    return active;
  }

  // ---- one job -----------------------------------------------------------------------------------

  async function select(jobId) {
    if (state.follow) state.follow.abort();
    state.follow = null;
    state.selected = jobId;
    history.replaceState(null, "", `#${jobId}`);
    for (const row of $("jobs").tBodies[0].rows) row.classList.toggle("selected", row.dataset.id === jobId);
    $("detail-empty").hidden = true;
    $("detail-body").hidden = false;
    try {
      const job = await getJSON(`/v1/jobs/${encodeURIComponent(jobId)}`);
      if (state.selected !== jobId) return;
      renderJob(job);
      if (ACTIVE.has(job.status)) follow(jobId);
    } catch (error) {
      showError(error);
    }
  }

  function renderJob(job) {
    state.job = job;
    $("job-id").textContent = job.id;
    const status = $("job-status");
    status.className = `status ${job.status}`;
    status.textContent = job.status;
    const ds = state.datasets.get(job.dataset_id);
    const spec = job.spec || {};
    $("job-summary").textContent =
      `${job.algorithm} · dim ${spec.dim} · dataset ${ds ? ds.name : job.dataset_id} · ` +
      `split ${(spec.evaluation || {}).split || "—"}`;
    const p = job.progress;
    $("job-bar").style.width = `${Math.round((p ? p.fraction : job.status === "succeeded" ? 1 : 0) * 100)}%`;
    $("job-progress").textContent = p
      ? `${p.phase || ""} ${p.unit || "step"} ${p.step} of ${p.total_steps}` +
        (ACTIVE.has(job.status) && p.eta_seconds != null ? ` · about ${Math.ceil(p.eta_seconds)} s left` : "")
      : job.status === "queued" ? "waiting for a worker" : "";
    const error = $("job-error");
    error.hidden = !job.error;
    error.textContent = job.error ? `${job.error.type}: ${job.error.message}` : "";
    drawCurves(job);
    if (job.status === "succeeded" && job.model_id && state.modelShown !== job.model_id) {
      loadModel(job.model_id);
    } else if (job.status !== "succeeded") {
      state.modelShown = null;
      $("model-card").hidden = $("map-card").hidden = $("query-card").hidden = true;
    }
  }

  function drawCurves(job) {
    const history = job.history || [];
    const unit = (job.progress && job.progress.unit) || (job.algorithm === "sgd" ? "epoch" : "iteration");
    for (const span of document.querySelectorAll(".unit")) span.textContent = unit;
    // Search entries are candidates, not steps: the loss chart shows the fit and the refit.
    const phases = [...new Set(history.filter((h) => h.phase !== "search").map((h) => h.phase || "fit"))];
    const loss = phases.map((phase, i) => ({
      name: phase === "refit" ? "loss (refit on all data)" : `loss (${phase})`,
      colour: ["#4e79a7", "#bab0ac", "#f28e2b"][i % 3],
      points: history.filter((h) => (h.phase || "fit") === phase && typeof h.loss === "number").map((h) => [h.step, h.loss]),
    }));
    Charts.line($("loss-chart"), loss, { xLabel: unit, empty: "no loss recorded yet" });
    const fit = history.filter((h) => h.metrics && Object.keys(h.metrics).length);
    const names = [...new Set(fit.flatMap((h) => Object.keys(h.metrics)))].sort();
    const metrics = names.map((name) => ({
      name,
      points: fit.filter((h) => typeof h.metrics[name] === "number").map((h) => [h.step, h.metrics[name]]),
    }));
    Charts.line($("metric-chart"), metrics, {
      xLabel: unit,
      empty: "no held-out metrics (evaluation.split is none, or none measured yet)",
    });
  }

  // Follow a running job's server-sent events (fetch, so the key can go in a header); each event
  // re-reads the job for its history. Falls back to polling when streaming is not possible.
  async function follow(jobId) {
    const controller = new AbortController();
    state.follow = controller;
    let reading = false;
    const reload = async () => {
      if (reading) return;
      reading = true;
      try {
        const job = await getJSON(`/v1/jobs/${encodeURIComponent(jobId)}`);
        if (state.selected === jobId) renderJob(job);
      } finally {
        reading = false;
      }
    };
    try {
      const response = await api(`/v1/jobs/${encodeURIComponent(jobId)}/events`, {
        signal: controller.signal,
        headers: { Accept: "text/event-stream" },
      });
      const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
      let buffer = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += value.replace(/\r\n/g, "\n");
        let cut;
        while ((cut = buffer.indexOf("\n\n")) >= 0) {
          const block = buffer.slice(0, cut);
          buffer = buffer.slice(cut + 2);
          const event = (block.match(/^event: (.*)$/m) || [])[1];
          const data = (block.match(/^data: (.*)$/m) || [])[1];
          if (event === "end" && data) {
            if (state.selected === jobId) renderJob(JSON.parse(data));
            refreshJobs().catch(showError);
          } else if (event === "progress") {
            reload().catch(showError);
          }
        }
      }
    } catch (error) {
      if (controller.signal.aborted || error instanceof AuthNeeded) return;
      while (state.follow === controller && state.job && ACTIVE.has(state.job.status)) {
        await new Promise((resolve) => setTimeout(resolve, 1500));
        await reload().catch(showError);
      }
    }
  }

  // ---- the model: metrics, map, queries ----------------------------------------------------------

  async function loadModel(modelId) {
    state.modelShown = modelId;
    try {
      const model = await getJSON(`/v1/models/${encodeURIComponent(modelId)}`);
      if (state.modelShown !== modelId) return;
      state.model = model;
      $("model-id").textContent = model.id;
      renderMetrics(model.metrics || {}, null);
      $("model-card").hidden = false;
      $("query-card").hidden = false;
      $("query-results").replaceChildren();
      $("query-error").hidden = true;
      await loadMap(model);
    } catch (error) {
      showError(error);
    }
  }

  function kvRow(body, name, value, extra, hint) {
    const row = body.insertRow();
    row.dataset.metric = name;
    if (hint) row.title = hint;
    cell(row, name);
    cell(row, value, "num");
    cell(row, extra || "", "muted num");
  }

  function renderMetrics(metrics, map) {
    const quality = $("quality").tBodies[0];
    quality.replaceChildren();
    // Said loudly, first: e.g. a model that ranks no better than the most popular items.
    for (const warning of metrics.warnings || []) {
      kvRow(quality, "⚠ warning", "", warning);
      quality.lastChild.classList.add("warning");
    }
    const baseline = (metrics.baseline || {}).popularity || {};
    const names = Object.keys(metrics).filter((k) => QUALITY.test(k)).sort();
    for (const name of names) {
      kvRow(quality, name, fixed(metrics[name]), name in baseline ? `popularity ${fixed(baseline[name])}` : "");
    }
    if (!names.length) kvRow(quality, "—", "not measured", "evaluation.split was none");
    if (typeof metrics.evaluated_users === "number") kvRow(quality, "users", num(metrics.evaluated_users), "held out");
    const chosen = (metrics.search || {}).chosen;
    if (chosen) {
      const text = Object.entries(chosen).map(([k, v]) => `${k} ${typeof v === "number" ? +v.toPrecision(3) : v}`);
      kvRow(quality, "chosen by search", "", text.join(", "));
    }
    const folding = $("folding").tBodies[0];
    folding.replaceChildren();
    const f = metrics.folding || {};
    for (const [name, value] of Object.entries(f)) {
      const digits = name === "users" ? 0 : 3;
      kvRow(folding, name, fixed(value, digits), "", FOLDING_HINTS[name]);
    }
    if (map && typeof map.group_separation === "number") {
      kvRow(folding, "map separation", fixed(map.group_separation), "2-D map", FOLDING_HINTS.map_separation);
    }
    if (!Object.keys(f).length) kvRow(folding, "—", "not measured");
  }

  async function loadMap(model) {
    const card = $("map-card");
    card.hidden = false;
    state.map = null;
    state.mapSvg = null;
    $("map").replaceChildren();
    $("map-legend").replaceChildren();
    $("map-caption").textContent = "";
    let map;
    try {
      map = await getJSON(`/v1/models/${encodeURIComponent(model.id)}/embedding-map`);
    } catch (error) {
      if (error instanceof ApiError && error.status === 404) {
        $("map-missing").hidden = false;
        return;
      }
      throw error;
    }
    if (state.modelShown !== model.id) return;
    $("map-missing").hidden = true;
    state.map = map;
    state.mapSvg = Charts.scatter($("map"), map.points, {
      onClick: (item) => ask("item", item),
      scheme: map.colour_by,
    });
    const [a, b] = map.explained_variance_ratio;
    $("map-caption").textContent =
      `PCA of ${num(map.n_points)} of ${num(map.n_items)} items · axes explain ` +
      `${(a * 100).toFixed(0)}% + ${(b * 100).toFixed(0)}% · coloured by ${map.colour_by}`;
    const legend = $("map-legend");
    const title = document.createElement("li");
    title.className = "legend-title";
    title.textContent = map.colour_by === "group" ? "item group" : "popularity";
    legend.appendChild(title);
    // Groups by label (1, 2, … 10), unknown last; popularity buckets stay in their order.
    const byLabel = (a, b) => (a.code < 0) - (b.code < 0) || a.label.localeCompare(b.label, "en", { numeric: true });
    const entries = map.colour_by === "group" ? [...map.legend].sort(byLabel) : map.legend;
    for (const entry of entries) {
      const li = document.createElement("li");
      li.dataset.code = entry.code;
      const swatch = document.createElement("span");
      swatch.className = "swatch";
      swatch.style.background = Charts.colour(entry.code, map.colour_by);
      const label = document.createElement("span");
      label.textContent = `${entry.label} (${entry.count})`;
      li.append(swatch, label);
      legend.appendChild(li);
    }
    renderMetrics(state.model.metrics || {}, map);
  }

  function ask(kind, id) {
    $("query-kind").value = kind;
    $("query-id").value = id;
    syncPlaceholder();
    runQuery();
  }

  function syncPlaceholder() {
    $("query-id").placeholder = $("query-kind").value === "user" ? "user id" : "item id";
  }

  async function runQuery() {
    if (!state.model) return;
    const kind = $("query-kind").value;
    const id = $("query-id").value.trim();
    const k = $("query-k").value || "10";
    const results = $("query-results");
    const error = $("query-error");
    results.replaceChildren();
    error.hidden = true;
    if (!id) return;
    const base = `/v1/models/${encodeURIComponent(state.model.id)}`;
    const path = kind === "user"
      ? `${base}/users/${encodeURIComponent(id)}/recommendations?k=${encodeURIComponent(k)}&fallback=none`
      : `${base}/items/${encodeURIComponent(id)}/similar?k=${encodeURIComponent(k)}`;
    try {
      const answer = await getJSON(path);
      const colourOf = new Map();
      if (state.map) state.map.points.item.forEach((item, i) => colourOf.set(item, state.map.points.colour[i]));
      for (const { item, score } of answer.items) {
        const li = document.createElement("li");
        li.dataset.item = item;
        const swatch = document.createElement("span");
        swatch.className = "swatch";
        if (colourOf.has(item)) swatch.style.background = Charts.colour(colourOf.get(item), state.map.colour_by);
        else swatch.classList.add("off-map");
        const name = document.createElement("span");
        name.className = "item";
        name.textContent = item;
        const value = document.createElement("span");
        value.className = "muted num";
        value.textContent = Charts.format(score);
        li.append(swatch, name, value);
        results.appendChild(li);
      }
      if (state.mapSvg) state.mapSvg.highlight(answer.items.map((x) => x.item));
    } catch (err) {
      if (err instanceof AuthNeeded) return;
      error.textContent = err.message;
      error.hidden = false;
    }
  }

  // ---- wiring ------------------------------------------------------------------------------------

  async function refreshAll() {
    try {
      await refreshDatasets();
      await refreshEvents();
      await refreshAliases();
      await refreshFilters();
      const active = await refreshJobs();
      showError(null);
      return active;
    } catch (error) {
      showError(error);
      return 0;
    }
  }

  async function loop() {
    const active = await refreshAll();
    setTimeout(loop, active ? 2000 : 8000);
  }

  function init() {
    $("api-key").value = state.key;
    $("key-form").addEventListener("submit", (event) => {
      event.preventDefault();
      state.key = $("api-key").value.trim();
      if (state.key) localStorage.setItem(KEY_STORAGE, state.key);
      else localStorage.removeItem(KEY_STORAGE);
      state.selected = null;
      state.modelShown = null;
      refreshAll();
    });
    $("forget-key").addEventListener("click", () => {
      state.key = "";
      $("api-key").value = "";
      localStorage.removeItem(KEY_STORAGE);
      $("key-state").textContent = "";
    });
    $("query-kind").addEventListener("change", syncPlaceholder);
    $("query-form").addEventListener("submit", (event) => {
      event.preventDefault();
      runQuery();
    });
    loop();
  }

  document.addEventListener("DOMContentLoaded", init);
})();
