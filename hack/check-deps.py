#!/usr/bin/env python3
"""Checks the module structure ARCHITECTURE.md describes, from the `use` lines and inline
paths of every Rust file of the workspace:

- no import cycle between files of a crate (each .rs file is a module; a parent's `pub use`
  re-export of its own children is a facade, not a dependency), nor between its top-level
  modules (folders);
- in store-node, no top-level module imports a module of a higher layer (LAYERS below, lowest
  first): the keyspace engine `store` is a leaf, `node`/`net` build on it, never the reverse;
- no Rust file over MAX_LINES lines unless LONG_FILES says why one concept needs it.

Code under `#[cfg(test)]` is left out: a test may drive a module from above.
Exit status 1 with every violation listed; 0 with a one-line summary per crate.
"""

import os
import re
import sys
from collections import defaultdict

ROOT = os.environ.get("CHECK_DEPS_ROOT") or os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

CRATES = {
    "store-node": "store-node/src",
    "sessionstore-operator": "operator/src",
    "sessionstore-api": "operator/api/src",
    "e2e": "e2e/src",
}

# store-node's layers, lowest first. A module may use modules of its own layer only when
# listed in SAME_LAYER_EDGES, and any module of a lower layer.
LAYERS = [
    ["protocol", "store", "metrics", "tls"],
    ["config"],
    ["pubsub", "scripting"],
    ["replication"],
    ["persistence"],
    ["node"],
    ["commands"],
    ["net"],
    ["server"],
]
SAME_LAYER_EDGES = set()

# No Rust file of the workspace is longer than this, except those listed with the reason one
# concept needs the length.
MAX_LINES = 800
LONG_FILES = {}


def strip_comments_and_strings(text):
    """Blanks out comments, string and char literals (keeping line breaks)."""
    out = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if text.startswith("//", i):
            j = text.find("\n", i)
            j = n if j < 0 else j
            out.append(" " * (j - i))
            i = j
        elif text.startswith("/*", i):
            depth, j = 1, i + 2
            while j < n and depth:
                if text.startswith("/*", j):
                    depth, j = depth + 1, j + 2
                elif text.startswith("*/", j):
                    depth, j = depth - 1, j + 2
                else:
                    j += 1
            out.append(re.sub(r"[^\n]", " ", text[i:j]))
            i = j
        elif c == "r" and re.match(r'r#*"', text[i:i + 10]) and (i == 0 or not (text[i - 1].isalnum() or text[i - 1] == "_")):
            hashes = re.match(r'r(#*)"', text[i:]).group(1)
            end = text.find('"' + hashes, i + 2 + len(hashes))
            end = n if end < 0 else end + 1 + len(hashes)
            out.append(re.sub(r"[^\n]", " ", text[i:end]))
            i = end
        elif c == '"':
            j = i + 1
            while j < n and text[j] != '"':
                j += 2 if text[j] == "\\" else 1
            out.append(re.sub(r"[^\n]", " ", text[i:j + 1]))
            i = j + 1
        elif c == "'" and re.match(r"'(\\.|[^\\'])'|'\\u\{[0-9a-fA-F]+\}'|'\\x[0-9a-fA-F]{2}'", text[i:i + 12]):
            m = re.match(r"'(\\.|[^\\'])'|'\\u\{[0-9a-fA-F]+\}'|'\\x[0-9a-fA-F]{2}'", text[i:i + 12])
            out.append(" " * len(m.group(0)))
            i += len(m.group(0))
        else:
            out.append(c)
            i += 1
    return "".join(out)


def drop_test_modules(text):
    """Removes items under `#[cfg(test)]` (a module or a function with its braces)."""
    result, i = [], 0
    for m in re.finditer(r"#\[cfg\(test\)\]", text):
        if m.start() < i:
            continue
        result.append(text[i:m.start()])
        brace = text.find("{", m.end())
        semi = text.find(";", m.end())
        if brace < 0 or (0 <= semi < brace):
            i = (semi + 1) if semi >= 0 else len(text)
            continue
        depth, j = 1, brace + 1
        while j < len(text) and depth:
            depth += {"{": 1, "}": -1}.get(text[j], 0)
            j += 1
        i = j
    result.append(text[i:])
    return "".join(result)


def expand_use_tree(tree):
    """`a::{b, c::{d, e}}` -> [a::b, a::c::d, a::c::e]; `as` aliases and globs dropped."""
    tree = re.sub(r"\s+", "", tree)
    m = re.match(r"^(.*?)\{(.*)\}$", tree)
    if not m:
        return [re.sub(r"as\w+$", "", tree.replace(" as ", "as")).rstrip(":*")]
    prefix, inner = m.group(1), m.group(2)
    parts, depth, current = [], 0, ""
    for ch in inner:
        if ch == "," and depth == 0:
            parts.append(current)
            current = ""
            continue
        depth += {"{": 1, "}": -1}.get(ch, 0)
        current += ch
    if current:
        parts.append(current)
    paths = []
    for part in parts:
        for sub in expand_use_tree(part):
            paths.append(prefix + sub if sub != "self" else prefix.rstrip(":"))
    return paths


class Crate:
    def __init__(self, name, src):
        self.name, self.src = name, os.path.join(ROOT, src)
        self.modules = {}  # module path tuple -> file
        for dirpath, _, files in os.walk(self.src):
            for f in files:
                if not f.endswith(".rs"):
                    continue
                rel = os.path.relpath(os.path.join(dirpath, f), self.src)
                parts = rel[:-3].split(os.sep)
                if parts[-1] == "mod":
                    parts = parts[:-1]
                if parts in (["lib"], ["main"]):
                    parts = []
                if rel.startswith("bin" + os.sep):
                    continue
                self.modules.setdefault(tuple(parts), os.path.join(dirpath, f))

    def resolve(self, path):
        """The longest module prefix of `path` (a tuple) that is a file."""
        for end in range(len(path), -1, -1):
            if tuple(path[:end]) in self.modules:
                return tuple(path[:end])
        return ()

    def edges(self):
        graph = defaultdict(set)
        for module, file in self.modules.items():
            text = drop_test_modules(strip_comments_and_strings(open(file).read()))
            uses = []
            for m in re.finditer(r"\b(pub(\([^)]*\))?\s+)?use\s+([^;]+);", text):
                reexport = bool(m.group(1))
                for path in expand_use_tree(m.group(3)):
                    uses.append((path, reexport))
            body = re.sub(r"\buse\s+[^;]+;", "", text)
            for m in re.finditer(r"\b((?:crate|super|self)(?:::\w+)+)", body):
                uses.append((m.group(1), False))
            # A file that is a directory's mod.rs or lib.rs is the module itself; others are
            # children of their directory.
            is_dir_module = os.path.basename(file) in ("mod.rs", "lib.rs", "main.rs")
            for path, reexport in uses:
                parts = [p for p in path.split("::") if p]
                if not parts:
                    continue
                if parts[0] == "crate":
                    target = parts[1:]
                elif parts[0] in ("super", "self"):
                    base = list(module)
                    if not is_dir_module and parts[0] == "self":
                        pass
                    while parts and parts[0] in ("super", "self"):
                        if parts[0] == "super":
                            base = base[:-1]
                        parts = parts[1:]
                    target = base + parts
                elif tuple(parts[:1]) in self.modules and len(module) == 0:
                    target = parts
                elif tuple(list(module) + parts[:1]) in self.modules:
                    target = list(module) + parts
                else:
                    continue
                resolved = self.resolve(target)
                if resolved == module:
                    continue
                if reexport and resolved[:len(module)] == module:
                    continue  # a facade re-exporting its own child
                if len(resolved) < len(module) and module[:len(resolved)] == resolved and resolved == ():
                    pass
                graph[module].add(resolved)
        return graph


def find_cycles(graph):
    """Strongly connected components with more than one node (Tarjan)."""
    index, low, stack, on, out = {}, {}, [], set(), []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(component)

    sys.setrecursionlimit(10000)
    for v in list(graph):
        if v not in index:
            visit(v)
    return out


def name(module):
    return "::".join(module) or "crate"


def check(crates):
    """Every violation in `crates` (name -> source folder under ROOT), and a summary."""
    failures, summary = [], []
    for crate_name, src in crates.items():
        crate = Crate(crate_name, src)
        graph = crate.edges()
        # The crate root (lib.rs) declares every module; only its real uses count, and a
        # child's use of an item the root re-exports would be a false cycle: drop root edges.
        for module in list(graph):
            graph[module].discard(())
        graph.pop((), None)
        cycles = find_cycles(graph)
        for cycle in cycles:
            failures.append(f"{crate_name}: import cycle between " + ", ".join(sorted(name(m) for m in cycle)))
        # The same at the level of the crate's top-level modules (folders): `a/x.rs` using
        # `b/y.rs` while `b/z.rs` uses `a/w.rs` is a cycle of the parts.
        parts = defaultdict(set)
        for module, targets in graph.items():
            for target in targets:
                if module and target and module[0] != target[0]:
                    parts[(module[0],)].add((target[0],))
        for cycle in find_cycles(parts):
            failures.append(f"{crate_name}: import cycle between the parts " + ", ".join(sorted(name(m) for m in cycle)))
        edges = sum(len(targets) for targets in graph.values())
        if crate_name == "store-node":
            layer_of = {}
            for level, modules in enumerate(LAYERS):
                for module in modules:
                    layer_of[module] = level
            for module, targets in graph.items():
                top = module[0] if module else None
                for target in targets:
                    other = target[0] if target else None
                    if top is None or other is None or top == other:
                        continue
                    if top not in layer_of:
                        failures.append(f"store-node: module {top} is in no layer of hack/check-deps.py")
                        continue
                    if other not in layer_of:
                        failures.append(f"store-node: module {other} is in no layer of hack/check-deps.py")
                        continue
                    if layer_of[other] > layer_of[top] or (
                        layer_of[other] == layer_of[top] and (top, other) not in SAME_LAYER_EDGES
                    ):
                        failures.append(
                            f"store-node: {name(module)} imports {name(target)}, a module of a "
                            f"{'higher' if layer_of[other] > layer_of[top] else 'same'} layer"
                        )
        summary.append(f"check-deps: {crate_name}: {len(crate.modules)} modules, {edges} import edges, {len(cycles)} cycles")
    return sorted(set(failures)), summary


def long_files():
    """Rust files over MAX_LINES that LONG_FILES does not explain."""
    found = []
    for top in ("store-node", "operator", "e2e"):
        for dirpath, _, files in os.walk(os.path.join(ROOT, top)):
            for f in files:
                if f.endswith(".rs"):
                    path = os.path.relpath(os.path.join(dirpath, f), ROOT)
                    with open(os.path.join(ROOT, path)) as source:
                        lines = sum(1 for _ in source)
                    if lines > MAX_LINES and path not in LONG_FILES:
                        found.append(f"{path} has {lines} lines (over {MAX_LINES}): split it by concept, or explain it in LONG_FILES")
    return sorted(found)


def self_test():
    """The checker finds a planted cycle and an upward import, and passes a clean tree."""
    import tempfile
    global ROOT
    files = {
        "src/lib.rs": "pub mod store;\npub mod node;\n",
        "src/store/mod.rs": "pub mod a;\npub mod b;\npub use a::A;\n",
        "src/store/a.rs": "use super::b::B;\npub struct A;\n",
        "src/store/b.rs": "pub struct B;\n#[cfg(test)]\nmod tests { use crate::node::N; }\n",
        "src/node.rs": "use crate::store::A; // crate::store::a::A in a comment\npub struct N;\n",
    }
    with tempfile.TemporaryDirectory() as root:
        for path, text in files.items():
            os.makedirs(os.path.dirname(os.path.join(root, path)), exist_ok=True)
            with open(os.path.join(root, path), "w") as f:
                f.write(text)
        ROOT = root
        clean, _ = check({"store-node": "src"})
        assert clean == [], clean
        with open(os.path.join(root, "src/store/b.rs"), "w") as f:
            f.write("use super::a::A;\nuse crate::node::N;\npub struct B;\n")
        planted, _ = check({"store-node": "src"})
    assert "store-node: import cycle between store::a, store::b" in planted, planted
    assert any("store::b imports node, a module of a higher layer" in f for f in planted), planted
    assert "store-node: import cycle between the parts node, store" in planted, planted
    print("check-deps: self-test passed")


def main():
    if sys.argv[1:] == ["--self-test"]:
        self_test()
        return 0
    failures, summary = check(CRATES)
    failures += long_files()
    print("\n".join(summary))
    for failure in failures:
        print("check-deps: " + failure, file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
