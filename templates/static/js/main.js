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
