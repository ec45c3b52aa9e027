// Loaded by notebook pages in place of nbconvert's MathJax (which would come from a CDN).
// Math in notebooks is typeset by katex-init.js, like every other page.
