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
