#!/usr/bin/env python3
"""Plot `plexgate bench datapath --json` output: whole inbound path vs raw AEAD
throughput per packet size for one transform (default AesGcm128).

    plexgate bench datapath --json > docs/plots/datapath.jsonl
    python3 docs/plots/datapath_plot.py docs/plots/datapath.jsonl docs/plots/datapath_aesgcm128.png
"""
import json
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

src, out = sys.argv[1], sys.argv[2]
transform = sys.argv[3] if len(sys.argv) > 3 else "AesGcm128"
rows = [json.loads(l) for l in open(src) if l.strip().startswith("{")]
rows = sorted((r for r in rows if r["transform"] == transform), key=lambda r: r["size"])
sizes = [r["size"] for r in rows]
x = range(len(sizes))
fig, ax = plt.subplots(figsize=(7, 4))
w = 0.38
ax.bar([i - w / 2 for i in x], [r["aead_gbps"] for r in rows], w, label="raw AEAD open (ring)")
ax.bar([i + w / 2 for i in x], [r["path_gbps"] for r in rows], w, label="whole inbound path")
for i, r in zip(x, rows):
    ax.annotate(f"{r['ratio']:.2f}", (i + w / 2, r["path_gbps"]), ha="center", va="bottom", fontsize=8)
ax.set_xticks(list(x))
ax.set_xticklabels([f"{s} B" for s in sizes])
ax.set_xlabel("inner packet size")
ax.set_ylabel("inner Gbit/s (one core)")
ax.set_title(f"plexgate bench datapath, {transform}: path vs AEAD (label: ratio)")
ax.legend()
fig.tight_layout()
fig.savefig(out, dpi=110)
