/* reportgen report: progressive enhancement; every page reads without JavaScript.
 *
 * With it, each channel is addressable as LAYER:INDEX (the page's #hash opens its channel
 * view), tiles can be hovered, sorted by mean or max and opened, the layer list can be
 * filtered, and the keyboard works. Everything is found per article.layer[data-layer] and
 * its data-channels JSON, never by a global id, so several layers may share one document.
 * No network request: the JSON is in the page, tiles are CSS crops of the layer's grid PNG.
 */
(function () {
  "use strict";

  var layers = [];
  // LAYER:INDEX, defined once in Python (reportgen.report.model.CHANNEL_ADDRESS)
  var CHANNEL_ADDRESS = new RegExp(document.documentElement.getAttribute("data-channel-address"));
  var tip = null;
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

  function imageSource(root, selector, fallback) {
    var image = root.querySelector(selector);
    return (image && image.getAttribute("src")) || fallback;
  }

  /* Channel indices, most active first; ties (and missing values, last) in index order, as
     the manifest's rankings are made (reportgen.forward.stats.rank_channels). */
  function rankBy(values) {
    return range(values.length).sort(function (a, b) {
      var x = values[a], y = values[b];
      if ((x === null) !== (y === null)) return x === null ? 1 : -1;
      return (y - x) || (a - b);
    });
  }

  function origin(layout, k) {
    return [(k % layout.cols) * (layout.tile_width + layout.gap),
            Math.floor(k / layout.cols) * (layout.tile_height + layout.gap)];
  }

  /* ---------------------------------------------------------------- one layer */

  function Layer(article) {
    this.article = article;
    this.data = JSON.parse(article.getAttribute("data-channels"));
    // Pictures come from the page's own <img> elements when present, so a tool that inlines
    // or moves images (a single-file report) only has to rewrite their src attributes.
    this.data.grid.src = imageSource(article, "img.grid", this.data.grid.src);
    if (this.data.filters) this.data.filters.src = imageSource(article, "img.filters", this.data.filters.src);
    this.name = this.data.name;
    this.count = this.data.channels;
    this.sortKey = "index";
    this.order = range(this.count);
    this.position = inverse(this.order);
    this.rank = { mean: inverse(this.data.ranking.mean), max: inverse(this.data.ranking.max) };
    this.current = -1;
    // Several images: each has its own grid (the page's img.grid elements, in order) and
    // numbers; one is shown at a time, and the channel view shows them all in a row.
    this.images = this.data.images;
    this.image = 0;
    this.dataset = this.data.dataset;
    this.sorts = this.data.contribution ? SORTS.concat(["contribution"]) : SORTS;
    if (this.data.contribution) this.rank.contribution = inverse(this.data.ranking.contribution);
    this.tileMode = "maps";
    if (this.images) {
      var grids = article.querySelectorAll("img.grid");
      for (var i = 0; i < this.images.length; i++) {
        this.images[i].grid = (grids[i] && grids[i].getAttribute("src")) || this.images[i].grid;
      }
      this.images[0].ranking = this.data.ranking;
    }
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

  Layer.prototype.describe = function (k) {
    var d = this.data;
    return "Channel " + this.id(k) + ": mean " + fmt(d.mean[k]) + ", max " + fmt(d.max[k]) +
      ", " + pct(d.positive[k]) + " above 0" + (d.flat[k] ? ", flat on this image" : "");
  };

  Layer.prototype.buildTiles = function () {
    var g = this.data.grid, box = this.box, self = this;
    box.style.setProperty("--w", g.tile_width);
    box.style.setProperty("--h", g.tile_height);
    box.style.setProperty("--gw", g.width);
    box.style.setProperty("--gh", g.height);
    box.style.setProperty("--s", this.data.scale);
    // One copy for all tiles; absolute, because a url() in a custom property resolves
    // against the stylesheet that uses it (static/), not against the page.
    box.style.setProperty("--grid", 'url("' + new URL(g.src, document.baseURI).href + '")');
    var fragment = document.createDocumentFragment();
    for (var k = 0; k < this.count; k++) {
      var tile = document.createElement("button");
      tile.type = "button";
      tile.className = this.data.flat[k] ? "tile flat" : "tile";
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
    this.order = key === "index" ? range(this.count) : this.data.ranking[key].slice();
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

  Layer.prototype.setImage = function (i) {
    var view = this.images && this.images[i];
    if (!view) return;
    this.image = i;
    var d = this.data;
    d.mean = view.mean;
    d.max = view.max;
    d.positive = view.positive;
    d.flat = view.flat;
    d.grid.src = view.grid;
    // Attribution ran on the first image: its contribution order stays whichever is shown.
    var contribution = d.ranking && d.ranking.contribution;
    if (!view.ranking) view.ranking = { mean: rankBy(view.mean), max: rankBy(view.max) };
    if (contribution) view.ranking.contribution = contribution;
    d.ranking = view.ranking;
    this.rank = { mean: inverse(view.ranking.mean), max: inverse(view.ranking.max) };
    if (contribution) this.rank.contribution = inverse(contribution);
    this.box.style.setProperty("--grid", 'url("' + new URL(view.grid, document.baseURI).href + '")');
    for (var k = 0; k < this.count; k++) {
      this.tiles[k].classList.toggle("flat", !!d.flat[k]);
      this.tiles[k].setAttribute("aria-label", this.describe(k));
    }
    var stage = this.dialog.querySelector(".cv-stage img");
    if (stage) stage.src = view.input;
    Array.prototype.forEach.call(this.imageRadios || [], function (radio) {
      radio.checked = +radio.value === i;
    });
    this.sort(this.sortKey);
  };

  Layer.prototype.cycleSort = function () {
    this.sort(this.sorts[(this.sorts.indexOf(this.sortKey) + 1) % this.sorts.length]);
  };

  /* ---------------------------------------------------------------- channel view */

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
    var d = this.data, g = d.grid, dialog = this.dialog, id = this.id(k);
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
    cropPx(pixels, g.src, g.width, g.height, xy[0], xy[1], g.tile_width, g.tile_height, scale);
    pixels.setAttribute("aria-label", "Activation map of channel " + id + ", enlarged without smoothing");
    q(".cv-map-caption").textContent = d.map[0] + "×" + d.map[1] + " map" +
      (g.tile_height !== d.map[0] || g.tile_width !== d.map[1]
        ? " (shown area-averaged to " + g.tile_height + "×" + g.tile_width + ")" : "") +
      ", each pixel drawn " + (scale >= 1 ? scale + "×" + scale : "smaller") + " without smoothing.";

    var heat = q(".cv-heat");
    cropFill(heat, g.src, g.width, g.height, xy[0], xy[1], g.tile_width, g.tile_height);
    heat.classList.toggle("heat-filter", !!d.grey);
    heat.setAttribute("aria-label", "Activation map of channel " + id + " as a heat map over the input image");

    this.fillFilter(k);
    this.fillImages(k);
    this.fillDataset(k);
    this.fillFeatureVis(k);
    var contribution = this.dialog.querySelector(".cv-contribution");
    if (contribution && this.data.contribution) {
      contribution.textContent = fmt(this.data.contribution[k]) + " (rank " +
        (this.rank.contribution[k] + 1) + " of " + this.count + ")";
    }
    q(".cv-flat").hidden = !d.flat[k];
    q(".cv-mean").textContent = fmt(d.mean[k]);
    q(".cv-max").textContent = fmt(d.max[k]);
    q(".cv-positive").textContent = pct(d.positive[k]);
    q(".cv-rank-mean").textContent = (this.rank.mean[k] + 1) + " of " + this.count;
    q(".cv-rank-max").textContent = (this.rank.max[k] + 1) + " of " + this.count;
    var link = q(".cv-link");
    link.href = "#" + id;
    link.textContent = "#" + id;
    for (var i = 0; i < this.tiles.length; i++) this.tiles[i].classList.remove("is-current");
    this.tiles[k].classList.add("is-current");
  };

  /* With a dataset: where this image stands, the channel's top and most inhibiting examples
     as crops, and what their order cannot claim (ties; a channel every image ties on). */
  Layer.prototype.fillDataset = function (k) {
    var set = this.dataset, list = this.dialog.querySelector(".cv-examples");
    if (!set || !list) return;
    // The percentile is the first image's: say so, with its peak, when another is shown.
    // Null when every image ties (no rank); floored, so "more than" is never rounded up.
    var first = this.image ? this.images[0] : this.data, at = set.percentile[k];
    this.dialog.querySelector(".cv-percentile").textContent = at === null ? "" :
      (this.image ? "The first image" : "This image") + " excites channel " + k +
      (at <= 0 ? " no more than any image of the dataset" : " more than " + (at >= 100 ?
        "every image of the dataset" : (Math.floor(at * 10 + 1e-9) / 10).toFixed(1) +
        "% of the dataset")) +
      " (its peak " + fmt(first.max[k]) + "; dataset median peak " + fmt(set.p50[k]) +
      ", 99th percentile " + fmt(set.p99[k]) + ", highest " + fmt(set.max[k]) + ").";
    var notes = set.notes[k] || [], lows = this.dialog.querySelector(".cv-lows");
    fillExamples(list, set, set.examples[k] || [], "Top", notes[0]);
    if (lows) fillExamples(lows, set, set.inhibiting[k] || [], "Inhibiting", notes[1]);
  };

  function fillExamples(list, set, rows, word, note) {
    list.textContent = "";
    for (var i = 0; i < rows.length; i++) {
      var row = rows[i], sheet = set.sheets[row[4]], item = document.createElement("li");
      var pixels = document.createElement("div"), label = document.createElement("span");
      var name = set.images[row[0]];
      pixels.className = "cv-example-px";
      pixels.setAttribute("role", "img");
      pixels.setAttribute("aria-label", word + " " + (i + 1) + ": " + name + ", score " +
        fmt(row[1]) + ", " + (word === "Top" ? "peak" : "minimum") + " at row " + row[2] +
        ", column " + row[3]);
      cropPx(pixels, sheet.src, sheet.width, sheet.height, row[5], row[6], row[7], row[8],
             96 / Math.max(row[7], row[8]));
      label.textContent = name.split("/").pop() + " · " + fmt(row[1]);
      label.title = name;
      item.appendChild(pixels);
      item.appendChild(label);
      list.appendChild(item);
    }
    list.parentNode.querySelector(".cv-note").textContent = note || "";
  }

  /* The channel's feature visualisation, when it has one. */
  Layer.prototype.fillFeatureVis = function (k) {
    var vis = this.data.feature_vis, figure = this.dialog.querySelector(".cv-featurevis");
    if (!vis || !figure) return;
    var item = vis.channels[String(k)];
    figure.hidden = !item;
    if (!item) return;
    var sheet = vis.sheets[item[0]], box = figure.querySelector(".cv-featurevis-px");
    cropPx(box, sheet.src, sheet.width, sheet.height, item[1], item[2], item[3], item[4],
           Math.min(2, 256 / Math.max(item[3], item[4])));
    box.setAttribute("aria-label", "Feature visualisation of channel " + this.id(k));
    figure.querySelector(".cv-featurevis-caption").textContent = "What channel " + k +
      " wants: an image optimised to maximise its mean (" + fmt(item[5]) + " on it).";
  };

  /* Tiles show this image's maps, each channel's top dataset example (Microscope-style), or
     its feature visualisation. */
  Layer.prototype.setTileMode = function (mode) {
    var set = this.dataset, vis = this.data.feature_vis;
    this.tileMode = mode;
    for (var k = 0; k < this.count; k++) {
      var px = this.tiles[k].firstChild, row = set && set.examples[k] && set.examples[k][0];
      var item = vis && vis.channels[String(k)], sheet;
      if (mode === "examples" && row) {
        sheet = set.sheets[row[4]];
        cropFill(px, sheet.src, sheet.width, sheet.height, row[5], row[6], row[7], row[8]);
      } else if (mode === "featurevis" && item) {
        sheet = vis.sheets[item[0]];
        cropFill(px, sheet.src, sheet.width, sheet.height, item[1], item[2], item[3], item[4]);
      } else {
        px.style.backgroundImage = px.style.backgroundSize = px.style.backgroundPosition = "";
      }
      this.tiles[k].classList.toggle("dim", (mode === "featurevis" && !item) ||
                                            (mode === "examples" && !row));
    }
    this.box.classList.toggle("examples", mode !== "maps");
  };

  /* Several images: this channel for each of them, in a row, all on the shared range. */
  Layer.prototype.fillImages = function (k) {
    var row = this.dialog.querySelector(".cv-image-row");
    if (!row || !this.images) return;
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

  /* ---------------------------------------------------------------- shared pieces */

  function showTip(layer, k, anchor) {
    if (!tip) {
      tip = document.createElement("div");
      tip.className = "tip";
      tip.setAttribute("role", "tooltip");
      document.body.appendChild(tip);
    }
    var d = layer.data;
    tip.textContent = "";
    var title = document.createElement("strong");
    title.textContent = layer.id(k);
    var values = document.createElement("span");
    values.textContent = "mean " + fmt(d.mean[k]) + " · max " + fmt(d.max[k]) + " · " +
      pct(d.positive[k]) + " > 0";
    var ranks = document.createElement("span");
    ranks.textContent = "rank " + (layer.rank.mean[k] + 1) + " by mean, " + (layer.rank.max[k] + 1) +
      " by max";
    tip.appendChild(title);
    tip.appendChild(values);
    tip.appendChild(ranks);
    if (d.flat[k]) {
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

  function goLayer(delta) {
    var layer = activeLayer(), link;
    if (layer) link = layer.article.querySelector(delta > 0 ? 'a[rel="next"]' : 'a[rel="prev"]');
    else if (delta > 0) link = document.querySelector(".toc a[data-layer]");
    if (link) location.href = link.getAttribute("href");
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

  function onKey(event) {
    if (event.defaultPrevented || event.ctrlKey || event.metaKey || event.altKey) return;
    var target = event.target;
    if (target && (/^(INPUT|TEXTAREA|SELECT)$/.test(target.tagName) || target.isContentEditable)) return;
    var layer = activeLayer(), open = !!(layer && layer.current >= 0 && layer.dialog.open);
    switch (event.key) {
      case "j": if (layer) layer.step(1); break;
      case "k": if (layer) layer.step(-1); break;
      case "ArrowRight": if (!open) return; layer.step(1); break;
      case "ArrowLeft": if (!open) return; layer.step(-1); break;
      case "n": goLayer(1); break;
      case "p": goLayer(-1); break;
      case "s": if (!layer) return; layer.cycleSort(); break;
      case "/": {
        var filter = document.querySelector(".toc-filter input");
        if (!filter) return;
        var details = filter.closest("details");
        if (details) details.open = true;
        filter.focus();
        break;
      }
      case "?": {
        var keys = document.querySelector("details.keys");
        if (!keys) return;
        keys.open = !keys.open;
        if (keys.open) keys.querySelector("summary").focus();
        break;
      }
      case "Escape": if (!open) return; layer.dialog.close(); break;
      default: return;
    }
    event.preventDefault();
  }

  function snapAll() {
    for (var i = 0; i < layers.length; i++) layers[i].snap();
  }

  function init() {
    var articles = document.querySelectorAll("article.layer[data-layer]");
    for (var i = 0; i < articles.length; i++) {
      if (articles[i].hasAttribute("data-channels")) layers.push(new Layer(articles[i]));
    }
    initToc();
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
