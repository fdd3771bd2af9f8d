"""pgof inspect: the figures must be go tool pprof's. Issue 6."""
import json
import os

from pgof_helpers import (BAD, go_pprof, go_top, needs_go, needs_pgof, profile,
                          run_pgof)

pytestmark = needs_pgof


def inspect_json(path, *args):
    p = run_pgof(["inspect", "--json", "--top", "0", *args, path])
    return p, json.loads(p.stdout)


@needs_go
def test_inspect_matches_go_tool_pprof_top():
    for name in ("mixed.pb.gz", "fib.pb.gz", "labels.pb.gz", "sort-raw.pb"):
        path = profile(name)
        p, s = inspect_json(path)
        assert p.returncode == 0, p.err
        funcs, total = go_top(path)
        ours = {f["name"]: (f["flat"], f["cum"]) for f in s["top_flat"]}
        assert ours == funcs, name
        assert s["sample_types"][s["value_index"]]["total"] == total
        assert s["function_names"] == len(funcs)
        # Sorted by flat, then cum, like -top's order (ties aside).
        flats = [f["flat"] for f in s["top_flat"]]
        assert flats == sorted(flats, reverse=True)
        cums = [f["cum"] for f in s["top_cum"]]
        assert cums == sorted(cums, reverse=True)


@needs_go
def test_inspect_header_figures_match_pprof_raw():
    path = profile("mixed.pb.gz")
    _, s = inspect_json(path)
    raw = go_pprof("-raw", path).decode()
    header, _, rest = raw.partition("Samples:\n")
    assert f"Period: {s['period']}" in header
    samples = [l for l in rest.split("Locations")[0].splitlines()[1:] if l.strip()]
    assert s["samples"] == len(samples)
    assert s["stacks"] == len({l.split(":", 1)[1].strip() for l in samples})
    assert s["sample_types"][0] == {"type": "samples", "unit": "count",
                                    "total": sum(int(l.split()[0]) for l in samples)}
    assert s["period_type"] == {"type": "cpu", "unit": "nanoseconds"}
    assert s["duration_nanos"] > 0 and s["cpu_profile"] is True
    assert s["size_bytes"] == os.path.getsize(path)


def test_inspect_text_is_an_aligned_table():
    p = run_pgof(["inspect", "-n", "3", profile("mixed.pb.gz")])
    assert p.returncode == 0, p.err
    out = p.stdout.decode()
    for field in ("file", "size", "type", "period", "duration", "samples", "stacks",
                  "functions"):
        assert any(l.startswith(field + " ") for l in out.splitlines()), field
    assert "(Go CPU profile)" in out and "every 10ms (100 Hz)" in out
    table = out.split("by flat")[1].split("\n\n")[0].splitlines()[1:]
    assert len(table) == 4  # header + 3 rows
    assert table[1].split()[-1] == "main.fib"
    # Columns line up: every row has its function name at the same offset.
    starts = {len(l) - len(l.split()[-1]) for l in table}
    assert len(starts) == 1, table


def test_inspect_bad_inputs():
    for name, why in (("empty.pb", "empty"), ("garbage.bin", "not a valid profile"),
                      ("truncated.pb.gz", "gzip"), ("text.txt", "not a valid profile")):
        p = run_pgof(["inspect", os.path.join(BAD, name)])
        assert p.returncode == 1, name
        assert why in p.err and p.stdout == b"", (name, p.err)


def test_inspect_heap_profile_is_summarised_but_refused():
    p, s = inspect_json(os.path.join(BAD, "heap.pb.gz"))
    assert p.returncode == 1
    assert s["cpu_profile"] is False and "not a CPU profile" in s["not_cpu_reason"]
    assert [t["type"] for t in s["sample_types"]][:2] == ["alloc_objects", "alloc_space"]


def test_inspect_usage():
    assert run_pgof(["inspect"]).returncode == 2
    assert run_pgof(["inspect", profile("fib.pb.gz"), profile("sha.pb.gz")]).returncode == 2
    assert run_pgof(["inspect", "--top", "x", profile("fib.pb.gz")]).returncode == 2
