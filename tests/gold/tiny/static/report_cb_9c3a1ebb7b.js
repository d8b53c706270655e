(function () {
  "use strict";

/* ---- base.js */
/* reportgen report: progressive enhancement; every page reads without JavaScript.
 *
 * With it, each channel is addressable as LAYER:INDEX (the page's #hash opens its channel
 * view), tiles can be hovered, sorted by mean or max and opened, the layer list can be
 * filtered, and the keyboard works. Everything is found per article.layer[data-layer] and
 * its data-channels JSON, never by a global id, so several layers may share one document.
 * No network request: the JSON is in the page, tiles are CSS crops of the layer's grid PNG.
 *
 * reportgen.report.pages puts this file and the other parts of templates/static/js/ in one
 * function scope, in a fixed order (SCRIPT_PARTS): base.js (shared state, formatting, crops),
 * layer.js (the tile grid and the image shown), channel.js (the channel view), toc.js (the
 * layer list, addresses, moving between layers), keys.js (the shortcut table) and main.js.
 */

var layers = [];  // one Layer per article.layer in the document (several in the single file)
var tip = null;  // the hover tip, one for the document, made when first needed
// LAYER:INDEX, defined once in Python (reportgen.report.model.CHANNEL_ADDRESS)
var CHANNEL_ADDRESS = new RegExp(document.documentElement.getAttribute("data-channel-address"));
var SORTS = ["index", "mean", "max"];
var SORT_WORDS = { index: "index order", mean: "mean, most active first", max: "max, most active first",
                   contribution: "contribution to the explained class, largest first" };

function fmt(v) {
  if (v === null || v === undefined) return "–";
  var a = Math.abs(v);
  if (a !== 0 && (a >= 1e4 || a < 1e-3)) return v.toExponential(2);
  return String(Number(v.toPrecision(3)));
}

function pct(v) {
  return v === null || v === undefined ? "–" : (100 * v).toFixed(1) + "%";
}

function range(n) {
  var out = [];
  for (var i = 0; i < n; i++) out.push(i);
  return out;
}

function inverse(order) {
  var out = [];
  for (var i = 0; i < order.length; i++) out[order[i]] = i;
  return out;
}

/* A row of numbers as an object, by the field names the page's data gives once for all rows
   (reportgen.report.views: EXAMPLE_FIELDS, FEATURE_VIS_FIELDS). */
function named(fields, row) {
  var out = {};
  for (var i = 0; i < fields.length; i++) out[fields[i]] = row[i];
  return out;
}

function store(key, value) {
  try {
    if (value === undefined) return window.sessionStorage.getItem(key);
    window.sessionStorage.setItem(key, value);
  } catch (e) { /* storage may be off (privacy mode, some file:// setups): not needed */ }
  return null;
}

/* Show the (x, y, w, h) part of a gw x gh picture in el at `scale` CSS px per pixel. */
function cropPx(el, src, gw, gh, x, y, w, h, scale) {
  el.style.backgroundImage = 'url("' + src + '")';
  el.style.width = w * scale + "px";
  el.style.height = h * scale + "px";
  el.style.backgroundSize = gw * scale + "px " + gh * scale + "px";
  el.style.backgroundPosition = -x * scale + "px " + -y * scale + "px";
}

/* The same, filling el whatever its size (percentages), for responsive boxes. */
function cropFill(el, src, gw, gh, x, y, w, h) {
  el.style.backgroundImage = 'url("' + src + '")';
  el.style.backgroundSize = 100 * gw / w + "% " + 100 * gh / h + "%";
  el.style.backgroundPosition = (gw > w ? 100 * x / (gw - w) : 0) + "% " +
    (gh > h ? 100 * y / (gh - h) : 0) + "%";
}

/* A crop of a sprite sheet, given as a named row (crop_x, crop_y, crop_width, crop_height). */
function cropSheet(el, sheet, item, scale) {
  if (scale === undefined) {
    cropFill(el, sheet.src, sheet.width, sheet.height, item.crop_x, item.crop_y,
             item.crop_width, item.crop_height);
  } else {
    cropPx(el, sheet.src, sheet.width, sheet.height, item.crop_x, item.crop_y,
           item.crop_width, item.crop_height, scale);
  }
}

function imageSource(root, selector, fallback) {
  var image = root.querySelector(selector);
  return (image && image.getAttribute("src")) || fallback;
}

function origin(layout, k) {
  return [(k % layout.cols) * (layout.tile_width + layout.gap),
          Math.floor(k / layout.cols) * (layout.tile_height + layout.gap)];
}

/* ---- layer.js */
/* One layer: its tiles (CSS crops of the grid picture of the image shown), their order, the
   toolbar, the hover tip. Which image is shown is one piece of state, this.image, an index
   into this.images; each image keeps its own numbers, grid and rankings, never copied. */

function Layer(article) {
  this.article = article;
  this.data = JSON.parse(article.getAttribute("data-channels"));
  var d = this.data;
  // Pictures come from the page's own <img> elements when present, so a tool that inlines
  // or moves images (a single-file report) only has to rewrite their src attributes.
  if (d.filters) d.filters.src = imageSource(article, "img.filters", d.filters.src);
  this.images = d.images;  // img.grid elements are the images' grids, in order
  var grids = article.querySelectorAll("img.grid");
  for (var i = 0; i < this.images.length; i++) {
    this.images[i].grid = (grids[i] && grids[i].getAttribute("src")) || this.images[i].grid;
  }
  this.image = 0;
  this.name = d.name;
  this.count = d.channels;
  this.dataset = d.dataset;
  this.contribution = d.contribution;  // of the first image: it stays, whichever is shown
  this.sorts = this.contribution ? SORTS.concat(["contribution"]) : SORTS;
  this.sortKey = "index";
  this.order = range(this.count);
  this.position = inverse(this.order);
  this.ranks = {};  // "key image" -> each channel's place in that ranking, made when needed
  this.current = -1;
  this.tileMode = "maps";
  this.box = article.querySelector(".tiles");
  this.dialog = article.querySelector("dialog.channel-view");
  this.tiles = [];
  this.snapX = this.snapY = 0;
  this.buildTiles();
  this.wireToolbar();
  var cam = article.querySelector(".cam-opacity input"), camMap = article.querySelector(".cam-map");
  if (cam && camMap) {
    cam.addEventListener("input", function () { camMap.style.opacity = cam.value / 100; });
  }
  this.wireDialog();
  article.classList.add("enhanced");
}

Layer.prototype.id = function (k) {
  return this.name + ":" + k;
};

/* The image shown: its name, input, grid, predictions, per-channel numbers and rankings. */
Layer.prototype.shown = function () {
  return this.images[this.image];
};

/* Channel indices in `key` order: the manifest's rankings, of the image shown (contribution:
   of the first image, which attribution ran on). */
Layer.prototype.ranking = function (key) {
  if (key === "index") return range(this.count);
  return key === "contribution" ? this.contribution.ranking : this.shown().ranking[key];
};

/* Channel k's place, from 1, in the `key` ranking. */
Layer.prototype.rank = function (key, k) {
  var cacheKey = key === "contribution" ? key : key + " " + this.image;
  if (!this.ranks[cacheKey]) this.ranks[cacheKey] = inverse(this.ranking(key));
  return this.ranks[cacheKey][k] + 1;
};

Layer.prototype.describe = function (k) {
  var v = this.shown();
  return "Channel " + this.id(k) + ": mean " + fmt(v.mean[k]) + ", max " + fmt(v.max[k]) +
    ", " + pct(v.positive[k]) + " above 0" + (v.flat[k] ? ", flat on this image" : "");
};

Layer.prototype.buildTiles = function () {
  var g = this.data.grid, box = this.box, self = this;
  box.style.setProperty("--w", g.tile_width);
  box.style.setProperty("--h", g.tile_height);
  box.style.setProperty("--gw", g.width);
  box.style.setProperty("--gh", g.height);
  box.style.setProperty("--s", this.data.scale);
  this.showGrid();
  var fragment = document.createDocumentFragment();
  for (var k = 0; k < this.count; k++) {
    var tile = document.createElement("button");
    tile.type = "button";
    tile.className = this.shown().flat[k] ? "tile flat" : "tile";
    tile.tabIndex = k === 0 ? 0 : -1;
    tile.dataset.index = k;
    tile.setAttribute("aria-label", this.describe(k));
    var pixels = document.createElement("span");
    var xy = origin(g, k);
    pixels.className = "px";
    pixels.style.setProperty("--x", xy[0]);
    pixels.style.setProperty("--y", xy[1]);
    var number = document.createElement("span");
    number.className = "n";
    number.textContent = k;
    number.style.setProperty("--d", String(k).length);  // its width, in digits (style.css)
    tile.appendChild(pixels);
    tile.appendChild(number);
    fragment.appendChild(tile);
    this.tiles.push(tile);
  }
  box.appendChild(fragment);
  box.hidden = false;

  box.addEventListener("click", function (event) {
    var tile = event.target.closest(".tile");
    if (tile) self.open(+tile.dataset.index);
  });
  box.addEventListener("mouseover", function (event) {
    var tile = event.target.closest(".tile");
    if (tile) showTip(self, +tile.dataset.index, tile);
  });
  box.addEventListener("mouseleave", hideTip);
  box.addEventListener("focusin", function (event) {
    var tile = event.target.closest(".tile");
    if (tile) showTip(self, +tile.dataset.index, tile);
  });
  box.addEventListener("focusout", hideTip);
  box.addEventListener("keydown", function (event) { self.tileKey(event); });
};

/* One copy of the shown image's grid for all tiles; absolute, because a url() in a custom
   property resolves against the stylesheet that uses it (static/), not against the page. */
Layer.prototype.showGrid = function () {
  this.box.style.setProperty("--grid", 'url("' + new URL(this.shown().grid, document.baseURI).href + '")');
};

/* Put the tiles on whole CSS pixels (so whole device pixels at 1x and 2x): style.css keeps
   every length inside the box whole, so only the box's own offset, left by the text above it
   (any font), needs cancelling; top/left of a relative box, so nothing else moves. */
Layer.prototype.snap = function () {
  var first = this.box.querySelector(".px"), style = this.box.style;
  if (!first || this.box.hidden) return;
  for (var i = 0; i < 2; i++) {
    var r = first.getBoundingClientRect();
    var x = r.left + window.scrollX - this.snapX, y = r.top + window.scrollY - this.snapY;
    var dx = Math.ceil(x) - x, dy = Math.ceil(y) - y;
    if (dx === this.snapX && dy === this.snapY) return;
    this.snapX = dx;
    this.snapY = dy;
    style.setProperty("--snap-x", dx + "px");
    style.setProperty("--snap-y", dy + "px");
  }
};

Layer.prototype.columns = function () {
  var first = this.tiles[this.order[0]], top = first.offsetTop, cols = 0;
  for (var i = 0; i < this.order.length; i++) {
    if (this.tiles[this.order[i]].offsetTop !== top) break;
    cols++;
  }
  return Math.max(1, cols);
};

/* Roving focus: the tile grid is one Tab stop; arrows, Home and End move inside it. */
Layer.prototype.focusTile = function (k) {
  for (var i = 0; i < this.tiles.length; i++) this.tiles[i].tabIndex = -1;
  this.tiles[k].tabIndex = 0;
  this.tiles[k].focus();
};

Layer.prototype.tileKey = function (event) {
  var tile = event.target.closest(".tile");
  if (!tile || event.altKey || event.ctrlKey || event.metaKey) return;
  var at = this.position[+tile.dataset.index], to = at;
  switch (event.key) {
    case "ArrowRight": to = at + 1; break;
    case "ArrowLeft": to = at - 1; break;
    case "ArrowDown": to = at + this.columns(); break;
    case "ArrowUp": to = at - this.columns(); break;
    case "Home": to = 0; break;
    case "End": to = this.count - 1; break;
    default: return;
  }
  event.preventDefault();
  event.stopPropagation();
  to = Math.max(0, Math.min(this.count - 1, to));
  this.focusTile(this.order[to]);
};

Layer.prototype.wireToolbar = function () {
  var self = this, toolbar = this.article.querySelector(".toolbar");
  if (!toolbar) return;
  toolbar.hidden = false;
  this.radios = toolbar.querySelectorAll('.sort input[type="radio"]');
  Array.prototype.forEach.call(this.radios, function (radio) {
    radio.addEventListener("change", function () {
      if (radio.checked) self.sort(radio.value);
    });
  });
  var zoom = toolbar.querySelector(".zoom input"), shown = toolbar.querySelector(".zoom output");
  if (zoom) {
    var side = Math.max(this.data.grid.tile_width, this.data.grid.tile_height);
    zoom.addEventListener("input", function () {
      self.box.style.setProperty("--s", zoom.value / side);
      if (shown) shown.textContent = zoom.value + " px";
    });
  }
  Array.prototype.forEach.call(toolbar.querySelectorAll('.tile-choice input[type="radio"]'),
    function (radio) {
      radio.addEventListener("change", function () {
        if (radio.checked) self.setTileMode(radio.value);
      });
    });
  this.imageRadios = toolbar.querySelectorAll('.image-choice input[type="radio"]');
  Array.prototype.forEach.call(this.imageRadios, function (radio) {
    radio.addEventListener("change", function () {
      if (radio.checked) self.setImage(+radio.value);
    });
  });
  var saved = store("reportgen.sort");
  if (saved && saved !== "index" && this.sorts.indexOf(saved) >= 0) this.sort(saved);
};

Layer.prototype.sort = function (key) {
  this.sortKey = key;
  this.order = this.ranking(key).slice();
  this.position = inverse(this.order);
  var fragment = document.createDocumentFragment();
  for (var i = 0; i < this.order.length; i++) fragment.appendChild(this.tiles[this.order[i]]);
  this.box.appendChild(fragment);
  for (var j = 0; j < this.tiles.length; j++) this.tiles[j].tabIndex = -1;
  this.tiles[this.order[0]].tabIndex = 0;
  this.box.setAttribute("aria-label", this.count + " channels sorted by " + SORT_WORDS[key]);
  Array.prototype.forEach.call(this.radios || [], function (radio) {
    radio.checked = radio.value === key;
  });
  this.box.classList.toggle("sorted", key !== "index");
  store("reportgen.sort", key);
  if (this.current >= 0) this.fill(this.current);
};

Layer.prototype.cycleSort = function () {
  this.sort(this.sorts[(this.sorts.indexOf(this.sortKey) + 1) % this.sorts.length]);
};

/* Show image i: its grid in the tiles, its numbers and rankings, its input under the heat
   map and in the sidebar; the order (and an open channel view) follow. */
Layer.prototype.setImage = function (i) {
  if (!this.images[i]) return;
  this.image = i;
  var view = this.shown();
  this.showGrid();
  for (var k = 0; k < this.count; k++) {
    this.tiles[k].classList.toggle("flat", !!view.flat[k]);
    this.tiles[k].setAttribute("aria-label", this.describe(k));
  }
  var stage = this.dialog.querySelector(".cv-stage img");
  if (stage) stage.src = view.input;
  Array.prototype.forEach.call(this.imageRadios || [], function (radio) {
    radio.checked = +radio.value === i;
  });
  showInput(view, i);
  this.sort(this.sortKey);
};

/* Tiles show this image's maps, each channel's top dataset example (Microscope-style), or
   its feature visualisation. */
Layer.prototype.setTileMode = function (mode) {
  this.tileMode = mode;
  for (var k = 0; k < this.count; k++) {
    var px = this.tiles[k].firstChild, example = this.example(k, 0), vis = this.featureVis(k);
    if (mode === "examples" && example) {
      cropSheet(px, this.dataset.sheets[example.sheet], example);
    } else if (mode === "featurevis" && vis) {
      cropSheet(px, this.data.feature_vis.sheets[vis.sheet], vis);
    } else {
      px.style.backgroundImage = px.style.backgroundSize = px.style.backgroundPosition = "";
    }
    this.tiles[k].classList.toggle("dim", (mode === "featurevis" && !vis) ||
                                          (mode === "examples" && !example));
  }
  this.box.classList.toggle("examples", mode !== "maps");
};

/* Channel k's i-th best dataset example, by name (EXAMPLE_FIELDS), or null. */
Layer.prototype.example = function (k, i, list) {
  var set = this.dataset, rows = set && set[list || "examples"][k], row = rows && rows[i];
  return row ? named(set.fields, row) : null;
};

/* Channel k's feature visualisation, by name (FEATURE_VIS_FIELDS), or null. */
Layer.prototype.featureVis = function (k) {
  var vis = this.data.feature_vis, row = vis && vis.channels[String(k)];
  return row ? named(vis.fields, row) : null;
};

/* The sidebar and the top bar show the image shown: its input and its predictions. */
function showInput(view, i) {
  var input = document.querySelector(".context-input img");
  if (input && view.input) {
    input.src = view.input;
    input.alt = "Input image " + (i + 1) + " (" + view.name + ") as the model saw it";
  }
  var list = document.querySelector(".context .top5"), top1 = document.querySelector(".topbar .top1");
  if (list) {
    list.textContent = "";
    view.predictions.forEach(function (p) {
      var item = document.createElement("li"), label = document.createElement("span");
      var prob = document.createElement("span");
      item.style.setProperty("--p", p.probability.toFixed(4));
      label.className = "label";
      label.textContent = p.label;
      prob.className = "prob";
      prob.textContent = pct(p.probability);
      item.appendChild(label);
      item.appendChild(prob);
      list.appendChild(item);
    });
  }
  if (top1 && view.predictions.length) {
    var strong = document.createElement("strong");
    strong.textContent = pct(view.predictions[0].probability);
    top1.textContent = view.predictions[0].label + " ";
    top1.appendChild(strong);
  }
}

function showTip(layer, k, anchor) {
  if (!tip) {
    tip = document.createElement("div");
    tip.className = "tip";
    tip.setAttribute("role", "tooltip");
    document.body.appendChild(tip);
  }
  var v = layer.shown();
  tip.textContent = "";
  var title = document.createElement("strong");
  title.textContent = layer.id(k);
  var values = document.createElement("span");
  values.textContent = "mean " + fmt(v.mean[k]) + " · max " + fmt(v.max[k]) + " · " +
    pct(v.positive[k]) + " > 0";
  var ranks = document.createElement("span");
  ranks.textContent = "rank " + layer.rank("mean", k) + " by mean, " + layer.rank("max", k) +
    " by max";
  tip.appendChild(title);
  tip.appendChild(values);
  tip.appendChild(ranks);
  if (v.flat[k]) {
    var flat = document.createElement("span");
    flat.textContent = "flat on this image";
    tip.appendChild(flat);
  }
  tip.hidden = false;
  var r = anchor.getBoundingClientRect(), w = tip.offsetWidth, h = tip.offsetHeight;
  var left = Math.max(4, Math.min(window.innerWidth - w - 4, r.left + r.width / 2 - w / 2));
  var top = r.bottom + 6 + h > window.innerHeight ? r.top - h - 6 : r.bottom + 6;
  tip.style.left = left + "px";
  tip.style.top = Math.max(4, top) + "px";
}

function hideTip() {
  if (tip) tip.hidden = true;
}

/* ---- channel.js */
/* The channel view: one channel enlarged, with its value scale, over the input, next to its
   filter, for every image, with its dataset examples and feature visualisation. */

Layer.prototype.wireDialog = function () {
  var self = this, dialog = this.dialog;
  dialog.querySelector(".cv-prev").addEventListener("click", function () { self.step(-1); });
  dialog.querySelector(".cv-next").addEventListener("click", function () { self.step(1); });
  dialog.querySelector(".cv-close").addEventListener("click", function () { dialog.close(); });
  var opacity = dialog.querySelector(".cv-opacity input"), heat = dialog.querySelector(".cv-heat");
  var applyOpacity = function () { heat.style.opacity = opacity.value / 100; };
  opacity.addEventListener("input", applyOpacity);
  applyOpacity();
  dialog.addEventListener("click", function (event) {
    if (event.target === dialog) dialog.close(); // a click on the backdrop
  });
  dialog.addEventListener("close", function () {
    var k = self.current;
    self.current = -1;
    dialog.removeAttribute("data-channel");
    setHash("");
    if (k >= 0) self.focusTile(k);
  });
};

Layer.prototype.open = function (k, fromHash) {
  if (!(k >= 0 && k < this.count)) return false;
  this.current = k;
  if (!this.dialog.open) {
    this.dialog.showModal();
    this.dialog.focus(); // the view itself, not its first button: arrows and Tab work from here
  }
  this.fill(k); // after showModal, so the boxes have their real widths
  if (!fromHash) setHash(this.id(k));
  hideTip();
  return true;
};

Layer.prototype.step = function (delta) {
  if (this.current < 0) {
    this.open(this.order[delta > 0 ? 0 : this.count - 1]);
    return;
  }
  var to = this.position[this.current] + delta;
  if (to >= 0 && to < this.count) this.open(this.order[to]);
};

Layer.prototype.fill = function (k) {
  var d = this.data, g = d.grid, view = this.shown(), dialog = this.dialog, id = this.id(k);
  var q = function (selector) { return dialog.querySelector(selector); };
  var at = this.position[k];
  dialog.dataset.channel = id;
  dialog.setAttribute("aria-label", "Channel " + id);
  q(".cv-id").textContent = id;
  q(".cv-position").textContent = "Channel " + k + " · " + (at + 1) + " of " + this.count +
    " in " + SORT_WORDS[this.sortKey];
  q(".cv-prev").disabled = at === 0;
  q(".cv-next").disabled = at === this.count - 1;

  var xy = origin(g, k), side = Math.max(g.tile_width, g.tile_height);
  var pixels = q(".cv-pixels"), width = pixels.parentElement.clientWidth || 320;
  var room = Math.max(64, Math.min(352, width)), scale = room / side;
  if (scale >= 1) scale = Math.floor(scale);
  cropPx(pixels, view.grid, g.width, g.height, xy[0], xy[1], g.tile_width, g.tile_height, scale);
  pixels.setAttribute("aria-label", "Activation map of channel " + id + ", enlarged without smoothing");
  q(".cv-map-caption").textContent = d.map[0] + "×" + d.map[1] + " map" +
    (g.tile_height !== d.map[0] || g.tile_width !== d.map[1]
      ? " (shown area-averaged to " + g.tile_height + "×" + g.tile_width + ")" : "") +
    ", each pixel drawn " + (scale >= 1 ? scale + "×" + scale : "smaller") + " without smoothing.";
  this.fillScale(k);

  var heat = q(".cv-heat");
  cropFill(heat, view.grid, g.width, g.height, xy[0], xy[1], g.tile_width, g.tile_height);
  heat.classList.toggle("heat-filter", !!d.grey);
  heat.setAttribute("aria-label", "Activation map of channel " + id + " as a heat map over the input image");

  this.fillFilter(k);
  this.fillImages(k);
  this.fillDataset(k);
  this.fillFeatureVis(k);
  var contribution = q(".cv-contribution");
  if (contribution && this.contribution) {
    contribution.textContent = fmt(this.contribution.values[k]) + " (rank " +
      this.rank("contribution", k) + " of " + this.count + ")";
  }
  q(".cv-flat").hidden = !view.flat[k];
  q(".cv-mean").textContent = fmt(view.mean[k]);
  q(".cv-max").textContent = fmt(view.max[k]);
  q(".cv-positive").textContent = pct(view.positive[k]);
  q(".cv-rank-mean").textContent = this.rank("mean", k) + " of " + this.count;
  q(".cv-rank-max").textContent = this.rank("max", k) + " of " + this.count;
  var link = q(".cv-link");
  link.href = "#" + id;
  link.textContent = "#" + id;
  for (var i = 0; i < this.tiles.length; i++) this.tiles[i].classList.remove("is-current");
  this.tiles[k].classList.add("is-current");
};

/* The value scale under the map: the colormap (a picture drawn from the same table as
   the grids) between the values drawn at its two ends, shared by all images. */
Layer.prototype.fillScale = function (k) {
  var scale = this.dialog.querySelector(".cv-scale");
  if (!scale) return;
  var low = fmt(this.data.low[k]), high = fmt(this.data.high[k]);
  scale.querySelector(".cv-low").textContent = low;
  scale.querySelector(".cv-high").textContent = high;
  scale.setAttribute("aria-label", "Colour scale of channel " + this.id(k) + ": " + low +
    " or less at the low end, " + high + " or more at the high end");
};

/* With a dataset: where this image stands, the channel's top and most inhibiting examples
   as crops, and what their order cannot claim (ties; a channel every image ties on). */
Layer.prototype.fillDataset = function (k) {
  var set = this.dataset, list = this.dialog.querySelector(".cv-examples");
  if (!set || !list) return;
  // The percentile is the first image's: say so, with its peak, when another is shown.
  // Null when every image ties (no rank); floored, so "more than" is never rounded up.
  var at = set.percentile[k];
  this.dialog.querySelector(".cv-percentile").textContent = at === null ? "" :
    (this.image ? "The first image" : "This image") + " excites channel " + k +
    (at <= 0 ? " no more than any image of the dataset" : " more than " + (at >= 100 ?
      "every image of the dataset" : (Math.floor(at * 10 + 1e-9) / 10).toFixed(1) +
      "% of the dataset")) +
    " (its peak " + fmt(this.images[0].max[k]) + "; dataset median peak " + fmt(set.p50[k]) +
    ", 99th percentile " + fmt(set.p99[k]) + ", highest " + fmt(set.max[k]) + ").";
  var notes = set.notes[k] || [], lows = this.dialog.querySelector(".cv-lows");
  this.fillExamples(list, k, "examples", "Top", notes[0]);
  if (lows) this.fillExamples(lows, k, "inhibiting", "Inhibiting", notes[1]);
};

/* One list of a channel's dataset examples as crops, and its note. */
Layer.prototype.fillExamples = function (list, k, which, word, note) {
  var set = this.dataset;
  list.textContent = "";
  for (var i = 0, example; (example = this.example(k, i, which)); i++) {
    var item = document.createElement("li"), name = set.images[example.image];
    var pixels = document.createElement("div"), label = document.createElement("span");
    pixels.className = "cv-example-px";
    pixels.setAttribute("role", "img");
    pixels.setAttribute("aria-label", word + " " + (i + 1) + ": " + name + ", score " +
      fmt(example.score) + ", " + (word === "Top" ? "peak" : "minimum") + " at row " +
      example.y + ", column " + example.x);
    cropSheet(pixels, set.sheets[example.sheet], example,
              96 / Math.max(example.crop_width, example.crop_height));
    label.textContent = name.split("/").pop() + " · " + fmt(example.score);
    label.title = name;
    item.appendChild(pixels);
    item.appendChild(label);
    list.appendChild(item);
  }
  list.parentNode.querySelector(".cv-note").textContent = note || "";
};

/* The channel's feature visualisation, when it has one. */
Layer.prototype.fillFeatureVis = function (k) {
  var figure = this.dialog.querySelector(".cv-featurevis"), vis = this.featureVis(k);
  if (!figure) return;
  figure.hidden = !vis;
  if (!vis) return;
  var box = figure.querySelector(".cv-featurevis-px");
  cropSheet(box, this.data.feature_vis.sheets[vis.sheet], vis,
            Math.min(2, 256 / Math.max(vis.crop_width, vis.crop_height)));
  box.setAttribute("aria-label", "Feature visualisation of channel " + this.id(k));
  figure.querySelector(".cv-featurevis-caption").textContent = "What channel " + k +
    " wants: an image optimised to maximise its mean (" + fmt(vis.objective) + " on it).";
};

/* Several images: this channel for each of them, in a row, all on the shared range. */
Layer.prototype.fillImages = function (k) {
  var row = this.dialog.querySelector(".cv-image-row");
  if (!row || this.images.length < 2) return;
  var g = this.data.grid, xy = origin(g, k), side = Math.max(g.tile_width, g.tile_height);
  var room = Math.max(48, Math.min(160, (row.clientWidth || 640) / this.images.length - 8));
  var scale = room / side >= 1 ? Math.floor(room / side) : room / side;
  row.textContent = "";
  for (var i = 0; i < this.images.length; i++) {
    var view = this.images[i], item = document.createElement("li");
    var pixels = document.createElement("div"), label = document.createElement("span");
    pixels.className = "cv-image-px";
    pixels.setAttribute("role", "img");
    pixels.setAttribute("aria-label", "Channel " + this.id(k) + " for image " + (i + 1) +
      ", " + view.name);
    cropPx(pixels, view.grid, g.width, g.height, xy[0], xy[1], g.tile_width, g.tile_height,
           scale);
    label.textContent = (i + 1) + ". " + view.name + " · max " + fmt(view.max[k]);
    if (i === this.image) item.className = "is-current";
    item.appendChild(pixels);
    item.appendChild(label);
    row.appendChild(item);
  }
};

Layer.prototype.fillFilter = function (k) {
  var f = this.data.filters, figure = this.dialog.querySelector(".cv-filter");
  if (!f) { figure.hidden = true; return; }
  figure.hidden = false;
  var box = figure.querySelector(".cv-filter-pixels"), caption = figure.querySelector(".cv-filter-caption");
  var kernel = f.kernel[0] + "×" + f.kernel[1], text;
  box.classList.toggle("strip", f.view === "heatmap");
  if (f.view === "heatmap") {
    box.style.width = "";
    box.style.height = "";
    cropFill(box, f.src, f.width, f.height, 0, k * f.scale, f.width, f.scale);
    text = "Filter " + k + ": its " + f.inputs + " weights, one per input channel, left to right " +
      "(blue negative, white 0, red positive, scaled over the layer).";
  } else {
    var xy = origin(f, k), side = Math.max(f.tile_width, f.tile_height);
    var fit = Math.min(132, figure.clientWidth || 132);
    cropPx(box, f.src, f.width, f.height, xy[0], xy[1], f.tile_width, f.tile_height,
           fit >= side ? Math.floor(fit / side) : fit / side);
    if (f.view === "rgb") text = "Filter " + k + ": its 3 input kernels (" + kernel + ") as one RGB image";
    else if (f.view === "strongest-input") text = "Filter " + k + ": the strongest of its " + f.inputs +
      " input kernels (" + kernel + "), the one on input channel " + f.strongest_input[k];
    else text = "Filter " + k + ": its " + kernel + " kernel";
    text += ", scaled symmetrically around 0 (mid-grey = 0).";
  }
  box.setAttribute("aria-label", text);
  caption.textContent = text;
};

/* ---- toc.js */
/* Where the reader is: the #LAYER:INDEX address, the layer list and its filter, and moving
   between layers. */

function setHash(id) {
  var url = location.pathname + location.search + (id ? "#" + id : "");
  try {
    history.replaceState(history.state, "", url);
  } catch (e) { /* some file:// setups refuse: the view works without the address */ }
}

function parseChannel(hash) {
  var text;
  try {
    text = decodeURIComponent(hash.replace(/^#/, ""));
  } catch (e) {
    return null;
  }
  var match = CHANNEL_ADDRESS.exec(text);
  return match ? { layer: match[1], index: parseInt(match[2], 10) } : null;
}

function tocLink(name) {
  var links = document.querySelectorAll(".toc a[data-layer]");
  for (var i = 0; i < links.length; i++) {
    if (links[i].dataset.layer === name) return links[i];
  }
  return null;
}

/* #LAYER:INDEX opens that channel here, or on the layer's own page. */
function route() {
  var target = parseChannel(location.hash);
  if (!target) {
    layers.forEach(function (layer) { if (layer.dialog.open) layer.dialog.close(); });
    return;
  }
  for (var i = 0; i < layers.length; i++) {
    if (layers[i].name === target.layer) {
      if (layers[i].open(target.index, true)) {
        layers[i].article.scrollIntoView({ block: "start" });
      }
      return;
    }
  }
  var link = tocLink(target.layer);
  if (link) location.replace(link.getAttribute("href") + location.hash);
}

function activeLayer() {
  if (layers.length <= 1) return layers[0] || null;
  var focused = document.activeElement, i;
  for (i = 0; i < layers.length; i++) if (layers[i].dialog.open) return layers[i];
  for (i = 0; i < layers.length; i++) if (layers[i].article.contains(focused)) return layers[i];
  for (i = 0; i < layers.length; i++) {
    if (layers[i].article.getBoundingClientRect().bottom > 0) return layers[i];
  }
  return layers[0];
}

/* The next (delta > 0) or previous layer's page; false when there is none. */
function goLayer(delta) {
  var layer = activeLayer(), link;
  if (layer) link = layer.article.querySelector(delta > 0 ? 'a[rel="next"]' : 'a[rel="prev"]');
  else if (delta > 0) link = document.querySelector(".toc a[data-layer]");
  if (!link) return false;
  location.href = link.getAttribute("href");
  return true;
}

/* Open the layer list (folded on a phone) and put the cursor in its filter. */
function focusFilter() {
  var filter = document.querySelector(".toc-filter input");
  if (!filter) return false;
  var details = filter.closest("details");
  if (details) details.open = true;
  filter.focus();
  return true;
}

function initToc() {
  var box = document.querySelector(".toc-filter"), details = document.querySelector(".toc-box");
  var links = Array.prototype.slice.call(document.querySelectorAll(".toc a[data-layer]"));
  var here = document.querySelector('.toc a[aria-current="page"]');
  if (details && window.matchMedia && window.matchMedia("(max-width: 60rem)").matches) {
    details.open = false; // on a phone the list starts folded: the page comes first
  }
  if (here) {
    var sidebar = document.querySelector(".sidebar");
    if (sidebar && sidebar.scrollHeight > sidebar.clientHeight) {
      sidebar.scrollTop = Math.max(0, here.offsetTop - sidebar.clientHeight / 3);
    }
  }
  if (!box) return;
  box.hidden = false;
  var input = box.querySelector("input"), status = box.querySelector(".toc-status");
  var groups = Array.prototype.slice.call(document.querySelectorAll(".toc .toc-group")).reverse();
  var apply = function () {
    var query = input.value.trim().toLowerCase(), shown = 0;
    links.forEach(function (link) {
      var hit = !query || link.dataset.layer.toLowerCase().indexOf(query) >= 0;
      link.parentElement.hidden = !hit;
      if (hit) shown++;
    });
    groups.forEach(function (group) {  // innermost first, so parents see their children
      var list = group.querySelector("ul");
      var visible = false;
      for (var i = 0; list && i < list.children.length; i++) {
        if (!list.children[i].hidden) { visible = true; break; }
      }
      group.hidden = !visible;
    });
    status.textContent = query ? shown + " of " + links.length + " layers" : "";
  };
  input.addEventListener("input", apply);
  input.addEventListener("keydown", function (event) {
    if (event.key === "Enter") {
      var first = links.filter(function (link) { return !link.parentElement.hidden; })[0];
      if (first) location.href = first.getAttribute("href");
      event.preventDefault();
    } else if (event.key === "Escape") {
      input.value = "";
      apply();
      input.blur();
      event.preventDefault();
    }
  });
}

/* ---- keys.js */
/* The keyboard shortcuts: one table, read by the key handler and written out as the "?" help
   (details.keys in the sidebar), so the help lists exactly what the keys do on this page.
   Each entry: its keys, its help (a text or a function giving one), when it applies to the
   document (none: always), and run(layer, key), which returns false when it did nothing.
   An entry without run is the browser's own or a tile's (Layer.tileKey), listed for help. */

var KEY_NAMES = { ArrowRight: "→", ArrowLeft: "←", Escape: "Esc" };

function hasLayers() {
  return layers.length > 0;
}

function viewOpen(layer) {
  return !!(layer && layer.current >= 0 && layer.dialog.open);
}

/* The orders that "s" cycles through, over every layer in the document. */
function sortHelp() {
  var names = SORTS.slice();
  layers.forEach(function (layer) {
    layer.sorts.forEach(function (key) { if (names.indexOf(key) < 0) names.push(key); });
  });
  return "sort channels: " + names.join(", ");
}

var SHORTCUTS = [
  { keys: ["j", "k"], help: "next / previous channel", when: hasLayers,
    run: function (layer, key) {
      if (!layer) return false;
      layer.step(key === "j" ? 1 : -1);
    } },
  { keys: ["ArrowRight", "ArrowLeft"], help: "next / previous channel in the channel view",
    when: hasLayers,
    run: function (layer, key) {
      if (!viewOpen(layer)) return false;
      layer.step(key === "ArrowRight" ? 1 : -1);
    } },
  { keys: ["n", "p"], help: "next / previous layer",
    run: function (layer, key) { return goLayer(key === "n" ? 1 : -1); } },
  { keys: ["s"], help: sortHelp, when: hasLayers,
    run: function (layer) {
      if (!layer) return false;
      layer.cycleSort();
    } },
  { keys: ["/"], help: "filter layers by name",
    when: function () { return !!document.querySelector(".toc-filter input"); },
    run: focusFilter },
  { keys: ["Escape"], help: "close the channel view", when: hasLayers,
    run: function (layer) {
      if (!viewOpen(layer)) return false;
      layer.dialog.close();
    } },
  { keys: ["Tab", "Enter"], help: "reach and open a tile; arrow keys move between tiles",
    when: hasLayers },
  { keys: ["?"], help: "show or hide this list", run: toggleKeys }
];

function shortcutFor(key) {
  for (var i = 0; i < SHORTCUTS.length; i++) {
    var entry = SHORTCUTS[i];
    if (entry.run && entry.keys.indexOf(key) >= 0 && (!entry.when || entry.when())) return entry;
  }
  return null;
}

function onKey(event) {
  if (event.defaultPrevented || event.ctrlKey || event.metaKey || event.altKey) return;
  var target = event.target;
  if (target && (/^(INPUT|TEXTAREA|SELECT)$/.test(target.tagName) || target.isContentEditable)) return;
  var entry = shortcutFor(event.key);
  if (entry && entry.run(activeLayer(), event.key) !== false) event.preventDefault();
}

function toggleKeys() {
  var keys = document.querySelector("details.keys");
  if (!keys) return false;
  keys.open = !keys.open;
  if (keys.open) keys.querySelector("summary").focus();
  return true;
}

/* The help: one row per shortcut that applies here, its keys as <kbd>. */
function showKeys() {
  var keys = document.querySelector("details.keys"), list = keys && keys.querySelector("dl");
  if (!list) return;
  list.textContent = "";
  SHORTCUTS.forEach(function (entry) {
    if (entry.when && !entry.when()) return;
    var term = document.createElement("dt"), text = document.createElement("dd");
    entry.keys.forEach(function (key, i) {
      var kbd = document.createElement("kbd");
      kbd.textContent = KEY_NAMES[key] || key;
      if (i) term.appendChild(document.createTextNode(" "));
      term.appendChild(kbd);
    });
    text.textContent = typeof entry.help === "function" ? entry.help() : entry.help;
    list.appendChild(term);
    list.appendChild(text);
  });
  keys.hidden = false;
}

/* ---- main.js */
/* Start: one Layer per article, the layer list, the shortcuts, the address. */

function snapAll() {
  for (var i = 0; i < layers.length; i++) layers[i].snap();
}

function init() {
  var articles = document.querySelectorAll("article.layer[data-layer]");
  for (var i = 0; i < articles.length; i++) {
    if (articles[i].hasAttribute("data-channels")) layers.push(new Layer(articles[i]));
  }
  initToc();
  showKeys();
  snapAll();
  // Anything that moves a box (a new width, text reflowing above it) resizes the page or it.
  if (window.ResizeObserver) {
    var watcher = new ResizeObserver(snapAll);
    watcher.observe(document.documentElement);
    layers.forEach(function (layer) { watcher.observe(layer.box); });
  } else {
    window.addEventListener("resize", snapAll);
  }
  document.addEventListener("keydown", onKey);
  window.addEventListener("hashchange", route);
  window.addEventListener("scroll", hideTip, { passive: true });
  route();
}

if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", init);
else init();
})();
