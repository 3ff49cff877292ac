//! ECharts, tree-shaken to the charts the pages draw, with the options they share. Charts take
//! amounts in minor units and format them with the currency, so no amount goes through a float.
import * as echarts from "echarts/core";
import { BarChart, FunnelChart, LineChart } from "echarts/charts";
import { GridComponent, LegendComponent, TooltipComponent } from "echarts/components";
import { SVGRenderer } from "echarts/renderers";
import { money, moneyShort, periodLabel } from "./format.js";

echarts.use([BarChart, FunnelChart, LineChart, GridComponent, LegendComponent, TooltipComponent, SVGRenderer]);

export const palette = {
  collected: "#2f7d4f",
  refunded: "#c2571a",
  paidOut: "#5b5fc7",
  net: "#1f2937",
  muted: "#9aa3af",
  series: ["#5b5fc7", "#2f7d4f", "#c2571a", "#b83280", "#0e7490", "#a16207"],
};

// Every chart on the page, so the router can dispose of a page's charts when it leaves it.
const live = new Set();
// Each chart's first rendering, done: ECharts emits 'finished' from within setOption itself when
// there is no animation, so the listener is set before it.
const drawn = new WeakMap();

/** Draws `option` into `el` (which must be in the document) and keeps it sized to `el`. */
export function draw(el, option) {
  // A page left before its data arrived draws nothing.
  if (!el.isConnected) return null;
  const chart = echarts.init(el, null, { renderer: "svg" });
  drawn.set(chart, new Promise((resolve) => chart.on("finished", resolve)));
  chart.setOption({ animation: false, color: palette.series, textStyle: { fontFamily: "inherit" }, ...option });
  const resize = new ResizeObserver(() => chart.resize());
  resize.observe(el);
  live.add({ chart, resize });
  return chart;
}

/** Resolves once `chart` (as a drawing function returns it; null draws nothing) has finished rendering. */
export function finished(chart) {
  return chart ? drawn.get(chart) : Promise.resolve();
}

/** Disposes of every chart drawn so far. */
export function disposeAll() {
  for (const { chart, resize } of live) {
    resize.disconnect();
    chart.dispose();
  }
  live.clear();
}

function moneyAxis(currency) {
  return { type: "value", axisLabel: { formatter: (v) => moneyShort(v, currency) }, splitLine: { lineStyle: { color: "#eef0f3" } } };
}

function moneyTooltip(currency) {
  return { trigger: "axis", valueFormatter: (v) => money(v, currency) };
}

/** A category axis of periods (days or months), with short labels. */
function periodAxis(periods) {
  return {
    type: "category",
    data: periods,
    axisLabel: { formatter: periodLabel, hideOverlap: true },
    axisTick: { alignWithLabel: true },
  };
}

/**
 * Money over time: one series per `{name, key, color, type}` drawn from `rows` (objects with
 * `period` and the keys), bars or lines.
 */
export function moneyOverTime(el, { rows, currency, series }) {
  return draw(el, {
    grid: { left: 64, right: 16, top: 36, bottom: 28 },
    legend: { top: 0, left: 0, icon: "roundRect", itemWidth: 10, itemHeight: 10, itemGap: 16 },
    tooltip: moneyTooltip(currency),
    xAxis: periodAxis(rows.map((r) => r.period)),
    yAxis: moneyAxis(currency),
    series: series.map((s) => ({
      name: s.name,
      type: s.type ?? "bar",
      data: rows.map((r) => r[s.key] ?? 0),
      itemStyle: s.color ? { color: s.color } : undefined,
      lineStyle: s.color ? { color: s.color, width: 2 } : undefined,
      symbol: "none",
      smooth: false,
      barMaxWidth: 18,
    })),
  });
}

/** A customer's month in one currency (a summary's `daily`): charged and paid out per day. */
export function monthOverTime(el, { daily, currency }) {
  return moneyOverTime(el, {
    rows: daily.map((d) => ({ period: d.date, charged: d.charged, paid_out: d.paid_out })),
    currency,
    series: [
      { name: "Charged", key: "charged", color: palette.collected },
      { name: "Paid out", key: "paid_out", color: palette.paidOut },
    ],
  });
}

/** Plain counts over time (usage quantities, renewals): one line or bar series per entry. */
export function countsOverTime(el, { periods, series, type = "line", valueFormatter }) {
  return draw(el, {
    grid: { left: 56, right: 16, top: 36, bottom: 28 },
    legend: { top: 0, left: 0, icon: "roundRect", itemWidth: 10, itemHeight: 10, itemGap: 16 },
    tooltip: { trigger: "axis", valueFormatter },
    xAxis: periodAxis(periods),
    yAxis: { type: "value", minInterval: 1, splitLine: { lineStyle: { color: "#eef0f3" } } },
    series: series.map((s) => ({ name: s.name, type, data: s.data, symbol: "none", barMaxWidth: 18 })),
  });
}

/** Horizontal bars of `{label, value}`, for breakdowns like invoices by status. */
export function bars(el, { items, valueFormatter, color = palette.series[0] }) {
  return draw(el, {
    grid: { left: 140, right: 24, top: 8, bottom: 24 },
    tooltip: { trigger: "axis", axisPointer: { type: "shadow" }, valueFormatter },
    xAxis: { type: "value", minInterval: 1, splitLine: { lineStyle: { color: "#eef0f3" } } },
    yAxis: { type: "category", data: items.map((i) => i.label), inverse: true },
    series: [{ type: "bar", data: items.map((i) => i.value), itemStyle: { color }, barMaxWidth: 16 }],
  });
}

/** A funnel of `{label, value}` stages, widest first. */
export function funnel(el, { stages }) {
  return draw(el, {
    tooltip: { trigger: "item", formatter: (p) => `${p.name}: ${p.value}` },
    series: [
      {
        type: "funnel",
        left: "4%",
        width: "56%",
        top: 8,
        bottom: 8,
        sort: "none",
        minSize: "8%",
        gap: 4,
        label: { show: true, position: "right", formatter: (p) => `${p.name}: ${p.value}`, color: palette.net },
        labelLine: { show: true, length: 12 },
        data: stages.map((s, i) => ({ name: s.label, value: s.value, itemStyle: { color: s.color ?? palette.series[i] } })),
      },
    ],
  });
}
