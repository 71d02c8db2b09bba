/* Attention text view (pages/attention.py): draws one page from the worker's attention_window result and colours
   tokens on hover, all in the browser. Weights: uint16 round(65535·A) over each head's lower triangle, row by row
   (head h, query i, key j ≤ i at h·W(W+1)/2 + i(i+1)/2 + j; workbench.engine.window.lower_triangle_u16). */
(function () {
  "use strict";
  var state = null;

  function decode(b64) {
    var bin = atob(b64), out = new Uint16Array(bin.length >> 1);
    for (var i = 0; i < out.length; i++) out[i] = bin.charCodeAt(2 * i) | (bin.charCodeAt(2 * i + 1) << 8);
    return out;
  }
  function weight(h, i, j) {  // A[q=i, k=j] within the window, j <= i
    return state.u16[h * state.tri + i * (i + 1) / 2 + j] / 65535;
  }
  function shownText(tok) {  // whitespace visible: newline ↵, tab →, a whitespace-only token as middle dots
    var t = tok.replace(/\t/g, "→").replace(/\r/g, "␍").replace(/\n/g, "↵");
    return /^ +$/.test(t) ? t.replace(/ /g, "·") : t;
  }
  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined) e.textContent = text;
    return e;
  }
  function fmt(x) { return x === null || x === undefined ? "–" : x.toFixed(4); }

  function panel(h) {
    var box = el("div", "att-panel"), head = el("div", "att-panel-head", state.data.heads[h]);
    var text = el("div", "att-text"), toks = state.data.tokens, start = state.data.start;
    box.dataset.head = h;
    for (var i = 0; i < toks.length; i++) {
      var s = el("span", "att-tok", shownText(toks[i]));
      s.dataset.i = i;
      s.title = "#" + (start + i) + " " + JSON.stringify(toks[i]);
      text.appendChild(s);
      if (toks[i].indexOf("\n") >= 0) text.appendChild(document.createElement("br"));
    }
    box.appendChild(head);
    box.appendChild(text);
    return box;
  }

  function colour(i) {
    var root = state.root, W = state.data.tokens.length, start = state.data.start;
    root.querySelectorAll(".att-panel").forEach(function (box) {
      var h = +box.dataset.head, spans = box.querySelectorAll(".att-tok"), rowMax = 1e-9, colMax = 1e-9, j, v;
      for (j = 0; j <= i; j++) if (start + j > 0) rowMax = Math.max(rowMax, weight(h, i, j));
      for (j = i + 1; j < W; j++) colMax = Math.max(colMax, weight(h, j, i));
      spans.forEach(function (s, j) {
        s.classList.toggle("att-query", j === i);
        if (j <= i) {
          v = weight(h, i, j);
          s.style.background = "rgba(47,111,223," + Math.min(1, v / rowMax).toFixed(3) + ")";
        } else {
          v = weight(h, j, i);
          s.style.background = "rgba(236,128,30," + Math.min(1, v / colMax).toFixed(3) + ")";
        }
        s.dataset.w = v.toFixed(4);
      });
      var bos = state.data.bos ? state.data.bos[h][i] : null, before = state.data.before[h][i];
      box.querySelector(".att-panel-head").textContent = state.data.heads[h] + " · BOS " + fmt(bos) +
        " · before window " + fmt(before);
    });
    var tok = state.data.tokens[i];
    state.info.textContent = "query #" + (start + i) + " " + JSON.stringify(tok) +
      (state.pinned === null ? "  (click to pin)" : "  (pinned; click again to unpin)");
  }

  function draw() {
    var root = state.root, body = state.body;
    body.innerHTML = "";
    var heads = state.head === "grid" ? state.data.heads.map(function (_, h) { return h; }) : [state.head];
    body.className = state.head === "grid" ? "att-grid" : "att-single";
    heads.forEach(function (h) { body.appendChild(panel(h)); });
    root.querySelectorAll(".att-head-btn").forEach(function (b) {
      b.classList.toggle("active", String(b.dataset.head) === String(state.head));
    });
    if (state.pinned !== null) colour(state.pinned);
  }

  function render(data) {
    var root = document.getElementById("ax-view");
    if (!root || !data || !data.pattern_u16) return "";
    var wanted = root.dataset.head || "", W = data.tokens.length;
    var keep = state && state.data.layer === data.layer ? state.head : null;
    var fromUrl = data.heads.indexOf(wanted);
    state = {data: data, root: root, u16: decode(data.pattern_u16), tri: W * (W + 1) / 2, pinned: null,
             head: keep !== null ? keep : (fromUrl >= 0 ? fromUrl : "grid")};
    root.innerHTML = "";
    var bar = el("div", "att-bar");
    var all = el("button", "att-head-btn", "all heads");
    all.dataset.head = "grid";
    bar.appendChild(all);
    data.heads.forEach(function (name, h) {
      var b = el("button", "att-head-btn", name);
      b.dataset.head = h;
      bar.appendChild(b);
    });
    bar.addEventListener("click", function (ev) {
      var b = ev.target.closest(".att-head-btn");
      if (!b) return;
      state.head = b.dataset.head === "grid" ? "grid" : +b.dataset.head;
      draw();
    });
    state.info = el("div", "att-info", "hover a token");
    state.body = el("div", "att-grid");
    root.appendChild(el("div", "att-where", "tokens " + data.start + "–" + (data.stop - 1) + " of " +
      data.n_tokens + " · page " + (data.page + 1) + " of " + data.n_pages + " · layer " + data.layer));
    root.appendChild(bar);
    root.appendChild(state.info);
    root.appendChild(state.body);
    state.body.addEventListener("mouseover", function (ev) {
      var s = ev.target.closest(".att-tok");
      if (s && state.pinned === null) colour(+s.dataset.i);
    });
    state.body.addEventListener("click", function (ev) {
      var s = ev.target.closest(".att-tok");
      if (!s) return;
      state.pinned = state.pinned === +s.dataset.i ? null : +s.dataset.i;
      colour(+s.dataset.i);
    });
    draw();
    return "page " + (data.page + 1) + " of " + data.n_pages + ": " + W + " tokens";
  }

  window.attentionText = {render: render, weight: function (h, i, j) { return weight(h, i, j); }};
})();
