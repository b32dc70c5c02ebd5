"""JavaScript probes of the report's layout, charts and counters (run in Chromium by
``tests/browser.py``): each returns plain data a test asserts on, and each is shown to
catch its fault on a deliberately faulty page (``test_report_browser``)."""

from __future__ import annotations

# How far the page is wider than the window (0 = no horizontal scrolling), and the
# widest elements sticking out, to say what overflows; measured as loaded, then with
# every text on demand open (details, the first flagged row's explanation).
OVERFLOW = """(() => {
  const measure = () => {
    const over = document.documentElement.scrollWidth - window.innerWidth;
    const culprits = over > 0 ? Array.from(document.body.querySelectorAll('*'))
      .filter(e => e.getBoundingClientRect().right > window.innerWidth + 1)
      .slice(0, 5).map(e => e.tagName + (e.id ? '#' + e.id : '')) : [];
    return {over: over, culprits: culprits};
  };
  const closed = measure();
  const details = Array.from(document.querySelectorAll('details')).filter(d => !d.open);
  details.forEach(d => { d.open = true; });
  const button = document.querySelector('#flagged tr.row:not([hidden]) button.expand');
  if (button) { button.click(); }
  const opened = measure();
  if (button) { button.click(); }
  details.forEach(d => { d.open = false; });
  return closed.over >= opened.over ? closed : opened;
})()"""

# Pairs of text labels of one chart whose boxes intersect (more than 1 px²), for the
# charts matching SELECTOR; details elements are opened first so every chart is laid out.
LABEL_OVERLAPS = """((selector) => {
  document.querySelectorAll('details').forEach(d => { d.open = true; });
  const found = [];
  document.querySelectorAll(selector).forEach(svg => {
    const boxes = Array.from(svg.querySelectorAll('text'))
      .filter(t => t.textContent.trim() && t.getBoundingClientRect().width > 0)
      .map(t => [t.textContent.trim(), t.getBoundingClientRect()]);
    for (let i = 0; i < boxes.length; i++) {
      for (let j = i + 1; j < boxes.length; j++) {
        const a = boxes[i][1], b = boxes[j][1];
        const w = Math.min(a.right, b.right) - Math.max(a.left, b.left);
        const h = Math.min(a.bottom, b.bottom) - Math.max(a.top, b.top);
        if (w > 0 && h > 0 && w * h > 1) { found.push([svg.id, boxes[i][0], boxes[j][0]]); }
      }
    }
  });
  document.querySelectorAll('details').forEach(d => { d.open = false; });
  return found;
})(%r)"""

# Per series of the trend chart: its drawn size and whether any of its markers is the
# topmost element at its centre or near its edges (a series drawn exactly under
# another, or hidden, is not).
SERIES_VISIBLE = """(() => {
  const out = {};
  document.querySelectorAll('#chart-trend g.series').forEach(g => {
    const name = g.dataset.series;
    const style = getComputedStyle(g);
    const box = g.getBoundingClientRect();
    let seen = false;
    g.querySelectorAll('.marker').forEach(m => {
      if (seen) { return; }
      m.scrollIntoView({block: 'center', inline: 'center'});
      const r = m.getBoundingClientRect();
      const cx = r.left + r.width / 2, cy = r.top + r.height / 2;
      const points = [[cx, cy], [r.left + 1, cy], [r.right - 1, cy], [cx, r.top + 1],
                      [cx, r.bottom - 1]];
      seen = points.some(([x, y]) => {
        const hit = document.elementFromPoint(x, y);
        return hit && hit.closest('g.series') === g;
      });
    });
    out[name] = {width: box.width, height: box.height, seen: seen,
                 shown: style.display !== 'none' && style.visibility !== 'hidden'
                   && parseFloat(style.opacity) > 0};
  });
  window.scrollTo(0, 0);
  return out;
})()"""

# The flagged table's counter with no filter, for each telco and for each flag: the
# total it states (the number in #f-total) and the rows the sample shows.
COUNTERS = """(() => {
  const number = s => parseInt(s.replace(/[^0-9]/g, ''), 10);
  const read = () => ({total: number(document.getElementById('f-total').textContent),
                       shown: number(document.getElementById('f-count').textContent
                                     .split(' shown')[0]),
                       text: document.getElementById('f-count').textContent});
  const set = (id, value) => { const el = document.getElementById(id); el.value = value;
                               el.dispatchEvent(new Event('input')); };
  const out = {all: read(), telco: {}, flag: {}};
  Array.from(document.getElementById('f-telco').options).filter(o => o.value)
    .forEach(o => { set('f-telco', o.value); out.telco[o.value] = read(); });
  set('f-telco', '');
  Array.from(document.getElementById('f-flag').options).filter(o => o.value)
    .forEach(o => { set('f-flag', o.value); out.flag[o.value] = read(); });
  document.getElementById('f-reset').click();
  out.visible_rows = Array.from(document.querySelectorAll('#flagged tr.row'))
    .filter(r => !r.hidden).length;
  return out;
})()"""


def label_overlaps(selector: str = "svg.chart") -> str:
    """The ``LABEL_OVERLAPS`` probe for the charts matching ``selector``."""
    return LABEL_OVERLAPS % selector
