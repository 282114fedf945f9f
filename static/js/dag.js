// Campaign overview: draw the stage DAG and recolour it from the live status endpoint.
(function () {
  const COLORS = { New: "#8a94a6", Idle: "#d9a400", Running: "#2f80ed", Held: "#b05cd6", Completed: "#27ae60",
    Located: "#137a43", Failed: "#d64545", LaunchFailed: "#d64545", Removed: "#5b5f6b", Cancelled: "#5b5f6b",
    "Awaiting Approval": "#e67e22", "never launched": "#c9ced8" };
  function start() {
    const box = document.getElementById("dag");
    if (!box || !window.cytoscape) return;
    const data = JSON.parse(document.getElementById("dag-data").textContent);
    const elements = data.nodes.map(n => ({ data: { id: String(n.id), label: n.name, status: "never launched",
      color: COLORS["never launched"] } }))
      .concat(data.edges.map(e => ({ data: { id: e.source + "-" + e.target, source: String(e.source), target: String(e.target), label: "" } })));
    const cy = cytoscape({
      container: box, elements: elements, userZoomingEnabled: false, maxZoom: 1.3, minZoom: 0.3,
      layout: { name: "dagre", rankDir: "LR", nodeSep: 40, rankSep: 90 },
      style: [
        { selector: "node[color]", style: { shape: "round-rectangle", width: 170, height: 54, "text-max-width": 160, "background-color": "data(color)",
          label: "data(label)", color: "#fff", "text-valign": "center", "text-wrap": "wrap", "font-size": 11 } },
        { selector: "edge", style: { "curve-style": "bezier", "target-arrow-shape": "triangle", width: 2,
          "line-color": "#9aa3b5", "target-arrow-color": "#9aa3b5", label: "data(label)", "font-size": 10,
          "text-background-color": "#fff", "text-background-opacity": 1 } },
      ],
    });
    const stageUrl = box.dataset.stageUrl;
    cy.on("tap", "node", ev => { window.location = stageUrl.replace("/0/", "/" + ev.target.id() + "/"); });
    async function refresh() {
      const reply = await fetch(box.dataset.statusUrl, { headers: { Accept: "application/json" } });
      if (!reply.ok) return;
      const stages = (await reply.json()).stages;
      for (const [id, s] of Object.entries(stages)) {
        const node = cy.getElementById(id);
        node.data("color", COLORS[s.latest_label] || COLORS.New);
        node.data("label", node.data("label").split("\n")[0] + "\n" + s.latest_label + " · " + s.n_active + " active / " + s.n_subs);
        node.data("status", s.latest_label);
        const total = s.files_total || 0, done = Math.min(s.files_consumed || 0, total);
        cy.edges('[target = "' + id + '"]').forEach(e => e.data("label", total ? done + " files – " + Math.round(100 * done / total) + " %" : ""));
        const cell = document.getElementById("latest-" + id);
        if (cell) cell.textContent = s.latest_label + (s.latest_id ? " (#" + s.latest_id + ")" : "");
      }
      box.dataset.ready = "1";
    }
    refresh();
    setInterval(refresh, 5000);
  }
  document.addEventListener("DOMContentLoaded", start);
})();
