/* reportgen single file: fill in pictures used more than once, show one page at a time. */
(function () {
  "use strict";
  var doc = document, assets = {}, i, j;
  var marked = doc.querySelectorAll("[data-rg-asset]");
  for (i = 0; i < marked.length; i++) {
    var spec = marked[i].getAttribute("data-rg-asset").split(" ");
    assets[spec[1]] = marked[i].getAttribute(spec[0]);
  }
  // pictures only the page's script draws (no element carries them): stored once, by key
  var store = doc.getElementById("rg-asset-store");
  if (store) {
    var stored = JSON.parse(store.textContent);
    for (var key in stored) assets[key] = stored[key];
  }
  ["src", "href", "poster"].forEach(function (name) {
    var later = doc.querySelectorAll("[data-rg-" + name + "]");
    for (j = 0; j < later.length; j++) {
      var uri = assets[later[j].getAttribute("data-rg-" + name)];
      if (uri) later[j].setAttribute(name, uri);
    }
  });
  function resolve(text) {
    return text.replace(/rg-asset:(a[0-9]+)/g, function (all, key) { return assets[key] || all; });
  }
  var json = doc.querySelectorAll('script[type="application/json"], script[type="application/ld+json"]');
  for (i = 0; i < json.length; i++) {
    if (json[i] !== store) json[i].textContent = resolve(json[i].textContent);
  }
  var holders = doc.querySelectorAll("[data-rg-tokens]");
  for (i = 0; i < holders.length; i++) {
    for (j = 0; j < holders[i].attributes.length; j++) {
      var attribute = holders[i].attributes[j];
      if (attribute.value.indexOf("rg-asset:") >= 0) attribute.value = resolve(attribute.value);
    }
  }

  var pages = Array.prototype.slice.call(doc.querySelectorAll(".rg-pages > .rg-page"));
  if (!pages.length) return;
  var shown = null;
  // LAYER:INDEX, defined once in Python (reportgen.report.model.CHANNEL_ADDRESS)
  var address = new RegExp(doc.documentElement.getAttribute("data-channel-address"));

  function decode(text) {
    try { return decodeURIComponent(text); } catch (e) { return text; }
  }

  function find(hash) {
    var id = decode(hash.replace(/^#/, ""));
    if (!id) return { page: pages[0] };
    var element = doc.getElementById(id);
    if (element) {
      var page = element.closest(".rg-page");
      if (!page) return null;  // the shell's own anchors (#main): no page change
      return { page: page, element: element === page ? null : element };
    }
    var channel = address.exec(id);  // LAYER:INDEX, a channel of one layer
    if (channel) {
      for (var k = 0; k < pages.length; k++) {
        if (pages[k].getAttribute("data-rg-layer") === channel[1]) return { page: pages[k] };
      }
      for (k = 0; k < pages.length; k++) {
        var holders = pages[k].querySelectorAll("[data-layer]");
        for (var m = 0; m < holders.length; m++) {
          if (holders[m].getAttribute("data-layer") === channel[1]) return { page: pages[k] };
        }
      }
    }
    return { page: pages[0] };
  }

  function show() {
    var target = find(location.hash);
    if (!target) return;
    var changed = target.page !== shown;
    shown = target.page;
    pages.forEach(function (page) { page.hidden = page !== shown; });
    doc.documentElement.classList.toggle("rg-on-index", shown === pages[0]);
    if (shown.getAttribute("data-title")) doc.title = shown.getAttribute("data-title");
    var links = doc.querySelectorAll('a[href^="#rg-page-"]');
    for (var n = 0; n < links.length; n++) {
      if (links[n].closest(".rg-page")) continue;
      if (links[n].getAttribute("href") === "#" + shown.id) links[n].setAttribute("aria-current", "page");
      else if (links[n].getAttribute("aria-current") === "page") links[n].removeAttribute("aria-current");
    }
    if (target.element) target.element.scrollIntoView();
    else if (changed) window.scrollTo(0, 0);
  }

  doc.documentElement.classList.add("rg-js");
  window.addEventListener("hashchange", show);
  show();
})();
