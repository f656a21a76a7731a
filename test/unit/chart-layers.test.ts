import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { parseReport, type BenchLayersReport, type WorkloadResult } from '../../scripts/bench-layers-report';
import { chartSvg } from '../../scripts/chart-layers-svg';

/** A workload whose median times give snapfs/fuse-overlayfs = `vsFuse` and snapfs/overlay = `vsOverlay`. */
function workload(name: string, vsFuse: number, vsOverlay: number): WorkloadResult {
  const snapfs = 80;
  const runs = (median: number): { medianMs: number; runsMs: number[] } => ({ medianMs: median, runsMs: [median * 0.9, median, median * 1.2] });
  return {
    name,
    mount: 'view',
    caches: 'warm',
    loaded: false,
    sides: { snapfs: runs(snapfs), 'fuse-overlayfs': runs(snapfs / vsFuse), overlay: runs(snapfs / vsOverlay) },
    ratios: { snapfsToFuseOverlayfs: vsFuse, snapfsToOverlay: vsOverlay },
  };
}

const NAME_WITH_MARKUP = 'stat <all> & "more", warm';
const report: BenchLayersReport = {
  settings: { scale: 0.5, runs: 3, date: '2025-01-02T03:04:05.000Z', kernel: '6.1.0-<test>', cpus: 2 },
  workloads: [workload(NAME_WITH_MARKUP, 2, 8), workload('read 100 small files, warm', 0.5, 4), workload('untar 100 small files', 1, 0.25)],
};
const svg = chartSvg(parseReport(JSON.stringify(report), 'report.json'));

/**
 * Fails unless `xml` is one element whose tags nest and close, with
 * attributes quoted and every & an entity: what an XML parser would need.
 */
function assertWellFormed(xml: string): void {
  const tag = /<(\/?)([A-Za-z][\w:.-]*)((?:\s+[\w:.-]+="[^"<]*")*)\s*(\/?)>/y;
  const bareAmpersand = /&(?!(?:amp|lt|gt|quot|apos|#\d+|#x[0-9a-fA-F]+);)/;
  const open: string[] = [];
  let roots = 0;
  let at = 0;
  for (;;) {
    const lt = xml.indexOf('<', at);
    const text = xml.slice(at, lt === -1 ? undefined : lt);
    assert.doesNotMatch(text, bareAmpersand, `a bare & in text at ${at}`);
    if (open.length === 0) assert.match(text, /^\s*$/, `text outside the root element at ${at}`);
    if (lt === -1) break;
    tag.lastIndex = lt;
    const m = tag.exec(xml);
    assert.ok(m !== null, `not a tag at ${lt}: ${xml.slice(lt, lt + 60)}`);
    const [, closing, name, attributes, selfClosing] = m;
    assert.doesNotMatch(attributes!, bareAmpersand, `a bare & in the attributes of <${name}>`);
    if (closing === '/') assert.equal(open.pop(), name, `</${name}> closes another element`);
    else if (selfClosing !== '/') {
      if (open.length === 0) roots++;
      open.push(name!);
    }
    at = tag.lastIndex;
  }
  assert.deepEqual(open, [], 'elements left open');
  assert.equal(roots, 1, 'one root element');
}

const rows = (xml: string): string[] => [...xml.matchAll(/<g class="workload">([\s\S]*?)<\/g>/g)].map((m) => m[1]!);

/** The x and width of the bar of class `bar vs-SIDE` in `row`. */
function bar(row: string, side: 'fuse-overlayfs' | 'overlay'): { x: number; width: number } {
  const rect = new RegExp(`<rect class="bar vs-${side}" x="([-\\d.]+)" y="[-\\d.]+" width="([\\d.]+)"`).exec(row);
  assert.ok(rect !== null, `no ${side} bar in ${row}`);
  return { x: Number(rect[1]), width: Number(rect[2]) };
}

/** Equal within the 0.1 px the chart rounds to, twice. */
const near = (actual: number, expected: number, what: string): void => assert.ok(Math.abs(actual - expected) <= 0.25, `${what}: ${actual}, expected ${expected}`);

describe('scripts/chart-layers', () => {
  test('the chart is well-formed XML: an svg element with a size, a viewBox and a white background', () => {
    assertWellFormed(svg);
    assert.match(svg, /^<svg xmlns="http:\/\/www\.w3\.org\/2000\/svg" width="900" height="\d+" viewBox="0 0 900 \d+"/);
    assert.match(svg, /<rect width="900" height="\d+" fill="#ffffff"\/>/);
  });

  test('one row per workload, in the report’s order, names and settings escaped', () => {
    const found = rows(svg);
    assert.equal(found.length, report.workloads.length);
    assert.match(found[0]!, />stat &lt;all&gt; &amp; &quot;more&quot;, warm<\/text>/);
    assert.match(found[1]!, />read 100 small files, warm<\/text>/);
    assert.match(found[2]!, />untar 100 small files<\/text>/);
    assert.ok(!svg.includes('<all>') && !svg.includes('<test>'), 'markup from the report left unescaped');
    assert.match(svg, /Linux 6\.1\.0-&lt;test&gt;/);
  });

  test('a bar’s length is proportional to its ratio on the log scale, from the 1× line, left when snapfs is faster', () => {
    const [first, second, third] = rows(svg) as [string, string, string];
    const twice = bar(first, 'fuse-overlayfs');
    const one = twice.x; // 2× starts at 1×
    assert.ok(twice.width > 20, `the 2× bar is drawn: ${twice.width}`);
    near(bar(first, 'overlay').width, 3 * twice.width, '8× is three doublings');
    near(bar(first, 'overlay').x, one, '8× starts at 1×');
    near(bar(second, 'fuse-overlayfs').width, twice.width, '0.5× as long as 2×');
    near(bar(second, 'fuse-overlayfs').x + bar(second, 'fuse-overlayfs').width, one, '0.5× ends at 1×');
    near(bar(second, 'overlay').width, 2 * twice.width, '4× is two doublings');
    near(bar(third, 'fuse-overlayfs').width, 0, '1× has no length');
    near(bar(third, 'overlay').width, 2 * twice.width, '0.25× is two halvings');
    near(bar(third, 'overlay').x + bar(third, 'overlay').width, one, '0.25× ends at 1×');
  });

  test('each ratio is printed beside its bar, with whiskers for the spread of the rounds', () => {
    const [first] = rows(svg) as [string];
    assert.match(first, />2\.00×<\/text>/);
    assert.match(first, />8\.00×<\/text>/);
    assert.equal([...first.matchAll(/<path class="spread"/g)].length, 2);
  });

  test('a file of another shape is refused with its name and the field', () => {
    const { workloads: _, ...noWorkloads } = report;
    assert.throws(() => parseReport(JSON.stringify(noWorkloads), 'old.json'), { message: 'old.json: not a bench-layers report: workloads is missing or of the wrong type' });
    const noRatio = { ...report, workloads: [{ ...report.workloads[0]!, ratios: { snapfsToFuseOverlayfs: 2 } }] };
    assert.throws(() => parseReport(JSON.stringify(noRatio), 'r.json'), /r\.json: .*workloads\[0\]\.ratios\.snapfsToOverlay/);
    assert.throws(() => parseReport('{"settings":', 'cut.json'), /^Error: cut\.json: not JSON/);
  });
});
