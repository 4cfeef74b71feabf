// aigen's only script of its own. Loaded with <script src=... defer>; the CSP allows no inline script.
(function () {
  "use strict";

  // Ctrl+Enter (Cmd+Enter on a Mac) in <textarea data-submit-on-ctrl-enter> submits its form.
  // Listening on document keeps this working for textareas that htmx swaps in later.
  document.addEventListener("keydown", function (event) {
    if (event.key !== "Enter" || !(event.ctrlKey || event.metaKey) || event.isComposing) {
      return;
    }
    var field = event.target;
    if (!(field instanceof HTMLTextAreaElement) || !field.hasAttribute("data-submit-on-ctrl-enter")) {
      return;
    }
    var form = field.form;
    if (!form) {
      return;
    }
    event.preventDefault();
    var submitter = form.querySelector('button[type="submit"], button:not([type]), input[type="submit"]');
    if (submitter && submitter.disabled) {
      return; // e.g. a generation is already running or the user is out of credits
    }
    // requestSubmit (unlike submit) runs validation and fires "submit", which htmx handles.
    form.requestSubmit(submitter || undefined);
  });

  // <button data-copy="#id"> copies the value (or text) of #id, e.g. a new API key. Where the
  // Clipboard API is missing (plain http off localhost) it selects the text for Ctrl+C instead.
  document.addEventListener("click", function (event) {
    var button = event.target instanceof Element ? event.target.closest("[data-copy]") : null;
    var source = button ? document.querySelector(button.getAttribute("data-copy")) : null;
    if (!source) {
      return;
    }
    var text = "value" in source ? source.value : source.textContent;
    var selectIt = function () {
      if (source.select) {
        source.select();
      }
      button.textContent = "Press Ctrl+C";
    };
    if (!navigator.clipboard) {
      selectIt();
      return;
    }
    navigator.clipboard.writeText(text).then(function () {
      button.textContent = "Copied";
    }, selectIt);
  });

  // The CSRF token travels with every htmx request through hx-headers on <body>.
})();
