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
