"""The run report's inline CSS and script (the page fetches nothing: its Content-Security-Policy allows
only inline styles and scripts and data: images)."""

from __future__ import annotations

import re

from ..observe.dag import STATUS_COLOURS as DAG_COLOURS

CSP = "default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; img-src data:"

# The DAG's colours (observe/dag.py), so a status looks the same in the graph, the timeline and the tables.
STATUS_COLOURS = {**{status: stroke for status, (_fill, stroke) in DAG_COLOURS.items()},
                  "budget_exceeded": "#b0306b", "partial": "#e67e00", "running-interrupted": "#e67e00",
                  "unknown": "#8a8a8a"}


def css_status(status: str) -> str:
    """A status as a class name: `running/interrupted` -> `running-interrupted`."""
    return re.sub(r"[^a-z_-]+", "-", status.lower()).strip("-") or "unknown"


def _status_rules() -> str:
    rules = []
    for status, colour in STATUS_COLOURS.items():
        rules.append(f".status-{status}{{--c:{colour}}} .badge.status-{status}{{background:{colour}}}"
                     f" rect.bar.status-{status}{{stroke:{colour};fill:{colour}22}}")
    return "\n".join(rules)


STYLE = """
:root{--c:#888;--ink:#1d2330;--muted:#5f6b7a;--line:#e3e7ed;--bg:#f7f8fa}
*{box-sizing:border-box}
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;color:var(--ink);background:#fff}
main{max-width:1120px;margin:0 auto;padding:1.6rem 1.6rem 3rem}
h1{font-size:1.55rem;margin:0 0 .3rem;display:flex;align-items:center;gap:.7rem}
h2{font-size:1.1rem;margin:2rem 0 .6rem;padding-bottom:.3rem;border-bottom:1px solid var(--line)}
.badge{display:inline-block;color:#fff;background:var(--c);border-radius:999px;padding:.1rem .65rem;
 font-size:.8rem;font-weight:600;letter-spacing:.02em;text-transform:uppercase}
.meta{color:var(--muted);font-size:.88rem}
.cards{display:flex;flex-wrap:wrap;gap:.6rem;margin:1rem 0}
.card{border:1px solid var(--line);border-radius:8px;padding:.5rem .9rem;min-width:8.5rem;background:var(--bg)}
.card b{display:block;font-size:1.15rem}
.card span{color:var(--muted);font-size:.78rem;text-transform:uppercase;letter-spacing:.04em}
.box{border-radius:8px;padding:.7rem 1rem;margin:1rem 0}
.box.errors{background:#fdeeee;border:1px solid #f2c0c0}
.box.errors h2{border:0;margin:0 0 .4rem;color:#a12626}
.box.problems{background:#fff7e6;border:1px solid #f3d9a4}
.box.notices{background:#eef5fc;border:1px solid #c8dcf0}
.box ul{margin:.2rem 0;padding-left:1.2rem}
table{border-collapse:collapse;width:100%;margin:.4rem 0 1rem;font-size:.88rem}
th,td{border-bottom:1px solid var(--line);padding:.35rem .55rem;text-align:left;vertical-align:top}
th{color:var(--muted);font-weight:600;font-size:.78rem;text-transform:uppercase;letter-spacing:.03em}
td.num,th.num{text-align:right;font-variant-numeric:tabular-nums}
tr.total td{font-weight:700;border-top:2px solid var(--ink)}
.dot{display:inline-block;width:.7rem;height:.7rem;border-radius:50%;background:var(--c);margin-right:.35rem;
 vertical-align:-.05rem}
details.step{border:1px solid var(--line);border-radius:8px;margin:.45rem 0;background:#fff}
details.step>summary{cursor:pointer;padding:.5rem .8rem;display:flex;gap:.8rem;align-items:baseline;
 list-style-position:inside}
details.step>summary .id{font-weight:600;font-family:ui-monospace,Menlo,Consolas,monospace}
details.step>summary .meta{margin-left:auto}
details.step[open]>summary{border-bottom:1px solid var(--line);background:var(--bg)}
details.step .body{padding:.6rem .9rem}
details.step.status-failed{border-color:#f2c0c0}
.children{margin-left:1rem}
pre{white-space:pre-wrap;word-break:break-word;background:var(--bg);border:1px solid var(--line);border-radius:6px;
 padding:.5rem .7rem;margin:.3rem 0;font:12.5px/1.45 ui-monospace,Menlo,Consolas,monospace;max-height:28rem;
 overflow:auto}
.error{color:#a12626;font-weight:600}
.box.errors .error{font-weight:400}
.fold{color:var(--muted);font-size:.88rem}
.figure svg.dag{max-width:100%;height:auto}
.msg{margin:.35rem 0}.msg .role{font-size:.75rem;text-transform:uppercase;color:var(--muted);font-weight:700}
h3{font-size:.92rem;margin:.8rem 0 .3rem}
.figure{overflow-x:auto;border:1px solid var(--line);border-radius:8px;padding:.6rem;background:#fff}
svg text{font:12px system-ui,sans-serif;fill:var(--ink)}
svg.timeline{width:100%;height:auto;display:block}
svg.timeline .band{fill:transparent}
svg.timeline g.row:nth-of-type(even) .band{fill:#fafbfc}
svg.timeline g.row.has-children{cursor:pointer}
svg.timeline g.row.has-children:hover .band{fill:#eef3fb}
svg.timeline .tick{stroke:#e8ebf0}
svg.timeline .tick-label{fill:var(--muted);font-size:11px;text-anchor:middle}
svg.timeline .dur{fill:var(--muted);font-size:11px}
rect.bar,rect.bar-key{fill:#eaeef3;stroke:#b5bec9;stroke-width:1}
rect.seg-call{fill:#3b6fd8}
rect.seg-failed{fill:#d64545}
rect.seg-retry_wait,rect.key.seg-retry_wait{fill:url(#hatch-retry);stroke:#e08a1e;stroke-width:.8}
rect.seg-rate_wait{fill:url(#hatch-rate);stroke:#7a5cc7;stroke-width:.8}
.legend{display:flex;flex-wrap:wrap;gap:1rem;font-size:.82rem;color:var(--muted);margin:.2rem 0 .5rem}
.swatch{display:inline-flex;align-items:center;gap:.35rem}
del{background:#f8c8c8;text-decoration:line-through}ins{background:#c8f5c8;text-decoration:none}
.side{display:grid;grid-template-columns:1fr 1fr;gap:.6rem}
.delta-up{color:#a12626}.delta-down{color:#17692b}
@media print{main{max-width:none;padding:0}details.step{break-inside:avoid-page}pre{max-height:none}
 h2,h3,.legend{break-after:avoid}.figure,table{break-inside:avoid}
 .figure{overflow:visible;border:0}svg{max-width:100%;height:auto}}
""" + _status_rules()

# Timeline rows: clicking a step with children shows its direct children (or hides all its descendants)
# and moves the rows below. Folded DAG nodes: clicking a node shows its `g.children` group.
# Print: every <details> opens (the PDF is rendered with all open already).
SCRIPT = """
(function(){
function layout(svg){var h=+svg.dataset.rowHeight,y=+svg.dataset.top;
 svg.querySelectorAll('g.row').forEach(function(r){if(r.style.display!=='none'){
  r.setAttribute('transform','translate(0,'+y+')');y+=h;}});
 svg.setAttribute('height',y+8);var vb=svg.viewBox.baseVal;svg.setAttribute('viewBox','0 0 '+vb.width+' '+(y+8));}
function hide(svg,id){svg.querySelectorAll('g.row').forEach(function(r){
 if(r.dataset.parent===id){r.style.display='none';hide(svg,r.dataset.step);}});}
document.querySelectorAll('svg.timeline').forEach(function(svg){
 svg.addEventListener('click',function(e){var row=e.target.closest('g.row.has-children');if(!row)return;
  var id=row.dataset.step,kids=[].filter.call(svg.querySelectorAll('g.row'),function(r){return r.dataset.parent===id;});
  var open=kids.length&&kids[0].style.display!=='none';
  if(open){hide(svg,id);}else{kids.forEach(function(r){r.style.display='';});}
  var t=row.querySelector('text.label'),a=open?'\u25be':'\u25b8',b=open?'\u25b8':'\u25be';
  if(t)t.textContent=t.textContent.replace(a,b);
  layout(svg);});});
document.querySelectorAll('svg g.node').forEach(function(n){n.style.cursor='pointer';
 n.addEventListener('click',function(){var id=n.getAttribute('data-step');
  document.querySelectorAll('g.children').forEach(function(g){if(g.getAttribute('data-parent')===id){
   g.style.display=g.style.display==='none'?'':'none';}});
  var d=document.getElementById('step-'+id);if(d&&!d.open){d.open=true;}});});
window.addEventListener('beforeprint',function(){document.querySelectorAll('details').forEach(function(d){d.open=true;});});
})();
"""
