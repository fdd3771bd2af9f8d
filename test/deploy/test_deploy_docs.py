"""docs/deploy.md and docs/go-fleet.md stay true to the tree (issue 8).

Cheap checks that catch the usual rot: links to files or sections that no
longer exist, environment variables no program reads, `pgof` options the
command does not have, and make targets the Makefile lacks.
"""
import os
import re
import subprocess

import pytest

import deploy_helpers as h

DOCS = [os.path.join(h.ROOT, "docs", n) for n in ("deploy.md", "go-fleet.md")]


def read(path):
    with open(path) as f:
        return f.read()


def anchors(markdown):
    """GitHub's heading anchors: lower case, punctuation dropped, spaces to -."""
    out = set()
    for line in markdown.splitlines():
        m = re.match(r"#+\s+(.*)", line)
        if m:
            slug = re.sub(r"[^\w\- ]", "", m.group(1).strip().lower()).replace(" ", "-")
            out.add(slug)
    return out


@pytest.mark.parametrize("doc", DOCS, ids=os.path.basename)
def test_relative_links_resolve(doc):
    text = read(doc)
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if re.match(r"[a-z]+:", target):
            continue
        path, _, frag = target.partition("#")
        full = os.path.normpath(os.path.join(os.path.dirname(doc), path)) if path else doc
        assert os.path.exists(full), f"{os.path.basename(doc)}: broken link {target}"
        if frag and full.endswith(".md"):
            assert frag in anchors(read(full)), f"{os.path.basename(doc)}: no section {target}"


def program_variables():
    """Every PGOF_* name that appears in the C sources (what programs read)."""
    names = set()
    for dirpath, _, files in os.walk(os.path.join(h.ROOT, "src")):
        for f in files:
            if f.endswith((".c", ".h")):
                names |= set(re.findall(r"PGOF_[A-Z_]+", read(os.path.join(dirpath, f))))
    return names


@pytest.mark.parametrize("doc", DOCS, ids=os.path.basename)
def test_environment_variables_exist(doc):
    known = program_variables()
    if "PGOF_BIND_ADDRESS" not in known:
        pytest.skip("collector sources not present")
    # The example program reads its own variables (docs/examples/go-profiler).
    example = read(os.path.join(h.ROOT, "docs", "examples", "go-profiler", "main.go"))
    known |= set(re.findall(r"PGOF_[A-Z_]+", example))
    unknown = set(re.findall(r"PGOF_[A-Z_]+[A-Z]", read(doc))) - known
    assert not unknown, f"{os.path.basename(doc)} names variables nothing reads: {unknown}"


@pytest.mark.parametrize("doc", DOCS, ids=os.path.basename)
def test_pgof_options_exist(doc):
    pgof = h.pgof_path()
    if not os.access(pgof, os.X_OK):
        pytest.skip(f"{pgof} is not built")
    text = read(doc)
    for sub in sorted(set(re.findall(r"pgof (fetch|submit|merge|inspect|healthcheck)\b", text))):
        p = subprocess.run([pgof, sub, "--help"], stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, timeout=30)
        help_text = p.stdout.decode()
        used = set()
        for line in re.findall(rf"pgof {sub}\b[^`\n]*", text):
            used |= set(re.findall(r"(?<![\w-])(--[a-z][a-z-]*)", line))
        missing = {o for o in used if o not in help_text}
        assert not missing, f"pgof {sub} has no {missing} ({os.path.basename(doc)})"


@pytest.mark.parametrize("doc", DOCS, ids=os.path.basename)
def test_make_targets_exist(doc):
    makefile = read(os.path.join(h.ROOT, "Makefile"))
    for target in set(re.findall(r"`make ([a-z][a-z-]*)", read(doc))):
        assert re.search(rf"^{re.escape(target)}:", makefile, re.M), f"no make {target}"
