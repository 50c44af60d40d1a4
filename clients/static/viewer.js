// Satchel viewer: the one script a viewer page runs (its CSP allows this file by its hash and
// nothing else). It records what the learner chosen on this laptop does (lesson opened, marked
// done, each answer) through POST /api/events on the viewer itself, shows each answer's
// feedback, and keeps a sign-language video playing along with its video. It never touches a
// lesson's sandboxed frame and talks to nothing but the viewer. Without it, lessons still read.
(function () {
  "use strict";
  var body = document.body;
  var learner = body.getAttribute("data-learner") || null;
  var bundle = body.getAttribute("data-bundle");
  var locale = body.getAttribute("data-locale");
  var lesson = body.getAttribute("data-lesson");

  function post(event) {
    return fetch("/api/events", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      credentials: "same-origin",
      body: JSON.stringify(event),
    }).then(function (response) {
      return response.json().then(function (answer) {
        if (!response.ok) {
          throw new Error(answer.error || "the viewer refused this (" + response.status + ")");
        }
        return answer;
      });
    });
  }

  function event(kind, extra) {
    var e = { learner: learner, bundle: bundle, locale: locale, lesson: lesson, kind: kind };
    for (var k in extra) { e[k] = extra[k]; }
    return e;
  }

  if (lesson && learner) {
    post(event("opened", {})).catch(function () {});
  }

  function answerOf(form, submitter) {
    if (form.getAttribute("data-kind") === "self_assessment") {
      return submitter ? submitter.value : "";
    }
    var boxes = form.querySelectorAll("input[name=answer][type=checkbox]");
    if (boxes.length) {
      var ticked = [];
      boxes.forEach(function (b) { if (b.checked) { ticked.push(b.value); } });
      return ticked.join(",");
    }
    var radio = form.querySelector("input[name=answer][type=radio]:checked");
    if (radio) { return radio.value; }
    var field = form.querySelector("[name=answer]");
    return field && field.type !== "radio" ? field.value : "";
  }

  function say(form, text, state) {
    var out = form.querySelector(".exercise-feedback");
    if (!out) { return; }
    out.classList.remove("right", "wrong");
    if (state) { out.classList.add(state); }
    out.textContent = text;
  }

  document.querySelectorAll("form[data-question]").forEach(function (form) {
    form.addEventListener("submit", function (e) {
      e.preventDefault();
      var answer = answerOf(form, e.submitter);
      if (answer === "" && form.getAttribute("data-kind") !== "essay") {
        say(form, "Choose or type an answer first.", "wrong");
        return;
      }
      post(event("answered", { question: form.getAttribute("data-question"), answer: answer }))
        .then(function (r) {
          var parts = [];
          var state = null;
          if (r.correct === true) { parts.push("Right!"); state = "right"; }
          else if (r.correct === false) {
            parts.push(r.score > 0 ? "Partly right." : "Not quite.");
            state = "wrong";
          } else { parts.push("Saved."); }
          if (r.feedback) { parts.push(r.feedback); }
          if (r.general_feedback) { parts.push(r.general_feedback); }
          if (r.attempts) { parts.push("(attempt " + r.attempts + ")"); }
          say(form, parts.join(" "), state);
        })
        .catch(function (err) { say(form, "Not checked: " + err.message, "wrong"); });
    });
  });

  var done = document.querySelector("form.done");
  if (done) {
    done.addEventListener("submit", function (e) {
      e.preventDefault();
      var button = done.querySelector("button");
      var status = done.querySelector("[role=status]");
      post(event("completed", {}))
        .then(function () {
          if (button) { button.textContent = "Done ✓"; button.disabled = true; }
          if (status) { status.textContent = "Marked as done."; }
        })
        .catch(function (err) { if (status) { status.textContent = "Not saved: " + err.message; } });
    });
  }

  // A sign-language video follows its video: play, pause and seek together.
  document.querySelectorAll("video[data-follows]").forEach(function (sign) {
    var main = document.getElementById(sign.getAttribute("data-follows"));
    if (!main) { return; }
    main.addEventListener("play", function () { sign.currentTime = main.currentTime; sign.play().catch(function () {}); });
    main.addEventListener("pause", function () { sign.pause(); });
    main.addEventListener("seeked", function () { sign.currentTime = main.currentTime; });
    main.addEventListener("ratechange", function () { sign.playbackRate = main.playbackRate; });
  });
})();
