/**
 * The layer benchmark's report as an SVG bar chart: a row per workload, a
 * bar each for snapfs's time relative to fuse-overlayfs and to the kernel
 * overlay. Plain SVG text with a generic font and a white background, so
 * that it shows the same in a README on any theme, with nothing to load.
 *
 * The scale is logarithmic and bars start at 1×: 2× and 0.5× are the same
 * length either way, and ratios from a third to ten times fit one axis.
 */
import type { BenchLayersReport, SideResult, WorkloadResult } from './bench-layers-report';

const WIDTH = 900;
const MARGIN = 16;
const LABEL_WIDTH = 340;
const PLOT_LEFT = MARGIN + LABEL_WIDTH + 14;
const PLOT_RIGHT = WIDTH - MARGIN;
/** Room beside the axis's ends for the value printed past a bar. */
const VALUE_ROOM = 46;
/** What fits a line of the label column at 12px in a wide sans-serif. */
const LABEL_CHARS = 52;
const LINE_HEIGHT = 15;
const BAR_HEIGHT = 10;
const BAR_GAP = 3;
const ROWS_TOP = 118;

const COMPARISONS = [
  { key: 'fuse-overlayfs', label: 'snapfs / fuse-overlayfs', color: '#2f6fba', ratio: (w: WorkloadResult) => w.ratios.snapfsToFuseOverlayfs },
  { key: 'overlay', label: 'snapfs / kernel overlay', color: '#e07b24', ratio: (w: WorkloadResult) => w.ratios.snapfsToOverlay },
] as const;

/** Escaped for XML text and attribute values. */
function xmlEscape(text: string): string {
  return text.replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&apos;' })[c]!);
}

/** Where on the x axis a ratio goes. */
interface RatioScale {
  x(ratio: number): number;
  ticks: number[];
}

/** A log scale over the ratios and their spreads, widened to whole steps of 1, 2, 5 and to at least 0.5×–2×. */
function ratioScale(values: readonly number[]): RatioScale {
  const steps = oneTwoFive(Math.min(0.5, ...values), Math.max(2, ...values));
  const lo = Math.log(steps[0]!);
  const hi = Math.log(steps[steps.length - 1]!);
  const left = PLOT_LEFT + VALUE_ROOM;
  const right = PLOT_RIGHT - VALUE_ROOM;
  return { x: (ratio) => left + ((Math.log(ratio) - lo) / (hi - lo)) * (right - left), ticks: steps };
}

/** 1, 2, 5 times the powers of ten, from the last at or below `min` to the first at or above `max`. */
function oneTwoFive(min: number, max: number): number[] {
  const all: number[] = [];
  for (let e = Math.floor(Math.log10(min)) - 1; e <= Math.ceil(Math.log10(max)) + 1; e++) for (const m of [1, 2, 5]) all.push(Number((m * 10 ** e).toPrecision(1)));
  const first = all.length - 1 - [...all].reverse().findIndex((t) => t <= min);
  const last = all.findIndex((t) => t >= max);
  return all.slice(first, last + 1);
}

/**
 * The lowest and highest ratio of a single round: run i of each side was
 * taken in the same round, under the same spell of the shared machine.
 * None without two rounds to compare.
 */
function roundSpread(snapfs: SideResult, other: SideResult): { min: number; max: number } | undefined {
  const n = Math.min(snapfs.runsMs.length, other.runsMs.length);
  if (n < 2) return undefined;
  const ratios = snapfs.runsMs.slice(0, n).map((t, i) => t / other.runsMs[i]!).filter((r) => Number.isFinite(r) && r > 0);
  return ratios.length < 2 ? undefined : { min: Math.min(...ratios), max: Math.max(...ratios) };
}

/** `text` in lines of at most `width` characters, broken at spaces (a longer word keeps its own line). */
function wrap(text: string, width: number): string[] {
  const lines: string[] = [];
  for (const word of text.split(' ')) {
    const last = lines[lines.length - 1];
    if (last !== undefined && last.length + 1 + word.length <= width) lines[lines.length - 1] = `${last} ${word}`;
    else lines.push(word);
  }
  return lines;
}

const ratioText = (r: number): string => `${r >= 10 ? r.toFixed(1) : r.toFixed(2)}×`;
const tickText = (t: number): string => `${t}×`;
const px = (v: number): string => String(Math.round(v * 10) / 10);

export function chartSvg(report: BenchLayersReport): string {
  const rows = report.workloads.map((w) => ({
    workload: w,
    lines: wrap(w.name, LABEL_CHARS),
    bars: COMPARISONS.map((c) => ({ ...c, value: c.ratio(w), spread: roundSpread(w.sides.snapfs, w.sides[c.key]) })),
  }));
  const scale = ratioScale(rows.flatMap((r) => r.bars.flatMap((b) => [b.value, ...(b.spread === undefined ? [] : [b.spread.min, b.spread.max])])));
  const heights = rows.map((r) => Math.max(2 * BAR_HEIGHT + BAR_GAP + 12, r.lines.length * LINE_HEIGHT + 10));
  const rowsBottom = ROWS_TOP + heights.reduce((a, b) => a + b, 0);
  const height = rowsBottom + 30;
  const one = scale.x(1);
  const s = report.settings;
  const title = 'snapfs’s time relative to fuse-overlayfs and to the kernel overlay, per workload';
  const subtitle = `scripts/bench-layers, scale ${s.scale}, median of ${s.runs} runs, ${s.date.slice(0, 10)}, Linux ${s.kernel}, ${s.cpus} CPUs`;

  const out: string[] = [];
  out.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${WIDTH}" height="${height}" viewBox="0 0 ${WIDTH} ${height}" font-family="Helvetica, Arial, sans-serif" font-size="12" fill="#24292f">`);
  out.push(`<title>${xmlEscape(`${title}: ${subtitle}`)}</title>`);
  out.push(`<rect width="${WIDTH}" height="${height}" fill="#ffffff"/>`);
  out.push(`<text x="${MARGIN}" y="26" font-size="16" font-weight="bold">${xmlEscape(title)}</text>`);
  out.push(`<text x="${MARGIN}" y="46" fill="#57606a">${xmlEscape(subtitle)}</text>`);
  out.push(`<text x="${MARGIN}" y="64" fill="#57606a">${xmlEscape('Log scale; bars start at 1×, the same time. Whiskers: the lowest and highest ratio of a single round (the sides take turns).')}</text>`);
  COMPARISONS.forEach((c, i) => {
    const x = MARGIN + i * 200;
    out.push(`<rect x="${x}" y="76" width="14" height="${BAR_HEIGHT}" fill="${c.color}"/><text x="${x + 20}" y="85">${xmlEscape(c.label)}</text>`);
  });
  out.push(`<text x="${px(one - 6)}" y="${ROWS_TOP - 22}" text-anchor="end" fill="#57606a">${xmlEscape('← snapfs faster')}</text>`);
  out.push(`<text x="${px(one + 6)}" y="${ROWS_TOP - 22}" fill="#57606a">${xmlEscape('snapfs slower →')}</text>`);

  let y = ROWS_TOP;
  heights.forEach((h, i) => {
    if (i % 2 === 0) out.push(`<rect x="0" y="${y}" width="${WIDTH}" height="${h}" fill="#f6f8fa"/>`);
    y += h;
  });
  for (const t of scale.ticks) {
    const x = px(scale.x(t));
    out.push(`<line x1="${x}" y1="${ROWS_TOP}" x2="${x}" y2="${rowsBottom}" stroke="${t === 1 ? '#24292f' : '#d0d7de'}" stroke-width="${t === 1 ? 1.5 : 1}"/>`);
    for (const ty of [ROWS_TOP - 6, rowsBottom + 16]) out.push(`<text x="${x}" y="${ty}" text-anchor="middle" font-size="11" fill="#57606a">${tickText(t)}</text>`);
  }

  y = ROWS_TOP;
  rows.forEach((row, i) => {
    const h = heights[i]!;
    const w = row.workload;
    const medians = `snapfs ${w.sides.snapfs.medianMs.toFixed(1)} ms, fuse-overlayfs ${w.sides['fuse-overlayfs'].medianMs.toFixed(1)} ms, overlay ${w.sides.overlay.medianMs.toFixed(1)} ms`;
    out.push(`<g class="workload"><title>${xmlEscape(`${w.name}: ${medians}`)}</title>`);
    const firstLine = y + h / 2 - ((row.lines.length - 1) * LINE_HEIGHT) / 2 + 4;
    row.lines.forEach((line, l) => out.push(`<text x="${MARGIN}" y="${px(firstLine + l * LINE_HEIGHT)}">${xmlEscape(line)}</text>`));
    const barsTop = y + h / 2 - (2 * BAR_HEIGHT + BAR_GAP) / 2;
    row.bars.forEach((bar, b) => {
      const top = barsTop + b * (BAR_HEIGHT + BAR_GAP);
      const mid = px(top + BAR_HEIGHT / 2);
      const end = scale.x(bar.value);
      out.push(`<rect class="bar vs-${bar.key}" x="${px(Math.min(one, end))}" y="${px(top)}" width="${px(Math.abs(end - one))}" height="${BAR_HEIGHT}" fill="${bar.color}"/>`);
      let reach = end;
      if (bar.spread !== undefined) {
        const [x1, x2] = [scale.x(bar.spread.min), scale.x(bar.spread.max)];
        const caps = [x1, x2].map((x) => `M${px(x)} ${px(top + 1)}V${px(top + BAR_HEIGHT - 1)}`).join('');
        out.push(`<path class="spread" d="M${px(x1)} ${mid}H${px(x2)}${caps}" stroke="#24292f" stroke-width="1" fill="none"/>`);
        reach = bar.value >= 1 ? Math.max(end, x2) : Math.min(end, x1);
      }
      const right = bar.value >= 1;
      out.push(`<text x="${px(reach + (right ? 4 : -4))}" y="${px(top + BAR_HEIGHT - 1)}" font-size="11" text-anchor="${right ? 'start' : 'end'}">${ratioText(bar.value)}</text>`);
    });
    out.push('</g>');
    y += h;
  });
  out.push('</svg>');
  return `${out.join('\n')}\n`;
}
