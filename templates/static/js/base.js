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
