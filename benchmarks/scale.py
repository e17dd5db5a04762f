"""How the build engine's own cost grows with the number of rows, and the read side on a corpus-sized build.

    .venv/bin/python benchmarks/scale.py [--work DIR] [--rows 1000,10000,100000] [--real 32,128,512]
                                         [--read 2000,5000,100000] [--loaded-rows 1000,4000] [--quick]

Every figure comes from ``hm build`` / ``hm stats`` / ``hm verify`` / ``hm select`` run as a user types them, each
in a process of its own (wall seconds, and the peak resident memory of that process alone, sampled every 50 ms;
for a Ray build that is the driver, whose workers are other processes). Corpora are made on the spot
(benchmarks/scale_corpora.py):

1. **Engine alone**: N cheap rows (half missing media rejected at plan time, a quarter too small for the first
   select step, a quarter not videos, rejected at probe), on both executors: plan seconds (from the manifest),
   wall, driver peak RSS, files in ``--out``, the wall of a rerun of the finished build, and the cost of a row
   as the slope between sizes. The same at a few thousand rows with two CPU-bound processes running beside it.
2. **Real builds** of 32, 128 and 512 clips (hard links of the dev videos, one 16-frame window each) on both
   executors: seconds per window against the 32-clip run, and driver peak RSS.
3. **Read side** on synthetic finished builds of N samples in the real format (small members): ``hm stats``,
   ``hm select`` and ``hm verify`` wall and peak RSS; verify's seconds per shard at both sizes.
4. **A partial download**: a CelebV-HQ metadata file of 35,666 clips of which a few hundred have their video (one
   window each), against the same clips in a metadata file that lists only them, on Ray: the missing rows are
   rejected at plan time, so the two should take about the same time, with no empty tar.
5. **Object store**: a build into an S3-compatible server started here (moto, reached through s3fs as S3 is),
   counting its requests: per shard and per row for the build, and in all for a rerun of the finished build.

The aims of the issue are printed, met or not, and the last line is one JSON object with every figure.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter

import psutil

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

from scale_corpora import (DEV, REPO, cheap_corpus, count_files, one_sample, partial_celebvhq, present_only,
                           real_corpus, synthetic_build)

ENV = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
ENV.update(HF_HUB_OFFLINE="1", GLOG_minloglevel="2", PYTHONPATH=str(REPO))
EXECUTORS = {"in-process": ["--ray-address", "local"], "ray": ["--set", "ray.num_cpus=2"]}


def measured(cmd: list[str], env: dict | None = None) -> dict:
    """Run ``cmd``; its wall seconds and the peak RSS (MB) of its own process."""
    proc = subprocess.Popen(cmd, env=env or ENV, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    peak, ps = 0, psutil.Process(proc.pid)
    start = time.perf_counter()
    out: dict = {}
    reader = threading.Thread(target=lambda: out.update(zip(("stdout", "stderr"), proc.communicate())))
    reader.start()
    while proc.poll() is None:
        try:
            peak = max(peak, ps.memory_info().rss)
        except psutil.Error:
            break
        time.sleep(0.05)
    reader.join()
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd[:6])} ... failed ({proc.returncode}): {out.get('stderr', '')[-2000:]}")
    return {"wall_s": round(wall, 2), "rss_mb": round(peak / 2**20), "stdout": out.get("stdout", "")}


def hm(*args: str) -> list[str]:
    return [sys.executable, "-m", "human_motion.cli", *args]


def build_cmd(sources: str, out: pathlib.Path | str, executor: str, *sets: str) -> list[str]:
    cmd = hm("build", "--sources", sources, "--out", str(out), "--set", "progress=off", *EXECUTORS[executor])
    for s in sets:
        cmd += ["--set", s]
    return cmd


def last_run(out: pathlib.Path) -> dict:
    manifest = json.loads((out / "manifest.json").read_text())
    return {**manifest["runs"][-1], "summary": manifest["summary"]}


def burners(n: int) -> list[subprocess.Popen]:
    """``n`` CPU-bound processes (a shared node's other work)."""
    return [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(n)]


def engine_alone(work: pathlib.Path, sizes: list[int], loaded: list[int]) -> dict:
    """Part 1: cheap rows on both executors, idle and beside two CPU-bound processes."""
    rows, out = [], {}
    for load, ns in ((0, sizes), (2, loaded)):
        for n in ns:
            sources, expected = cheap_corpus(work / "cheap", n)
            for executor in EXECUTORS:
                target = work / f"cheap_out_{executor}_{n}_{load}"
                hot = burners(load)
                try:
                    first = measured(build_cmd(sources, target, executor))
                    again = measured(build_cmd(sources, target, executor))
                finally:
                    for p in hot:
                        p.kill()
                run = last_run(target)
                first_run = json.loads((target / "manifest.json").read_text())["runs"][0]
                got = run["summary"]["rejects_by_reason"]
                assert all(got.get(k) == v for k, v in expected.items()), (got, expected)
                worker_rows = n - expected["missing_file"]
                row = {"rows": n, "executor": executor, "load": load, "wall_s": first["wall_s"],
                       "plan_s": first_run["plan_seconds"],
                       "rss_mb": first["rss_mb"], "files": count_files(target), "worker_rows": worker_rows,
                       "shards": run["summary"]["shards"], "rerun_s": again["wall_s"], "rerun_rss_mb": again["rss_mb"],
                       "row_ms": first_run.get("row_ms")}
                rows.append(row)
                print(f"[scale] engine {executor:10s} load {load} rows {n:>7,}: {row['wall_s']:7.1f} s "
                      f"(plan {row['plan_s']:.1f} s), {row['row_ms']} ms a row once rows came back, driver "
                      f"{row['rss_mb']} MB, {row['files']} files, rerun {row['rerun_s']:.1f} s", flush=True)
                subprocess.run(["rm", "-rf", str(target)], check=True)
    for load in (0, 2):
        for executor in EXECUTORS:
            mine = sorted((r for r in rows if r["executor"] == executor and r["load"] == load), key=lambda r: r["rows"])
            if len(mine) >= 2:
                a, b = mine[0], mine[-1]
                out[f"{executor}_load{load}_ms_per_row"] = round(1000 * (b["wall_s"] - a["wall_s"])
                                                                 / (b["worker_rows"] - a["worker_rows"]), 3)
                out[f"{executor}_load{load}_ms_per_listed_row"] = round(1000 * (b["wall_s"] - a["wall_s"])
                                                                        / (b["rows"] - a["rows"]), 3)
    return {"runs": rows, **out}


def real_builds(work: pathlib.Path, sizes: list[int]) -> dict:
    """Part 2: real clips, one window each, on both executors."""
    if not DEV.is_dir():
        print(f"[scale] real builds skipped: no {DEV}", flush=True)
        return {"runs": []}
    rows = []
    for n in sizes:
        clips = real_corpus(work / "real", n)
        for executor in EXECUTORS:
            target = work / f"real_out_{executor}_{n}"
            res = measured(build_cmd(f"folder={clips}", target, executor, "decode.max_windows_per_clip=1"))
            run = last_run(target)
            windows = run["summary"]["samples"] + sum(v for k, v in run["summary"]["rejects_by_stage"].items()
                                                       if k not in ("probe", "select"))
            tars = sum(p.stat().st_size for p in target.glob("*.tar"))
            row = {"clips": n, "executor": executor, "wall_s": res["wall_s"], "plan_s": run["plan_seconds"],
                   "windows": windows, "s_per_window": round((run["seconds"] - run["plan_seconds"]) / windows, 4),
                   "rss_mb": res["rss_mb"], "bytes_per_sample": round(tars / max(1, run["summary"]["samples"]))}
            rows.append(row)
            print(f"[scale] real {executor:10s} clips {n:>4}: {row['wall_s']:6.1f} s, {row['s_per_window']:.3f} "
                  f"s/window, driver {row['rss_mb']} MB, {row['bytes_per_sample'] / 1e3:.0f} kB a sample", flush=True)
            subprocess.run(["rm", "-rf", str(target)], check=True)
    return {"runs": rows}


def read_side(work: pathlib.Path, sizes: list[int], verify_max: int, per_shard: int = 500) -> dict:
    """Part 3: hm stats / select / verify on synthetic finished builds (verify decoding every member up to
    ``verify_max`` samples, about 10 ms a sample on 2 cores; without decoding at every size)."""
    template = one_sample(work)
    rows = []
    for n in sizes:
        folder = work / f"read_{n}"
        synthetic_build(folder, n, per_shard, template)
        shards = -(-n // per_shard)
        row = {"samples": n, "shards": shards}
        for name, cmd in (("stats", hm("stats", str(folder), "--json")),
                          ("select", hm("select", str(folder), "--out", str(work / f"keep_{n}.txt"))),
                          ("verify_nodecode", hm("verify", str(folder), "--workers", "2", "--no-decode")),
                          ("verify", hm("verify", str(folder), "--workers", "2") if n <= verify_max else None)):
            if cmd is None:
                continue
            res = measured(cmd)
            row.update({f"{name}_s": res["wall_s"], f"{name}_rss_mb": res["rss_mb"],
                        f"{name}_s_per_shard": round(res["wall_s"] / shards, 3)})
        rows.append(row)
        print(f"[scale] read {n:>7,} samples ({shards} shards): " + ", ".join(
            f"{k} {row[f'{k}_s']:.1f} s / {row[f'{k}_rss_mb']} MB" for k in ("stats", "select", "verify_nodecode",
                                                                            "verify") if f"{k}_s" in row), flush=True)
        subprocess.run(["rm", "-rf", str(folder)], check=True)
    return {"runs": rows}


def partial_download(work: pathlib.Path, listed: int, present: int) -> dict:
    """Part 4: a partial CelebV-HQ download against the present clips alone, on Ray."""
    if not DEV.is_dir() or not present:
        return {}
    full = partial_celebvhq(work / "partial", listed, present)
    alone = present_only(work / "present", full)
    result = {"listed": listed, "present": present}
    for name, root in (("alone", alone), ("partial", full)):
        target = work / f"partial_out_{name}"
        res = measured(build_cmd(f"celebv-hq={root}", target, "ray", "decode.max_windows_per_clip=1"))
        run = last_run(target)
        tars = list(target.glob("*.tar"))
        result[name] = {"wall_s": res["wall_s"], "rss_mb": res["rss_mb"], "plan_s": run["plan_seconds"],
                        "samples": run["summary"]["samples"], "tars": len(tars),
                        "empty_tars": sum(1 for t in tars if t.stat().st_size <= 1024),
                        "source_rejects": run["summary"].get("clips_rejected_by_sources", 0),
                        "files": count_files(target)}
        subprocess.run(["rm", "-rf", str(target)], check=True)
    result["ratio"] = round(result["partial"]["wall_s"] / result["alone"]["wall_s"], 3)
    print(f"[scale] partial download: {listed:,} listed, {present} present: {result['partial']['wall_s']:.1f} s "
          f"against {result['alone']['wall_s']:.1f} s for the present clips alone (x{result['ratio']:.2f}); "
          f"{result['partial']['source_rejects']:,} rejected at plan time, {result['partial']['tars']} tars, "
          f"{result['partial']['empty_tars']} empty, {result['partial']['files']} files", flush=True)
    return result


def object_store(work: pathlib.Path, n: int) -> dict:
    """Part 4: storage requests of a build into moto's S3 server, and of a rerun of the finished build."""
    try:
        from moto.server import DomainDispatcherApplication, create_backend_app
        from werkzeug.serving import make_server
    except ImportError:
        print("[scale] object store skipped: moto[server] is not installed (pip install -e '.[dev]')", flush=True)
        return {}
    import logging

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    app, counts = DomainDispatcherApplication(create_backend_app), Counter()

    def counting(environ, start_response):
        counts[environ["REQUEST_METHOD"]] += 1
        return app(environ, start_response)

    server = make_server("127.0.0.1", 0, counting, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    env = dict(ENV, AWS_ACCESS_KEY_ID="x", AWS_SECRET_ACCESS_KEY="x", AWS_DEFAULT_REGION="us-east-1",
               FSSPEC_S3_ENDPOINT_URL=f"http://127.0.0.1:{server.server_port}")
    import fsspec

    fs = fsspec.filesystem("s3", endpoint_url=env["FSSPEC_S3_ENDPOINT_URL"], key="x", secret="x")
    fs.mkdir("scale")
    sources, expected = cheap_corpus(work / "s3_cheap", n)
    result = {}
    try:
        for name in ("build", "rerun"):
            counts.clear()
            res = measured(build_cmd(sources, "s3://scale/out", "in-process", "sink.clips_per_shard=128"), env)
            result[name] = {"requests": sum(counts.values()), "by_method": dict(counts), "wall_s": res["wall_s"]}
        manifest = json.loads(fs.cat("scale/out/manifest.json"))
        shards, worker_rows = manifest["summary"]["shards"], n - expected["missing_file"]
        result.update(rows=n, shards=shards, requests_per_shard=round(result["build"]["requests"] / shards, 1),
                      requests_per_row=round(result["build"]["requests"] / worker_rows, 3))
        print(f"[scale] object store, {n} rows ({shards} shards): build {result['build']['requests']} requests "
              f"({result['requests_per_shard']} a shard, {result['requests_per_row']} a row), rerun "
              f"{result['rerun']['requests']} requests", flush=True)
    finally:
        server.shutdown()
    return result


def aims(engine: dict, real: dict, read: dict, partial: dict) -> list[tuple[str, bool | None, str]]:
    """(aim, met — None when not measured, the figures) for each aim of the issue."""
    out = []
    big = [r for r in engine["runs"] if r["load"] == 0 and r["rows"] == max(x["rows"] for x in engine["runs"])]
    if big:
        ray = next((r for r in big if r["executor"] == "ray"), big[0])
        plan_106k = ray["plan_s"] * 106_292 / ray["rows"]
        out.append(("106k rows planned in <= 60 s, driver under 1 GB", plan_106k <= 60 and ray["rss_mb"] < 1024,
                    f"{ray['rows']:,} rows: plan {ray['plan_s']:.1f} s (x{106_292 / ray['rows']:.2f}: "
                    f"{plan_106k:.1f} s); driver {ray['rss_mb']} MB on Ray"))
        worst = max(r["rerun_s"] for r in big)
        out.append(("rerun of a finished build of that size <= 10 s", worst <= 10,
                    ", ".join(f"{r['executor']} {r['rerun_s']:.1f} s" for r in big)))
    for load in (0, 2):
        # A row's cost once rows come back (the build's own measure, manifest runs[].row_ms: Ray's and the models'
        # start-up left out, which on a loaded machine varies by tens of seconds), at the largest size measured.
        largest = {e: max((r for r in engine["runs"] if r["executor"] == e and r["load"] == load and r.get("row_ms")),
                          key=lambda r: r["rows"], default=None) for e in EXECUTORS}
        # row_ms is per row of the whole clip list the workers got; rows rejected at plan time never count. Figures
        # from before row_ms have only the slope of wall time between sizes, which start-up noise can swamp.
        per = {e: r["row_ms"] if r else engine.get(f"{e}_load{load}_ms_per_row") for e, r in largest.items()}
        if any(v is None for v in per.values()):
            continue
        where = "idle" if not load else "two CPU-bound processes beside"
        if min(per.values()) <= 0:
            out.append((f"Ray <= ~2x in-process per cheap row ({where})", None,
                        "not measured: the slope between sizes is " + ", ".join(f"{e} {v:.2f} ms" for e, v in
                                                                                per.items())
                        + " (start-up time varied more than the rows cost); rerun --only engine --update for row_ms"))
            continue
        if load == 0:
            out.append(("a rejected row <= 5 ms on either executor", max(per.values()) <= 5,
                        ", ".join(f"{e} {v:.2f} ms" for e, v in per.items())))
        ratio = per["ray"] / max(per["in-process"], 1e-6)
        out.append((f"Ray <= ~2x in-process per cheap row ({where})",
                    ratio <= 2.0, f"ray {per['ray']:.2f} ms, in-process {per['in-process']:.2f} ms: {ratio:.2f}x"))
    for executor in EXECUTORS:
        mine = sorted((r for r in real["runs"] if r["executor"] == executor), key=lambda r: r["clips"])
        if len(mine) >= 2:
            a, b = mine[0], mine[-1]
            spw, rss = b["s_per_window"] / a["s_per_window"], b["rss_mb"] / a["rss_mb"]
            out.append((f"{executor}: s/window at {b['clips']} clips within 10% of {a['clips']}, driver RSS flat",
                        spw <= 1.1 and 0.9 <= rss <= 1.1, f"s/window x{spw:.2f}, driver RSS x{rss:.2f}"))
    by = {(r["clips"], r["executor"]): r for r in real["runs"]}
    sizes = sorted({c for c, _ in by}, key=lambda c: abs(c - 256))
    if sizes and (sizes[0], "ray") in by:
        n = sizes[0]
        local, ray = by[(n, "in-process")]["wall_s"], by[(n, "ray")]["wall_s"]
        out.append((f"a real build of {n} clips on Ray at least as fast as in-process", ray <= local,
                    f"ray {ray:.1f} s, in-process {local:.1f} s"))
    if read["runs"]:
        big = read["runs"][-1]
        fast = max(big["stats_s"], big["select_s"]) <= 60
        out.append((f"hm stats / hm select on {big['samples']:,} samples <= 60 s, under 1 GB",
                    fast and max(big["stats_rss_mb"], big["select_rss_mb"]) < 1024,
                    f"stats {big['stats_s']:.1f} s / {big['stats_rss_mb']} MB, select {big['select_s']:.1f} s / "
                    f"{big['select_rss_mb']} MB"))
        for kind in ("verify_nodecode", "verify"):
            runs = [r for r in read["runs"] if f"{kind}_s" in r]
            if len(runs) < 2:
                continue
            a, b = runs[0], runs[-1]
            linear = b[f"{kind}_s_per_shard"] / max(a[f"{kind}_s_per_shard"], 1e-6)
            out.append((f"hm verify{' --no-decode' if kind != 'verify' else ''} linear in shards, under 1 GB",
                        linear <= 1.25 and b[f"{kind}_rss_mb"] < 1024,
                        f"{a[f'{kind}_s_per_shard']:.2f} s a shard at {a['shards']} shards, "
                        f"{b[f'{kind}_s_per_shard']:.2f} at {b['shards']} (x{linear:.2f}); {b[f'{kind}_rss_mb']} MB"))
    if partial:
        p = partial["partial"]
        out.append((f"{partial['listed']:,} listed / {partial['present']} present: time close to the present clips "
                    "alone, no empty tar", partial["ratio"] <= 1.15 and p["empty_tars"] == 0,
                    f"x{partial['ratio']:.2f} ({p['wall_s']:.1f} s against {partial['alone']['wall_s']:.1f} s), "
                    f"{p['tars']} tars, {p['empty_tars']} empty"))
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--work", help="work folder (default: a temporary one, removed at the end)")
    p.add_argument("--rows", default="1000,10000,100000", help="engine-alone sizes")
    p.add_argument("--loaded-rows", default="1000,4000", help="engine-alone sizes beside two CPU-bound processes")
    p.add_argument("--real", default="32,128,512", help="real build sizes (clips)")
    p.add_argument("--read", default="2000,5000,100000", help="read-side sizes (samples)")
    p.add_argument("--verify-max", type=int, default=5000, help="largest read-side size hm verify decodes")
    p.add_argument("--s3-rows", type=int, default=4000, help="rows of the object-store build")
    p.add_argument("--partial", default="35666:256", help="listed:present clips of the partial-download build")
    p.add_argument("--quick", action="store_true", help="tiny sizes, to check the benchmark runs")
    p.add_argument("--only", default="engine,real,read,partial,s3", help="the parts to run, comma-separated")
    p.add_argument("--json", help="also write the figures here (default: benchmarks/results/<date>-scale/)")
    p.add_argument("--update", action="store_true",
                   help="keep the figures of the parts not in --only from the --json file already there, and judge "
                        "the aims on all of them (rerun one part of a finished run)")
    args = p.parse_args(argv)
    if args.quick:
        args.rows, args.loaded_rows, args.real, args.read, args.s3_rows = "200,600", "200,400", "8,16", "500,1000", 300
        args.partial = "2000:8"
    sizes = {k: [int(x) for x in getattr(args, k).split(",") if x] for k in ("rows", "loaded_rows", "real", "read")}
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="hm_scale_") as tmp:
        work = pathlib.Path(args.work or tmp)
        work.mkdir(parents=True, exist_ok=True)
        only = set(args.only.split(","))
        engine = engine_alone(work, sizes["rows"], sizes["loaded_rows"]) if "engine" in only else {"runs": []}
        real = real_builds(work, sizes["real"]) if "real" in only else {"runs": []}
        read = read_side(work, sizes["read"], args.verify_max) if "read" in only else {"runs": []}
        listed, present = (int(x) for x in args.partial.split(":"))
        partial = partial_download(work, listed, present) if "partial" in only else {}
        s3 = object_store(work, args.s3_rows) if "s3" in only else {}
    target = pathlib.Path(args.json) if args.json else (
        REPO / "benchmarks" / "results" / f"{time.strftime('%Y-%m-%d')}-scale" / "scale.json")
    results = {"engine": engine, "real": real, "read": read, "partial": partial, "object_store": s3,
               "load_avg": os.getloadavg(), "minutes": round((time.perf_counter() - started) / 60, 1)}
    if args.update and target.exists():
        before = json.loads(target.read_text())
        parts = {"engine": "engine", "real": "real", "read": "read", "partial": "partial", "s3": "object_store"}
        kept = [key for part, key in parts.items() if part not in only and key in before]
        results.update({key: before[key] for key in kept})
        results["updated"] = {"parts": sorted(only), "kept": kept, "minutes_before": before.get("minutes"),
                              "load_avg_before": before.get("load_avg")}
        results["minutes"] = round(results["minutes"] + (before.get("minutes") or 0), 1)  # of every part measured
        engine, real, read, partial = (results[k] for k in ("engine", "real", "read", "partial"))
    met = aims(engine, real, read, partial)
    results["aims"] = [{"aim": a, "met": m, "measured": f} for a, m, f in met]
    print("\n| aim | met | measured |\n|---|---|---|")
    for aim, ok, figures in met:
        print(f"| {aim} | {'-' if ok is None else 'yes' if ok else 'NO'} | {figures} |")
    if not args.quick or args.json:
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(json.dumps(results, indent=1))
    print(json.dumps({"minutes": results["minutes"], "aims_met": sum(bool(m) for _, m, _ in met),
                      "aims": sum(m is not None for _, m, _ in met), **{k: v for k, v in engine.items() if k != "runs"},
                      "median_s_per_window": statistics.median([r["s_per_window"] for r in real["runs"]] or [0])}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
