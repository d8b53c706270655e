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
