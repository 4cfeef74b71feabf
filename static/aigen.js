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

  // ---------------------------------------------------------------------------------------
  // Streamed answers (the generate page): <form data-stream-into="ID"> posts with
  // Accept: text/event-stream and renders Claude's Markdown into #ID as it grows.
  // The renderer mirrors src/aigen/web/markdown.py (markdown-it-py + nh3): the same parser
  // options, link schemes, images shown as links, table alignment as classes, and DOMPurify
  // allowing exactly the tags, attributes and classes nh3 allows.

  var ALLOWED_TAGS = [
    "p", "br", "hr", "h1", "h2", "h3", "h4", "h5", "h6",
    "ul", "ol", "li", "blockquote", "pre", "code",
    "em", "strong", "s", "del", "a",
    "table", "thead", "tbody", "tr", "th", "td"
  ];
  var ALLOWED_URL_SCHEMES = ["http", "https", "mailto"];
  var DROPPED_WITH_CONTENT = [
    "script", "style", "iframe", "object", "embed", "svg", "math", "template",
    "noscript", "textarea", "select", "title", "xmp", "noembed", "noframes"
  ];
  var ALIGN_CLASSES = {
    "text-align:left": "md-align-left",
    "text-align:center": "md-align-center",
    "text-align:right": "md-align-right"
  };
  var IMAGE_LINK_CLASS = "md-image-link";
  var LINK_REL = "nofollow noopener noreferrer";
  var ALIGNED = Object.keys(ALIGN_CLASSES).map(function (style) { return ALIGN_CLASSES[style]; });
  var ATTRIBUTES_BY_TAG = { A: ["href", "title", "class"], OL: ["start"], TH: ["class"], TD: ["class"] };
  var CLASSES_BY_TAG = { A: [IMAGE_LINK_CLASS], TH: ALIGNED, TD: ALIGNED };
  var SANITIZER = {
    ALLOWED_TAGS: ALLOWED_TAGS,
    ALLOWED_ATTR: ["href", "title", "start", "class"],
    // A relative URL, or one of ALLOWED_URL_SCHEMES.
    ALLOWED_URI_REGEXP: /^(?:(?:https?|mailto):|[^a-z]|[a-z+.\-]+(?:[^a-z+.\-:]|$))/i,
    ALLOW_DATA_ATTR: false,
    ALLOW_ARIA_ATTR: false,
    ADD_FORBID_CONTENTS: DROPPED_WITH_CONTENT,
    RETURN_DOM_FRAGMENT: true
  };
  var EVENT_STREAM = "text/event-stream";
  // After Stop, the server finalizes the row (and refunds a credit if nothing was written) a
  // moment after it sees the connection close: refresh the credits once it has.
  var STOP_SETTLE_MS = 600;
  var CREDITS_CHANGED = "credits-changed";

  function isAllowedUrl(url) {
    var match = /^([^/?#]*):/.exec(url.trim());
    return match === null || ALLOWED_URL_SCHEMES.indexOf(match[1].toLowerCase()) >= 0;
  }

  function buildMarkdown() {
    var md = window.markdownit("commonmark", { html: false }).enable(["table", "strikethrough"]);
    md.validateLink = isAllowedUrl;
    // ![alt](src) as a link: no tracking pixels, and img-src stays 'self'.
    md.renderer.rules.image = function (tokens, idx, options, env, self) {
      var token = tokens[idx];
      var alt = self.renderInlineAsText(token.children || [], options, env).trim();
      var href = md.utils.escapeHtml(token.attrGet("src") || "");
      return '<a href="' + href + '" class="' + IMAGE_LINK_CLASS + '">' +
        md.utils.escapeHtml(alt || "image") + "</a>";
    };
    // markdown-it aligns cells with style="text-align:…", which the CSP forbids: a class instead.
    md.core.ruler.push("table_alignment_to_class", function (state) {
      state.tokens.forEach(function (token) {
        var style = token.attrGet("style");
        if ((token.type === "th_open" || token.type === "td_open") && style !== null) {
          token.attrs = token.attrs.filter(function (attr) { return attr[0] !== "style"; });
          if (ALIGN_CLASSES[style]) {
            token.attrSet("class", ALIGN_CLASSES[style]);
          }
        }
      });
    });
    return md;
  }

  function configureSanitizer(purify) {
    purify.addHook("uponSanitizeAttribute", function (node, data) {
      var allowed = ATTRIBUTES_BY_TAG[node.nodeName] || [];
      if (allowed.indexOf(data.attrName) < 0) {
        data.keepAttr = false;
      } else if (data.attrName === "class") {
        var classes = CLASSES_BY_TAG[node.nodeName] || [];
        var kept = data.attrValue.split(/\s+/).filter(function (name) {
          return classes.indexOf(name) >= 0;
        });
        data.attrValue = kept.join(" ");
        data.keepAttr = kept.length > 0;
      }
    });
    purify.addHook("afterSanitizeAttributes", function (node) {
      if (node.nodeName === "A" && node.hasAttribute("href")) {
        node.setAttribute("rel", LINK_REL);
      }
    });
  }

  // Calls onEvent(name, data) for each `event:` + `data:` block; comments (keep-alive) are skipped.
  async function readEvents(body, onEvent) {
    var reader = body.getReader();
    var decoder = new TextDecoder();
    var buffer = "";
    for (;;) {
      var chunk = await reader.read();
      if (chunk.done) {
        return;
      }
      buffer += decoder.decode(chunk.value, { stream: true });
      var blocks = buffer.split("\n\n");
      buffer = blocks.pop();
      blocks.forEach(function (block) {
        var name = "message";
        var data = null;
        block.split("\n").forEach(function (line) {
          if (line.indexOf("event: ") === 0) {
            name = line.slice("event: ".length);
          } else if (line.indexOf("data: ") === 0) {
            data = line.slice("data: ".length);
          }
        });
        if (data !== null) {
          onEvent(name, JSON.parse(data));
        }
      });
    }
  }

  function creditsLeft(credits) {
    if (credits.plan === "PRO") {
      return "Unlimited";
    }
    var left = Math.max(credits.limit - credits.used, 0);
    return left + " credit" + (left === 1 ? "" : "s") + " left";
  }

  function announceCreditsChanged() {
    // The usage card refreshes itself, and the navigation's credits with it (out of band).
    window.htmx.trigger(document.body, CREDITS_CHANGED);
  }

  // One answer being written into the result region.
  function Answer(region, md, purify, id) {
    var fragment = document.getElementById("stream-answer").content.cloneNode(true);
    this.article = fragment.querySelector("article");
    this.article.id = "generation-" + id;
    this.body = fragment.querySelector("[data-body]");
    this.id = id;
    this.md = md;
    this.purify = purify;
    this.text = "";
    this.scheduled = false;
    region.replaceChildren(fragment);
  }

  Answer.prototype.append = function (text) {
    this.text += text;
    if (!this.scheduled) {
      this.scheduled = true; // at most one render per frame, however fast the deltas come
      window.requestAnimationFrame(this.render.bind(this));
    }
  };

  Answer.prototype.render = function () {
    this.scheduled = false;
    this.body.replaceChildren(this.purify.sanitize(this.md.render(this.text), SANITIZER));
  };

  Answer.prototype.end = function () {
    this.render();
    this.article.classList.remove("result--streaming");
    this.article.querySelector("[data-writing]").hidden = true;
  };

  Answer.prototype.finish = function (done) {
    this.end();
    var meta = this.article.querySelector("[data-finished]");
    meta.querySelector("[data-usage]").textContent =
      done.usage.input_tokens + " in · " + done.usage.output_tokens + " out tokens";
    meta.querySelector("[data-credits-left]").textContent = creditsLeft(done.credits);
    meta.querySelector("[data-permalink]").href = "/generations/" + done.id;
    meta.hidden = false;
    var nav = document.getElementById("nav-credits");
    if (nav) {
      nav.textContent = done.credits.plan === "PRO" ? "Pro · unlimited" : creditsLeft(done.credits);
    }
  };

  Answer.prototype.stopped = function (note) {
    this.end();
    var meta = this.article.querySelector("[data-ended]");
    meta.textContent = note;
    meta.hidden = false;
  };

  // An alert below the answer written so far, or alone in the region when there is none.
  function showAlert(region, answer, kind, parts) {
    var fragment = document.getElementById("stream-alert").content.cloneNode(true);
    var alert = fragment.querySelector(".alert");
    alert.classList.add("alert--" + kind);
    if (kind === "error") {
      alert.id = "generate-error";
    }
    Object.keys(parts).forEach(function (name) {
      fragment.querySelector("[data-" + name + "]").textContent = parts[name];
    });
    alert.querySelectorAll("p").forEach(function (paragraph) {
      if (paragraph.textContent.trim() === "") {
        paragraph.remove();
      }
    });
    if (answer === null) {
      region.replaceChildren(fragment);
    } else {
      region.appendChild(fragment);
    }
  }

  function chargeNote(wrote) {
    return wrote ? "The partial answer used your credit." : "Your credit was refunded.";
  }

  function showFailure(region, answer, failure) {
    var wrote = answer !== null && answer.text !== "";
    if (answer !== null) {
      answer.stopped(wrote ? "Partial answer" : "No answer");
    }
    showAlert(region, answer, "error", {
      title: wrote ? "Claude stopped before finishing" : "We couldn't generate an answer",
      message: failure.error,
      retry: failure.retryable ? "Retrying may help: press Generate again in a moment." :
        "Retrying won't help right now. If this keeps happening, please let us know.",
      charge: chargeNote(wrote)
    });
  }

  function StreamingForm(form, md, purify) {
    this.form = form;
    this.region = document.getElementById(form.getAttribute("data-stream-into"));
    this.button = form.querySelector('button[type="submit"]');
    this.stopButton = form.querySelector("#stop-button");
    this.md = md;
    this.purify = purify;
    this.controller = null;
    form.addEventListener("submit", this.submit.bind(this));
    this.stopButton.addEventListener("click", this.stop.bind(this));
  }

  StreamingForm.prototype.busy = function (busy) {
    this.button.disabled = busy;
    this.button.classList.toggle("is-busy", busy);
    this.stopButton.hidden = !busy;
    this.region.setAttribute("aria-busy", busy ? "true" : "false");
  };

  StreamingForm.prototype.submit = function (event) {
    event.preventDefault();
    if (this.controller !== null) {
      return;
    }
    var controller = new AbortController();
    this.controller = controller;
    this.busy(true);
    this.run(controller).finally(function () {
      var stopHadFocus = document.activeElement === this.stopButton;
      this.controller = null;
      this.busy(false);
      if (stopHadFocus) {
        this.button.focus(); // the Stop button is hidden now: keep the keyboard on the form
      }
    }.bind(this));
  };

  StreamingForm.prototype.stop = function () {
    if (this.controller !== null) {
      this.controller.abort(); // the server sees the connection close and stops Claude
    }
  };

  StreamingForm.prototype.run = async function (controller) {
    var answer = null;
    var ended = false;
    var region = this.region;
    var md = this.md;
    var purify = this.purify;
    try {
      var response = await fetch(this.form.action, {
        method: "POST",
        body: new URLSearchParams(new FormData(this.form)),
        headers: { Accept: EVENT_STREAM },
        credentials: "same-origin",
        redirect: "manual",
        signal: controller.signal
      });
      if (response.type === "opaqueredirect") { // signed out meanwhile: sign in, then come back
        window.location.assign("/login?next=" + encodeURIComponent(window.location.pathname));
        return;
      }
      var type = response.headers.get("Content-Type") || "";
      if (!response.ok) {
        showAlert(region, null, "error", {
          title: "We couldn't generate an answer",
          message: "The server answered " + response.status + ".",
          retry: "Reload the page and try again.",
          charge: ""
        });
        return;
      }
      if (type.indexOf(EVENT_STREAM) !== 0) { // refused: the partial that explains why
        window.htmx.swap(region, await response.text(), { swapStyle: "innerHTML" });
        return;
      }
      await readEvents(response.body, function (name, data) {
        if (name === "start") {
          answer = new Answer(region, md, purify, data.id);
        } else if (name === "delta" && answer !== null) {
          answer.append(data.text);
        } else if (name === "done" && answer !== null) {
          ended = true;
          answer.finish(data);
          announceCreditsChanged();
        } else if (name === "error") {
          ended = true;
          showFailure(region, answer, data);
          announceCreditsChanged();
        }
      });
      if (!ended) {
        showFailure(region, answer, { error: "The connection closed before the answer ended.", retryable: true });
        announceCreditsChanged();
      }
    } catch (error) {
      if (!controller.signal.aborted) {
        showFailure(region, answer, { error: "The connection was lost.", retryable: true });
      } else if (answer !== null) {
        answer.stopped("Stopped · " + chargeNote(answer.text !== ""));
      } else {
        showAlert(region, null, "info", { title: "Stopped before Claude wrote anything.", message: "", retry: "", charge: "" });
      }
      window.setTimeout(announceCreditsChanged, STOP_SETTLE_MS);
    }
  };

  var streamingForm = document.querySelector("form[data-stream-into]");
  if (streamingForm && window.markdownit && window.DOMPurify && window.htmx && window.ReadableStream) {
    configureSanitizer(window.DOMPurify);
    new StreamingForm(streamingForm, buildMarkdown(), window.DOMPurify);
  }
})();
