#!/usr/bin/env python3
"""adaspan report RUN_DIR: a self-contained RUN_DIR/report.html and PNG figures of a run.

Reads RUN_DIR/metrics.jsonl (and the newest checkpoint named by RUN_DIR/latest, with h5py, for the
final spans) and draws: bits per byte (train and validation) over steps, tokens/s over steps, a
heatmap of the learned span of every head (layer x head), the span trajectories over training, and
per-rank memory and step time. RUN_DIR/report.json holds every plotted series, so what the figures
show can be checked against the metrics.
"""
import base64
import html
import io
import json
import os
import sys
import tempfile


def load_metrics(run_dir):
    path = os.path.join(run_dir, "metrics.jsonl")
    if not os.path.exists(path):
        sys.exit(f"adaspan report: error: no metrics.jsonl in '{run_dir}'")
    records = []
    with open(path) as f:
        for line in f:
            line = line.strip()
            if line:
                try:
                    records.append(json.loads(line))
                except json.JSONDecodeError:
                    pass  # a line cut by a crash
    if not any(isinstance(r, dict) and "step" in r for r in records):
        sys.exit(f"adaspan report: error: '{path}' holds no metrics records (did the run take a step?)")
    return records


def checkpoint_spans(run_dir):
    latest = os.path.join(run_dir, "latest")
    if not os.path.exists(latest):
        return None, None
    name = open(latest).read().strip()
    path = os.path.join(run_dir, name)
    inside = os.path.realpath(run_dir) + os.sep
    if not os.path.realpath(path).startswith(inside):  # `latest` is a file name in the run dir, nothing else
        print(f"adaspan report: warning: ignoring 'latest': it names '{name}', outside the run dir", file=sys.stderr)
        return None, None
    try:
        import h5py

        with h5py.File(path, "r") as f:
            return f["spans"][:].tolist(), int(f.attrs["step"])
    except Exception as e:  # a report without the checkpoint is still a report
        print(f"adaspan report: warning: cannot read spans from '{path}': {e}", file=sys.stderr)
        return None, None


def series(records):
    train = [r for r in records if "bpc" in r and "split" not in r]
    valid = [r for r in records if r.get("split") == "valid"]
    out = {
        "train_bpc": [[r["step"], r["bpc"]] for r in train],
        "valid_bpc": [[r["step"], r["bpc"]] for r in valid],
        "tokens_per_s": [[r["step"], r["tokens_per_s"]] for r in train if "tokens_per_s" in r],
        "span_trajectories": [[r["step"], r["spans"]] for r in train if "spans" in r],
        "peak_memory_mb": [[r["step"], r["peak_memory_mb"]] for r in train if "peak_memory_mb" in r],
        "step_time_s": [[r["step"], r.get("step_time_max_s"), r.get("step_time_min_s")] for r in train
                        if "step_time_max_s" in r],
        "events": [r for r in records if "event" in r and r["event"] != "done"],
    }
    done = [r for r in records if r.get("event") == "done"]
    out["final"] = done[-1] if done else None
    return out


def write_in_run_dir(run_dir, name, data):
    """Writes RUN_DIR/name whole or not at all, never through a link: a new temporary file
    (O_EXCL) renamed over the name, so a symlink planted there is replaced, not followed."""
    fd, tmp = tempfile.mkstemp(dir=run_dir, prefix=f".{name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, 0o644)
        os.replace(tmp, os.path.join(run_dir, name))
    except BaseException:
        os.unlink(tmp)
        raise


def save(fig, run_dir, name):
    fig.tight_layout()
    png = io.BytesIO()
    fig.savefig(png, format="png", dpi=100)
    plt.close(fig)
    write_in_run_dir(run_dir, name, png.getvalue())


def draw(run_dir, s, spans):
    figures = []

    fig, ax = plt.subplots(figsize=(7, 4))
    if s["train_bpc"]:
        ax.plot(*zip(*s["train_bpc"]), label="train")
    if s["valid_bpc"]:
        ax.plot(*zip(*s["valid_bpc"]), "o-", label="validation")
    ax.set_xlabel("step")
    ax.set_ylabel("bits per byte")
    ax.legend()
    ax.set_title("Bits per byte")
    figures.append(("bpc.png", "Bits per byte over training", fig))

    fig, ax = plt.subplots(figsize=(7, 3))
    if s["tokens_per_s"]:
        ax.plot(*zip(*s["tokens_per_s"]))
    ax.set_xlabel("step")
    ax.set_ylabel("tokens/s (all ranks)")
    ax.set_title("Throughput")
    figures.append(("throughput.png", "Training throughput", fig))

    if spans:
        fig, ax = plt.subplots(figsize=(max(4.0, 1.2 + 0.6 * len(spans[0])), max(3.0, 1.2 + 0.5 * len(spans))))
        image = ax.imshow(spans, cmap="viridis", aspect="auto")
        for layer, row in enumerate(spans):
            for head, z in enumerate(row):
                ax.text(head, layer, f"{z:.0f}", ha="center", va="center", color="white", fontsize=8)
        ax.set_xlabel("head")
        ax.set_ylabel("layer")
        ax.set_xticks(range(len(spans[0])))
        ax.set_yticks(range(len(spans)))
        fig.colorbar(image, ax=ax, label="span (bytes)")
        ax.set_title("Learned spans")
        figures.append(("spans_heatmap.png", "Learned span of each head (bytes)", fig))

    if s["span_trajectories"]:
        fig, ax = plt.subplots(figsize=(7, 4))
        steps = [t[0] for t in s["span_trajectories"]]
        layers = len(s["span_trajectories"][0][1])
        for layer in range(layers):
            for head in range(len(s["span_trajectories"][0][1][layer])):
                ax.plot(steps, [t[1][layer][head] for t in s["span_trajectories"]], label=f"L{layer} H{head}")
        ax.set_xlabel("step")
        ax.set_ylabel("span (bytes)")
        if layers * len(s["span_trajectories"][0][1][0]) <= 16:
            ax.legend(fontsize=7, ncol=2)
        ax.set_title("Span trajectories")
        figures.append(("span_trajectories.png", "Spans over training", fig))

    if s["peak_memory_mb"]:
        fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3))
        steps = [m[0] for m in s["peak_memory_mb"]]
        for rank in range(len(s["peak_memory_mb"][0][1])):
            left.plot(steps, [m[1][rank] for m in s["peak_memory_mb"]], label=f"rank {rank}")
        left.set_xlabel("step")
        left.set_ylabel("peak memory (MB)")
        left.legend(fontsize=7)
        if s["step_time_s"]:
            right.plot([t[0] for t in s["step_time_s"]], [t[1] for t in s["step_time_s"]], label="slowest rank")
            right.plot([t[0] for t in s["step_time_s"]], [t[2] for t in s["step_time_s"]], label="fastest rank")
            right.legend(fontsize=7)
        right.set_xlabel("step")
        right.set_ylabel("step time (s)")
        figures.append(("ranks.png", "Per-rank memory and step time", fig))

    written = []
    for name, caption, fig in figures:
        save(fig, run_dir, name)
        written.append((name, caption))
    return written


def esc(value, fmt=None):
    """A value from the run's files as HTML text: numbers formatted, everything escaped (the files
    are data, not markup)."""
    if fmt and isinstance(value, (int, float)) and not isinstance(value, bool):
        value = format(value, fmt)
    return html.escape(str(value), quote=True)


def write_html(run_dir, s, spans, spans_step, figures):
    parts = [f"<html><head><meta charset='utf-8'><title>adaspan run {esc(run_dir)}</title></head><body>",
             f"<h1>adaspan run: {esc(os.path.abspath(run_dir))}</h1>"]
    final = s["final"]
    if final:
        parts.append(f"<p>Finished at step {esc(final.get('step'))} on {esc(final.get('ranks', 1))} rank(s); "
                     f"param_norm {esc(final.get('param_norm'), '.6f')}.</p>")
    if s["train_bpc"]:
        parts.append(f"<p>Last training bpc {esc(s['train_bpc'][-1][1], '.4f')} (step {esc(s['train_bpc'][-1][0])})"
                     + (f"; last validation bpc {esc(s['valid_bpc'][-1][1], '.4f')}" if s["valid_bpc"] else "")
                     + ".</p>")
    if spans is not None:
        parts.append(f"<p>Spans from the checkpoint of step {esc(spans_step)}.</p>")
    for name, caption in figures:
        data = base64.b64encode(open(os.path.join(run_dir, name), "rb").read()).decode()
        parts.append(f"<h2>{esc(caption)}</h2><img alt='{esc(name)}' src='data:image/png;base64,{data}'>")
    if s["events"]:
        parts.append("<h2>Events</h2><ul>")
        for e in s["events"]:
            parts.append(f"<li>{esc(json.dumps(e))}</li>")
        parts.append("</ul>")
    parts.append("</body></html>")
    write_in_run_dir(run_dir, "report.html", "\n".join(parts).encode())


plt = None  # matplotlib.pyplot, imported by main once the run dir is known to be readable


def main():
    global plt
    if len(sys.argv) != 2 or sys.argv[1] in ("-h", "--help"):
        print(__doc__.strip())
        return 0 if len(sys.argv) == 2 else 2
    run_dir = sys.argv[1]
    records = load_metrics(run_dir)  # before matplotlib: a bad run dir is one line, whatever is installed
    try:
        import matplotlib
    except ImportError:
        sys.exit("adaspan report: error: python3 lacks matplotlib (scripts/setup.sh installs it)")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    s = series(records)
    spans, spans_step = checkpoint_spans(run_dir)
    if spans is None and s["span_trajectories"]:
        spans, spans_step = s["span_trajectories"][-1][1], s["span_trajectories"][-1][0]
    figures = draw(run_dir, s, spans)
    write_html(run_dir, s, spans, spans_step, figures)
    report = dict(s, spans=spans, spans_step=spans_step, figures=[name for name, _ in figures])
    write_in_run_dir(run_dir, "report.json", json.dumps(report).encode())
    print(f"wrote {os.path.join(run_dir, 'report.html')} and {len(figures)} figures")
    return 0


if __name__ == "__main__":
    sys.exit(main())
