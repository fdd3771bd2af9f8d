"""Marked profiles and the ledger of what the collector acknowledged (issue 5).

Every profile a stress or fault test submits is a real fixture
(test/fixtures/profiles/*.pb.gz) with one extra sample appended: a stack of
one function named "pgof_ledger_<n>" with values [1, period]. Protobuf
repeated fields concatenate, so the extra sample, location, function and
string are appended to the fixture's raw bytes without re-encoding it. The
marker makes each submission visible on its own in a merged profile, so the
final check is per profile: every profile answered 204 is in the merge
exactly once, every refused one is absent, one whose answer was lost (the
client or the server died) is there at most once, and every other stack
equals the sum of the fixtures of the present markers, stack by stack.

Ledger is thread-safe. Outcomes: acked (204), refused (any other status:
never stored), unknown (the whole body went out but no status came back).
"""
import gzip
import os
import sys
import threading

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "collector"))

from collector_helpers import (PROFILES, fixture, pb_field, pb_varint,  # noqa: E402
                               profile_stacks)

MARK = "pgof_ledger_"
MARK_ID = 900_000_000  # location and function ids far above any fixture's


def _count_strings(raw):
    from collector_helpers import _fields
    return sum(1 for num, _, _ in _fields(raw) if num == 6)


class Fixtures:
    """The raw fixtures, their string counts and their stacks (computed once)."""

    def __init__(self, names=PROFILES):
        self.names = list(names)
        self.raw = {n: gzip.decompress(fixture(n)) for n in self.names}
        self.nstrings = {n: _count_strings(r) for n, r in self.raw.items()}
        self.stacks = {n: profile_stacks(r) for n, r in self.raw.items()}
        self.period = {}
        for n, st in self.stacks.items():
            vals = next(iter(st.values()))
            self.period[n] = len(vals)

    def marked(self, name, ident, gz=True, level=1):
        """The fixture name with marker sample ident appended; gzip or raw."""
        raw = self.raw[name]
        sid = self.nstrings[name]
        fid = MARK_ID + ident
        func = pb_field(1, 0, fid) + pb_field(2, 0, sid) + pb_field(3, 0, sid)
        loc = pb_field(1, 0, fid) + pb_field(4, 2, pb_field(1, 0, fid))
        sample = (pb_field(1, 2, pb_varint(fid)) +
                  pb_field(2, 2, pb_varint(1) + pb_varint(10_000_000)))
        body = (raw + pb_field(2, 2, sample) + pb_field(4, 2, loc) + pb_field(5, 2, func) +
                pb_field(6, 2, f"{MARK}{ident}".encode()))
        return gzip.compress(body, level) if gz else body


class Ledger:
    def __init__(self, fixtures):
        self.fx = fixtures
        self.lock = threading.Lock()
        self.next_id = 0
        self.fixture_of = {}
        self.acked = set()
        self.refused = set()
        self.unknown = set()
        self.inflight = set()  # body fully sent, no answer yet

    def new(self, name):
        with self.lock:
            self.next_id += 1
            self.fixture_of[self.next_id] = name
            return self.next_id

    def sent(self, ident):
        with self.lock:
            self.inflight.add(ident)

    def outcome(self, ident, status):
        """status: an HTTP status, or None when the answer was lost."""
        with self.lock:
            self.inflight.discard(ident)
            if status == 204:
                self.acked.add(ident)
            elif status is None:
                self.unknown.add(ident)
            else:
                self.refused.add(ident)

    def snapshot(self):
        with self.lock:
            return set(self.acked), set(self.inflight) | set(self.unknown)


def split_merge(data):
    """Returns ({marker id: count}, {other stack: values}) of a merged profile."""
    marks, rest = {}, {}
    for stack, vals in profile_stacks(data).items():
        if len(stack) == 1 and stack[0].startswith(MARK):
            marks[int(stack[0][len(MARK):])] = vals[0]
        else:
            rest[stack] = vals
    return marks, rest


def check_merge(ledger, data, must, may):
    """Checks a merged profile: markers in must present once, others only from
    may, and the unmarked stacks exactly the sum of the present fixtures.
    Returns a list of problems (empty when it holds)."""
    marks, rest = split_merge(data)
    problems = []
    doubled = {i: n for i, n in marks.items() if n != 1}
    if doubled:
        problems.append(f"profiles counted more than once: {sorted(doubled.items())[:10]}")
    lost = sorted(must - set(marks))
    if lost:
        problems.append(f"{len(lost)} acknowledged profile(s) missing: {lost[:10]}")
    extra = sorted(set(marks) - must - may)
    if extra:
        problems.append(f"{len(extra)} profile(s) present that were never acknowledged "
                        f"nor in flight: {extra[:10]}")
    want = {}
    for i in marks:
        for stack, vals in ledger.fx.stacks[ledger.fixture_of[i]].items():
            cur = want.setdefault(stack, [0] * len(vals))
            for k, x in enumerate(vals):
                cur[k] += x
    if want != rest:
        bad = [s for s in set(want) | set(rest) if want.get(s) != rest.get(s)]
        problems.append(f"{len(bad)} stack(s) differ from the sum of the present profiles, "
                        f"e.g. {bad[0]}: want {want.get(bad[0])}, got {rest.get(bad[0])}")
    return problems
