// Typeset the math of every page with the KaTeX served by this site.
// pymdownx.arithmatex (generic mode) wraps inline math as <span class="arithmatex">\(..\)</span>
// and display math as <div class="arithmatex">\[..\]</div>; notebook Markdown cells keep $..$.
(function () {
  function unwrap(text) {
    var t = text.trim();
    var m = t.match(/^\\\(([\s\S]*)\\\)$/) || t.match(/^\\\[([\s\S]*)\\\]$/) || t.match(/^\$\$([\s\S]*)\$\$$/);
    return m ? m[1] : t;
  }
  function typeset() {
    if (typeof katex === "undefined") return;
    document.querySelectorAll(".arithmatex").forEach(function (el) {
      if (el.dataset.atlasMath) return;
      var display = el.tagName === "DIV";
      try {
        katex.render(unwrap(el.textContent), el, { displayMode: display, throwOnError: false });
        el.dataset.atlasMath = "1";
      } catch (err) {
        el.classList.add("atlas-math-error");
      }
    });
    if (typeof renderMathInElement !== "undefined") {
      document.querySelectorAll(".jupyter-wrapper .jp-RenderedMarkdown").forEach(function (el) {
        renderMathInElement(el, {
          delimiters: [
            { left: "$$", right: "$$", display: true },
            { left: "$", right: "$", display: false },
          ],
          throwOnError: false,
        });
      });
    }
  }
  if (window.document$ && window.document$.subscribe) {
    window.document$.subscribe(typeset);
  } else if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", typeset);
  } else {
    typeset();
  }
})();
