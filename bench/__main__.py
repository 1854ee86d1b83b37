"""`python -m bench`: run every benchmark and write docs/benchmarks.md.

Sizes default to the figures of issues 6 and 11; `--quick` uses small ones (a smoke run of a few
minutes); every size can be set with its own flag. `--only` runs some benchmarks only.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
import traceback
from datetime import UTC, datetime
from pathlib import Path

from bench.context import BENCHMARKS, DEFAULTS, QUICK, BenchConfig, Context
from bench.stack import REPO_ROOT, Stack


def _ints(text: str) -> list[int]:
    return [int(part.replace("_", "")) for part in text.split(",") if part.strip()]


def _strs(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def parse_args(argv: list[str]) -> BenchConfig:
    parser = argparse.ArgumentParser(
        prog="python -m bench", description=__doc__.split("\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--quick", action="store_true",
                        help=f"small sizes for a smoke run: {QUICK}")
    parser.add_argument("--only", type=_strs, default=None,
                        help=f"comma-separated subset of {','.join(BENCHMARKS)}")
    parser.add_argument("--output", type=Path, default=REPO_ROOT / "docs" / "benchmarks.md")
    parser.add_argument("--run-dir", type=Path, default=None,
                        help="where logs go (default: a new directory under /tmp)")
    parser.add_argument("--candidate", type=str, default=None,
                        help="another checkout of ConnectHub (e.g. a worktree with a fix): the "
                             "run-overhead benchmark also runs its flow, round by round")
    size = parser.add_argument_group("sizes (default: the issue's figures)")
    size.add_argument("--pairs", type=int, help=f"run-overhead pairs ({DEFAULTS['pairs']})")
    size.add_argument("--sync-jobs", type=int, help=f"jobs to sync ({DEFAULTS['sync_jobs']})")
    size.add_argument("--admin-rows", type=_ints,
                      help="JobLog sizes, e.g. 1000,100000,1000000")
    size.add_argument("--admin-jobs", type=_ints, help="Job-list sizes, e.g. 100,10000")
    size.add_argument("--admin-requests", type=int,
                      help=f"requests per admin page ({DEFAULTS['admin_requests']})")
    size.add_argument("--schedule-jobs", type=int,
                      help=f"jobs on '* * * * *' ({DEFAULTS['schedule_jobs']})")
    size.add_argument("--schedule-minutes", type=int,
                      help=f"minutes of schedule ({DEFAULTS['schedule_minutes']})")
    size.add_argument("--burst-jobs", type=int,
                      help=f"jobs firing in the same minute ({DEFAULTS['burst_jobs']})")
    size.add_argument("--burst-variants", type=_strs,
                      help="bursts after ConnectHub's, e.g. cold,bare,supervisor+prefetch=1 "
                           f"({','.join(DEFAULTS['burst_variants'])}); '' for none")
    size.add_argument("--top-jobs", type=int,
                      help=f"jobs at the top of one minute ({DEFAULTS['top_jobs']})")
    size.add_argument("--top-variants", type=_strs,
                      help="top-of-the-minute bursts after ConnectHub's "
                           f"({','.join(DEFAULTS['top_variants'])}); '' for none")
    size.add_argument("--throughput-minutes", type=float,
                      help=f"minutes of sustained runs ({DEFAULTS['throughput_minutes']})")
    size.add_argument("--worker-limit", type=int,
                      help=f"--limit of the throughput worker ({DEFAULTS['worker_limit']})")
    size.add_argument("--leak-runs", type=int,
                      help="runs the fork server forks before its memory is read again "
                           f"({DEFAULTS['leak_runs']})")
    size.add_argument("--memory-children", type=int,
                      help="concurrent run processes whose memory is read "
                           f"({DEFAULTS['memory_children']})")
    size.add_argument("--variants", type=_strs,
                      help="worker and pool variants to compare, e.g. "
                           "cold,bare,supervisor,limit=2,poll=10 "
                           f"({','.join(DEFAULTS['variants'])}); '' for none")
    size.add_argument("--variant-minutes", type=float,
                      help=f"minutes per variant ({DEFAULTS['variant_minutes']})")
    args = vars(parser.parse_args(argv))
    quick = args.pop("quick")
    only = args.pop("only") or list(BENCHMARKS)
    unknown = set(only) - set(BENCHMARKS)
    if unknown:
        parser.error(f"unknown benchmark(s) {sorted(unknown)}; choose from {BENCHMARKS}")
    run_dir = args.pop("run_dir") or Path(
        f"/tmp/connecthub-bench-{datetime.now(UTC):%Y%m%d-%H%M%S}"
    )
    return BenchConfig.build(quick, only=only, run_dir=run_dir, **args)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    config = parse_args(argv)
    from bench import admin, report, run_overhead, schedule, sync, throughput

    modules = {
        "overhead": run_overhead, "schedule": schedule, "throughput": throughput,
        "sync": sync, "admin": admin,
    }
    started = datetime.now(UTC)
    load_start = report.load_average()
    command = shlex.join(["python", "-m", "bench", *argv])
    print(f"bench: {command}; logs in {config.run_dir}", flush=True)
    sections = []
    with Stack(config.run_dir) as stack:
        ctx = Context(config, stack)
        for key in BENCHMARKS:  # engine benchmarks first, then the engine stops
            if key not in config.only:
                continue
            if key in ("sync", "admin"):
                ctx.stop_engine()
            print(f"bench: {key} ...", flush=True)
            begin = time.monotonic()
            try:
                section = modules[key].run(ctx)
            except Exception as error:
                traceback.print_exc()
                from bench.stats import Section

                section = Section(key, getattr(modules[key], "TITLE", key))
                section.error = f"{type(error).__name__}: {str(error).splitlines()[0][:300]}"
            section.seconds = time.monotonic() - begin
            sections.append(section)
            for figure in section.figures:
                print(f"  {figure.verdict:8} {figure.label}: {figure.value}"
                      + (f"  [target {figure.target}]" if figure.target else ""), flush=True)
            print(f"bench: {key} took {section.seconds / 60:.1f} min", flush=True)
        ctx.stop_engine()
    report.write(config.output, config, sections, started, load_start, command)
    print(f"bench: wrote {config.output}", flush=True)
    return 1 if any(section.error for section in sections) else 0


if __name__ == "__main__":
    sys.exit(main())
