// Live panels for a running run: one panel per agent, fed by the server's event stream.
// Everything from the stream is untrusted text: it is only ever set through textContent.
"use strict";

(function () {
  const live = document.getElementById("live");
  if (!live) {
    return;
  }
  const container = document.getElementById("panels");
  const status = document.getElementById("status");
  const panels = new Map();

  function panelFor(agent) {
    let panel = panels.get(agent);
    if (panel === undefined) {
      const box = document.createElement("div");
      box.className = "panel";
      box.dataset.agent = agent;
      const title = document.createElement("h3");
      title.textContent = agent;
      const state = document.createElement("p");
      state.className = "panel-state dim";
      state.textContent = "working";
      const lines = document.createElement("ol");
      box.append(title, state, lines);
      container.appendChild(box);
      panel = { box: box, state: state, lines: lines };
      panels.set(agent, panel);
    }
    return panel;
  }

  const source = new EventSource(live.dataset.stream);
  source.addEventListener("line", function (message) {
    const data = JSON.parse(message.data);
    const panel = panelFor(data.agent);
    const item = document.createElement("li");
    item.textContent = data.text;
    panel.lines.appendChild(item);
    panel.state.textContent = data.text;
    if (data.kind === "AgentFinished") {
      panel.box.classList.add("finished");
    }
  });
  source.addEventListener("done", function (message) {
    source.close();
    const data = JSON.parse(message.data);
    status.textContent = data.status;
    status.className = "badge " + data.status;
    window.setTimeout(function () { window.location.reload(); }, 250);
  });
})();
