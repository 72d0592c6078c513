"""One benchmark figure, appended as a JSON line to $BENCH_JSON when it is set (bench/run_all
collects them into one table); a no-op otherwise, so each bench script also runs on its own."""
import json
import os


def record(bench, case, metric, value, unit):
    path = os.environ.get("BENCH_JSON")
    if path:
        with open(path, "a") as out:
            out.write(json.dumps({"bench": bench, "case": case, "metric": metric, "value": value, "unit": unit}) + "\n")
