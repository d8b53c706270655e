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
