// Dashboard: submissions launched per day, stacked by their current status.
(function () {
  const COLORS = { New: "#8a94a6", Idle: "#d9a400", Running: "#2f80ed", Held: "#b05cd6", Completed: "#27ae60",
    Located: "#137a43", Failed: "#d64545", LaunchFailed: "#a83232", Removed: "#5b5f6b", Cancelled: "#9aa0ab",
    "Awaiting Approval": "#e67e22" };
  document.addEventListener("DOMContentLoaded", function () {
    const canvas = document.getElementById("daily-chart");
    if (!canvas || !window.Chart) return;
    const data = JSON.parse(document.getElementById("daily-data").textContent);
    const datasets = Object.entries(data.series).map(([label, counts]) => ({
      label: label, data: counts, backgroundColor: COLORS[label] || "#8a94a6", stack: "s" }));
    new Chart(canvas, {
      type: "bar",
      data: { labels: data.labels.map(d => d.slice(5)), datasets: datasets },
      options: { responsive: true, maintainAspectRatio: false, animation: false,
        scales: { x: { stacked: true }, y: { stacked: true, beginAtZero: true, ticks: { precision: 0 } } },
        plugins: { legend: { position: "bottom" } } },
    });
  });
})();
