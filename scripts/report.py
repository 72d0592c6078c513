#!/usr/bin/env python3
"""adaspan report RUN_DIR [--tensorboard] [--tensorboard-dir DIR] [--follow]: a self-contained
RUN_DIR/report.html and PNG figures of a run, and optionally TensorBoard event files.

Reads RUN_DIR/metrics.jsonl (and the newest checkpoint named by RUN_DIR/latest, with h5py, for the
final spans) and draws: bits per byte (train and validation) over steps, tokens/s over steps, a
heatmap of the learned span of every head (layer x head), the span trajectories over training, and
per-rank memory and step time. RUN_DIR/report.json holds every plotted series, so what the figures
show can be checked against the metrics.

--tensorboard writes the same series as TensorBoard events (torch's SummaryWriter) to
RUN_DIR/tensorboard (or --tensorboard-dir DIR, which implies --tensorboard): scalars bpc/train,
bpc/valid, lr, tokens_per_s, peak_memory_mb/rank{r}, step_time_s/max and /min,
span/layer{l}/head{h}; a histogram `spans` of every head's span at each logged step; the heatmap
as the image `spans_heatmap` at the spans' step. Each report replaces the event files an earlier
report wrote there (named *.adaspan-report), so a step is never shown twice. --follow keeps
appending what metrics.jsonl gains (polled every 2 s) until the run's `done` record or
SIGINT/SIGTERM (exit 0), then writes report.html.
"""
import argparse
import base64
import html
import io
import json
import math
import os
import signal
import sys
import tempfile
import time

EVENTS_SUFFIX = ".adaspan-report"  # ends the names of the event files report writes (and replaces)
POLL_SECONDS = 2.0  # --follow: how often metrics.jsonl is read


def parse_records(lines):
    """The JSON objects of metrics.jsonl's lines; a line cut by a crash (or not an object) is skipped."""
    records = []
    for line in lines:
        line = line.strip()
        if line:
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(record, dict):
                records.append(record)
    return records


def has_steps(records):
    return any("step" in r for r in records)


def load_metrics(run_dir):
    path = os.path.join(run_dir, "metrics.jsonl")
    if not os.path.exists(path):
        sys.exit(f"adaspan report: error: no metrics.jsonl in '{run_dir}'")
    with open(path) as f:
        records = parse_records(f)
    if not has_steps(records):
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


def heatmap_figure(spans):
    """The learned span of every head, layer x head (report.html's heatmap, and TensorBoard's image)."""
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
    return fig


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
        figures.append(("spans_heatmap.png", "Learned span of each head (bytes)", heatmap_figure(spans)))

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


def write_report(run_dir, records):
    """report.html, its PNGs and report.json; returns the heatmap's spans and their step."""
    s = series(records)
    spans, spans_step = checkpoint_spans(run_dir)
    if spans is None and s["span_trajectories"]:
        spans, spans_step = s["span_trajectories"][-1][1], s["span_trajectories"][-1][0]
    figures = draw(run_dir, s, spans)
    write_html(run_dir, s, spans, spans_step, figures)
    report = dict(s, spans=spans, spans_step=spans_step, figures=[name for name, _ in figures])
    write_in_run_dir(run_dir, "report.json", json.dumps(report).encode())
    print(f"wrote {os.path.join(run_dir, 'report.html')} and {len(figures)} figures", flush=True)
    return spans, spans_step


def is_number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool)


class Events:
    """A run's TensorBoard event files, written with torch's SummaryWriter (tensorboard's protos
    and file format). Starting (or restarting) removes the event files an earlier report wrote in
    the directory: each report writes the whole series, so TensorBoard never shows a step twice."""

    def __init__(self, summary_writer, directory):
        self.summary_writer, self.directory = summary_writer, directory
        self.start()

    def start(self):
        if os.path.isdir(self.directory):
            for name in os.listdir(self.directory):
                path = os.path.join(self.directory, name)
                if name.startswith("events.out.tfevents.") and name.endswith(EVENTS_SUFFIX) and (
                        os.path.islink(path) or os.path.isfile(path)):
                    os.unlink(path)  # a link is removed, never followed
        self.writer = self.summary_writer(log_dir=self.directory, filename_suffix=EVENTS_SUFFIX)
        self.records, self.last_step = 0, None

    def restart(self):
        self.writer.close()
        self.start()

    def add(self, r):
        """A training or validation record as scalars (and the spans as a histogram); others are skipped."""
        step = r.get("step")
        if not isinstance(step, int) or isinstance(step, bool) or not is_number(r.get("bpc")):
            return
        w = self.writer
        if r.get("split") == "valid":
            w.add_scalar("bpc/valid", r["bpc"], step)
        elif "split" in r:
            return
        else:
            w.add_scalar("bpc/train", r["bpc"], step)
            for key, tag in (("lr", "lr"), ("tokens_per_s", "tokens_per_s"), ("step_time_max_s", "step_time_s/max"),
                             ("step_time_min_s", "step_time_s/min")):
                if is_number(r.get(key)):
                    w.add_scalar(tag, r[key], step)
            for rank, mb in enumerate(r.get("peak_memory_mb") or []):
                if is_number(mb):
                    w.add_scalar(f"peak_memory_mb/rank{rank}", mb, step)
            self.add_spans(r.get("spans"), step)
        self.records += 1
        self.last_step = step

    def add_spans(self, spans, step):
        if not isinstance(spans, list):
            return
        values = []
        for layer, row in enumerate(spans):
            for head, z in enumerate(row if isinstance(row, list) else []):
                if is_number(z):
                    self.writer.add_scalar(f"span/layer{layer}/head{head}", z, step)
                    if math.isfinite(z):
                        values.append(float(z))
        if values:
            import numpy

            self.writer.add_histogram("spans", numpy.asarray(values), step)

    def heatmap(self, spans, step):
        if spans and isinstance(step, int):
            self.writer.add_figure("spans_heatmap", heatmap_figure(spans), step)

    def flush(self):
        self.writer.flush()

    def close(self):
        self.writer.close()


class MetricsTail:
    """The complete lines metrics.jsonl gained since the last read. `replaced` when the file was
    rewritten: a run (re)starting writes a new file (a resume keeps the records through its
    checkpoint), --fresh moves it aside; the reader then starts over from its first line."""

    def __init__(self, path):
        self.path, self.inode, self.offset, self.last_line = path, None, 0, b""

    def read(self):
        try:
            f = open(self.path, "rb")
        except FileNotFoundError:
            return [], False
        with f:
            st = os.fstat(f.fileno())
            replaced = self.inode is not None and (st.st_ino != self.inode or st.st_size < self.offset
                                                   or not self.unchanged(f))
            if replaced:
                self.offset, self.last_line = 0, b""
            self.inode = st.st_ino
            f.seek(self.offset)
            data = f.read()
        data = data[:data.rfind(b"\n") + 1]  # a line still being written waits for the next read
        if data:
            self.offset += len(data)
            self.last_line = data[data.rfind(b"\n", 0, len(data) - 1) + 1:]
        return data.decode(errors="replace").splitlines(), replaced

    def unchanged(self, f):
        f.seek(self.offset - len(self.last_line))
        return f.read(len(self.last_line)) == self.last_line


def follow(run_dir, events):
    """Adds what metrics.jsonl gains to `events` until its last record is the run's `done` or a
    SIGINT/SIGTERM arrives; returns the records read."""
    stop = []
    handlers = {sig: signal.signal(sig, lambda signum, frame: stop.append(signum))
                for sig in (signal.SIGINT, signal.SIGTERM)}
    path = os.path.join(run_dir, "metrics.jsonl")
    tail, records, said_waiting = MetricsTail(path), [], False
    while True:
        lines, replaced = tail.read()
        if replaced:
            print(f"adaspan report: '{path}' was rewritten (the run restarted): rewriting the events",
                  file=sys.stderr, flush=True)
            records = []
            events.restart()
        new, written = parse_records(lines), events.records
        for r in new:
            events.add(r)
        records += new
        if events.records > written:
            events.flush()
            print(f"adaspan report: events through step {events.last_step} in {events.directory}", flush=True)
        if (records and records[-1].get("event") == "done") or stop:
            break
        if not has_steps(records) and not said_waiting:
            print(f"adaspan report: waiting for records in '{path}'", file=sys.stderr, flush=True)
            said_waiting = True
        deadline = time.monotonic() + POLL_SECONDS
        while not stop and time.monotonic() < deadline:
            time.sleep(0.1)
    for sig, handler in handlers.items():
        signal.signal(sig, handler)
    return records


def summary_writer():
    """torch's SummaryWriter, or one error line when python3 cannot write TensorBoard events."""
    try:
        import tensorboard  # noqa: F401  (torch.utils.tensorboard writes with its protos)
    except ImportError:
        sys.exit("adaspan report: error: python3 lacks tensorboard (scripts/setup.sh installs it)")
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError as e:
        sys.exit(f"adaspan report: error: python3 cannot import torch.utils.tensorboard ({e}); "
                 "scripts/setup.sh installs torch and tensorboard")
    return SummaryWriter


def parse_args(argv):
    parser = argparse.ArgumentParser(prog="adaspan report", description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dir", metavar="RUN_DIR", help="the run's directory")
    parser.add_argument("--tensorboard", action="store_true",
                        help="also write TensorBoard event files (to RUN_DIR/tensorboard)")
    parser.add_argument("--tensorboard-dir", metavar="DIR", help="where the event files go (implies --tensorboard)")
    parser.add_argument("--follow", action="store_true",
                        help="with --tensorboard: keep appending while the run trains, until its done record")
    args = parser.parse_args(argv)
    args.tensorboard = args.tensorboard or bool(args.tensorboard_dir)
    if args.follow and not args.tensorboard:
        parser.error("--follow needs --tensorboard")
    if args.tensorboard and not args.tensorboard_dir:
        args.tensorboard_dir = os.path.join(args.run_dir, "tensorboard")
        if os.path.islink(args.tensorboard_dir) or (os.path.exists(args.tensorboard_dir)
                                                    and not os.path.isdir(args.tensorboard_dir)):
            sys.exit(f"adaspan report: error: '{args.tensorboard_dir}' is not a directory (a link is not "
                     "followed); name one with --tensorboard-dir")
    return args


plt = None  # matplotlib.pyplot, imported by main once the run dir is known to be readable


def main(argv):
    global plt
    args = parse_args(argv)
    run_dir = args.run_dir
    if args.follow:
        if not os.path.isdir(run_dir):
            sys.exit(f"adaspan report: error: no run directory '{run_dir}'")
        records = None
    else:
        records = load_metrics(run_dir)  # before matplotlib: a bad run dir is one line, whatever is installed
    try:
        import matplotlib
    except ImportError:
        sys.exit("adaspan report: error: python3 lacks matplotlib (scripts/setup.sh installs it)")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    if not args.tensorboard:
        write_report(run_dir, records)
        return 0
    events = Events(summary_writer(), args.tensorboard_dir)
    if args.follow:
        records = follow(run_dir, events)
        if not has_steps(records):
            events.close()
            print("adaspan report: stopped before the run logged a step: no report written", file=sys.stderr)
            return 0
    else:
        for r in records:
            events.add(r)
    spans, spans_step = write_report(run_dir, records)
    events.heatmap(spans, spans_step)
    events.close()
    print(f"wrote TensorBoard events of {events.records} records to {events.directory} "
          f"(tensorboard --logdir {events.directory})")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
