"""A small reader for docker/Dockerfile and .dockerignore, for the tests.

No Docker engine runs on the test machines, so the tests read the
Dockerfile themselves. This handles what our Dockerfile uses: comments,
backslash continuations, stages (FROM ... AS name), ENV key=value pairs,
exec-form (JSON) CMD/ENTRYPOINT/HEALTHCHECK/VOLUME, and the apt-get
install lines of RUN. It is not a general Dockerfile parser.
"""
import json
import os
import re
import shlex

import deploy_helpers as h

DOCKERFILE = os.path.join(h.ROOT, "docker", "Dockerfile")
DOCKERIGNORE = os.path.join(h.ROOT, ".dockerignore")


class Stage:
    def __init__(self, image, name):
        self.image = image
        self.name = name
        self.instructions = []  # (KEYWORD, argument text)

    def all(self, keyword):
        return [arg for kw, arg in self.instructions if kw == keyword]

    def last(self, keyword):
        found = self.all(keyword)
        return found[-1] if found else None

    def env(self):
        out = {}
        for arg in self.all("ENV"):
            for tok in shlex.split(arg):
                if "=" not in tok:
                    raise ValueError(f"ENV without '=' (legacy form) is not supported: {arg}")
                k, v = tok.split("=", 1)
                out[k] = v
        return out

    def apt_packages(self):
        """Packages named by `apt-get install` in this stage's RUN lines."""
        pkgs = []
        for arg in self.all("RUN"):
            for cmd in re.split(r"&&|;|\|\|", arg):
                words = shlex.split(cmd)
                words = [w for w in words if "=" not in w or w.startswith("-")]
                if "apt-get" in words and "install" in words:
                    rest = words[words.index("install") + 1:]
                    pkgs += [w for w in rest if not w.startswith("-")]
        return pkgs


def logical_lines(text):
    """Joins continuation lines and drops comment lines, as Docker does."""
    out, cur = [], ""
    for raw in text.splitlines():
        stripped = raw.strip()
        if stripped.startswith("#"):
            continue  # comments, also inside a continued instruction
        if not stripped and not cur:
            continue
        if stripped.endswith("\\"):
            cur += stripped[:-1] + " "
            continue
        cur += stripped
        if cur.strip():
            out.append(cur.strip())
        cur = ""
    if cur.strip():
        out.append(cur.strip())
    return out


def parse(path=DOCKERFILE):
    with open(path) as f:
        text = f.read()
    stages = []
    for line in logical_lines(text):
        kw, _, arg = line.partition(" ")
        kw = kw.upper()
        arg = arg.strip()
        if kw == "FROM":
            words = arg.split()
            name = words[2] if len(words) >= 3 and words[1].upper() == "AS" else None
            stages.append(Stage(words[0], name))
        else:
            if not stages:
                raise ValueError(f"instruction before FROM: {line}")
            stages[-1].instructions.append((kw, arg))
    return stages


def exec_form(arg):
    """The argv of an exec-form instruction, or None for shell form."""
    try:
        v = json.loads(arg)
    except ValueError:
        return None
    if isinstance(v, list) and all(isinstance(x, str) for x in v):
        return v
    return None


def healthcheck(arg):
    """Splits a HEALTHCHECK argument into ({option: value}, argv or None)."""
    opts = {}
    rest = arg
    while rest.startswith("--"):
        word, _, rest = rest.partition(" ")
        k, _, v = word[2:].partition("=")
        opts[k] = v
        rest = rest.strip()
    kw, _, cmd = rest.partition(" ")
    if kw.upper() != "CMD":
        return opts, None
    return opts, exec_form(cmd.strip())


# ---- .dockerignore ------------------------------------------------------------

def _pattern_regex(pat):
    """Docker's .dockerignore pattern (Go filepath.Match plus "**") as a
    regular expression over slash-separated paths."""
    out, i = "", 0
    while i < len(pat):
        if pat.startswith("**/", i):
            out += "(?:.*/)?"
            i += 3
        elif pat.startswith("**", i):
            out += ".*"
            i += 2
        elif pat[i] == "*":
            out += "[^/]*"
            i += 1
        elif pat[i] == "?":
            out += "[^/]"
            i += 1
        else:
            out += re.escape(pat[i])
            i += 1
    return re.compile(out + r"\Z")


def ignore_rules(path=DOCKERIGNORE):
    """[(negated, pattern text, regex)] in file order."""
    rules = []
    with open(path) as f:
        for line in f:
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            neg = line.startswith("!")
            pat = os.path.normpath(line[1:] if neg else line).lstrip("/")
            rules.append((neg, pat, _pattern_regex(pat)))
    return rules


def excluded(relpath, rules):
    """Docker's rule: the last pattern that matches the path or one of its
    parent directories decides."""
    parts = relpath.split("/")
    candidates = ["/".join(parts[:i]) for i in range(1, len(parts) + 1)]
    result = False
    for neg, _, rx in rules:
        if any(rx.match(c) for c in candidates):
            result = not neg
    return result


def _may_reinclude(reldir, rules):
    """Whether some "!" pattern could bring back a file under reldir."""
    return any(neg and ("**" in pat or pat.startswith(reldir + "/") or pat == reldir)
               for neg, pat, _ in rules)


def build_context(root=h.ROOT, rules=None):
    """Every file of the working tree that `docker build` would send as the
    context. Untracked and git-ignored files count too, as in Docker."""
    rules = rules if rules is not None else ignore_rules()
    files = []
    for dirpath, dirnames, filenames in os.walk(root):
        rel_dir = os.path.relpath(dirpath, root)
        rel_dir = "" if rel_dir == "." else rel_dir.replace(os.sep, "/")
        keep = []
        for d in dirnames:
            rel = f"{rel_dir}/{d}" if rel_dir else d
            # Skip whole excluded trees (build/, .git) when nothing can
            # re-include a file under them: walking them is slow.
            if not (excluded(rel, rules) and not _may_reinclude(rel, rules)):
                keep.append(d)
        dirnames[:] = keep
        for name in filenames:
            rel = f"{rel_dir}/{name}" if rel_dir else name
            if not excluded(rel, rules):
                files.append(rel)
    return sorted(files)
