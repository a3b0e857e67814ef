// Draws every Plotly figure in new content (first load and each htmx swap) and keeps them sized.
(function () {
  "use strict";

  function draw(element) {
    var figure;
    try {
      figure = JSON.parse(element.getAttribute("data-figure"));
    } catch (error) {
      element.textContent = "This chart's data could not be read.";
      return;
    }
    if (typeof Plotly === "undefined") {
      element.textContent = "Charts need plotly.min.js (run make install).";
      return;
    }
    Plotly.react(element, figure.data || [], figure.layout || {},
                 {responsive: true, displaylogo: false, modeBarButtonsToRemove: ["lasso2d", "select2d"]});
    element.setAttribute("data-drawn", "true");
  }

  function drawAll(root) {
    if (root.matches && root.matches("[data-figure]")) {
      draw(root);
    }
    if (root.querySelectorAll) {
      root.querySelectorAll("[data-figure]").forEach(draw);
    }
  }

  document.addEventListener("DOMContentLoaded", function () {
    if (typeof htmx === "undefined") {
      drawAll(document);
      return;
    }
    htmx.onLoad(drawAll);
    // A poll answered 204 swaps nothing; an error answer shows where the fragment is, not only in the console.
    document.body.addEventListener("htmx:responseError", function (event) {
      var target = event.detail.target;
      if (target && event.detail.xhr.status >= 400 && event.detail.xhr.responseText) {
        var note = document.createElement("p");
        note.className = "notice error";
        note.textContent = "Update failed (" + event.detail.xhr.status + ").";
        target.appendChild(note);
      }
    });
  });
})();
