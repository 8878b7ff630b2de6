"""The model card's HTML (a Jinja2 template, autoescaped): inline CSS, images as data URIs, no script,
no external resource, so the file renders the same offline. Filled by `app.card.context`."""

from __future__ import annotations

import jinja2

TEMPLATE = r"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Model card: {{ r.model_name }} v{{ r.version }}</title>
<style>
body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
h1{margin-bottom:.2em} h2{border-bottom:1px solid #ddd;padding-bottom:.2em;margin-top:1.6em}
table{border-collapse:collapse;margin:.5em 0} td,th{border:1px solid #ccc;padding:3px 8px;text-align:left}
td.n{text-align:right;font-variant-numeric:tabular-nums} .muted{color:#666} code{background:#f4f4f4;padding:0 3px}
figure{display:inline-block;margin:.5em 1em .5em 0;vertical-align:top} img{max-width:520px;border:1px solid #eee}
.verdict{font-weight:bold} .ok{color:#176117} .wait{color:#8a5a00} .no{color:#8a1111}
pre{background:#f7f7f7;padding:.6em;overflow-x:auto;font-size:.85em}
</style></head><body>
<h1>Model card: {{ r.model_name }} v{{ r.version }}</h1>
<p class="muted">MLflow run <code>{{ r.run_id }}</code> · card built {{ created }} UTC</p>

<h2>What it is for</h2>
<table>
<tr><th>task</th><td>image classification into {{ classes|length }} classes: {{ classes|join(", ") }}</td></tr>
<tr><th>backbone</th><td><code>{{ p.train.model }}</code> (pretrained: {{ p.train.pretrained }}), fine-tune strategy
 <code>{{ p.train.strategy }}</code>, {{ p.train.epochs }} epochs, input {{ p.augment.image_size }} px</td></tr>
<tr><th>data source</th><td><code>{{ p.data.source }}</code></td></tr>
<tr><th>data size</th><td>{{ q.counts.n_train }} train / {{ q.counts.n_val }} val / {{ q.counts.n_test }} test images
 ({{ q.counts.n_good }} of {{ q.counts.n_files }} files passed validation)</td></tr>
</table>

<h2>Headline metrics (test split)</h2>
<p class="muted">{{ "%.0f"|format(confidence * 100) }}% CIs: percentile bootstrap over the {{ metrics.test_n|int }}
test images ({{ n_boot }} resamples of the per-image predictions).</p>
<table id="headline"><tr><th>metric</th><th>value</th><th>{{ "%.0f"|format(confidence * 100) }}% CI</th></tr>
{% for h in headline %}{% set d = 2 if h.key.endswith(("_ms", "_mb")) else 4 %}
<tr><td>{{ h.label }}</td><td class="n" data-metric="{{ h.key }}" data-digits="{{ d }}">{{ ("%." ~ d ~ "f")|format(h.value) }}</td>
<td class="n">{% if h.low is not none %}[{{ "%.4f"|format(h.low) }}, {{ "%.4f"|format(h.high) }}]{% else %}<span class="muted">-</span>{% endif %}</td></tr>
{% endfor %}</table>
{% if calibration %}<p>Temperature {{ "%.3f"|format(calibration.temperature) }} fitted on {{ calibration.fitted_on or "nothing (off)" }},
served with the model.</p>{% endif %}

<h2>Per-class precision, recall, F1</h2>
<table id="per-class"><tr><th>class</th><th>precision</th><th>recall</th><th>F1</th><th>support</th></tr>
{% for c in per_class %}<tr><td>{{ c["class"] }}</td><td class="n">{{ "%.4f"|format(c.precision) }}</td>
<td class="n">{{ "%.4f"|format(c.recall) }}</td><td class="n">{{ "%.4f"|format(c.f1) }}</td><td class="n">{{ c.support }}</td></tr>
{% endfor %}</table>

<h2>Plots</h2>
{% for title, uri in images %}<figure><img src="{{ uri }}" alt="{{ title }}"><figcaption>{{ title }}</figcaption></figure>
{% endfor %}

<h2>Robustness</h2>
{% if robustness %}<table id="robustness"><tr><th>perturbation</th><th>severity</th><th>accuracy</th></tr>
{% for row in robustness %}<tr><td>{{ row.perturbation }}</td><td class="n">{{ row.severity }}</td>
<td class="n">{{ "%.4f"|format(row.accuracy) }}</td></tr>{% endfor %}</table>
{% else %}<p class="muted">robustness not measured (evaluate.robustness: false)</p>{% endif %}

<h2>Data quality</h2>
<table id="quality">{% for k, v in q.counts.items() %}<tr><th>{{ k }}</th><td class="n">{{ v }}</td></tr>{% endfor %}</table>
{% if q.reasons %}<p>Quarantined, by reason:</p><table id="quarantine"><tr><th>reason</th><th>files</th></tr>
{% for k, v in q.reasons.items() %}<tr><td>{{ k }}</td><td class="n">{{ v }}</td></tr>{% endfor %}</table>
{% else %}<p>No file was quarantined.</p>{% endif %}
{% if drift %}<h2>Drift against the champion's training data</h2>
<table id="drift">{% for k, v in drift.items() %}<tr><th>{{ k }}</th><td class="n">{{ v }}</td></tr>{% endfor %}</table>{% endif %}

{% if variants %}<h2>Compressed variants</h2>
<table id="variants"><tr><th>variant</th><th>accuracy</th><th>MB</th><th>p50 ms (b1)</th><th>p50 ms (b32)</th>
<th>images/s</th><th>gate</th><th>registered as</th></tr>
{% for v in variants %}<tr><td>{{ v.variant }}</td><td class="n">{{ "%.4f"|format(v.accuracy) }}</td>
<td class="n">{{ "%.2f"|format(v.size_mb) }}</td><td class="n">{{ "%.2f"|format(v.p50_ms) }}</td>
<td class="n">{{ "%.1f"|format(v.p50_b32_ms or 0) }}</td><td class="n">{{ "%.0f"|format(v.images_per_s or 0) }}</td>
<td>{{ v.gate }}{% if v.gate_reason %}: {{ v.gate_reason }}{% endif %}</td>
<td>{% if v.version %}v{{ v.version }}{% else %}-{% endif %}</td></tr>{% endfor %}</table>{% endif %}

<h2>Promotion gate</h2>
<p class="verdict {{ 'ok' if r.promoted else ('wait' if r.pending_approval else 'no') }}">
{% if r.promoted %}promoted{% elif r.pending_approval %}waiting for approval
{% else %}kept as challenger{% endif %}</p>
<table id="gate">
<tr><th>compared with</th><td>{% if r.champion_before %}champion v{{ r.champion_before }}{% else %}no champion{% endif %}</td></tr>
<tr><th>{{ r.metric }}</th><td class="n">{{ "%.4f"|format(r.value) }}{% if r.champion_value is not none %} vs {{ "%.4f"|format(r.champion_value) }}{% endif %}</td></tr>
{% if r.significance %}<tr><th>significance</th><td>{{ r.significance }}</td></tr>{% endif %}
{% if r.failures %}<tr><th>thresholds missed</th><td>{{ r.failures|join("; ") }}</td></tr>{% endif %}
<tr><th>reason</th><td>{{ r.reason }}</td></tr></table>
{% if gate_report %}<details><summary>Gate report</summary><pre>{{ gate_report }}</pre></details>{% endif %}

<h2>Lineage</h2>
<table id="lineage">
<tr><th>git commit</th><td><code>{{ l.git_commit }}</code>{% if l.git_dirty %} (uncommitted: {{ l.git_dirty|join(", ") }}){% endif %}</td></tr>
<tr><th>DVC experiment</th><td>{{ l.dvc_experiment or "-" }}</td></tr>
<tr><th>Prefect flow run</th><td>{% if l.prefect_flow_run_url %}<a href="{{ l.prefect_flow_run_url }}">{{ l.prefect_flow_run_name or l.prefect_flow_run_id }}</a>
{% else %}{{ l.prefect_flow_run_name or "-" }}{% endif %}</td></tr>
<tr><th>MLflow</th><td>experiment {{ r.experiment_id }}, run <code>{{ r.run_id }}</code>, store <code>{{ r.tracking_uri }}</code></td></tr>
</table>
<p>dvc.lock hashes of the stage outputs:</p>
<table id="dvc-hashes"><tr><th>stage</th><th>output</th><th>md5</th></tr>
{% for h in l.dvc_hashes %}<tr><td>{{ h.stage }}</td><td><code>{{ h.path }}</code></td><td><code>{{ h.md5 }}</code></td></tr>{% endfor %}</table>
<p class="muted">Rebuild: <code>vistune lineage {{ r.version }}</code> prints the commands.</p>
</body></html>
"""

_ENV = jinja2.Environment(autoescape=True, undefined=jinja2.ChainableUndefined, trim_blocks=True, lstrip_blocks=True)


def render(ctx: dict) -> str:
    """The card's HTML; `ctx` from `app.card.context` (short names: r, p, q, l)."""
    return _ENV.from_string(TEMPLATE).render(
        r=ctx["receipt"],
        p=ctx["params"],
        q=ctx["quality"],
        l=ctx["lineage"],
        **{k: v for k, v in ctx.items() if k not in ("quality", "lineage")},
    )
